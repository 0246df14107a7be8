"""message facts (crypto facts recorded on the message); inline PGP for partners

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("facts", sa.Text(), nullable=True))
    with op.batch_alter_table("partners") as batch:
        batch.add_column(sa.Column("openpgp_inline", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("partners") as batch:
        batch.drop_column("openpgp_inline")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("facts")
