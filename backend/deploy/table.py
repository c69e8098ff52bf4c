"""The routing table: which group serves which tenant, and where each group's pages are. Computed once from the
whole tenants.yaml (`registry.every()`, `registry.groups`); the Kubernetes and nginx renderers both read it, so the
cluster and the local topology route the same way.

The rules (README "Operations at scale"):
- `/api/t/<tenant>` and everything under it goes to the tenant's group, on every group's host;
- any other path (the chat, the studio, the console, `/api/me`) goes to the group whose `public_url` host the
  browser asked for: each group has its own host.
The routing places requests; it is not what keeps tenants apart. A process asked for another group's tenant
refuses it (421 naming the group), whatever the load balancer did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from backend.config_files import ConfigError
from backend.groups import GroupConfig
from backend.monitoring import MonitoringConfig
from backend.tenants import TenantRegistry

# Kubernetes names (`atrium-worker-<group>`) are DNS labels of at most 63 characters.
LONGEST_PREFIX = "atrium-worker-"
MAX_GROUP_NAME = 63 - len(LONGEST_PREFIX)


@dataclass(frozen=True)
class GroupRoute:
    name: str
    config: GroupConfig
    tenants: tuple[str, ...]

    @property
    def host(self) -> str | None:
        return self.config.host

    def api_prefixes(self) -> list[str]:
        """The path prefixes of this group's tenants' API (`/api/t/<tenant>`: the path element, so `sales` does not
        also take `sales-eu`)."""
        return [f"/api/t/{t}" for t in self.tenants]


@dataclass(frozen=True)
class RoutingTable:
    groups: tuple[GroupRoute, ...]
    # Not routing, but read from the same file by the same renderer: who scrapes the pods, where traces go.
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)

    @classmethod
    def from_registry(cls, registry: TenantRegistry) -> RoutingTable:
        where = registry.source or "tenants config"
        members: dict[str, list[str]] = {name: [] for name in registry.groups}
        for tenant in registry.every():
            members[tenant.deployment_group].append(tenant.id)
        groups = tuple(GroupRoute(name=name, config=config, tenants=tuple(members[name]))
                       for name, config in registry.groups.items())
        for g in groups:
            if len(g.name) > MAX_GROUP_NAME:
                raise ConfigError(f"{where}: deployment group {g.name!r} is longer than {MAX_GROUP_NAME} characters: "
                                  f"it names Kubernetes objects ({LONGEST_PREFIX}{g.name}); shorten it")
        if len(groups) > 1:
            hostless = [g.name for g in groups if g.host is None]
            if hostless:
                raise ConfigError(
                    f"{where}: deployment group(s) {', '.join(hostless)} have no public_url: with several groups "
                    "each group's pages are served on a host of its own; give each group a `public_url:` "
                    "(e.g. https://finance.atrium.example.com)")
        hosts = [g.host for g in groups if g.host]
        for host in dict.fromkeys(hosts):
            if hosts.count(host) > 1:
                users = [g.name for g in groups if g.host == host]
                raise ConfigError(f"{where}: deployment groups {', '.join(users)} share the host {host}: a browser "
                                  "page is routed by its host, so each group needs a public_url host of its own")
        return cls(groups=groups, monitoring=registry.monitoring)

    @property
    def hosts(self) -> list[str]:
        return [g.host for g in self.groups if g.host]

    def group(self, name: str) -> GroupRoute:
        return next(g for g in self.groups if g.name == name)

    def group_of(self, tenant: str) -> str:
        return next(g.name for g in self.groups if tenant in g.tenants)

    def api_routes(self) -> list[tuple[str, str]]:
        """(path prefix, group) for every tenant of the file, in the file's order of groups."""
        return [(prefix, g.name) for g in self.groups for prefix in g.api_prefixes()]


def load_table(config_dir: Path) -> RoutingTable:
    """From `config_dir`/tenants.yaml, the whole file (not ATRIUM_DEPLOYMENT_GROUPS' share of it)."""
    return RoutingTable.from_registry(TenantRegistry.load(config_dir / "tenants.yaml", served=None))
