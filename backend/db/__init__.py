"""SQL persistence: engine, tables, tenant-scoped repositories, Alembic migrations."""
