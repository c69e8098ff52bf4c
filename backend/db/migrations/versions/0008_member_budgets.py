"""member budgets: a turn answered on a cheaper tier than routed records the tier it came down from (the reason is
in route_reason), and which member allowance the call was admitted under; a tenant admin's raised allowance for one member and one month

Revision ID: 0008_member_budgets
"""
import sqlalchemy as sa
from alembic import op

revision = "0008_member_budgets"
down_revision = "0007_answer_grounding"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chat_turn") as batch:
        batch.add_column(sa.Column("downgraded_from", sa.String, nullable=True))
        batch.add_column(sa.Column("allowance", sa.String, nullable=True))
    op.create_table(
        "member_allowance",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant", sa.String, nullable=False),
        sa.Column("subject", sa.String, nullable=False),
        sa.Column("month", sa.String(6), nullable=False),
        sa.Column("tokens_per_day", sa.BigInteger, nullable=True),
        sa.Column("monthly_budget_usd", sa.Float, nullable=True),
        sa.Column("granted_by", sa.String, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_member_allowance_member", "member_allowance", ["tenant", "subject", "month"])


def downgrade() -> None:
    op.drop_index("ix_member_allowance_member", table_name="member_allowance")
    op.drop_table("member_allowance")
    with op.batch_alter_table("chat_turn") as batch:
        batch.drop_column("allowance")
        batch.drop_column("downgraded_from")
