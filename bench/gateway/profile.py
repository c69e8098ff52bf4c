"""Profile Atrium under the gateway load with py-spy (bench/.venv-proxy/bin/py-spy, installed by
setup_proxy_venv.sh; else one on PATH): writes a flame graph SVG and a top-functions text summary to bench/results/.

    .venv/bin/python bench/gateway/profile.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402


def find_pyspy() -> Path:
    """The bench venv's py-spy, else one on PATH; none: stop before starting anything, saying how to get it."""
    for candidate in (run.ROOT / "bench" / ".venv-proxy" / "bin" / "py-spy", shutil.which("py-spy")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    sys.exit("error: py-spy not found (bench/.venv-proxy/bin/py-spy or on PATH): run "
             "bench/gateway/setup_proxy_venv.sh, which installs it there")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--requests", type=int, default=4000)
    args = ap.parse_args()
    pyspy = find_pyspy()
    tmp = Path(tempfile.mkdtemp(prefix="atrium-profile-"))
    body = tmp / "body.json"
    body.write_text(json.dumps(run.BODY))
    t = next(x for x in run.targets(tmp) if x["key"] == "atrium")
    auth = run.issue_key(t["env"])
    port = run.free_port()
    log = tmp / "atrium.log"
    proc = run.start(t, port, log)
    url = f"http://127.0.0.1:{port}{t['path']}"
    out = run.ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    try:
        run.wait_ready(url, {"Authorization": f"Bearer {auth}", "X-Tenant-ID": "sales"}, proc, log)
        run.wrk(url, requests=300, concurrency=32, threads=2, auth=auth, tenant="sales", body=body)
        spy = subprocess.Popen([str(pyspy), "record", "-p", str(proc.pid), "-d", str(args.seconds), "-r", "200",
                                "--gil", "-f", "raw", "-o", str(out / "atrium-profile.txt")])
        time.sleep(1)
        print(run.wrk(url, requests=args.requests, concurrency=32, threads=2, auth=auth, tenant="sales", body=body))
        spy.wait()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    # Inclusive sample counts per function (collapsed stacks: "frame;frame;... count").
    inclusive: dict[str, int] = {}
    total = 0
    for line in (out / "atrium-profile.txt").read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        for frame in set(stack.split(";")):
            inclusive[frame] = inclusive.get(frame, 0) + n
    top = sorted(inclusive.items(), key=lambda kv: -kv[1])[:80]
    text = "\n".join(f"{100 * n / total:5.1f}%  {frame}" for frame, n in top)
    (out / "atrium-profile-top.txt").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
