"""Chat profile names: `tenant/assistant`, or `tenant/assistant@staging` for prompt editors.

A profile is what the user picked in the selector; it is input like any other, so the chat turn and the
history both check it against the principal before using it."""

from __future__ import annotations

STAGING = "@staging"


def profile_name(tenant: str, assistant: str, label: str = "production") -> str:
    return f"{tenant}/{assistant}" + (STAGING if label == "staging" else "")


def parse_profile(name: str | None) -> tuple[str, str, str] | None:
    """(tenant, assistant, label), or None when no assistant was picked."""
    if not name or "/" not in name:
        return None
    label = "production"
    if name.endswith(STAGING):
        name, label = name[: -len(STAGING)], "staging"
    tenant, _, assistant = name.partition("/")
    return tenant, assistant, label
