"""`atrium worker`'s own GET /metrics, on a port of its own (the worker serves no HTTP otherwise).

The same registry and the same rule as the web pods' /metrics (backend/api/metrics.py): served only when
ATRIUM_METRICS_TOKEN is set (unset: nothing listens and nothing is collected), to the scraper that sends it as a
bearer token; a missing or wrong one is a 401, audited. What a worker reports: the ingestion jobs it ran by
outcome (throughput and failures), their run time and the chunks embedded, the queue depth and oldest job's age of
its deployment groups (read from SQL at each scrape), and the process's own metrics.

A stdlib HTTP server in a daemon thread: the worker's main thread runs the jobs (worker_process.run_worker), and a
scrape every 15-60 s needs nothing more. Bound to 127.0.0.1 unless told otherwise (the Kubernetes manifests pass
`--metrics-host 0.0.0.0`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from backend.governance.metrics import scraper_token_ok

log = logging.getLogger("atrium.metrics")


class MetricsPortError(Exception):
    """The metrics port could not be opened; the message says what to change."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], services: Any) -> None:
        self.services = services
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "atrium-worker"
    sys_version = ""
    # A thread per connection: one that sends nothing, or half a request, is dropped after this many seconds instead
    # of holding its thread for ever (a scrape's request arrives at once).
    timeout = 10

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # no access log: a scrape every few seconds would drown the worker's own lines

    def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        services = self.server.services
        if self.path.partition("?")[0] != "/metrics":
            self._send(404, b"not found: this port serves GET /metrics only\n")
            return
        if not scraper_token_ok(self.headers.get("Authorization"), services.settings.metrics_token):
            services.audit.record("denied", route="/metrics", ip=self.client_address[0], status=401,
                                  reason="bad_metrics_token")
            self._send(401, b"send `Authorization: Bearer <ATRIUM_METRICS_TOKEN>` (the scraper's token)\n",
                       headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
            return
        body, content_type = services.metrics.render()
        self._send(200, body, content_type)


@contextmanager
def worker_metrics(services: Any, *, host: str, port: int) -> Iterator[int | None]:
    """Serve /metrics at host:port while the block runs; yields the port listened on (None: not served, because
    ATRIUM_METRICS_TOKEN is unset or the port is 0). Raises MetricsPortError when the port cannot be opened."""
    if not services.settings.metrics_token or not services.metrics.enabled or not port:
        log.info("worker metrics not served", extra={
            "why": "ATRIUM_METRICS_TOKEN is unset" if port else "--metrics-port 0"})
        yield None
        return
    try:
        server = _Server((host, port), services)
    except OSError as exc:
        raise MetricsPortError(f"{host}:{port}: cannot listen there for /metrics ({exc.strerror or exc}): stop "
                               "what uses it, or pass another --metrics-port (0: no metrics)") from exc
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                              name="atrium-worker-metrics", daemon=True)
    thread.start()
    bound = server.server_address[1]
    log.info("worker metrics served", extra={"host": host, "port": bound, "path": "/metrics"})
    try:
        yield bound
    finally:
        server.shutdown()
        server.server_close()
