"""Noisy neighbour (issue 17): four tenants at a steady load, then the same with a fifth bursting at 10× its limits.

    .venv/bin/python bench/noisy_neighbour.py                       # both variants, ~4 minutes on 2 cores
    .venv/bin/python bench/noisy_neighbour.py --variant same-group --seconds 30
    ATRIUM_BENCH_REDIS_URL=redis://127.0.0.1:6379/4 --pgvector-url postgresql+psycopg://…  (defaults below)

Five tenants in a temp tenants.yaml (`alpha`…`delta` steady in group `steady`, `echo` the burster in group `burst`),
every tenant capped at `LIMITS` (tenants.yaml `limits`). The steady load: per tenant, `USERS` clients in a loop
(think time `THINK_S`) cycling through OpenAI-compatible calls (plain and streamed) to a mock provider with
realistic latency (a local HTTP server speaking OpenAI's wire protocol: first token after 150 ms, then a word
every 15 ms), a chat turn (`/api/t/{t}/chat`: the assistant's prompt, retrieval on the tenant's knowledge base,
the model), and a short answer of the in-process model (SmolLM2 via llama.cpp). The burst, from `echo`: 10× its
`streams` cap of long streams held open again and again, 10× its `model_calls` cap of clients hammering the
OpenAI-compatible route with no think time, 10× its model calls at the local model, and a large ingestion
(`--docs` documents uploaded at once).

Variants: `same-group` — one `atrium serve` serving all five tenants; `other-group` — two, started with
ATRIUM_DEPLOYMENT_GROUPS=steady and =burst (the steady load goes to the first, the burst to the second), both on
the same PostgreSQL (pgvector) and Redis, each with its in-process ingestion worker.

Prints, per variant, the steady tenants' p50/p99 latency and throughput without and with the burst, the
burster's answers by status, and the 5xx count anywhere; the JSON of every figure goes to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import multiprocessing as mp
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
import yaml  # noqa: E402
from pgvector_server import pgvector_database  # noqa: E402

STEADY = ["alpha", "bravo", "charlie", "delta"]
BURSTER = "echo"
LIMITS = {"model_calls": 4, "streams": 4, "ingestion_jobs": 1}
BURST_RPM = 120  # echo's requests_per_minute; the hammer sends 10× that
USERS = 2  # concurrent clients per steady tenant
THINK_S = 0.3
CYCLE = ["openai", "openai_stream", "chat", "openai", "openai_stream", "local"]
TTFT_S, WORD_S = 0.15, 0.015


# -- the mock provider -------------------------------------------------------------------------------------------


class MockProvider:
    """OpenAI's chat completions with a provider's latency: TTFT_S before the first word, then one every WORD_S
    (`max_tokens` words, at most 400); a plain call answers after the same total time."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                words = max(1, min(int(body.get("max_tokens") or 20), 400))
                base = {"id": "cmpl-1", "created": int(time.time()), "model": body.get("model", "mock")}
                usage = {"prompt_tokens": 40, "completion_tokens": words, "total_tokens": 40 + words}
                time.sleep(TTFT_S)
                if not body.get("stream"):
                    time.sleep(WORD_S * words)
                    raw = json.dumps({**base, "object": "chat.completion", "usage": usage, "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": " ".join(["word"] * words)},
                         "finish_reason": "stop"}]}).encode()
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                try:
                    for i in range(words):  # distinct words: LiteLLM fails a stream that repeats one chunk
                        chunk = {**base, "object": "chat.completion.chunk",
                                 "choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}]}
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                        time.sleep(WORD_S)
                    end = {**base, "object": "chat.completion.chunk", "usage": usage,
                           "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                    self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.request_queue_size = 512
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _serve_mock(out: mp.Queue) -> None:
    provider = MockProvider()
    out.put(provider.url)
    threading.Event().wait()  # until terminated


def start_mock() -> tuple[mp.Process, str]:
    """The mock provider in a process of its own: its latency must not depend on the load generators' GIL."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_serve_mock, args=(out,), daemon=True)
    proc.start()
    return proc, out.get(timeout=60)


# -- configuration -----------------------------------------------------------------------------------------------


def write_config(tmp: Path, provider_url: str) -> tuple[Path, Path]:
    """A config dir (tenants.yaml with the five tenants and two groups, models.yaml on the mock provider and the
    local model) and a prompts dir (the sales assistant's prompt for each)."""
    cfg, prompts = tmp / "config", tmp / "prompts"
    cfg.mkdir()
    shutil.copy(ROOT / "config" / "demo_users.yaml", cfg / "demo_users.yaml")
    data = yaml.safe_load((ROOT / "config" / "tenants.yaml").read_text())
    template = next(t for t in data["tenants"] if t["id"] == "sales")
    group = next(iter(data["deployment_groups"].values()))
    data["deployment_groups"] = {"steady": copy.deepcopy(group), "burst": copy.deepcopy(group)}
    data["defaults"]["limits"] = dict(LIMITS)
    tenants = []
    for tid in [*STEADY, BURSTER]:
        t = copy.deepcopy(template)
        t.pop("dify", None)
        t.update(id=tid, name=tid.title(), match={"claim": "groups", "any_of": [tid]},
                 roles={"tenant_admin": {"claim": "groups", "any_of": [f"{tid}-admins"]}},
                 assistants=[{"name": f"{tid}-assistant", "title": f"{tid.title()} Assistant",
                              "description": "the bench's assistant"}],
                 deployment_group="burst" if tid == BURSTER else "steady")
        t["model_policy"].update(allowed_tiers=["local", "fast", "smart"], default_tier="fast", routing="fixed")
        t["quotas"] = {"requests_per_minute": BURST_RPM if tid == BURSTER else None,
                       "user_requests_per_minute": None, "tokens_per_day": None, "monthly_budget_usd": None}
        tenants.append(t)
        folder = prompts / tid / f"{tid}-assistant"
        shutil.copytree(ROOT / "prompts" / "sales" / "sales-assistant", folder)
        first = folder / "v0001.md"  # the chat's answers from the mock provider (`fast`), 40 words long
        first.write_text(re.sub(r"(?m)^max_tokens: \d+$", "max_tokens: 40",
                                first.read_text().replace("tier: local", "tier: fast")))
    data["tenants"] = tenants
    (cfg / "tenants.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    mock = {"model": "openai/bench-mock", "api_key": "sk-bench", "api_base": provider_url}
    models = {"model_list": [{"model_name": "local", "litellm_params": {"model": "local/smollm2"}},
                             {"model_name": "fast", "litellm_params": mock},
                             {"model_name": "smart", "litellm_params": mock}],
              "prices": {"openai/bench-mock": {"input_cost_per_token": 1e-7, "output_cost_per_token": 1e-7},
                         "local/smollm2": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0}},
              "router_settings": {"fallbacks": [], "num_retries": 0, "timeout": 120}}
    (cfg / "models.yaml").write_text(yaml.safe_dump(models, sort_keys=False))
    return cfg, prompts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(tmp: Path, name: str, env: dict[str, str], cpus: str | None = None
              ) -> tuple[subprocess.Popen, str, Path]:
    """`cpus`: pin the process to these cores (taskset), as a pod's CPU limit would bound it."""
    port = free_port()
    data = tmp / name
    data.mkdir()
    log = data / "server.log"
    full = {**os.environ, "ATRIUM_DATA_DIR": str(data), "ATRIUM_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "ATRIUM_LOG_LEVEL": "WARNING", **env}
    pin = ["taskset", "-c", cpus] if cpus else []
    proc = subprocess.Popen([*pin, sys.executable, "-m", "backend.cli", "serve", "--host", "127.0.0.1", "--port",
                             str(port)], cwd=ROOT, env=full, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url, log
        time.sleep(0.5)
    raise RuntimeError(f"{name} did not become ready:\n{log.read_text()[-3000:]}")


def stop_app(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except FileNotFoundError:  # already gone
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the load ------------------------------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.phase = "warmup"
        self.rows: list[tuple[str, str, str, int, float]] = []  # phase, tenant, kind, status, seconds
        self.errors: Counter[str] = Counter()  # transport errors (and stream error events), by message
        self.cpu: dict[str, dict[str, float]] = {}  # phase -> process -> CPU seconds at its start

    def add(self, tenant: str, kind: str, status: int, seconds: float, phase: str) -> None:
        self.rows.append((phase, tenant, kind, status, seconds))


class StreamError(httpx.HTTPError):
    """An error event inside a stream that had started (200): counted as a 5xx."""


async def call(client: httpx.AsyncClient, url: str, tenant: str, key: str, kind: str, *,
               max_tokens: int = 20) -> int:
    """One request of `kind`; returns its status (a stream's error event counts as 500, an early end as 599)."""
    headers = {"Authorization": f"Bearer {key}", "X-Tenant-ID": tenant}
    if kind == "chat":
        r = await client.post(f"{url}/api/t/{tenant}/chat", headers=headers,
                              json={"assistant": f"{tenant}-assistant", "message": "What is our refund policy?"})
        return r.status_code
    model = "local" if kind == "local" else "smart"
    body = {"model": model, "max_tokens": 12 if kind == "local" else max_tokens,
            "messages": [{"role": "user", "content": "Summarise our travel policy in one line."}],
            "stream": kind.endswith("stream")}
    if not body["stream"]:
        r = await client.post(f"{url}/api/t/{tenant}/v1/chat/completions", headers=headers, json=body)
        return r.status_code
    async with client.stream("POST", f"{url}/api/t/{tenant}/v1/chat/completions", headers=headers,
                             json=body) as r:
        if r.status_code != 200:
            await r.aread()
            return r.status_code
        async for line in r.aiter_lines():
            if line.startswith('data: {"error"'):
                raise StreamError(line[6:300])
            if line == "data: [DONE]":
                return 200
    return 599


async def steady_user(client: httpx.AsyncClient, url: str, tenant: str, key: str, offset: int, rec: Recorder,
                      stop: asyncio.Event) -> None:
    i = offset
    while not stop.is_set():
        kind = CYCLE[i % len(CYCLE)]
        i += 1
        phase, started = rec.phase, time.monotonic()
        try:
            status = await call(client, url, tenant, key, kind)
        except httpx.HTTPError as exc:
            status = 500 if isinstance(exc, StreamError) else 598
            rec.errors[f"{type(exc).__name__}: {exc}"[:200]] += 1
        rec.add(tenant, kind, status, time.monotonic() - started, phase)
        await asyncio.sleep(THINK_S)


async def burst_loop(client: httpx.AsyncClient, url: str, key: str, kind: str, rec: Recorder, stop: asyncio.Event,
                     *, max_tokens: int = 20, every_s: float = 1.0) -> None:
    """A script bursting: a request every `every_s` at most, whatever the answer (it ignores Retry-After)."""
    while not stop.is_set():
        phase, started = rec.phase, time.monotonic()
        try:
            status = await call(client, url, BURSTER, key, kind, max_tokens=max_tokens)
        except httpx.HTTPError as exc:
            status = 500 if isinstance(exc, StreamError) else 598
            rec.errors[f"{type(exc).__name__}: {exc}"[:200]] += 1
        rec.add(BURSTER, kind, status, time.monotonic() - started, phase)
        await asyncio.sleep(max(0.0, every_s - (time.monotonic() - started)))


def _burst_process(url: str, key: str, seconds: float, docs: int, out: mp.Queue, cpus: set[int] | None) -> None:
    """The burster, in a process of its own (its client work must not slow the steady clients' event loop): 10×
    its `streams` cap of long streams, 10× its `model_calls` cap of clients at 10× its requests per minute (half
    at the provider tier, half at the local model), and the large ingestion. Sends its rows when done."""
    async def run() -> Recorder:
        rec = Recorder()
        rec.phase = "burst"
        stop = asyncio.Event()
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200, keepalive_expiry=2.0)
        async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits) as client:
            n_streams, n_calls = 10 * LIMITS["streams"], 10 * LIMITS["model_calls"]
            every = n_calls / (10 * BURST_RPM / 60)  # all of them together: 10× requests_per_minute
            tasks = [asyncio.create_task(burst_loop(client, url, key, "openai_stream", rec, stop, max_tokens=400))
                     for _ in range(n_streams)]
            tasks += [asyncio.create_task(burst_loop(client, url, key, "openai" if i % 2 else "local", rec, stop,
                                                     every_s=every)) for i in range(n_calls)]
            tasks.append(asyncio.create_task(upload(client, url, key, docs, rec)))
            out.put("started")
            await asyncio.sleep(seconds)
            stop.set()
            for outcome in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(outcome, BaseException):
                    rec.errors[f"client task died: {outcome!r}"[:200]] += 1
        return rec

    if cpus:
        os.sched_setaffinity(0, cpus)
    rec = asyncio.run(run())
    out.put((rec.rows, dict(rec.errors)))


async def upload(client: httpx.AsyncClient, url: str, key: str, docs: int, rec: Recorder) -> None:
    """The large ingestion: `docs` small documents, 20 per request (ATRIUM_MAX_UPLOAD_FILES' default)."""
    headers = {"Authorization": f"Bearer {key}", "X-Tenant-ID": BURSTER}
    text = "\n\n".join(f"## Section {j}\n" + ("Travel expenses are reimbursed within thirty days. " * 12)
                       for j in range(3))
    for start in range(0, docs, 20):
        files = [("files", (f"doc{n:05d}.md", f"# Document {n}\n\n{text}".encode(), "text/markdown"))
                 for n in range(start, min(docs, start + 20))]
        phase, started = rec.phase, time.monotonic()
        try:
            r = await client.post(f"{url}/api/t/{BURSTER}/documents", headers=headers, files=files)
            status = r.status_code
        except httpx.HTTPError:
            status = 598
        rec.add(BURSTER, "upload", status, time.monotonic() - started, phase)


async def run_load(steady_url: str, burst_url: str, keys: dict[str, str], seconds: float, docs: int,
                   warmup: float, watch: dict[str, int], burst_cpus: set[int] | None = None) -> Recorder:
    """`watch`: processes whose CPU time is taken per phase (name -> pid)."""
    rec = Recorder()

    def mark(phase: str) -> None:
        rec.phase = phase
        rec.cpu[phase] = {name: cpu_seconds(pid) for name, pid in watch.items()}
        rec.cpu[phase]["steady clients"] = cpu_seconds(os.getpid())

    stop_steady = asyncio.Event()
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200, keepalive_expiry=2.0)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits) as client:
        # Load what loads lazily (the embedding model at the first search, llama.cpp at the first local answer)
        # before anything is timed, one request of each kind per tenant.
        for tenant in [*STEADY, BURSTER]:
            for kind in sorted(set(CYCLE)):
                await call(client, burst_url if tenant == BURSTER else steady_url, tenant, keys[tenant], kind)
        steady = [asyncio.create_task(steady_user(client, steady_url, t, keys[t], u * 3, rec, stop_steady))
                  for t in STEADY for u in range(USERS)]
        await asyncio.sleep(warmup)
        mark("baseline")
        await asyncio.sleep(seconds)
        mark("ramp")
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        burster = ctx.Process(target=_burst_process, args=(burst_url, keys[BURSTER], seconds + 5, docs, out,
                                                                  burst_cpus))
        burster.start()
        watch["burst clients"] = burster.pid
        while True:  # the burster process is up and its clients are sending
            try:
                if out.get_nowait() == "started":
                    break
            except queue.Empty:
                await asyncio.sleep(0.2)
        await asyncio.sleep(3)  # the burst is under way: the streams are open, the upload is in
        mark("burst")
        await asyncio.sleep(seconds)
        mark("done")
        stop_steady.set()
        for outcome in await asyncio.gather(*steady, return_exceptions=True):
            if isinstance(outcome, BaseException):
                rec.errors[f"client task died: {outcome!r}"[:200]] += 1
        rows, errors = await asyncio.to_thread(out.get, True, 300)
        burster.join(30)
        rec.rows += rows
        rec.errors.update(errors)
    return rec


# -- figures -------------------------------------------------------------------------------------------------------


def _ms(values: list[float], q: float) -> int | None:
    """The q-quantile in milliseconds (nearest rank); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))])


def summarise(rec: Recorder, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for phase in ("baseline", "burst"):
        rows = [r for r in rec.rows if r[0] == phase and r[1] in STEADY]
        ok = [r[4] for r in rows if r[3] == 200]
        kinds = {}
        for kind in sorted(set(CYCLE)):
            lat = [r[4] for r in rows if r[2] == kind and r[3] == 200]
            kinds[kind] = {"n": len(lat), "p50_ms": _ms(lat, 0.5), "p99_ms": _ms(lat, 0.99),
                           "statuses": dict(Counter(r[3] for r in rows if r[2] == kind))}
        out[phase] = {"requests": len(rows), "ok": len(ok), "per_s": round(len(ok) / seconds, 2),
                      "p50_ms": _ms(ok, 0.5), "p99_ms": _ms(ok, 0.99),
                      "statuses": dict(Counter(r[3] for r in rows)), "kinds": kinds}
    burst_rows = [r for r in rec.rows if r[1] == BURSTER]
    out["burster"] = {kind: dict(Counter(r[3] for r in burst_rows if r[2] == kind))
                      for kind in sorted({r[2] for r in burst_rows})}
    out["5xx_anywhere"] = sum(1 for r in rec.rows if 500 <= r[3] < 598)  # answers; 598: the connection failed
    out["transport_errors"] = sum(1 for r in rec.rows if r[3] == 598)
    # CPU used per second of each phase, by process (1.0 = one core busy)
    out["cpu_cores"] = {phase: {name: round((rec.cpu[nxt].get(name, 0) - rec.cpu[phase].get(name, 0)) / seconds, 2)
                                for name in rec.cpu[nxt]}
                        for phase, nxt in (("baseline", "ramp"), ("burst", "done")) if phase in rec.cpu}
    out["errors"] = dict(rec.errors.most_common(10))
    base, burst = out["baseline"], out["burst"]

    def change(a: float | None, b: float | None) -> str:
        return f"{100 * (b - a) / a:+.0f}%" if a and b is not None else "n/a"

    out["change"] = {"p50": change(base["p50_ms"], burst["p50_ms"]), "p99": change(base["p99_ms"], burst["p99_ms"]),
                     "throughput": change(base["per_s"], burst["per_s"])}
    return out


def ingested(pg_url: str) -> dict[str, int]:
    import sqlalchemy as sa

    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(sa.text("select status, count(*) from kb_document group by status")).all())
    finally:
        engine.dispose()


def run_variant(variant: str, args: argparse.Namespace, pg_url: str, tmp: Path, cfg: Path, prompts: Path,
                mock_pid: int) -> dict[str, Any]:
    from backend.auth.api_keys import issue_key
    from backend.db.engine import Database, make_engine

    base_env = {"ATRIUM_CONFIG_DIR": str(cfg), "ATRIUM_PROMPTS_DIR": str(prompts), "DATABASE_URL": pg_url,
                "REDIS_URL": args.redis_url, "ATRIUM_REDIS_PREFIX": f"bench-{variant}-{os.getpid()}",
                "VECTOR_STORE": "pgvector", "CHAINLIT_AUTH_SECRET": "b" * 48, "ATRIUM_CONVERSATION_TITLES": "off",
                "ATRIUM_QUERY_REWRITE": "off", "ATRIUM_RESPONSE_CACHE": "false"}
    procs: list[subprocess.Popen] = []
    logs: list[Path] = []
    try:
        if variant == "same-group":
            proc, url, log = start_app(tmp, f"{variant}-all", base_env)
            procs.append(proc)
            logs.append(log)
            steady_url = burst_url = url
        else:
            for group in ("steady", "burst"):
                # pinned: each group's process on a core of its own, the burst's clients beside their group
                cpus = ({"steady": "0", "burst": "1"}[group]) if variant == "other-group-pinned" else None
                proc, url, log = start_app(tmp, f"{variant}-{group}", {**base_env, "ATRIUM_DEPLOYMENT_GROUPS": group},
                                           cpus)
                procs.append(proc)
                logs.append(log)
                if group == "steady":
                    steady_url = url
                else:
                    burst_url = url
        db = Database(make_engine(pg_url))
        keys = {t: issue_key(db=db, tenant=t, scopes=["chat", "ingest"]).token for t in [*STEADY, BURSTER]}
        db.engine.dispose()
        watch = {"mock provider": mock_pid}
        if len(procs) == 1:
            watch["atrium (all five)"] = procs[0].pid
        else:
            watch["atrium (steady group)"], watch["atrium (burst group)"] = procs[0].pid, procs[1].pid
        rec = asyncio.run(run_load(steady_url, burst_url, keys, args.seconds, args.docs, args.warmup, watch,
                                   {1} if variant == "other-group-pinned" else None))
        result = summarise(rec, args.seconds)
        result["documents"] = ingested(pg_url)
        result["server_errors_logged"] = sum(p.read_text(errors="replace").count("unhandled error") for p in logs)
        return result
    finally:
        for proc in procs:
            stop_app(proc)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", choices=["same-group", "other-group", "other-group-pinned", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=30, help="each measured phase (baseline, burst)")
    ap.add_argument("--warmup", type=float, default=10)
    ap.add_argument("--docs", type=int, default=200, help="documents the burster uploads")
    ap.add_argument("--pgvector-url", default=os.environ.get("ATRIUM_BENCH_PGVECTOR_URL"),
                    help="an admin URL of a PostgreSQL with pgvector (default: pgserver in a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (the servers' logs)")
    ap.add_argument("--redis-url", default=os.environ.get("ATRIUM_BENCH_REDIS_URL", "redis://127.0.0.1:6379/4"))
    args = ap.parse_args()
    variants = ["same-group", "other-group"] if args.variant == "both" else [args.variant]
    mock, mock_url = start_mock()
    results: dict[str, Any] = {"settings": {"limits": LIMITS, "users_per_tenant": USERS, "think_s": THINK_S,
                                            "seconds": args.seconds, "docs": args.docs, "cycle": CYCLE,
                                            "ttft_s": TTFT_S, "word_s": WORD_S, "cpus": os.cpu_count()}}
    try:
        for variant in variants:
            with contextlib.ExitStack() as stack:
                pg = stack.enter_context(pgvector_database(args.pgvector_url))
                tmp = Path(tempfile.mkdtemp(prefix="atrium-noisy-"))
                if not args.keep:
                    stack.callback(shutil.rmtree, tmp, True)
                cfg, prompts = write_config(tmp, mock_url)
                results[variant] = run_variant(variant, args, pg, tmp, cfg, prompts, mock.pid)
                print(json.dumps({variant: results[variant]}, indent=1), flush=True)
    finally:
        mock.terminate()
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    name = "noisy_neighbour" + ("" if args.variant == "both" else f"-{args.variant}")
    (out / f"{name}.json").write_text(json.dumps(results, indent=1))
    print("\n| variant | phase | steady ok/s | p50 | p99 | steady 5xx | burster 2xx / 429 / 5xx |")
    print("|---|---|---|---|---|---|---|")
    for variant in variants:
        r = results[variant]
        burst = Counter()
        for statuses in r["burster"].values():
            burst.update({int(k): v for k, v in statuses.items()})
        b2xx = sum(v for k, v in burst.items() if 200 <= k < 300)
        b5xx = sum(v for k, v in burst.items() if 500 <= k < 598)
        for phase in ("baseline", "burst"):
            p = r[phase]
            s5xx = sum(v for k, v in p["statuses"].items() if 500 <= int(k) < 598)
            extra = f"{b2xx} / {burst.get(429, 0)} / {b5xx}" if phase == "burst" else ""
            print(f"| {variant} | {phase} | {p['per_s']} | {p['p50_ms']} ms | {p['p99_ms']} ms | {s5xx} | {extra} |")
        print(f"| {variant} | change | {r['change']['throughput']} | {r['change']['p50']} | {r['change']['p99']} | | |")
    print("\nCPU (cores busy on average) by process:", json.dumps({v: results[v]["cpu_cores"] for v in variants}))


if __name__ == "__main__":
    main()
