"""audit counts: repeated refusals are one row with a count (first at created_at, latest at last_at)

Revision ID: 0005_audit_counts
"""
import sqlalchemy as sa
from alembic import op

revision = "0005_audit_counts"
down_revision = "0004_conversation_elements"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_event") as batch:
        batch.add_column(sa.Column("count", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("last_at", sa.DateTime(timezone=True), nullable=True))
        # Set on refusals only: source, tenant, reason, route and time window, hashed. The unique index is what
        # makes a repeat an atomic `count + 1` (INSERT ... ON CONFLICT) on SQLite and PostgreSQL alike.
        batch.add_column(sa.Column("group_key", sa.String, nullable=True))
    op.create_index("ix_audit_event_group_key", "audit_event", ["group_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_audit_event_group_key", table_name="audit_event")
    with op.batch_alter_table("audit_event") as batch:
        batch.drop_column("group_key")
        batch.drop_column("last_at")
        batch.drop_column("count")
