"""Tenant knowledge bases: parse -> chunk -> embed -> store; retrieval with citations."""
