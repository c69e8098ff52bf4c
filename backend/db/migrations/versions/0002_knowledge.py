"""knowledge: documents (with their ingestion job state), uploaded bytes, per-tenant embedding model

Revision ID: 0002_knowledge
"""
import sqlalchemy as sa
from alembic import op

revision = "0002_knowledge"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kb_document",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("tenant", sa.String, nullable=False, index=True),
        sa.Column("kb", sa.String, nullable=False),
        sa.Column("title", sa.String, nullable=False),
        sa.Column("filename", sa.String, nullable=False),
        sa.Column("content_type", sa.String, nullable=False),
        sa.Column("content_hash", sa.String, nullable=False, index=True),
        sa.Column("size_bytes", sa.Integer, nullable=False),
        sa.Column("status", sa.String, nullable=False, index=True),
        sa.Column("progress", sa.Float, nullable=False),
        sa.Column("error", sa.String),
        sa.Column("chunk_total", sa.Integer, nullable=False),
        sa.Column("chunks_done", sa.Integer, nullable=False),
        sa.Column("embedding_model", sa.String),
        sa.Column("replaces", sa.String),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("claimed_by", sa.String),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("created_by", sa.String),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
    )
    op.create_index("ix_kb_document_tenant_kb_filename", "kb_document", ["tenant", "kb", "filename"])
    op.create_table(
        "kb_blob",
        sa.Column("document_id", sa.String, primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "kb_embedding_model",
        sa.Column("tenant", sa.String, primary_key=True),
        sa.Column("model", sa.String, nullable=False),
        sa.Column("dimension", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("kb_embedding_model")
    op.drop_table("kb_blob")
    op.drop_index("ix_kb_document_tenant_kb_filename", table_name="kb_document")
    op.drop_table("kb_document")
