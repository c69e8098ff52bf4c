"""API key lineage: the person at a key's root (owner), the key that made it (parent_key_id), its expiry

Revision ID: 0005_api_key_lineage
"""
import sqlalchemy as sa
from alembic import op

revision = "0005_api_key_lineage"
down_revision = "0004_conversation_elements"
branch_labels = None
depends_on = None

KEY_PREFIX = "key:"
MAX_DEPTH = 64  # a longer chain than any real one: a guard against a cycle in hand-edited rows


def _owners(created_by: dict[str, str | None]) -> dict[str, tuple[str | None, str | None]]:
    """key id -> (owner, parent id). A key made by a key belongs to whoever is at the root of its chain; a chain
    that ends at a deleted key has no known owner (None: the list shows it as `unknown`, not as a person)."""
    out: dict[str, tuple[str | None, str | None]] = {}
    for key_id, by in created_by.items():
        parent = by[len(KEY_PREFIX):] if by and by.startswith(KEY_PREFIX) else None
        owner, current, seen = by, by, 0
        while current and current.startswith(KEY_PREFIX) and seen < MAX_DEPTH:
            ancestor = current[len(KEY_PREFIX):]
            current = created_by.get(ancestor)
            owner, seen = current, seen + 1
        out[key_id] = (owner if not (owner or "").startswith(KEY_PREFIX) else None, parent)
    return out


def upgrade() -> None:
    with op.batch_alter_table("api_key") as batch:  # batch: SQLite cannot add indexed columns otherwise
        batch.add_column(sa.Column("owner", sa.String))
        batch.add_column(sa.Column("parent_key_id", sa.String))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True)))
        batch.create_index("ix_api_key_owner", ["owner"])
        batch.create_index("ix_api_key_parent_key_id", ["parent_key_id"])
    conn = op.get_bind()
    api_key = sa.table("api_key", sa.column("id", sa.String), sa.column("created_by", sa.String),
                       sa.column("owner", sa.String), sa.column("parent_key_id", sa.String))
    rows = {r.id: r.created_by for r in conn.execute(sa.select(api_key.c.id, api_key.c.created_by))}
    for key_id, (owner, parent) in _owners(rows).items():
        if owner is None and parent is None:
            continue
        conn.execute(api_key.update().where(api_key.c.id == key_id).values(owner=owner, parent_key_id=parent))


def downgrade() -> None:
    with op.batch_alter_table("api_key") as batch:
        batch.drop_index("ix_api_key_parent_key_id")
        batch.drop_index("ix_api_key_owner")
        batch.drop_column("expires_at")
        batch.drop_column("parent_key_id")
        batch.drop_column("owner")
