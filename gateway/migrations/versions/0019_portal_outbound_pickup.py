"""portal outbound pickup: items made by the delivery step, also for mail that is no ticket
reply (ticket_id nullable), one per queue message and recipient (queue_id, sender)

Revision ID: 0019
Revises: 0018
"""
import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pickup_items", schema=None) as batch_op:
        batch_op.alter_column("ticket_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("queue_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("sender", sa.String(length=320), nullable=True))
        batch_op.create_unique_constraint("uq_pickup_items_queue_recipient",
                                          ["queue_id", "recipient"])


def downgrade() -> None:
    # Items without a ticket cannot exist in the older schema.
    op.execute("DELETE FROM pickup_items WHERE ticket_id IS NULL")
    with op.batch_alter_table("pickup_items", schema=None) as batch_op:
        batch_op.drop_constraint("uq_pickup_items_queue_recipient", type_="unique")
        batch_op.drop_column("sender")
        batch_op.drop_column("queue_id")
        batch_op.alter_column("ticket_id", existing_type=sa.Integer(), nullable=False)
