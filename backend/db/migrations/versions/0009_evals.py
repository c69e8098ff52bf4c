"""evaluations: an assistant's test cases, runs of a prompt version (or a draft) over them, each case's result

Revision ID: 0009_evals
"""
import sqlalchemy as sa
from alembic import op

revision = "0009_evals"
down_revision = "0008_member_budgets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "eval_case",
        sa.Column("tenant", sa.String, primary_key=True),
        sa.Column("assistant", sa.String, primary_key=True),
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("history", sa.JSON, nullable=False),
        sa.Column("facts", sa.JSON, nullable=False),
        sa.Column("cite", sa.JSON, nullable=False),
        sa.Column("must_refuse", sa.Boolean, nullable=False),
        sa.Column("must_not", sa.JSON, nullable=False),
        sa.Column("note", sa.String, nullable=False),
        sa.Column("source", sa.JSON, nullable=True),
        sa.Column("created_by", sa.String, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "eval_run",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("tenant", sa.String, nullable=False),
        sa.Column("assistant", sa.String, nullable=False),
        sa.Column("prompt_version", sa.Integer, nullable=True),
        sa.Column("draft", sa.JSON, nullable=True),
        sa.Column("tier", sa.String, nullable=True),
        sa.Column("model", sa.String, nullable=True),
        sa.Column("kb_version", sa.String, nullable=False),
        sa.Column("case_ids", sa.JSON, nullable=False),
        sa.Column("skipped", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("done", sa.Integer, nullable=False),
        sa.Column("passed", sa.Integer, nullable=False),
        sa.Column("score", sa.Float, nullable=True),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("latency_ms", sa.Integer, nullable=True),
        sa.Column("judge", sa.String, nullable=True),
        sa.Column("owner", sa.String, nullable=True),
        sa.Column("started_by", sa.String, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.String, nullable=True),
    )
    op.create_index("ix_eval_run_assistant", "eval_run", ["tenant", "assistant", "created_at"])
    op.create_table(
        "eval_result",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.String, nullable=False, index=True),
        sa.Column("case_id", sa.String, nullable=False),
        sa.Column("tenant", sa.String, nullable=False, index=True),
        sa.Column("case", sa.JSON, nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("citations", sa.JSON, nullable=False),
        sa.Column("checks", sa.JSON, nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("model", sa.String, nullable=True),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("latency_ms", sa.Integer, nullable=False),
        sa.Column("turn_id", sa.Integer, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("run_id", "case_id", name="uq_eval_result"),
    )


def downgrade() -> None:
    op.drop_table("eval_result")
    op.drop_index("ix_eval_run_assistant", table_name="eval_run")
    op.drop_table("eval_run")
    op.drop_table("eval_case")
