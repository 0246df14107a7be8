"""consent gate: release records (append-only versions), sealed scans, statutory approvals

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consent_releases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "consent_documents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("uploaded_by", sa.String(length=255), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "consent_release_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("case_ref", sa.String(length=200), nullable=False),
        sa.Column("case_key", sa.String(length=200), nullable=False),
        sa.Column("data_subjects", sa.Text(), nullable=False),
        sa.Column("grantor_name", sa.String(length=255), nullable=False),
        sa.Column("grantor_role", sa.String(length=20), nullable=False),
        sa.Column("categories", sa.Text(), nullable=False),
        sa.Column("recipients", sa.Text(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=255), nullable=True),
        sa.Column("document_id", sa.Integer(), nullable=True),
        sa.Column("recorded_by", sa.String(length=255), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.CheckConstraint("valid_from <= valid_until", name="ck_consent_versions_dates"),
        sa.ForeignKeyConstraint(["release_id"], ["consent_releases.id"]),
        sa.ForeignKeyConstraint(["document_id"], ["consent_documents.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("release_id", "version"),
    )
    op.create_index("ix_consent_release_versions_release_id", "consent_release_versions",
                    ["release_id"])
    op.create_index("ix_consent_release_versions_case_key", "consent_release_versions",
                    ["case_key"])
    op.create_table(
        "consent_statutory_approvals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("approver", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("length(trim(reason)) > 0", name="ck_statutory_approvals_reason"),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id", "approver"),
    )
    op.create_index("ix_consent_statutory_approvals_message_id", "consent_statutory_approvals",
                    ["message_id"])


def downgrade() -> None:
    op.drop_index("ix_consent_statutory_approvals_message_id",
                  table_name="consent_statutory_approvals")
    op.drop_table("consent_statutory_approvals")
    op.drop_index("ix_consent_release_versions_case_key", table_name="consent_release_versions")
    op.drop_index("ix_consent_release_versions_release_id",
                  table_name="consent_release_versions")
    op.drop_table("consent_release_versions")
    op.drop_table("consent_documents")
    op.drop_table("consent_releases")
