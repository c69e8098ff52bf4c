"""durable turns: a turn is recorded when it starts (status streaming, its owner process, an idempotency key) and
completed or marked interrupted; process heartbeats tell a living owner from a dead one

Revision ID: 0006_durable_turns
"""
import sqlalchemy as sa
from alembic import op

revision = "0006_durable_turns"
down_revision = "0005_browser_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chat_turn") as batch:
        batch.add_column(sa.Column("turn_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="completed"))
        batch.add_column(sa.Column("owner", sa.String(128), nullable=True))
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_chat_turn_turn_key", ["turn_key"], unique=True)
        batch.create_index("ix_chat_turn_status", ["status"])
    op.create_table(
        "process_lease",
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False, server_default=""),
        sa.Column("pid", sa.Integer, nullable=False, server_default="0"),
        sa.Column("beat", sa.Float, nullable=False, index=True),  # the database's clock, epoch seconds
    )


def downgrade() -> None:
    op.drop_table("process_lease")
    with op.batch_alter_table("chat_turn") as batch:
        batch.drop_index("ix_chat_turn_status")
        batch.drop_index("ix_chat_turn_turn_key")
        batch.drop_column("updated_at")
        batch.drop_column("owner")
        batch.drop_column("status")
        batch.drop_column("turn_key")
