"""conversation elements: the text side panels of messages (an answer's cited passages)

Revision ID: 0004_conversation_elements
"""
import sqlalchemy as sa
from alembic import op

revision = "0004_conversation_elements"
down_revision = "0003_conversations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversation_element",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("conversation_id", sa.String, nullable=False, index=True),
        sa.Column("tenant", sa.String, nullable=False, index=True),
        sa.Column("for_id", sa.String),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("display", sa.String, nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("conversation_element")
