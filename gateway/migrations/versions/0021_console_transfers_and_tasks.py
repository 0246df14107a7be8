"""console: background tasks; the indexes of the transfer search and the audit viewer

Revision ID: 0021
Revises: 0020
"""
import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "background_tasks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("started_by", sa.String(length=255), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("state", sa.Enum("running", "done", "failed", "interrupted",
                                   name="task_state", native_enum=False, length=16),
                  nullable=False),
        sa.Column("done", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("owner", sa.String(length=100), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_background_tasks_state", "background_tasks",
                    ["state", "heartbeat_at"])
    # The transfer search by address (sender or recipient, case-insensitive), newest first.
    op.create_index("ix_messages_sender", "messages", [sa.text("lower(mail_from)"), "id"])
    op.create_index("ix_message_recipients_address", "message_recipients",
                    [sa.text("lower(address)"), "message_id"])
    op.create_index("ix_messages_received_at", "messages", ["received_at"])
    # The audit viewer's filters by action and by date.
    op.create_index("ix_audit_log_action", "audit_log", ["action", "seq"])
    op.create_index("ix_audit_log_at", "audit_log", ["at"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_index("ix_audit_log_action", table_name="audit_log")
    op.drop_index("ix_messages_received_at", table_name="messages")
    op.drop_index("ix_message_recipients_address", table_name="message_recipients")
    op.drop_index("ix_messages_sender", table_name="messages")
    op.drop_index("ix_background_tasks_state", table_name="background_tasks")
    op.drop_table("background_tasks")
