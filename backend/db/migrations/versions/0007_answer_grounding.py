"""answer grounding: how each turn's answer was made (grounded | generative | checked | fallback) and the grounding
check's score (the share of its sentences the cited passages support)

Revision ID: 0007_answer_grounding
"""
import sqlalchemy as sa
from alembic import op

revision = "0007_answer_grounding"
down_revision = "0006_durable_turns"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chat_turn") as batch:
        batch.add_column(sa.Column("answer_mode", sa.String, nullable=True))
        batch.add_column(sa.Column("grounding", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("chat_turn") as batch:
        batch.drop_column("grounding")
        batch.drop_column("answer_mode")
