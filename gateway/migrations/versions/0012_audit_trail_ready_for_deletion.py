"""audit trail ready for deletion: personal data sealed under retention keys

Each audit entry's personal part (addresses, names, peer, a person as actor: see
gateway.audit.personal) moves into ``audit_log.sealed``, sealed under the key of the entry's
month (new table ``audit_keys``, each key wrapped with the master key), and the chain hashes
the sealed blob instead of the plaintext. Destroying a month's key later deletes that month's
personal data without breaking ``xgate audit verify``.

Existing entries are carried over: the old chain is verified first (a broken chain refuses
the upgrade: it would otherwise be re-hashed into an intact-looking one), then every entry is
split, sealed and re-chained from the start, and one entry ``audit-resealed`` is appended
whose clear detail names the old chain's last sequence number and hash, so the link to the
chain that was there before stays on record. This needs the master key whenever the trail
holds entries; ``xgate db upgrade`` passes it (gateway.migrate).

The downgrade opens every sealed part back into the clear columns and re-chains in the old
form (the ``audit-resealed`` entry stays, as an ordinary entry). It refuses once a month's key
was destroyed: that personal data is gone and cannot be put back.

As with 0009, old copies of the clear values may stay in free database pages until they are
reused: run VACUUM (SQLite) or VACUUM FULL audit_log (PostgreSQL) after upgrading.

The split, the sealing and the hash are gateway.audit's own (imported, not copied): the entries
this writes must be the ones the code of this revision verifies and opens.

Revision ID: 0012
Revises: 0011
"""
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from crypto.at_rest import MasterKey
from gateway.audit.chain import GENESIS_HASH, canonical, entry_hash
from gateway.audit.keys import (
    new_period_key,
    open_period_key,
    open_personal_with,
    period_of,
    seal_personal,
)
from gateway.audit.personal import merge, split
from gateway.db import MASTER_KEY_INFO
from gateway.models import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

RESEALED = "audit-resealed"
MIGRATION_ACTOR = "migration:0012"
_BATCH = 1000

log_table = sa.table(
    "audit_log", sa.column("seq", sa.BigInteger()), sa.column("at", UTCDateTime()),
    sa.column("actor", sa.String(255)), sa.column("action", sa.String(64)),
    sa.column("queue_id", sa.String(32)), sa.column("detail", sa.Text()),
    sa.column("sealed", sa.LargeBinary()), sa.column("prev_hash", sa.String(64)),
    sa.column("entry_hash", sa.String(64)))
head_table = sa.table("audit_head", sa.column("id", sa.Integer()),
                      sa.column("seq", sa.BigInteger()), sa.column("last_hash", sa.String(64)))
keys_table = sa.table("audit_keys", sa.column("period", sa.String(7)),
                      sa.column("wrapped", sa.LargeBinary()),
                      sa.column("created_at", UTCDateTime()),
                      sa.column("destroyed_at", UTCDateTime()))


def _master_key() -> MasterKey:
    provide: Callable[[], MasterKey] | None = context.config.attributes.get("master_key")
    if provide is None:
        # An engine of gateway.db.make_engine offers the installation's key file too.
        provide = op.get_bind().info.get(MASTER_KEY_INFO)
    if provide is None:
        raise RuntimeError("migration 0012 seals the audit trail's personal data with the "
                           "master key; run it through gateway.migrate with master_key "
                           "(xgate db upgrade)")
    return provide()


