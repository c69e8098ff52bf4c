"""initial: chat turns, audit events, API keys

Revision ID: 0001_initial
"""
import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chat_turn",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("tenant", sa.String, nullable=False, index=True),
        sa.Column("subject", sa.String, nullable=False, index=True),
        sa.Column("channel", sa.String, nullable=False),
        sa.Column("assistant", sa.String),
        sa.Column("prompt_name", sa.String),
        sa.Column("prompt_version", sa.Integer),
        sa.Column("prompt_label", sa.String),
        sa.Column("model", sa.String),
        sa.Column("tier", sa.String),
        sa.Column("route_reason", sa.String),
        sa.Column("fallback_from", sa.String),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("latency_ms", sa.Integer, nullable=False),
        sa.Column("cached", sa.Boolean, nullable=False),
        sa.Column("outcome", sa.String, nullable=False),
        sa.Column("error", sa.String),
        sa.Column("chunk_ids", sa.JSON, nullable=False),
    )
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("kind", sa.String, nullable=False, index=True),
        sa.Column("subject", sa.String, index=True),
        sa.Column("tenant", sa.String, index=True),
        sa.Column("route", sa.String),
        sa.Column("ip", sa.String, index=True),
        sa.Column("status", sa.Integer),
        sa.Column("reason", sa.String),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_table(
        "api_key",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("tenant", sa.String, nullable=False, index=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("key_hash", sa.String, nullable=False),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("created_by", sa.String),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("api_key")
    op.drop_table("audit_event")
    op.drop_table("chat_turn")
