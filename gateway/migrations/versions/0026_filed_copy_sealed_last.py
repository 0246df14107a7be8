"""mailbox_messages: the sealed copy as the table's last column on SQLite

Revision ID: 0026
Revises: 0025

A large filed copy is inserted as zeros (zeroblob) and written through the blob handle
(gateway.db_blobs). SQLite leaves a zeroblob unallocated only when it is the last field of
the record; since 0014 added seal_message_id and queue_id after it, SQLite built the whole
zero-filled record in memory: filing a 50 MB attachment raised the worker's peak RSS by
twice the message at the commit. The table is rebuilt with the same columns, constraints and
rows, `sealed` last. PostgreSQL is left as it is (psycopg sends the buffer as it is, and
column order does not matter there). gateway.migrate turns SQLite's foreign keys off around
migrations, so dropping the old table touches no row that refers to it.
"""
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

_FIRST = ("id", "mailbox_id", "message_id", "mail_from", "size", "delivered_at", "seen")
_TYPES = {
    "id": "INTEGER NOT NULL", "mailbox_id": "INTEGER NOT NULL", "message_id": "INTEGER",
    "mail_from": "VARCHAR(320) NOT NULL", "size": "INTEGER NOT NULL",
    "delivered_at": "DATETIME NOT NULL", "seen": "BOOLEAN NOT NULL",
    "sealed": "BLOB NOT NULL", "seal_message_id": "INTEGER NOT NULL",
    "queue_id": "VARCHAR(32)",
}
_CONSTRAINTS = (
    "PRIMARY KEY (id)",
    "CONSTRAINT fk_mailbox_messages_mailbox_id_mailboxes FOREIGN KEY(mailbox_id) "
    "REFERENCES mailboxes (id) ON DELETE CASCADE",
    "CONSTRAINT fk_mailbox_messages_message FOREIGN KEY(message_id) REFERENCES messages (id) "
    "ON DELETE SET NULL",
    "UNIQUE (mailbox_id, message_id)",
)


def _rebuild(columns: tuple[str, ...]) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    definition = ", ".join([*(f"{c} {_TYPES[c]}" for c in columns), *_CONSTRAINTS])
    names = ", ".join(columns)
    op.execute(f"CREATE TABLE mailbox_messages_rebuilt ({definition})")
    op.execute(f"INSERT INTO mailbox_messages_rebuilt ({names}) "
               f"SELECT {names} FROM mailbox_messages")
    op.execute("DROP TABLE mailbox_messages")
    op.execute("ALTER TABLE mailbox_messages_rebuilt RENAME TO mailbox_messages")


def upgrade() -> None:
    _rebuild((*_FIRST, "seal_message_id", "queue_id", "sealed"))


def downgrade() -> None:
    _rebuild((*_FIRST, "sealed", "seal_message_id", "queue_id"))
