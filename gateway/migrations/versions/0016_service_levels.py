"""service levels: business hours, deadlines, escalations, plausibility findings

Revision ID: 0016
Revises: 0015
"""
from alembic import op  # noqa: F401

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # filled in by the change that owns this revision


def downgrade() -> None:
    pass
