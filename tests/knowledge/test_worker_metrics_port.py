"""backend/worker_metrics.py in-process, on the app's real services (SQLite): a port already taken is a clear
error naming it and what to do (`atrium worker` exits 2 with it), port 0 serves nothing, and the served port
answers GET /metrics only (another path is a 404)."""

from __future__ import annotations

import socket

import httpx
import pytest

from backend.worker_metrics import MetricsPortError, worker_metrics

TOKEN = "port-test-" + "t0ken" * 4


@pytest.fixture
def metered(make_settings):
    from backend.container import build_services

    services = build_services(make_settings(ATRIUM_METRICS_TOKEN=TOKEN, ATRIUM_INGEST_WORKER="false"))
    yield services
    services.close()


def test_a_taken_port_is_a_clear_error(metered):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(MetricsPortError, match=rf"127\.0\.0\.1:{port}: cannot listen .*another --metrics-port"):
            with worker_metrics(metered, host="127.0.0.1", port=port):
                pass


def test_port_0_serves_nothing_and_the_port_serves_metrics_only(metered):
    with worker_metrics(metered, host="127.0.0.1", port=0) as port:
        assert port is None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    with worker_metrics(metered, host="127.0.0.1", port=free) as port:
        assert port == free
        ok = httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and "atrium_ingestion_queue_depth" in ok.text
        assert httpx.get(f"http://127.0.0.1:{port}/metrics/x").status_code == 404
    with pytest.raises(httpx.ConnectError):  # closed with the block
        httpx.get(f"http://127.0.0.1:{free}/metrics", timeout=5)
