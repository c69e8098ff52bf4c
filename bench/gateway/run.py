"""Gateway overhead benchmark: Atrium's /v1/chat/completions vs. the floor, a bare LiteLLM Router endpoint
and LiteLLM's own proxy — same mock model (LiteLLM mock_response), same load, same run.

    .venv/bin/python bench/gateway/run.py [--requests 3000] [--concurrency 32] [--only atrium,router] [--rounds 3]

Atrium runs three times: observability off (no metrics token, no OTLP endpoint), with metrics on
(ATRIUM_METRICS_TOKEN: every request counted), and with metrics and tracing on (spans exported over OTLP/HTTP
to a sink in this process that answers 200 and drops them: the exporter's work is in Atrium's CPU time, a
collector's is not).

Needs `wrk` (apt-get install -y wrk) and, for the proxy, bench/gateway/setup_proxy_venv.sh. Each server runs
alone (one process, one event loop, access logs off); load: wrk with post.lua, a bounded request count after
a warm-up. CPU ms/request = the server process tree's user+system CPU time during the run / requests.
Atrium's path per request: API-key verification (SQL on first use, then remembered for
ATRIUM_API_KEY_CACHE_SECONDS), tenant guard + scope, quota admission (rate windows, token/budget reservation),
routing decision, Router call, cost, usage row (SQL, group commit), quota settle.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PY = sys.executable
BODY = {"model": "smart", "messages": [{"role": "user", "content": "What is the discount cap for Growth deals?"}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_cpu_seconds(pid: int) -> float:
    """utime+stime (+ reaped children's) of pid and its live descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        parents[int(entry.name)] = int(fields[1])
        stats[int(entry.name)] = fields
    todo, total = [pid], 0.0
    while todo:
        p = todo.pop()
        if p in stats:
            f = stats[p]
            total += (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / tick
        todo += [c for c, pp in parents.items() if pp == p]
    return total


def atrium_setup(tmp: Path) -> tuple[dict[str, str], str]:
    """A config dir (mock smart tier, quotas high enough never to refuse) and env for the served app."""
    cfg = tmp / "config"
    cfg.mkdir()
    shutil.copy(ROOT / "config" / "demo_users.yaml", cfg)
    tenants = yaml.safe_load((ROOT / "config" / "tenants.yaml").read_text())
    # No in-process caps (tenants.yaml `limits`, default 8 model calls in flight): wrk keeps 32 requests open.
    tenants.setdefault("defaults", {})["limits"] = {"model_calls": None, "streams": None, "ingestion_jobs": 1}
    for t in tenants["tenants"]:
        t["quotas"] = {"requests_per_minute": 10_000_000, "user_requests_per_minute": 10_000_000,
                       "tokens_per_day": 10_000_000_000, "monthly_budget_usd": 10_000_000}
        t["model_policy"].update(allowed_tiers=["fast", "smart"], default_tier="smart")
    (cfg / "tenants.yaml").write_text(yaml.safe_dump(tenants))
    models = yaml.safe_load((HERE / "proxy_config.yaml").read_text())
    (cfg / "models.yaml").write_text(yaml.safe_dump({"model_list": models["model_list"],
                                                     "router_settings": {"num_retries": 0}}))
    env = {"ATRIUM_CONFIG_DIR": str(cfg), "ATRIUM_DATA_DIR": str(tmp / "data"), "ATRIUM_LOG_LEVEL": "WARNING",
           "ATRIUM_INGEST_WORKER": "false", "CHAINLIT_AUTH_SECRET": "bench-" + "x" * 40}
    return env, str(cfg)


def issue_key(env: dict[str, str]) -> str:
    out = subprocess.run([PY, "-m", "backend.cli", "keys", "create", "--tenant", "sales", "--scopes", "chat"],
                         cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, check=True)
    token = re.search(r"atr_[A-Za-z0-9_\-]+", out.stdout + out.stderr)
    assert token, out.stdout + out.stderr
    return token.group(0)


def otlp_sink() -> str:
    """An OTLP/HTTP endpoint that accepts every export and keeps nothing (a collector's work is not Atrium's)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Sink(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def targets(tmp: Path) -> list[dict]:
    uv = [PY, "-m", "uvicorn", "--no-access-log", "--log-level", "warning", "--host", "127.0.0.1"]
    atrium_env, _ = atrium_setup(tmp)
    metrics_env = {**atrium_env, "ATRIUM_METRICS_TOKEN": "bench-metrics-token-0123456789"}
    proxy = ROOT / "bench" / ".venv-proxy" / "bin" / "litellm"
    return [
        {"name": "floor (bare FastAPI)", "key": "floor", "path": "/v1/chat/completions",
         "cmd": uv + ["--app-dir", str(HERE), "floor_app:app", "--port", "{port}"], "env": {}},
        {"name": "bare Router.acompletion", "key": "router", "path": "/v1/chat/completions",
         "cmd": uv + ["--app-dir", str(HERE), "router_app:app", "--port", "{port}"], "env": {}},
        {"name": "bare Router.acompletion, Atrium's LiteLLM settings", "key": "router_quiet",
         "path": "/v1/chat/completions",
         "cmd": uv + ["--app-dir", str(HERE), "router_app:app", "--port", "{port}"],
         "env": {"BENCH_QUIET_LITELLM": "1"}},
        {"name": "LiteLLM proxy (1 worker)", "key": "proxy", "path": "/v1/chat/completions",
         "cmd": [str(proxy), "--config", str(HERE / "proxy_config.yaml"), "--host", "127.0.0.1", "--port", "{port}",
                 "--num_workers", "1"],
         "env": {"LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true", "LITELLM_LOG": "ERROR",
                 "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
         "available": proxy.exists()},
        {"name": "Atrium /v1/chat/completions", "key": "atrium", "path": "/api/t/sales/v1/chat/completions",
         "cmd": uv + ["app:app", "--port", "{port}"], "env": atrium_env, "atrium": True},
        {"name": "Atrium, metrics on", "key": "atrium_metrics", "path": "/api/t/sales/v1/chat/completions",
         "cmd": uv + ["app:app", "--port", "{port}"], "env": metrics_env, "atrium": True},
        {"name": "Atrium, metrics and tracing on", "key": "atrium_traced", "path": "/api/t/sales/v1/chat/completions",
         "cmd": uv + ["app:app", "--port", "{port}"], "atrium": True,
         "env": {**metrics_env, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_sink(), "OTEL_SERVICE_NAME": "atrium-bench"}},
    ]


def start(t: dict, port: int, log: Path) -> subprocess.Popen:
    cmd = [c.replace("{port}", str(port)) for c in t["cmd"]]
    env = {**os.environ, **t["env"], "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_ready(url: str, headers: dict, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            r = httpx.post(url, json=BODY, headers=headers, timeout=10)
            if r.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"not ready in {timeout}s:\n{log.read_text()[-3000:]}")


def wrk(url: str, *, requests: int, concurrency: int, threads: int, auth: str, tenant: str, body: Path) -> dict:
    """wrk with a bounded request count: each thread stops after its share and notes it in DONE_FILE;
    wrk keeps waiting for -d, so the runner interrupts it (SIGINT prints the summary) once all are done."""
    done = body.with_suffix(".done")
    done.write_text("")
    env = {**os.environ, "BODY_FILE": str(body), "AUTH": auth, "TENANT": tenant, "REQUESTS": str(requests),
           "THREADS": str(threads), "DONE_FILE": str(done)}
    proc = subprocess.Popen(["wrk", "-t", str(threads), "-c", str(concurrency), "-d", "600s", "--timeout", "30s",
                             "-s", str(HERE / "post.lua"), url], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    while proc.poll() is None and done.read_text().count("done") < threads:
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    m = re.search(r"RESULT (.*)", out)
    assert m, out
    return {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def measure(t: dict, args: argparse.Namespace, tmp: Path, body: Path) -> dict:
    """One target: start it, warm it up, time a bounded wrk run, stop it."""
    auth, tenant = "", ""
    if t.get("atrium"):
        auth, tenant = issue_key(t["env"]), "sales"  # also runs the migrations before the server starts
    port = free_port()
    log = tmp / f"{t['key']}.log"
    proc = start(t, port, log)
    url = f"http://127.0.0.1:{port}{t['path']}"
    headers = {"Authorization": f"Bearer {auth}", "X-Tenant-ID": tenant} if auth else {}
    try:
        wait_ready(url, headers, proc, log)
        n = args.floor_requests if t["key"] == "floor" else args.requests
        wrk(url, requests=max(200, n // 10), concurrency=args.concurrency, threads=args.threads, auth=auth,
            tenant=tenant, body=body)  # warm-up
        cpu0 = tree_cpu_seconds(proc.pid)
        r = wrk(url, requests=n, concurrency=args.concurrency, threads=args.threads, auth=auth, tenant=tenant,
                body=body)
        cpu = tree_cpu_seconds(proc.pid) - cpu0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    rps = r["requests"] / (r["duration_us"] / 1e6)
    return {"name": t["name"], "key": t["key"], "requests": r["requests"], "rps": round(rps, 1),
            "p50_ms": r["p50_us"] / 1000, "p95_ms": r["p95_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
            "cpu_ms_per_request": round(cpu * 1000 / r["requests"], 2), "non200": r["non200"], "errors": r["errors"],
            "load1": round(os.getloadavg()[0], 1)}


def spread(values: list[float]) -> str:
    """`median (min–max)`; just the value for one round."""
    if not values:
        return "—"
    med = statistics.median(values)
    return f"{med:.2f}" if len(values) == 1 else f"{med:.2f} ({min(values):.2f}–{max(values):.2f})"


def derived(rounds: list[dict[str, dict]]) -> dict[str, list[float]]:
    """Per round, from rows of the same round: Atrium's own work (its CPU per request minus the bare Router's
    with Atrium's LiteLLM settings), its req/s over the proxy's, and what metrics and tracing add to its CPU."""
    out: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        out.setdefault(name, []).append(value)

    for rows in rounds:
        cpu = {k: r["cpu_ms_per_request"] for k, r in rows.items()}
        rps = {k: r["rps"] for k, r in rows.items()}
        for atrium in ("atrium", "atrium_metrics", "atrium_traced"):
            if atrium in cpu and "router_quiet" in cpu:
                add(f"own work ms/request, {atrium}", cpu[atrium] - cpu["router_quiet"])
            if atrium in rps and "proxy" in rps:
                add(f"req/s over the proxy's, {atrium}", rps[atrium] / rps["proxy"])
        if "atrium" in cpu and "atrium_metrics" in cpu:
            add("metrics on: CPU per request, % over off", 100 * (cpu["atrium_metrics"] / cpu["atrium"] - 1))
        if "atrium_metrics" in cpu and "atrium_traced" in cpu:
            add("tracing on: CPU per request, % over metrics on",
                100 * (cpu["atrium_traced"] / cpu["atrium_metrics"] - 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--floor-requests", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every target this many times, interleaved (odd rounds in reverse order, so a load "
                         "that changes during the run weighs on each alike); report medians and min–max")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="atrium-gateway-"))
    body = tmp / "body.json"
    body.write_text(json.dumps(BODY))
    chosen = []
    for t in targets(tmp):
        if args.only and t["key"] not in args.only.split(","):
            continue
        if not t.get("available", True):
            print(f"skip {t['name']}: run bench/gateway/setup_proxy_venv.sh first")
            continue
        chosen.append(t)
    rounds: list[dict[str, dict]] = []
    for i in range(args.rounds):
        rows: dict[str, dict] = {}
        for t in (chosen if i % 2 == 0 else chosen[::-1]):
            row = {**measure(t, args, tmp, body), "round": i + 1}
            rows[t["key"]] = row
            print(json.dumps(row), flush=True)
        rounds.append(rows)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"gateway-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
        json.dumps({"rounds": rounds, "derived": derived(rounds)}, indent=1))
    print(f"\n{args.rounds} round(s); median (min–max) over the rounds\n")
    print("| server | req/s | p50 ms | p95 ms | CPU ms/request | non-200 |")
    print("|---|---|---|---|---|---|")
    for t in chosen:
        rs = [r[t["key"]] for r in rounds]
        print(f"| {t['name']} | {spread([r['rps'] for r in rs])} | {spread([r['p50_ms'] for r in rs])} | "
              f"{spread([r['p95_ms'] for r in rs])} | {spread([r['cpu_ms_per_request'] for r in rs])} | "
              f"{sum(r['non200'] + r['errors'] for r in rs)} |")
    print()
    for name, values in derived(rounds).items():
        print(f"- {name}: {spread(values)}")
    print(f"- load average (1 min) at the end of each measurement: "
          f"{spread([r['load1'] for rows in rounds for r in rows.values()])}")


if __name__ == "__main__":
    main()