def _entries(columns: list[Any]) -> Iterator[Any]:
    bind = op.get_bind()
    last = 0
    while True:
        rows = bind.execute(sa.select(*columns).where(log_table.c.seq > last)
                            .order_by(log_table.c.seq).limit(_BATCH)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def _verify_old_chain() -> tuple[int, str]:
    """The old chain's last (seq, hash), or RuntimeError naming the first broken entry."""
    prev, expected = GENESIS_HASH, 1
    c = log_table.c
    for row in _entries([c.seq, c.at, c.actor, c.action, c.queue_id, c.detail, c.prev_hash,
                         c.entry_hash]):
        recomputed = entry_hash(prev, row.seq, row.at, row.actor, row.action, row.queue_id,
                                row.detail)
        if row.seq != expected or row.prev_hash != prev or recomputed != row.entry_hash:
            raise RuntimeError(
                f"migration 0012 refused: the audit chain is broken at entry {expected} "
                "(run 'xgate audit verify' on the previous version); it is not re-sealed, so "
                "the damage is not hidden behind a new, intact-looking chain")
        prev, expected = row.entry_hash, expected + 1
    head = op.get_bind().execute(sa.select(head_table.c.seq, head_table.c.last_hash)
                                 .where(head_table.c.id == 1)).one_or_none()
    if head is None or head.seq != expected - 1 or head.last_hash != prev:
        raise RuntimeError("migration 0012 refused: the audit chain's head does not name its "
                           "last entry (entries removed from the end?)")
    return expected - 1, prev


def _has_entries() -> bool:
    count = op.get_bind().execute(sa.select(sa.func.count()).select_from(log_table))
    return count.scalar_one() > 0


def upgrade() -> None:
    op.create_table(
        "audit_keys",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("period"),
    )
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("sealed", sa.LargeBinary(), nullable=True))
    if not _has_entries():
        return
    old_seq, old_hash = _verify_old_chain()
    master = _master_key()
    bind = op.get_bind()
    now = datetime.now(UTC)
    keys: dict[str, MasterKey] = {}
    prev = GENESIS_HASH
    c = log_table.c

    def write(seq: int, at: datetime, actor: str, action: str, queue_id: str | None,
              detail: dict[str, Any]) -> dict[str, Any]:
        nonlocal prev
        part = split(actor, detail)
        sealed = None
        if part.personal is not None:
            period = period_of(at)
            if period not in keys:
                keys[period], wrapped = new_period_key(master, period)
                bind.execute(sa.insert(keys_table).values(period=period, wrapped=wrapped,
                                                          created_at=now))
            sealed = seal_personal(keys[period], seq, part.personal)
        text = canonical(part.detail)
        digest = entry_hash(prev, seq, at, part.actor, action, queue_id, text, sealed)
        row = {"actor": part.actor, "detail": text, "sealed": sealed, "prev_hash": prev,
               "entry_hash": digest}
        prev = digest
        return row

    for entry in _entries([c.seq, c.at, c.actor, c.action, c.queue_id, c.detail]):
        values = write(entry.seq, entry.at, entry.actor, entry.action, entry.queue_id,
                       json.loads(entry.detail))
        bind.execute(sa.update(log_table).where(c.seq == entry.seq).values(**values))
    seq = old_seq + 1
    values = write(seq, now, MIGRATION_ACTOR, RESEALED, None, {
        "old_head_seq": old_seq, "old_head_hash": old_hash, "entries_resealed": old_seq})
    bind.execute(sa.insert(log_table).values(seq=seq, at=now, action=RESEALED, queue_id=None,
                                             **values))
    bind.execute(sa.update(head_table).where(head_table.c.id == 1)
                 .values(seq=seq, last_hash=values["entry_hash"]))


def downgrade() -> None:
    if _has_entries():
        bind = op.get_bind()
        destroyed = bind.execute(sa.select(keys_table.c.period)
                                 .where(keys_table.c.wrapped.is_(None))).scalars().all()
        if destroyed:
            raise RuntimeError("downgrade below 0012 refused: the audit trail's personal data "
                               f"of {', '.join(destroyed)} was deleted (keys destroyed), and "
                               "the previous version can only hold it in the clear")
        master = _master_key()
        keys = {row.period: open_period_key(master, row.period, row.wrapped)
                for row in bind.execute(sa.select(keys_table.c.period, keys_table.c.wrapped))}
        prev = GENESIS_HASH
        c = log_table.c
        for entry in _entries([c.seq, c.at, c.actor, c.action, c.queue_id, c.detail,
                               c.sealed]):
            personal = (None if entry.sealed is None else
                        open_personal_with(keys[period_of(entry.at)], entry.seq, entry.sealed))
            actor, detail = merge(entry.actor, json.loads(entry.detail), personal)
            text = canonical(detail)
            digest = entry_hash(prev, entry.seq, entry.at, actor, entry.action,
                                entry.queue_id, text)
            bind.execute(sa.update(log_table).where(c.seq == entry.seq).values(
                actor=actor, detail=text, sealed=None, prev_hash=prev, entry_hash=digest))
            prev = digest
        bind.execute(sa.update(head_table).where(head_table.c.id == 1)
                     .values(last_hash=prev))
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("sealed")
    op.drop_table("audit_keys")
