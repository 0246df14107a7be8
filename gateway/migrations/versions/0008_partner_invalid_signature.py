"""partners: what happens to mail whose signature is present but fails (quarantine or warn)

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("partners") as batch:
        # Existing partners get the safe default: a failing signature is quarantined.
        batch.add_column(sa.Column(
            "inbound_invalid_signature",
            sa.Enum("quarantine", "warn", name="invalid_signature", native_enum=False,
                    length=16),
            nullable=False, server_default="quarantine"))


def downgrade() -> None:
    with op.batch_alter_table("partners") as batch:
        batch.drop_column("inbound_invalid_signature")
