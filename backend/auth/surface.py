"""The surface table: every HTTP route and socket.io event this process exposes, each with its guard.

FastAPI's routes, the pages' and the mounted chat framework's (Chainlit) are listed here and nowhere else. A route
of Atrium's own that is missing from the table stops the app from starting (`verify_app_routes`); a chat route or
socket event that is missing is refused before Chainlit sees it (`backend/auth/surface_guard.py`, `ui/surface.py`),
and tests/auth/test_surface.py enumerates the live app and fails on anything unlisted, so a Chainlit upgrade that
adds a route fails CI until someone decides about it.

Guards:
- `anonymous`: anyone (static files, the login page, liveness).
- `signed_in`: a valid, unrevoked browser session or credentials (what the caller then sees is scoped by
  the handler to that caller alone, e.g. their own conversations).
- `tenant:<permission>`: a role (people) or scope (API keys) in the tenant the request is about: the URL's
  tenant for /api/t/{tenant}/..., the chat session's assistant for the chat's upload. A tenant of the caller's
  that another deployment group serves (ATRIUM_DEPLOYMENT_GROUPS) is a 421 `served_elsewhere` naming that group
  and its address (guard.decide, after authentication), audited like every refusal; `signed_in` handlers scope
  to the served tenants too (the principal's `tenants` hold only those: the chat's history, the pages).
- `platform_admin`: platform operators (people only).
- `blocked`: refused for everyone (a feature of the framework Atrium does not use).
- `scraper`: the metrics scraper's bearer token (ATRIUM_METRICS_TOKEN), checked by the handler; no tenant's or
  person's credentials, whatever their roles.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

GuardKind = Literal["anonymous", "signed_in", "tenant", "platform_admin", "blocked", "scraper"]
Owner = Literal["api", "page", "chat"]
# Who applies the guard: a FastAPI dependency, the route's handler itself (pages that answer a sign-in form,
# Dify's route that answers in Dify's error shape), or the surface guard in front of the chat framework.
EnforcedBy = Literal["dependency", "handler", "surface"]


@dataclass(frozen=True)
class Guard:
    kind: GuardKind
    permission: str | None = None
    tenant_from: Literal["url", "chat_session"] = "url"

    def __str__(self) -> str:
        return f"tenant:{self.permission}" if self.kind == "tenant" else self.kind


ANONYMOUS = Guard("anonymous")
SIGNED_IN = Guard("signed_in")
PLATFORM_ADMIN = Guard("platform_admin")
BLOCKED = Guard("blocked")
SCRAPER = Guard("scraper")


def tenant(permission: str, *, tenant_from: Literal["url", "chat_session"] = "url") -> Guard:
    return Guard("tenant", permission, tenant_from)


@dataclass(frozen=True)
class HttpEntry:
    methods: frozenset[str]
    path: str  # a route template: {name} is one segment, {name:path} any rest
    guard: Guard
    owner: Owner
    enforced_by: EnforcedBy
    why: str = ""
    # The page asks it to learn whether it is signed in: a 401 to a request with no session cookie at all is the
    # answer, not a refusal to audit (a refused cookie is audited as always).
    probe: bool = False

    @property
    def regex(self) -> re.Pattern[str]:
        return _compile(self.path)


@dataclass(frozen=True)
class SocketEntry:
    event: str
    guard: Guard
    why: str = ""


def _http(methods: str, path: str, guard: Guard, owner: Owner, enforced_by: EnforcedBy, why: str = "") -> HttpEntry:
    return HttpEntry(frozenset(methods.split(",")), path, guard, owner, enforced_by, why)


def _api(methods: str, path: str, guard: Guard, why: str = "") -> HttpEntry:
    return _http(methods, path, guard, "api", "dependency", why)


def _chat(methods: str, path: str, guard: Guard, why: str = "", *, probe: bool = False) -> HttpEntry:
    return HttpEntry(frozenset(methods.split(",")), "/chat" + path, guard, "chat", "surface", why, probe)


T = "/api/t/{tenant}"
CHAT_PREFIX = "/chat"
SOCKET_PATH = "/chat/ws/socket.io"

HTTP_SURFACE: tuple[HttpEntry, ...] = (
    # -- probes, docs, pages --------------------------------------------------------------------------------------
    _http("GET", "/healthz", ANONYMOUS, "api", "dependency", "liveness"),
    _http("GET", "/readyz", ANONYMOUS, "api", "handler", "ready or not for anyone; details for platform admins"),
    _http("GET", "/metrics", SCRAPER, "api", "handler",
          "Prometheus metrics: only the ATRIUM_METRICS_TOKEN bearer (no tenant or person credential); 404 when unset"),
    _http("GET", "/", ANONYMOUS, "page", "dependency", "redirect to /chat"),
    _http("GET,HEAD", "/openapi.json", ANONYMOUS, "page", "dependency", "the API's description"),
    _http("GET", "/docs", ANONYMOUS, "page", "dependency", "Swagger UI, served offline"),
    _http("GET", "/redoc", ANONYMOUS, "page", "dependency", "ReDoc, served offline"),
    _http("GET", "/docs-static/redoc.offline.js", ANONYMOUS, "page", "dependency", "ReDoc's script"),
    _http("GET,HEAD", "/docs-static/{path:path}", ANONYMOUS, "page", "dependency", "Swagger UI's static files"),
    _http("GET", "/studio", SIGNED_IN, "page", "handler",
          "the prompt studio: signed out, its sign-in form; signed in, only the tenants where the caller edits"),
    _http("GET", "/studio/static/{name}", ANONYMOUS, "page", "dependency", "the studio's scripts and styles"),
    _http("GET", "/admin", PLATFORM_ADMIN, "page", "handler", "operations page; signed out: its sign-in form"),
    _http("GET", "/admin/static/{name}", ANONYMOUS, "page", "dependency", "the operations page's scripts"),
    _http("GET", "/console", SIGNED_IN, "page", "handler",
          "the tenant console: signed out, its sign-in form; else the tenants the caller administers (picker)"),
    _http("GET", "/console/{tenant}", tenant("admin"), "page", "handler", "to the console's first tab"),
    _http("GET", "/console/{tenant}/knowledge", tenant("admin"), "page", "handler",
          "documents; its uploads, deletions and re-index go to the /api/t/{tenant} routes"),
    _http("GET", "/console/{tenant}/keys", tenant("admin"), "page", "handler",
          "API keys; creating and revoking go to the /api/t/{tenant}/keys routes"),
    _http("GET", "/console/{tenant}/usage", tenant("admin"), "page", "handler", "usage charts and tables"),
    _http("GET", "/console/{tenant}/usage.csv", tenant("admin"), "page", "handler", "the usage report as CSV"),
    _http("GET", "/console/{tenant}/audit", tenant("admin"), "page", "handler", "the tenant's audit log"),
    _http("GET", "/console/static/{name}", ANONYMOUS, "page", "dependency", "the console's scripts and styles"),
    _http("GET", "/chat/auth/oauth/oidc", ANONYMOUS, "page", "dependency",
          "starts the IdP sign-in (PKCE, state, nonce sealed in a cookie); precedes the chat's mount"),
    # -- the API ----------------------------------------------------------------------------------------------------
    _api("GET", "/api/me", SIGNED_IN, "what the caller's credentials map to"),
    _api("GET", "/api/me/usage", SIGNED_IN, "the caller's own usage and allowance in each of their tenants"),
    _api("POST", f"{T}/chat", tenant("chat")),
    _api("GET", f"{T}/v1/models", tenant("chat")),
    _api("GET", f"{T}/v1/models/{{model_id}}", tenant("chat")),
    _api("POST", f"{T}/v1/chat/completions", tenant("chat")),
    _api("POST", f"{T}/dify/chat-messages", tenant("chat")),
    _http("POST", f"{T}/dify/retrieval", tenant("retrieval"), "api", "handler",
          "Dify's External Knowledge API: the handler authenticates so refusals come in Dify's error shape"),
    _api("POST", f"{T}/search", tenant("retrieval")),
    _api("GET", f"{T}/documents", tenant("retrieval")),
    _api("GET", f"{T}/documents/{{document_id}}", tenant("retrieval")),
    _api("GET", f"{T}/knowledge-bases", tenant("retrieval")),
    _api("POST", f"{T}/reindex", tenant("ingest"), "chunk and embed the stored documents again"),
    _api("POST", f"{T}/documents", tenant("ingest")),
    _api("DELETE", f"{T}/documents/{{document_id}}", tenant("ingest")),
    _api("POST", f"{T}/documents/{{document_id}}/reindex", tenant("ingest"),
         "chunk and embed one stored document again"),
    _api("GET", f"{T}/prompts", tenant("prompts:read")),
    _api("GET", f"{T}/prompts/{{assistant}}", tenant("prompts:read")),
    _api("GET", f"{T}/prompts/{{assistant}}/versions/{{version}}", tenant("prompts:read")),
    _api("GET", f"{T}/prompts/{{assistant}}/diff", tenant("prompts:read")),
    _api("POST", f"{T}/prompts/{{assistant}}/versions", tenant("prompts:write")),
    _api("PUT", f"{T}/prompts/{{assistant}}/labels/{{label}}", tenant("prompts:write"),
         "moving production under require_approval also needs another tenant admin, and with a release gate a "
         "passing test run or a tenant admin's override_reason (the service checks)"),
    _api("POST", f"{T}/prompts/{{assistant}}/preview", tenant("prompts:write")),
    _api("POST", f"{T}/prompts/{{assistant}}/try", tenant("prompts:write")),
    _api("GET", f"{T}/feedback", tenant("prompts:write")),
    # evaluations (issue 19): test cases, runs (paid for like studio tries: usage channel `eval`), compare
    _api("GET", f"{T}/evals/{{assistant}}/cases", tenant("prompts:write")),
    _api("POST", f"{T}/evals/{{assistant}}/cases", tenant("prompts:write")),
    _api("GET", f"{T}/evals/{{assistant}}/cases/export", tenant("prompts:write")),
    _api("POST", f"{T}/evals/{{assistant}}/cases/import", tenant("prompts:write")),
    _api("GET", f"{T}/evals/{{assistant}}/cases/from-feedback", tenant("prompts:write"),
         "the prefilled case, not stored; the rated exchange must be this tenant's and this assistant's"),
    _api("POST", f"{T}/evals/{{assistant}}/cases/from-feedback", tenant("prompts:write"),
         "the rated exchange must be this tenant's and this assistant's (the service checks)"),
    _api("PUT", f"{T}/evals/{{assistant}}/cases/{{case_id:case_id}}", tenant("prompts:write")),
    _api("DELETE", f"{T}/evals/{{assistant}}/cases/{{case_id:case_id}}", tenant("prompts:write")),
    _api("POST", f"{T}/evals/{{assistant}}/runs", tenant("prompts:write")),
    _api("GET", f"{T}/evals/{{assistant}}/runs", tenant("prompts:write")),
    _api("GET", f"{T}/evals/{{assistant}}/runs/{{run_id}}", tenant("prompts:write")),
    _api("POST", f"{T}/evals/{{assistant}}/runs/{{run_id}}/resume", tenant("prompts:write")),
    _api("POST", f"{T}/evals/{{assistant}}/runs/{{run_id}}/cancel", tenant("prompts:write"),
         "stops the run in whichever process runs it (a status it reads before each case)"),
    _api("GET", f"{T}/evals/{{assistant}}/compare", tenant("prompts:write")),
    _api("GET", f"{T}/evals/{{assistant}}/gate", tenant("prompts:write"),
         "the release gate's state; the same decision refuses PUT …/labels/production (the prompt service asks it)"),
    _api("POST", f"{T}/keys", tenant("admin")),
    _api("GET", f"{T}/keys", tenant("admin")),
    _api("DELETE", f"{T}/keys/{{key_id}}", tenant("admin")),
    _api("GET", f"{T}/usage", tenant("admin")),
    _api("POST", f"{T}/usage/allowances", tenant("admin"), "raise one member's allowance for the month (audited)"),
    _api("GET", f"{T}/audit", tenant("admin")),
    _api("POST", f"{T}/sessions/end", tenant("admin"), "end a member's browser sessions"),
    _api("GET", "/api/admin/audit", PLATFORM_ADMIN),
    _api("GET", "/api/admin/tenants", PLATFORM_ADMIN),
    _api("POST", "/api/admin/sessions/end", PLATFORM_ADMIN, "end anyone's browser sessions"),
    # -- the chat (Chainlit, mounted at /chat) ------------------------------------------------------------------------
    # The chat page: the single-page app's own routes only (its catch-all would answer any path).
    _chat("GET", "", ANONYMOUS, "the chat page"),
    _chat("GET", "/", ANONYMOUS, "the chat page"),
    _chat("HEAD", "/", ANONYMOUS, "Chainlit's status check"),
    _chat("GET", "/login", ANONYMOUS, "the sign-in page"),
    _chat("GET", "/login/callback", ANONYMOUS, "the page the IdP sign-in lands on"),
    _chat("GET", "/thread", ANONYMOUS, "the chat page"),
    _chat("GET", "/thread/{thread_id}", ANONYMOUS, "the chat page; the conversation itself is owner-checked"),
    _chat("GET", "/element/{element_id}", ANONYMOUS, "the chat page; the element itself is owner-checked"),
    _chat("GET", "/share/{thread_id}", BLOCKED, "conversations are never shared"),
    _chat("GET", "/env", BLOCKED, "no user-provided environment"),
    _chat("GET", "/health", ANONYMOUS, "Chainlit's liveness"),
    _chat("GET", "/public/{filename:path}", ANONYMOUS, "the chat's theme, script and logos (public/)"),
    _chat("GET", "/assets/{filename:path}", ANONYMOUS, "the chat's bundle"),
    _chat("GET", "/favicon", ANONYMOUS),
    _chat("GET", "/logo", ANONYMOUS),
    _chat("GET", "/avatars/{avatar_id}", ANONYMOUS),
    _chat("GET", "/auth/config", ANONYMOUS, "which sign-in methods the page offers"),
    _chat("GET", "/project/translations", ANONYMOUS, "the page's words"),
    _chat("POST", "/login", ANONYMOUS, "password sign-in (demo users); an Origin check refuses cross-site posts"),
    _chat("POST", "/logout", ANONYMOUS, "sign-out: revokes the session on the server"),
    _chat("GET", "/auth/oauth/{provider_id}", ANONYMOUS, "the IdP sign-in (only the configured provider)"),
    _chat("GET", "/auth/oauth/{provider_id}/callback", ANONYMOUS, "the IdP's redirect back; state, PKCE, nonce"),
    _chat("POST", "/auth/jwt", BLOCKED, "re-issued a fresh session for any valid one: sessions never ended"),
    _chat("POST", "/auth/header", BLOCKED, "header sign-in is not configured"),
    _chat("POST", "/auth/oauth/azure-ad-hybrid/callback", BLOCKED, "not a configured provider"),
    _chat("GET", "/user", SIGNED_IN, "the signed-in user", probe=True),
    _chat("POST", "/set-session-cookie", SIGNED_IN, "a sticky-session cookie for load balancers (a UUID only)"),
    _chat("GET", "/project/settings", SIGNED_IN, "the caller's assistants (chat profiles)", probe=True),
    _chat("POST", "/project/threads", SIGNED_IN, "the caller's own conversations"),
    _chat("GET", "/project/thread/{thread_id}", SIGNED_IN, "the caller's own conversation, else 404"),
    _chat("GET", "/project/thread/{thread_id}/element/{element_id}", SIGNED_IN, "owner-checked, else 404"),
    _chat("PUT", "/project/thread", SIGNED_IN, "rename the caller's own conversation"),
    _chat("DELETE", "/project/thread", SIGNED_IN, "delete the caller's own conversation"),
    _chat("PUT", "/feedback", SIGNED_IN, "rate an answer of the caller's own conversation, else 404"),
    _chat("DELETE", "/feedback", SIGNED_IN, "clear a rating of the caller's own conversation"),
    _chat("POST", "/project/file", tenant("ingest", tenant_from="chat_session"),
          "the paperclip: files for the knowledge base of the session's department; tenant admins only"),
    _chat("GET", "/project/file/{file_id}", BLOCKED, "nothing is served from the upload folder"),
    _chat("GET", "/project/share/{thread_id}", BLOCKED, "conversations are never shared"),
    _chat("PUT", "/project/thread/share", BLOCKED, "conversations are never shared"),
    _chat("PUT", "/project/element", BLOCKED, "no custom elements"),
    _chat("DELETE", "/project/element", BLOCKED, "no custom elements"),
    _chat("POST", "/project/action", BLOCKED, "no action buttons"),
    _chat("POST", "/mcp", BLOCKED, "no MCP servers"),
    _chat("DELETE", "/mcp", BLOCKED, "no MCP servers"),
    _chat("GET", "/copilot/{filename:path}", BLOCKED, "no copilot widget"),
    _chat("POST", "/slack/events", BLOCKED, "no Slack app"),
    _chat("POST", "/teams/events", BLOCKED, "no Teams app"),
    _chat("GET,HEAD", "/openapi.json", BLOCKED, "Chainlit's own API description: Atrium's is /openapi.json"),
    _chat("GET,HEAD", "/docs", BLOCKED, "Chainlit's own Swagger UI"),
    _chat("GET,HEAD", "/docs/oauth2-redirect", BLOCKED, "Chainlit's own Swagger UI"),
    _chat("GET,HEAD", "/redoc", BLOCKED, "Chainlit's own ReDoc"),
    # socket.io's transport (long-polling and the websocket): signed in, from the app's own origin.
    _chat("GET,POST", "/ws/socket.io/", SIGNED_IN, "the chat's socket (events: SOCKET_SURFACE)"),
)

SOCKET_SURFACE: tuple[SocketEntry, ...] = (
    SocketEntry("connect", SIGNED_IN, "a valid session, the app's own origin, a server-checked UUID session id"),
    SocketEntry("connection_successful", SIGNED_IN, "starts or resumes the caller's chat"),
    SocketEntry("client_message", SIGNED_IN, "a user message (only ever a user message, checked and rebuilt)"),
    SocketEntry("stop", SIGNED_IN, "the Stop button"),
    SocketEntry("clear_session", SIGNED_IN, "a new chat"),
    SocketEntry("disconnect", SIGNED_IN, "the socket closes"),
    SocketEntry("edit_message", BLOCKED, "editing is off: it rewrote any message of the session, answers too"),
    SocketEntry("message_favorite", BLOCKED, "no favorites"),
    SocketEntry("fetch_favorites", SIGNED_IN, "the page asks on every load; favorites are off, so it gets none"),
    SocketEntry("window_message", BLOCKED, "no embedding window"),
    SocketEntry("audio_start", BLOCKED, "no audio"),
    SocketEntry("audio_chunk", BLOCKED, "no audio"),
    SocketEntry("audio_end", BLOCKED, "no audio"),
    SocketEntry("chat_settings_change", BLOCKED, "no chat settings"),
    SocketEntry("chat_settings_edit", BLOCKED, "no chat settings"),
)

_SOCKET_GUARDS = {e.event: e for e in SOCKET_SURFACE}


def socket_entry(event: str) -> SocketEntry | None:
    return _SOCKET_GUARDS.get(event)


def _compile(template: str) -> re.Pattern[str]:
    out, pos = "", 0
    for m in re.finditer(r"\{(\w+)(?::(\w+))?\}", template):
        out += re.escape(template[pos:m.start()])
        out += f"(?P<{m.group(1)}>.*)" if m.group(2) == "path" else f"(?P<{m.group(1)}>[^/]+)"
        pos = m.end()
    return re.compile(out + re.escape(template[pos:]) + r"\Z")


@dataclass(frozen=True)
class Match:
    entry: HttpEntry | None  # None: nothing listed for this path and method
    params: dict[str, str]


class SurfaceTable:
    """The HTTP entries compiled for matching (a few dozen regexes: microseconds per request)."""

    def __init__(self, entries: Iterable[HttpEntry] = HTTP_SURFACE) -> None:
        self.entries = tuple(entries)
        self._compiled = [(e, e.regex) for e in self.entries]

    def match(self, method: str, path: str) -> Match:
        method = "GET" if method == "HEAD" else method
        for entry, regex in self._compiled:
            if m := regex.match(path):
                methods = {"GET" if x == "HEAD" else x for x in entry.methods}
                if method in methods:
                    return Match(entry, m.groupdict())
        return Match(None, {})

    def route_of(self, method: str, path: str) -> str:
        """The route pattern a request is for (`/chat/share/{thread_id}`), or "(no route)": what an audit row
        names, so refusals of made-up paths and ids group into one row."""
        entry = self.match(method, path).entry
        return entry.path if entry is not None else "(no route)"

    def listed(self, method: str, template: str) -> HttpEntry | None:
        """The entry of exactly this route template and method (for checking the table against the app)."""
        for entry in self.entries:
            if entry.path == template and method in entry.methods:
                return entry
        return None


class SurfaceError(RuntimeError):
    """The app exposes a route the table does not list, or guards it differently from what the table says."""


# The dependencies that apply each guard on Atrium's own routes (backend/api/deps.py).
_DEPENDENCY_GUARDS = {
    "get_platform_admin": PLATFORM_ADMIN,
    **{f"require_{p.replace(':', '_')}": tenant(p)
       for p in ("chat", "retrieval", "ingest", "prompts:read", "prompts:write", "admin")},
}


def walk_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """Every route of a FastAPI/Starlette router, included routers flattened."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from walk_routes(inner.routes)
        else:
            yield route


