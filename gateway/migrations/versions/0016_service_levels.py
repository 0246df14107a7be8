"""service levels: business hours, deadlines, escalations, plausibility findings

Revision ID: 0016
Revises: 0015
"""
import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "mailbox_service_levels",
        sa.Column("mailbox_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("land", sa.String(length=2), nullable=False),
        sa.Column("opening_hours", sa.Text(), nullable=False),
        sa.Column("closing_days", sa.Text(), nullable=False),
        sa.Column("first_response_minutes", sa.Integer(), nullable=False),
        sa.Column("resolution_minutes", sa.Integer(), nullable=False),
        sa.Column("warning_minutes", sa.Integer(), nullable=False),
        sa.Column("escalation_contacts", sa.Text(), nullable=True),
        sa.Column("untouched_days", sa.Integer(), nullable=False),
        sa.Column("case_reference_patterns", sa.Text(), nullable=True),
        _when("updated_at", nullable=False),
        sa.Column("updated_by", sa.String(length=320), nullable=False),
        sa.ForeignKeyConstraint(["mailbox_id"], ["mailboxes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("mailbox_id"),
    )
    op.create_table(
        "ticket_service_levels",
        sa.Column("ticket_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        _when("first_response_due_at"),
        _when("first_responded_at"),
        _when("resolution_due_at"),
        _when("resolved_at"),
        _when("paused_since"),
        sa.Column("mark", sa.String(length=16), nullable=True),
        _when("computed_at", nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["mailbox_id"], ["mailboxes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("ticket_id"),
    )
    op.create_index("ix_ticket_service_levels_mailbox_id", "ticket_service_levels",
                    ["mailbox_id"])
    op.create_table(
        "ticket_findings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        _when("first_seen_at", nullable=False),
        _when("resolved_at"),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["mailbox_id"], ["mailboxes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ticket_findings_ticket_id", "ticket_findings", ["ticket_id"])
    op.create_index("ix_ticket_findings_mailbox", "ticket_findings",
                    ["mailbox_id", "resolved_at", "id"])
    op.create_table(
        "sla_escalations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        _when("due_at", nullable=False),
        _when("escalated_at", nullable=False),
        sa.Column("told", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["mailbox_id"], ["mailboxes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ticket_id", "kind"),
    )
    op.create_index("ix_sla_escalations_mailbox", "sla_escalations", ["mailbox_id", "id"])
    # The SLA pass reads the history written since its last run.
    op.create_index("ix_ticket_history_at", "ticket_history", ["at"])
    op.create_table(
        "scheduled_jobs",
        sa.Column("name", sa.String(length=64), nullable=False),
        _when("next_due_at", nullable=False),
        _when("last_run_at"),
        sa.Column("last_run_by", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("scheduled_jobs")
    op.drop_index("ix_ticket_history_at", table_name="ticket_history")
    op.drop_index("ix_sla_escalations_mailbox", table_name="sla_escalations")
    op.drop_table("sla_escalations")
    op.drop_index("ix_ticket_findings_mailbox", table_name="ticket_findings")
    op.drop_index("ix_ticket_findings_ticket_id", table_name="ticket_findings")
    op.drop_table("ticket_findings")
    op.drop_index("ix_ticket_service_levels_mailbox_id", table_name="ticket_service_levels")
    op.drop_table("ticket_service_levels")
    op.drop_table("mailbox_service_levels")
