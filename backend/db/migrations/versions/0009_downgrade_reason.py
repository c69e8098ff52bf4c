"""downgrade reason: a turn answered on a cheaper tier than routed records which limit refused the routed tier
(tokens_per_day, monthly_budget_usd, member_tokens_per_day, member_monthly_budget_usd,
assistant_monthly_budget_usd), so the usage report can count downgrades by level without reading route_reason

Revision ID: 0009_downgrade_reason
"""
import sqlalchemy as sa
from alembic import op

revision = "0009_downgrade_reason"
down_revision = "0008_member_budgets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chat_turn") as batch:
        batch.add_column(sa.Column("downgrade_reason", sa.String, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("chat_turn") as batch:
        batch.drop_column("downgrade_reason")
