"""browser sessions: one row per sign-in (revoked at sign-out or by an admin) and per-subject cutoffs

Revision ID: 0005_browser_sessions
"""
import sqlalchemy as sa
from alembic import op

revision = "0005_browser_sessions"
down_revision = "0004_conversation_elements"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "browser_session",
        sa.Column("sid", sa.String, primary_key=True),
        sa.Column("subject", sa.String, nullable=False, index=True),
        sa.Column("provider", sa.String),
        sa.Column("signed_in_at", sa.Float, nullable=False, index=True),
        sa.Column("revoked_at", sa.Float),
        sa.Column("revoked_reason", sa.String),
        sa.Column("revoked_by", sa.String),
    )
    op.create_table(
        "browser_session_cutoff",
        sa.Column("subject", sa.String, primary_key=True),
        sa.Column("ended_at", sa.Float, nullable=False, index=True),
        sa.Column("ended_by", sa.String),
    )


def downgrade() -> None:
    op.drop_table("browser_session_cutoff")
    op.drop_table("browser_session")
