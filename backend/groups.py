"""Deployment groups (tenants.yaml `deployment_groups:`): which processes serve which tenants.

One tenants.yaml serves every deployment. Each tenant names its group; a process started with
ATRIUM_DEPLOYMENT_GROUPS serves the tenants of those groups only (unset: every group). The same section sizes
each group's pods in the manifests `atrium deploy render` writes.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from backend.config_files import ConfigError

DEFAULT_GROUP = "default"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Workload(_Strict):
    """One Deployment of a group (web or worker): replicas (the HPA's range) and one pod's resources."""

    replicas: int = Field(2, ge=1, le=1000)  # the minimum; the HPA scales between replicas and max_replicas
    max_replicas: int | None = Field(None, ge=1, le=1000)  # null: no HPA (a fixed replica count)
    cpu: str = "1"  # request
    memory: str = "3Gi"  # request (the in-process model and embedder need ~1.5 GiB)
    cpu_limit: str | None = "2"
    memory_limit: str | None = "4Gi"


def _worker_default() -> Workload:
    return Workload(replicas=1, max_replicas=None, cpu="1", memory="2Gi", cpu_limit="2", memory_limit="3Gi")


# A DNS name (RFC 1123 labels) and a plain path: the host goes into nginx's `server_name` and the Gateway's
# `hostnames`, the URL into a note the chat shows; urlsplit alone took `a.example.com;return 200 x` as a host.
_DNS_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*")
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/._~-]*")


def _check_url(value: str | None) -> str | None:
    if value is None:
        return None
    example = "(e.g. https://finance.atrium.example.com)"
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL with a host {example}")
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        raise ValueError(f"{value!r}: the port is not a number from 1 to 65535") from None
    if (parts.username is not None or parts.query or parts.fragment or value.rstrip().endswith(("?", "#"))
            or not _DNS_NAME.fullmatch(parts.hostname) or not _PLAIN_PATH.fullmatch(parts.path)):
        raise ValueError(f"{value!r} is not a plain http(s) URL of a DNS host name {example}: no user, query or "
                         "fragment, and only letters, digits and - . _ ~ / in the path")
    return value.rstrip("/")


class GroupConfig(_Strict):
    # Where this group's browser pages are (chat, studio, console): each group has its own host, see README
    # "Operations at scale". Named to a person whose other departments are served elsewhere.
    public_url: Annotated[str | None, AfterValidator(_check_url)] = None
    web: Workload = Field(default_factory=Workload)
    worker: Workload = Field(default_factory=_worker_default)

    @field_validator("web", "worker")
    @classmethod
    def _range(cls, w: Workload) -> Workload:
        if w.max_replicas is not None and w.max_replicas < w.replicas:
            raise ValueError(f"max_replicas ({w.max_replicas}) is below replicas ({w.replicas})")
        return w

    @property
    def host(self) -> str | None:
        return urlsplit(self.public_url).hostname if self.public_url else None


def parse_served(value: str | None, *, known: list[str], where: str) -> frozenset[str] | None:
    """ATRIUM_DEPLOYMENT_GROUPS (comma-separated; unset or empty = every group) against the configured groups."""
    if value is None or not value.strip():
        return None
    names = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        close = [m for n in unknown for m in difflib.get_close_matches(n, known, n=1)]
        hint = f"did you mean {', '.join(repr(m) for m in close)}? " if close else ""
        raise ConfigError(
            f"{where}: ATRIUM_DEPLOYMENT_GROUPS names {', '.join(repr(n) for n in unknown)}, which no tenant uses "
            f"and deployment_groups does not define (the groups are: {', '.join(known)}): {hint}fix the variable, "
            "or add the group to tenants.yaml")
    return frozenset(names)


class Placement(BaseModel):
    """Where a tenant this process does not serve is served: told to a caller who asked the wrong process (an HTTP
    421) and to a person whose other departments are elsewhere (the chat, /api/me)."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    tenant_name: str
    group: str
    public_url: str | None = None
    here: tuple[str, ...] = ()  # the groups this process serves

    def message(self) -> str:
        where = f" ({self.public_url})" if self.public_url else ""
        here = ", ".join(self.here) or "none"
        send = "send the request there" if self.public_url else "send the request to that group's address"
        return (f"tenant {self.tenant!r} is served by deployment group {self.group!r}{where}, not by this one "
                f"({here}): {send}")

    def public(self) -> dict[str, str | None]:
        return {"tenant": self.tenant, "deployment_group": self.group, "public_url": self.public_url}
