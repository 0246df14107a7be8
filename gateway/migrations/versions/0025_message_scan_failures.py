"""messages.scan_failures: how often clamd failed while scanning the message

Revision ID: 0025
Revises: 0024

A message that makes clamd crash or hang every time used to be deferred until its lifetime
ended. The scan stage now counts each scan clamd took and then dropped or stalled on
(scanning.errors.ScanInterrupted) and quarantines the message as unscannable after
[scanning] unscannable_after_failures. The count is a column, written in the same transaction
that records the deferral, so a crash of the worker cannot lose or double it. Existing
messages start at 0.
"""
import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # In place: batch mode would copy the table, and its copy breaks what refers to it.
        op.execute("ALTER TABLE messages ADD COLUMN scan_failures INTEGER NOT NULL DEFAULT 0")
    else:
        op.add_column("messages", sa.Column("scan_failures", sa.Integer(), nullable=False,
                                            server_default="0"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE messages DROP COLUMN scan_failures")
    else:
        op.drop_column("messages", "scan_failures")
