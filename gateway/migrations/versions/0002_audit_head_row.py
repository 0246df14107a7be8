"""audit chain head row

Creates the audit chain's head row up front, so the very first appends of two concurrent
transactions cannot both try to create it.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64


def upgrade() -> None:
    head = sa.table("audit_head", sa.column("id", sa.Integer), sa.column("seq", sa.BigInteger),
                    sa.column("last_hash", sa.String))
    conn = op.get_bind()
    if conn.execute(sa.select(head.c.id).where(head.c.id == 1)).first() is None:
        # An existing chain without a head cannot be told from a tampered one; such a
        # database is new (0001 only just created the tables), so the chain is empty.
        count = conn.execute(sa.text("SELECT COUNT(*) FROM audit_log")).scalar_one()
        if count:
            raise RuntimeError("audit_log has entries but no head row: run 'xgate audit verify'")
        op.bulk_insert(head, [{"id": 1, "seq": 0, "last_hash": GENESIS_HASH}])


def downgrade() -> None:
    # The head of an empty chain carries nothing; a non-empty chain keeps its head.
    op.execute("DELETE FROM audit_head WHERE id = 1 AND seq = 0")
