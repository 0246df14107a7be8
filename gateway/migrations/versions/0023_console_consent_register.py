"""console consent register: the shared mailbox a release belongs to

Revision ID: 0023
Revises: 0022

Leads and agents manage consent for their own mailboxes' cases; nothing linked a release to a
mailbox before. Existing releases keep ``mailbox_id`` NULL: which team obtained them is not
recorded anywhere (the case reference names no mailbox, and the recording user may work in
several), and guessing would show a family's release to the wrong team. In the console only
admins see them, and an admin gives each to its case's mailbox (/console/consent/{id}, audited
consent-assigned); the CLI and the API are unchanged.
"""
import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

_FK = "fk_consent_releases_mailbox_id_mailboxes"
_INDEX = "ix_consent_releases_mailbox_id"


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    if _sqlite():
        # SQLite adds a column with its reference in place. Batch mode would copy the table
        # instead, and dropping the old copy fails on the versions that refer to it.
        op.execute("ALTER TABLE consent_releases ADD COLUMN mailbox_id INTEGER "
                   "REFERENCES mailboxes (id)")
    else:
        op.add_column("consent_releases", sa.Column("mailbox_id", sa.Integer(), nullable=True))
        op.create_foreign_key(_FK, "consent_releases", "mailboxes", ["mailbox_id"], ["id"])
    op.create_index(_INDEX, "consent_releases", ["mailbox_id"])


def downgrade() -> None:
    op.drop_index(_INDEX, table_name="consent_releases")
    if _sqlite():
        op.execute("ALTER TABLE consent_releases DROP COLUMN mailbox_id")
    else:
        op.drop_constraint(_FK, "consent_releases", type_="foreignkey")
        op.drop_column("consent_releases", "mailbox_id")
