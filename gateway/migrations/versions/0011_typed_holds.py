"""typed holds: hold kind and case reference as columns; audit actions as one enumeration

What a held message waits for was only the start of its ``reason``, and an outbound report's
case only a key in its ``facts`` JSON. Both become columns, filled here from what existing
rows say: the hold kind of held messages from the reason prefixes the code wrote, the case
reference from the facts. The reason text and the facts stay as they are. A downgrade puts
the case of reports recorded after the upgrade back into their facts, where the older code
looks for it, and drops the columns. (The audit actions needed no change in the database:
their stored strings are the enumeration's values.)

Revision ID: 0011
Revises: 0010
"""
import json

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Frozen as the code wrote them when this was written (gateway.queue.held.KEY_HOLD_PREFIX,
# gateway.consent.holds.CONSENT_HOLD_PREFIX and STATUTORY_HOLD_PREFIX); the statutory one
# starts like the consent one, so it is matched first.
_KINDS = (("consent: statutory transfer", "statutory_approval"),
          ("consent: ", "consent"),
          ("encryption is required but no usable key exists", "key_missing"))
CASE_FACT = "consent:case_key"
CASE_SHOWN_FACT = "consent:case"

messages = sa.table(
    "messages", sa.column("id", sa.Integer()), sa.column("state", sa.String(16)),
    sa.column("reason", sa.Text()), sa.column("facts", sa.Text()),
    sa.column("hold_kind", sa.String(32)), sa.column("case_reference", sa.String(200)))


def _normalise_case(case: str) -> str:
    # As gateway.policy.consent.normalise_case, frozen here.
    return " ".join(case.split()).casefold()


def _facts(text: str | None) -> dict[str, object] | None:
    try:
        loaded = json.loads(text) if text else None
    except ValueError:
        return None  # a damaged row keeps its text; it had no usable case before either
    return loaded if isinstance(loaded, dict) else None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("hold_kind", sa.Enum(
            "key_missing", "consent", "statutory_approval", name="hold_kind",
            native_enum=False, length=32), nullable=True))
        batch.add_column(sa.Column("case_reference", sa.String(200), nullable=True))
        batch.create_index("ix_messages_hold_kind", ["hold_kind", "received_at"])
        batch.create_index("ix_messages_case_reference", ["case_reference"])
    bind = op.get_bind()
    for prefix, kind in _KINDS:
        # startswith is LIKE, as the code that told the holds apart used.
        bind.execute(sa.update(messages).where(
            messages.c.state == "held", messages.c.hold_kind.is_(None),
            messages.c.reason.startswith(prefix, autoescape=True)).values(hold_kind=kind))
    rows = bind.execute(sa.select(messages.c.id, messages.c.facts).where(
        messages.c.facts.contains(CASE_SHOWN_FACT, autoescape=True))).all()
    for message_id, text in rows:
        facts = _facts(text) or {}
        case = facts.get(CASE_FACT)
        if not isinstance(case, str):
            shown = facts.get(CASE_SHOWN_FACT)
            case = _normalise_case(shown) if isinstance(shown, str) else None
        if case:
            bind.execute(sa.update(messages).where(messages.c.id == message_id)
                         .values(case_reference=case))


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(messages.c.id, messages.c.facts, messages.c.case_reference)
                        .where(messages.c.case_reference.is_not(None))).all()
    for message_id, text, case in rows:
        facts = _facts(text)
        if facts is None:
            if text:
                continue  # damaged facts stay as they were
            facts = {}
        if facts.get(CASE_FACT) != case:
            facts[CASE_FACT] = case
            bind.execute(sa.update(messages).where(messages.c.id == message_id)
                         .values(facts=json.dumps(facts, sort_keys=True)))
    with op.batch_alter_table("messages") as batch:
        batch.drop_index("ix_messages_case_reference")
        batch.drop_index("ix_messages_hold_kind")
        batch.drop_column("case_reference")
        batch.drop_column("hold_kind")
