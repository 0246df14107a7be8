"""shared mailboxes: members, tickets, threading, notes, history; copies independent of the queue

Revision ID: 0014
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# The initial schema left the foreign keys unnamed; batch mode names them by this
# convention on SQLite, PostgreSQL named them itself.
_CONVENTION = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def _old_message_fk() -> str:
    if op.get_bind().dialect.name == "postgresql":
        return "mailbox_messages_message_id_fkey"
    return "fk_mailbox_messages_message_id_messages"


def upgrade() -> None:
    with op.batch_alter_table("mailboxes") as batch:
        batch.add_column(sa.Column("receipt_enabled", sa.Boolean(), nullable=False,
                                   server_default=sa.true()))
        batch.add_column(sa.Column("receipt_template", sa.Text(), nullable=True))
        batch.add_column(sa.Column("signature", sa.Text(), nullable=True))

    # A filed copy outlives its queue row: the foreign key sets NULL instead of deleting
    # it, and the id its seal was bound to is kept in a column of its own.
    with op.batch_alter_table("mailbox_messages") as batch:
        batch.add_column(sa.Column("seal_message_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("queue_id", sa.String(length=32), nullable=True))
    op.execute("UPDATE mailbox_messages SET seal_message_id = message_id, queue_id = "
               "(SELECT queue_id FROM messages WHERE messages.id = mailbox_messages.message_id)")
    with op.batch_alter_table("mailbox_messages", naming_convention=_CONVENTION) as batch:
        batch.alter_column("seal_message_id", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("message_id", existing_type=sa.Integer(), nullable=True)
        batch.drop_constraint(_old_message_fk(), type_="foreignkey")
        batch.create_foreign_key("fk_mailbox_messages_message", "messages", ["message_id"],
                                 ["id"], ondelete="SET NULL")

    op.create_table(
        "mailbox_members",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["mailbox_id"], ["mailboxes.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["staff_users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("mailbox_id", "user_id"),
    )
    op.create_index("ix_mailbox_members_user_id", "mailbox_members", ["user_id"])

    op.create_table(
        "ticket_counters",
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("year"),
    )
    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("assignee_id", sa.Integer(), nullable=True),
        sa.Column("requester", sa.String(length=320), nullable=False),
        sa.Column("subject_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("linked_ticket_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["mailbox_id"], ["mailboxes.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["assignee_id"], ["staff_users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["linked_ticket_id"], ["tickets.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("number"),
    )
    op.create_index("ix_tickets_mailbox", "tickets", ["mailbox_id", "id"])
    op.create_index("ix_tickets_mailbox_state", "tickets", ["mailbox_id", "state", "id"])
    op.create_index("ix_tickets_mailbox_assignee", "tickets",
                    ["mailbox_id", "assignee_id", "id"])
    op.create_index("ix_tickets_mailbox_requester", "tickets", ["mailbox_id", "requester"])
    op.create_table(
        "ticket_subject_tokens",
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("token", sa.LargeBinary(length=16), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("ticket_id", "token"),
    )
    op.create_index("ix_ticket_subject_tokens_token", "ticket_subject_tokens",
                    ["token", "ticket_id"])
    op.create_table(
        "ticket_articles",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("author", sa.String(length=320), nullable=False),
        sa.Column("stored_message_id", sa.Integer(), nullable=True),
        sa.Column("queue_id", sa.String(length=32), nullable=True),
        sa.Column("rfc_message_id", sa.String(length=255), nullable=True),
        sa.Column("note_sealed", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["stored_message_id"], ["mailbox_messages.id"],
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ticket_articles_ticket_id", "ticket_articles", ["ticket_id"])
    op.create_index("ix_ticket_articles_queue_id", "ticket_articles", ["queue_id"])
    op.create_index("ix_ticket_articles_rfc_message_id", "ticket_articles",
                    ["rfc_message_id"])
    op.create_table(
        "ticket_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=320), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ticket_history_ticket_id", "ticket_history", ["ticket_id"])


def downgrade() -> None:
    op.drop_table("ticket_history")
    op.drop_table("ticket_articles")
    op.drop_table("ticket_subject_tokens")
    op.drop_table("tickets")
    op.drop_table("ticket_counters")
    op.drop_table("mailbox_members")
    # Copies whose queue row is gone cannot go back under a NOT NULL foreign key.
    op.execute("DELETE FROM mailbox_messages WHERE message_id IS NULL")
    with op.batch_alter_table("mailbox_messages") as batch:
        batch.drop_constraint("fk_mailbox_messages_message", type_="foreignkey")
        batch.alter_column("message_id", existing_type=sa.Integer(), nullable=False)
        batch.create_foreign_key(None if op.get_bind().dialect.name == "postgresql"
                                 else "fk_mailbox_messages_message_id_messages",
                                 "messages", ["message_id"], ["id"], ondelete="CASCADE")
        batch.drop_column("queue_id")
        batch.drop_column("seal_message_id")
    with op.batch_alter_table("mailboxes") as batch:
        batch.drop_column("signature")
        batch.drop_column("receipt_template")
        batch.drop_column("receipt_enabled")
