"""Identity: every request becomes one verified Principal (see principal.py)."""
