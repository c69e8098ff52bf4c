"""Tenant-scoped data access. Every function takes `tenant` explicitly, from a Principal."""
