"""key and certificate directory; admin flag for staff users

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=16)


def _kind() -> sa.Enum:
    return _enum("key_kind", "smime", "openpgp")


def upgrade() -> None:
    with op.batch_alter_table("staff_users", schema=None) as batch_op:
        # Existing accounts are not admins: the right to approve keys is granted explicitly.
        batch_op.add_column(sa.Column("admin", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))

    op.create_table(
        "partners",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("outbound_policy", _enum("outbound_policy", "require-smime",
                                           "require-openpgp", "either", "plaintext"),
                  nullable=False),
        sa.Column("smime_gcm", sa.Boolean(), nullable=False),
        sa.Column("inbound_require_encryption", sa.Boolean(), nullable=False),
        sa.Column("inbound_require_signature", sa.Boolean(), nullable=False),
        sa.Column("non_sensitive", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "partner_addresses",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("pattern", sa.String(length=320), nullable=False),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("pattern"),
    )
    op.create_table(
        "partner_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=True),
        sa.Column("kind", _kind(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=True),
        sa.Column("algorithm", sa.String(length=32), nullable=False),
        sa.Column("can_encrypt", sa.Boolean(), nullable=False),
        sa.Column("warning", sa.Text(), nullable=True),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", _enum("key_status", "pending", "approved", "rejected", "revoked"),
                  nullable=False),
        sa.Column("source", _enum("key_source", "import", "harvest", "wkd", "api"),
                  nullable=False),
        sa.Column("source_detail", sa.Text(), nullable=False),
        sa.Column("added_by", sa.String(length=255), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=255), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "fingerprint"),
    )
    with op.batch_alter_table("partner_keys", schema=None) as batch_op:
        batch_op.create_index("ix_partner_keys_status", ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_partner_keys_partner_id"), ["partner_id"],
                              unique=False)
    op.create_table(
        "partner_key_addresses",
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["partner_keys.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("key_id", "address"),
    )
    with op.batch_alter_table("partner_key_addresses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_partner_key_addresses_address"), ["address"],
                              unique=False)
    op.create_table(
        "own_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("kind", _kind(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("public", sa.LargeBinary(), nullable=False),
        sa.Column("private_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("algorithm", sa.String(length=32), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("can_sign", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("retired", sa.Boolean(), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retired_by", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("address", "kind", "fingerprint"),
    )
    with op.batch_alter_table("own_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_own_keys_address"), ["address"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("own_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_own_keys_address"))
    op.drop_table("own_keys")
    with op.batch_alter_table("partner_key_addresses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_partner_key_addresses_address"))
    op.drop_table("partner_key_addresses")
    with op.batch_alter_table("partner_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_partner_keys_partner_id"))
        batch_op.drop_index("ix_partner_keys_status")
    op.drop_table("partner_keys")
    op.drop_table("partner_addresses")
    op.drop_table("partners")
    with op.batch_alter_table("staff_users", schema=None) as batch_op:
        batch_op.drop_column("admin")
