"""Run the real OpenID Connect provider in tests/oidc/server.mjs (panva/oidc-provider) for tests.

    with start_oidc_provider(["http://127.0.0.1:8123/chat/auth/oauth/oidc/callback"]) as op:
        op.issuer, op.client_id, op.client_secret           # discovery at op.discovery_url
        location = op.login(authorize_url, "dave", "pw", http, follow_to_redirect_uri=False)

Accounts (password "pw" for all): alice, bob, carol, dave, erin, fiona, root, multi, nobody, kc
(groups in tests/oidc/server.mjs). Access tokens are JWTs for the Atrium API when the authorization
request carries ``resource=urn:atrium-api`` (aud ``atrium-api``); otherwise they are opaque (userinfo).
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

OIDC_DIR = Path(__file__).resolve().parent / "oidc"
SERVER = OIDC_DIR / "server.mjs"
CLIENT_ID = "atrium"
CLIENT_SECRET = "atrium-secret"
PASSWORD = "pw"
API_RESOURCE = "urn:atrium-api"
API_AUDIENCE = "atrium-api"
FIX = "run `make test-deps` (or `npm ci --prefix tests/oidc`)"


class OidcProviderUnavailable(RuntimeError):
    """node or tests/oidc/node_modules is missing: tests needing the IdP should skip."""


class OidcProviderError(RuntimeError):
    """The provider process failed to start."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise OidcProviderUnavailable(f"`node` is not on PATH; install Node.js >= 20 and {FIX}")
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        raise OidcProviderUnavailable(f"{OIDC_DIR / 'node_modules'} is missing; {FIX}")
    return node


def generate_keys_file(path: str | os.PathLike) -> str:
    """Write a fresh private RS256 JWKS to ``path`` (for OIDC_KEYS_FILE / key rotation tests)."""
    out = subprocess.run(
        [_node(), str(SERVER), "--generate-keys"], check=True, capture_output=True, text=True
    )
    Path(path).write_text(out.stdout)
    return str(path)


class OidcProvider:
    client_id = CLIENT_ID
    client_secret = CLIENT_SECRET
    api_resource = API_RESOURCE
    api_audience = API_AUDIENCE

    def __init__(self, redirect_uris: list[str], port: int | None = None, keys_file: str | None = None):
        self.redirect_uris = list(redirect_uris)
        self.port = port or 0  # 0: the server picks a free port and reports it in its READY line
        self.keys_file = keys_file
        self.issuer = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=200)

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def start(self, timeout: float = 30.0) -> OidcProvider:
        env = dict(os.environ, OIDC_REDIRECT_URIS=",".join(self.redirect_uris))
        env.pop("OIDC_KEYS_FILE", None)
        if self.keys_file:
            env["OIDC_KEYS_FILE"] = str(self.keys_file)
        self._proc = subprocess.Popen(
            [_node(), str(SERVER), "--port", str(self.port)],
            cwd=OIDC_DIR,
            env=env,
            text=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        done, ready = threading.Event(), []

        def pump_stdout() -> None:  # sets `done` on READY or when the process dies
            for line in self._proc.stdout:
                if line.startswith("READY "):
                    ready.append(line.split()[1])
                    done.set()
            done.set()

        def pump_stderr() -> None:
            for line in self._proc.stderr:
                self._stderr.append(line)

        for target in (pump_stdout, pump_stderr):
            threading.Thread(target=target, daemon=True).start()
        done.wait(timeout)
        if not ready:
            proc = self._proc
            self.stop()
            why = (
                f"exited with code {proc.returncode}" if done.is_set() else f"not ready after {timeout:.0f}s"
            )
            time.sleep(0.1)  # let the stderr pump catch up
            raise OidcProviderError(f"OIDC provider {why}; stderr:\n{self.stderr}")
        self.issuer = ready[0]
        self.port = urlsplit(self.issuer).port
        return self

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def __enter__(self) -> OidcProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def login(
        self,
        authorize_url: str,
        username: str,
        password: str = PASSWORD,
        http: httpx.Client | None = None,
        *,
        follow_to_redirect_uri: bool = True,
    ) -> httpx.Response | str:
        follow = follow_to_redirect_uri
        return login(
            authorize_url, username, password, http, issuer=self.issuer, follow_to_redirect_uri=follow
        )


def start_oidc_provider(
    redirect_uris: list[str], port: int | None = None, keys_file: str | None = None
) -> OidcProvider:
    """Start the provider (waits for READY); use as a context manager or call ``.stop()``."""
    return OidcProvider(redirect_uris, port, keys_file).start()


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def login(
    authorize_url: str,
    username: str,
    password: str = PASSWORD,
    http: httpx.Client | None = None,
    *,
    follow_to_redirect_uri: bool = True,
    issuer: str | None = None,
) -> httpx.Response | str:
    """Drive the provider's login interaction headlessly, starting at an authorization URL.

    Follows redirects within the provider, posts the login form (fields ``login`` and ``password``)
    and stops at the first redirect leaving the provider (to the client's redirect_uri). With
    ``follow_to_redirect_uri=False`` returns that Location URL (carrying ``code``/``state``, or
    ``error``); otherwise follows it with ``http`` and returns the final response. If the login is
    rejected, returns the provider's 401 form response. ``issuer`` (default: the origin of
    ``authorize_url``) tells which redirects stay within the provider, so the walk may also start at
    an app URL that redirects to the provider.
    """
    http = http or httpx.Client()
    for cookie in list(http.cookies.jar):  # forget any provider session so `username` really logs in
        if cookie.name.startswith("op_"):
            http.cookies.jar.clear(cookie.domain, cookie.path, cookie.name)
    provider = _origin(issuer or authorize_url)
    response = http.get(authorize_url, follow_redirects=False)
    posted = False
    for _ in range(20):
        if response.is_redirect:
            target = urljoin(str(response.url), response.headers["location"])
            if _origin(target) != provider:
                if not follow_to_redirect_uri:
                    return target
                return http.get(target, follow_redirects=True)
            response = http.get(target, follow_redirects=False)
            continue
        form = (
            re.search(r'<form[^>]*action="([^"]*/login)"', response.text)
            if response.status_code == 200
            else None
        )
        if form is None or posted:
            return response  # error page or rejected credentials: let the caller assert on it
        posted = True
        response = http.post(
            urljoin(str(response.url), form.group(1)),
            data={"login": username, "password": password},
            follow_redirects=False,
        )
    raise OidcProviderError("too many redirects while logging in")