def _dependency_names(dependant: Any) -> set[str]:
    names: set[str] = set()
    for sub in dependant.dependencies:
        names.add(getattr(sub.call, "__name__", ""))
        names |= _dependency_names(sub)
    return names


def guard_of_dependencies(names: set[str]) -> Guard:
    """The guard a route's dependencies apply: the strongest one named, else signed in or anonymous."""
    guards = [g for n, g in _DEPENDENCY_GUARDS.items() if n in names]
    if guards:
        return guards[0]
    return SIGNED_IN if "get_principal" in names else ANONYMOUS


def verify_app_routes(app: Any, table: SurfaceTable) -> list[str]:
    """Every route of Atrium's own app is listed with the guard its dependencies apply. Returns the problems
    (empty when the table and the app agree). The mounted chat is checked by ui/surface.py."""
    problems: list[str] = []
    for route in walk_routes(app.router.routes):
        path = getattr(route, "path", "")
        if path == CHAT_PREFIX:  # the chat's mount: its routes are the chat's entries
            continue
        if not hasattr(route, "methods") or route.methods is None:  # a Mount of static files
            template = path + "/{path:path}"
            if table.listed("GET", template) is None:
                problems.append(f"mount {path}: not in the surface table")
            continue
        for method in sorted(route.methods - {"HEAD"}) or ["HEAD"]:
            entry = table.listed(method, path)
            if entry is None:
                problems.append(f"{method} {path}: not in the surface table (backend/auth/surface.py)")
                continue
            dependant = getattr(route, "dependant", None)
            if entry.enforced_by == "dependency" and dependant is not None:
                applied = guard_of_dependencies(_dependency_names(dependant))
                if applied != entry.guard:
                    problems.append(f"{method} {path}: the table says {entry.guard}, its dependencies apply "
                                    f"{applied}")
    return problems
