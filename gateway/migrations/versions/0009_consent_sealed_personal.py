"""consent: seal the personal part of release versions (data subjects, grantor, purpose)

The names of children and parents and the purpose of a release were stored in clear; they
become one blob sealed with the master key (crypto.at_rest, as message content), bound to
the version's (release id, version). Existing rows are converted here, so this migration
needs the master key whenever the register holds releases: ``xgate db upgrade`` passes it
(gateway.migrate); a downgrade opens the blobs into the clear columns again.

Old copies of the clear values may stay in free database pages until they are reused; run
VACUUM (SQLite) or VACUUM FULL consent_release_versions (PostgreSQL) after upgrading a
register that held releases.

Revision ID: 0009
Revises: 0008
"""
import json
from collections.abc import Callable

import sqlalchemy as sa
from alembic import context, op

from crypto.at_rest import MasterKey, open_sealed, seal

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TABLE = "consent_release_versions"
versions = sa.table(
    TABLE, sa.column("id", sa.Integer()), sa.column("release_id", sa.Integer()),
    sa.column("version", sa.Integer()), sa.column("data_subjects", sa.Text()),
    sa.column("grantor_name", sa.String(255)), sa.column("purpose", sa.Text()),
    sa.column("sealed_personal", sa.LargeBinary()))


def _context(release_id: int, version: int) -> bytes:
    # Frozen here as gateway.consent.records.personal_context has it when this was written:
    # what this migration seals, the code of that day opens.
    return b"xgate consent release\x00%d\x00%d" % (release_id, version)


def _master_key() -> MasterKey:
    provide: Callable[[], MasterKey] | None = context.config.attributes.get("master_key")
    if provide is None:
        raise RuntimeError("migration 0009 converts the release records with the master key; "
                           "run it through gateway.migrate with master_key (xgate db upgrade)")
    return provide()


def _rows_exist() -> bool:
    return op.get_bind().execute(sa.select(sa.func.count()).select_from(versions)).scalar_one() > 0


def upgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.add_column(sa.Column("sealed_personal", sa.LargeBinary(), nullable=True))
    if _rows_exist():
        key = _master_key()
        bind = op.get_bind()
        rows = bind.execute(sa.select(versions.c.id, versions.c.release_id, versions.c.version,
                                      versions.c.data_subjects, versions.c.grantor_name,
                                      versions.c.purpose)).all()
        for row in rows:
            personal = {"data_subjects": json.loads(row.data_subjects),
                        "grantor_name": row.grantor_name, "purpose": row.purpose}
            blob = seal(key, json.dumps(personal, ensure_ascii=False).encode(),
                        _context(row.release_id, row.version))
            bind.execute(sa.update(versions).where(versions.c.id == row.id)
                         .values(sealed_personal=blob))
    with op.batch_alter_table(TABLE) as batch:
        batch.alter_column("sealed_personal", existing_type=sa.LargeBinary(), nullable=False)
        batch.drop_column("data_subjects")
        batch.drop_column("grantor_name")
        batch.drop_column("purpose")


def downgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.add_column(sa.Column("data_subjects", sa.Text(), nullable=True))
        batch.add_column(sa.Column("grantor_name", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("purpose", sa.Text(), nullable=True))
    if _rows_exist():
        key = _master_key()
        bind = op.get_bind()
        rows = bind.execute(sa.select(versions.c.id, versions.c.release_id, versions.c.version,
                                      versions.c.sealed_personal)).all()
        for row in rows:
            personal = json.loads(open_sealed(key, row.sealed_personal,
                                              _context(row.release_id, row.version)))
            bind.execute(sa.update(versions).where(versions.c.id == row.id).values(
                data_subjects=json.dumps(personal["data_subjects"], ensure_ascii=False),
                grantor_name=personal["grantor_name"], purpose=personal["purpose"]))
    with op.batch_alter_table(TABLE) as batch:
        batch.alter_column("data_subjects", existing_type=sa.Text(), nullable=False)
        batch.alter_column("grantor_name", existing_type=sa.String(length=255), nullable=False)
        batch.alter_column("purpose", existing_type=sa.Text(), nullable=False)
        batch.drop_column("sealed_personal")
