"""citizen portal: submissions and rate limits

Revision ID: 0017
Revises: 0016
"""
import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "portal_submissions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("reference", sa.String(length=32), nullable=False),
        sa.Column("queue_id", sa.String(length=16), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("reference"),
    )
    op.create_index("ix_portal_submissions_queue_id", "portal_submissions", ["queue_id"])
    op.create_table(
        "portal_rate_hits",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ip_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_portal_rate_hits_ip_at", "portal_rate_hits", ["ip_hash", "at"])
    op.create_index("ix_portal_rate_hits_at", "portal_rate_hits", ["at"])


def downgrade() -> None:
    op.drop_index("ix_portal_rate_hits_at", table_name="portal_rate_hits")
    op.drop_index("ix_portal_rate_hits_ip_at", table_name="portal_rate_hits")
    op.drop_table("portal_rate_hits")
    op.drop_index("ix_portal_submissions_queue_id", table_name="portal_submissions")
    op.drop_table("portal_submissions")
