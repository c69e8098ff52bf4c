"""Atrium backend: services shared by the chat UI, the REST API and the CLI."""
