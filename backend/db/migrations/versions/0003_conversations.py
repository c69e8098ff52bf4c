"""conversations: chat users' latest claims, threads and their messages (with feedback)

Revision ID: 0003_conversations
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_conversations"
down_revision = "0002_knowledge"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chat_user",
        sa.Column("identifier", sa.String, primary_key=True),
        sa.Column("display_name", sa.String),
        sa.Column("provider", sa.String),
        sa.Column("claims", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "conversation",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("tenant", sa.String, nullable=False, index=True),
        sa.Column("subject", sa.String, nullable=False, index=True),
        sa.Column("assistant", sa.String, nullable=False),
        sa.Column("label", sa.String, nullable=False),
        sa.Column("title", sa.String),
        sa.Column("title_source", sa.String),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )
    op.create_table(
        "conversation_step",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("conversation_id", sa.String, nullable=False, index=True),
        sa.Column("tenant", sa.String, nullable=False, index=True),
        sa.Column("type", sa.String, nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("output", sa.Text, nullable=False),
        sa.Column("parent_id", sa.String),
        sa.Column("turn_id", sa.Integer),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("feedback_value", sa.Integer),
        sa.Column("feedback_comment", sa.String),
    )


def downgrade() -> None:
    op.drop_table("conversation_step")
    op.drop_table("conversation")
    op.drop_table("chat_user")
