"""prompt versions in the database: versions (exclusive numbers), labels, label history, the seed marker

Revision ID: 0006_prompt_versions
"""
import sqlalchemy as sa
from alembic import op

revision = "0006_prompt_versions"
down_revision = "0005_browser_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prompt_version",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant", sa.String, nullable=False, index=True),
        sa.Column("assistant", sa.String, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("author", sa.String),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant", "assistant", "version", name="uq_prompt_version"),
    )
    op.create_table(
        "prompt_label",
        sa.Column("tenant", sa.String, primary_key=True),
        sa.Column("assistant", sa.String, primary_key=True),
        sa.Column("label", sa.String, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_table(
        "prompt_label_move",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant", sa.String, nullable=False, index=True),
        sa.Column("assistant", sa.String, nullable=False),
        sa.Column("label", sa.String, nullable=False),
        sa.Column("from_version", sa.Integer),
        sa.Column("to_version", sa.Integer, nullable=False),
        sa.Column("who", sa.String),
        sa.Column("at", sa.String, nullable=False),
    )
    op.create_table(
        "prompt_seed",
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("prompt_seed")
    op.drop_table("prompt_label_move")
    op.drop_table("prompt_label")
    op.drop_table("prompt_version")
