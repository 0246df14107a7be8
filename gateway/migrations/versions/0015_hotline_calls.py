"""hotline calls, callbacks, follow-ups, topics, ticket links

Revision ID: 0015
Revises: 0014
"""
import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_CONVENTION = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def upgrade() -> None:
    with op.batch_alter_table("tickets", naming_convention=_CONVENTION) as batch:
        batch.add_column(sa.Column("channel", sa.String(length=8), nullable=False,
                                   server_default="mail"))
        batch.add_column(sa.Column("merged_into_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_tickets_merged_into_id_tickets", "tickets",
                                 ["merged_into_id"], ["id"], ondelete="SET NULL")

    op.create_table(
        "mailbox_topics",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["mailbox_id"], ["mailboxes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("mailbox_id", "name"),
    )
    op.create_table(
        "hotline_calls",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("taken_by", sa.String(length=320), nullable=False),
        sa.Column("caller_role", sa.String(length=16), nullable=False),
        sa.Column("topic", sa.String(length=100), nullable=True),
        sa.Column("details_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("number_token", sa.LargeBinary(length=16), nullable=False),
        sa.Column("callback_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("callback_done_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_hotline_calls_ticket_id", "hotline_calls", ["ticket_id"])
    op.create_index("ix_hotline_calls_number_token", "hotline_calls", ["number_token"])
    op.create_index("ix_hotline_calls_callback_due", "hotline_calls", ["callback_due_at"])
    op.create_table(
        "hotline_callback_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=320), nullable=False),
        sa.Column("reached", sa.Boolean(), nullable=False),
        sa.Column("note_sealed", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["call_id"], ["hotline_calls.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_hotline_callback_attempts_call_id", "hotline_callback_attempts",
                    ["call_id"])
    op.create_table(
        "ticket_follow_ups",
        sa.Column("ticket_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("holder_id", sa.Integer(), nullable=True),
        sa.Column("note_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("set_by", sa.String(length=320), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["holder_id"], ["staff_users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("ticket_id"),
    )
    op.create_index("ix_ticket_follow_ups_holder_due", "ticket_follow_ups",
                    ["holder_id", "due_on"])
    op.create_index("ix_ticket_follow_ups_due", "ticket_follow_ups", ["due_on"])
    op.create_table(
        "ticket_links",
        sa.Column("low_id", sa.Integer(), nullable=False),
        sa.Column("high_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=320), nullable=False),
        sa.ForeignKeyConstraint(["low_id"], ["tickets.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["high_id"], ["tickets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("low_id", "high_id"),
    )
    op.create_index("ix_ticket_links_high_id", "ticket_links", ["high_id"])
    op.create_table(
        "follow_up_digests",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["staff_users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "day"),
    )


def downgrade() -> None:
    op.drop_table("follow_up_digests")
    op.drop_index("ix_ticket_links_high_id", table_name="ticket_links")
    op.drop_table("ticket_links")
    op.drop_index("ix_ticket_follow_ups_due", table_name="ticket_follow_ups")
    op.drop_index("ix_ticket_follow_ups_holder_due", table_name="ticket_follow_ups")
    op.drop_table("ticket_follow_ups")
    op.drop_index("ix_hotline_callback_attempts_call_id",
                  table_name="hotline_callback_attempts")
    op.drop_table("hotline_callback_attempts")
    op.drop_index("ix_hotline_calls_callback_due", table_name="hotline_calls")
    op.drop_index("ix_hotline_calls_number_token", table_name="hotline_calls")
    op.drop_index("ix_hotline_calls_ticket_id", table_name="hotline_calls")
    op.drop_table("hotline_calls")
    op.drop_table("mailbox_topics")
    with op.batch_alter_table("tickets", naming_convention=_CONVENTION) as batch:
        batch.drop_constraint("fk_tickets_merged_into_id_tickets", type_="foreignkey")
        batch.drop_column("merged_into_id")
        batch.drop_column("channel")
