"""Versioned prompt files per tenant: prompts/<tenant>/<assistant>/v0001.md + labels.yaml."""
