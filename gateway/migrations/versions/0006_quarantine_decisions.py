"""quarantine decisions (four-eyes release, delete) and re-scan results

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=16)


def upgrade() -> None:
    op.create_table(
        "quarantine_decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("action", _enum("quarantine_action", "release-approval", "release",
                                  "release-refused", "delete"), nullable=False),
        sa.Column("admin", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("length(trim(reason)) > 0", name="ck_quarantine_decisions_reason"),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_quarantine_decisions_message_id", "quarantine_decisions",
                    ["message_id"])
    op.create_table(
        "quarantine_rescans",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verdict", _enum("rescan_verdict", "clean", "not-clean", "unreadable"),
                  nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_quarantine_rescans_message_id", "quarantine_rescans", ["message_id"])


def downgrade() -> None:
    op.drop_index("ix_quarantine_rescans_message_id", table_name="quarantine_rescans")
    op.drop_table("quarantine_rescans")
    op.drop_index("ix_quarantine_decisions_message_id", table_name="quarantine_decisions")
    op.drop_table("quarantine_decisions")
