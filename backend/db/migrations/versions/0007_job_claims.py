"""job claims: the order in which jobs were claimed (a counter), so the ingestion queue can serve the tenant claimed
least recently first (round-robin between tenants instead of the oldest job overall)

Revision ID: 0007_job_claims
"""
import sqlalchemy as sa
from alembic import op

revision = "0007_job_claims"
down_revision = "0002_knowledge"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("kb_document") as batch:
        batch.add_column(sa.Column("claim_seq", sa.BigInteger, nullable=True))
        # max(claim_seq) overall and per tenant, read at every claim: index lookups, not a scan of a large upload
        batch.create_index("ix_kb_document_claim_seq", ["claim_seq"])
        batch.create_index("ix_kb_document_tenant_claim_seq", ["tenant", "claim_seq"])


def downgrade() -> None:
    with op.batch_alter_table("kb_document") as batch:
        batch.drop_index("ix_kb_document_tenant_claim_seq")
        batch.drop_index("ix_kb_document_claim_seq")
        batch.drop_column("claim_seq")
