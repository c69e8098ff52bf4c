"""The routing table as an nginx configuration (the `http {}` context): the local topology's load balancer, routing
as the cluster's Gateway does. One upstream per group (the processes' addresses are given: they are not in
tenants.yaml); one server per group's host: `/api/t/<tenant>` to the tenant's group, everything else to the host's
group.

Affinity: Chainlit's page sets the cookie `X-Chainlit-Session-id` (ui/surface.py keeps it a UUID) before it opens
its socket.io connection, for load balancers to pin on; the upstreams hash on it, so the long-polling requests of
one chat session reach the process that holds it. Requests without it (the API, first page loads) hash on their
`$request_id` (random per request), which spreads them over the group's processes.
"""

from __future__ import annotations

import re

from backend.config_files import ConfigError
from backend.deploy.table import RoutingTable

HEADER = ("# Rendered by `atrium deploy nginx` from tenants.yaml (backend/deploy/nginx.py): the routing of the "
          "manifests, for nginx.\n# Include it in nginx's `http {}` block. Do not edit: change tenants.yaml and render "
          "it again.\n")
# Uploads: ATRIUM_MAX_UPLOAD_FILES (20) files of ATRIUM_MAX_UPLOAD_MB (20) each; the app refuses more, clearly.
MAX_BODY = "512m"


def upstream_name(group: str) -> str:
    return "atrium_" + group.replace("-", "_")


# HOST:PORT (a DNS name, an IPv4 or a bracketed IPv6 address), or an IP address / a port alone for --listen: each is
# written into the configuration as is, so `127.0.0.1:1; return 200 x` must not become a directive of its own.
_ADDRESS = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\]):[0-9]{1,5}")
_LISTEN = re.compile(rf"{_ADDRESS.pattern}|[0-9]{{1,5}}")


def parse_upstreams(values: list[str], table: RoutingTable) -> dict[str, list[str]]:
    """`--upstream GROUP=HOST:PORT[,HOST:PORT...]`, one per group."""
    out: dict[str, list[str]] = {}
    for value in values:
        group, sep, addresses = value.partition("=")
        addrs = [a.strip() for a in addresses.split(",") if a.strip()]
        if not sep or not addrs:
            raise ConfigError(f"--upstream {value!r}: expected GROUP=HOST:PORT[,HOST:PORT...]")
        bad = [a for a in addrs if not _ADDRESS.fullmatch(a)]
        if bad:
            raise ConfigError(f"--upstream {value!r}: {bad[0]!r} is not HOST:PORT (a host name or an IP address, "
                              "then the port)")
        if group not in {g.name for g in table.groups}:
            raise ConfigError(f"--upstream {value!r}: {group!r} is not a deployment group of tenants.yaml "
                              f"({', '.join(g.name for g in table.groups)})")
        out.setdefault(group, []).extend(addrs)
    missing = [g.name for g in table.groups if g.name not in out]
    if missing:
        raise ConfigError(f"no --upstream for deployment group(s) {', '.join(missing)}: every group's processes "
                          "must be named (GROUP=HOST:PORT[,HOST:PORT...])")
    return out


def render_nginx(table: RoutingTable, upstreams: dict[str, list[str]], *, listen: str) -> str:
    if not _LISTEN.fullmatch(listen):
        raise ConfigError(f"--listen {listen!r}: an address nginx listens on, HOST:PORT or a port (e.g. "
                          "127.0.0.1:8080)")
    lines = [HEADER]
    lines += [
        "map $http_cookie $atrium_chat_session {",
        "    default $request_id;",
        '    "~*(?:^|;)\\s*X-Chainlit-Session-id=(?<atrium_sid>[0-9a-fA-F-]+)" $atrium_sid;',
        "}",
        "map $http_upgrade $atrium_connection {",
        '    default upgrade;',
        '    "" "";',
        "}",
        "",
    ]
    for g in table.groups:
        lines.append(f"upstream {upstream_name(g.name)} {{")
        lines.append("    hash $atrium_chat_session consistent;")
        lines += [f"    server {addr};" for addr in upstreams[g.name]]
        lines += ["    keepalive 16;", "}", ""]
    api = table.api_routes()
    for g in table.groups:
        lines.append("server {")
        default = " default_server" if g.host is None else ""
        lines.append(f"    listen {listen}{default};")
        lines.append(f"    server_name {g.host or '_'};")
        lines += [
            f"    client_max_body_size {MAX_BODY};",
            "    proxy_http_version 1.1;",
            # $http_host keeps the port the browser used ($host drops it): the app checks a sign-in's Origin
            # against the Host it was reached at, and nginx on :8080 would otherwise refuse every sign-in.
            "    proxy_set_header Host $http_host;",
            "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            "    proxy_set_header X-Forwarded-Proto $scheme;",
            "    proxy_set_header Upgrade $http_upgrade;",
            "    proxy_set_header Connection $atrium_connection;",
            "    proxy_buffering off;  # streamed answers (SSE) reach the browser as they are written",
            "    proxy_read_timeout 3600s;  # a websocket lives up to an hour, as behind the Gateway",
            "    proxy_send_timeout 3600s;",
        ]
        for prefix, owner in api:
            lines.append(f"    location = {prefix} {{ proxy_pass http://{upstream_name(owner)}; }}")
            lines.append(f"    location {prefix}/ {{ proxy_pass http://{upstream_name(owner)}; }}")
        lines.append(f"    location / {{ proxy_pass http://{upstream_name(g.name)}; }}")
        lines += ["}", ""]
    if all(g.host for g in table.groups):
        # A host no group has: nobody's pages (as the Gateway, which has no route for it).
        lines += ["server {", f"    listen {listen} default_server;", "    server_name _;",
                  "    return 404;", "}", ""]
    return "\n".join(lines)
