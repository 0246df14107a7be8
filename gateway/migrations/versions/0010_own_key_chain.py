"""own keys: the intermediate certificates imported with an S/MIME certificate

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("own_keys") as batch:
        # Keys imported before have no chain: they are exported and sign without one, as
        # before.
        batch.add_column(sa.Column("chain", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("own_keys") as batch:
        batch.drop_column("chain")
