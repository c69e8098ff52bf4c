"""Where Atrium's CPU goes per chat completion, in-process: the app of `run.py`'s Atrium rows (same config, mock
model, quotas that never refuse) driven through its ASGI interface by httpx (no sockets, no uvicorn), `--requests`
requests at `--concurrency`, under cProfile (the event loop thread's CPU time; the usage writer's and LiteLLM's
threads are not in it). Prints the top functions by own time and by cumulative time, the CPU per request of the
whole loop with the profiler off, and where the profile was saved (for pstats).

    .venv/bin/python bench/gateway/cprofile_request.py [--metrics] [--requests 2000] [--top 35]
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Python put this script's folder first on the path: its profile.py would shadow the stdlib's (cProfile needs it).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

sys.path.append(str(HERE))  # appended: its profile.py must not shadow the stdlib profile module
sys.path.insert(0, str(HERE.parents[1]))

import run  # noqa: E402


async def drive(app, auth: str, n: int, concurrency: int, path: str) -> None:  # noqa: ANN001
    import httpx

    headers = {"Authorization": f"Bearer {auth}", "X-Tenant-ID": "sales"} if auth else {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        queue = list(range(n))

        async def one() -> None:
            while queue:
                queue.pop()
                r = await client.post(path, json=run.BODY, headers=headers)
                assert r.status_code == 200, r.text

        await asyncio.gather(*(one() for _ in range(concurrency)))


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--metrics", action="store_true", help="ATRIUM_METRICS_TOKEN set (metrics collected)")
    ap.add_argument("--top", type=int, default=35)
    ap.add_argument("--router", action="store_true",
                    help="profile run.py's bare Router endpoint with Atrium's LiteLLM settings instead (the baseline)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="atrium-cprofile-"))
    env, _ = run.atrium_setup(tmp)
    if args.metrics:
        env["ATRIUM_METRICS_TOKEN"] = "bench-metrics-token-0123456789"
    if args.router:
        auth, path = "", "/v1/chat/completions"
        os.environ["BENCH_QUIET_LITELLM"] = "1"
        sys.path.append(str(HERE))
        from router_app import app
    else:
        auth, path = run.issue_key(env), "/api/t/sales/v1/chat/completions"
        os.environ.update(env)
        from app import create_app

        app = create_app()
    async with app.router.lifespan_context(app):
        await drive(app, auth, 300, args.concurrency, path)  # warm-up: key cache, prices, first SQL
        began = time.process_time()
        await drive(app, auth, args.requests, args.concurrency, path)
        plain = (time.process_time() - began) * 1000 / args.requests
        # The event loop thread's CPU time, not the wall clock: a call that releases the GIL (os.urandom, a queue
        # put) would otherwise be charged with the time other threads held it.
        profile = cProfile.Profile(time.thread_time)
        profile.enable()
        await drive(app, auth, args.requests, args.concurrency, path)
        profile.disable()
    profile.dump_stats(tmp / "atrium.prof")
    print(f"CPU ms per request, client included (profiler off): {plain:.2f}; profile: {tmp / 'atrium.prof'}")
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).strip_dirs().sort_stats(key).print_stats(args.top)
        print(out.getvalue())


if __name__ == "__main__":
    asyncio.run(main())
