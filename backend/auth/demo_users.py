"""Demo accounts from config/demo_users.yaml: the embedded default login, no IdP needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from backend.auth.passwords import verify_password
from backend.config_files import ConfigError, describe_errors, read_yaml

# The `iss` of a password login's claims: the session then carries only who signed in, and their groups are
# read from demo_users.yaml on every request (removing someone's group there applies at once after a restart).
DEMO_ISSUER = "atrium:demo-users"


class DemoUser(BaseModel):
    username: str
    password_hash: str
    claims: dict[str, Any] = Field(default_factory=dict)

    def full_claims(self) -> dict[str, Any]:
        return {"sub": self.username, "preferred_username": self.username, **self.claims, "iss": DEMO_ISSUER}


class DemoUsers:
    def __init__(self, users: list[DemoUser]) -> None:
        self._users = {u.username: u for u in users}

    @classmethod
    def load(cls, path: Path) -> DemoUsers:
        """No file: no demo users (build_services warns when the password login is on)."""
        path = Path(path).absolute()
        if not path.is_file():
            return cls([])
        raw = read_yaml(path, what="demo users") or {}
        users = []
        for i, u in enumerate((raw.get("users") if isinstance(raw, dict) else None) or [], start=1):
            try:
                users.append(DemoUser.model_validate(u))
            except ValidationError as exc:
                name = u.get("username") if isinstance(u, dict) else None
                raise ConfigError(f"{path}: user {name or f'#{i}'!r}: {describe_errors(exc, DemoUser)}") from None
        return cls(users)

    def authenticate(self, username: str, password: str) -> dict[str, Any] | None:
        """The user's claims when the password is right, else None."""
        user = self._users.get(username)
        if user is None or not verify_password(password, user.password_hash):
            return None
        return user.full_claims()

    def current_claims(self, username: str) -> dict[str, Any] | None:
        """The claims of a signed-in demo user as the file says now; None when the account is gone."""
        user = self._users.get(username)
        return user.full_claims() if user is not None else None
