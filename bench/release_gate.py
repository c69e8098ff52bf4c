"""The release gate's decision on a deliberately broken draft, with the demo test set and the in-process model.

    .venv/bin/python bench/release_gate.py [--tenant engineering --assistant eng-assistant]

In a fresh data dir with a copy of prompts/: the tenant's demo documents are ingested (`atrium ingest`), production
(version 1) is run over the demo set (`atrium eval run --version 1`), then a broken version 2 is saved — the editor
deleted {{context}} and switched to the model writing the answers (answer_mode: generative, 120 tokens) — and run too
(`atrium eval run --version 2`, which exits 1 on a regression). Finally the release gate is asked, in-process, what it
says of promoting version 2 (and version 1 back: a rollback needs no run), and the label move is tried. Prints JSON:
each run's score and time per case, the CLI's exit codes, the gate's state and the cases it names, the move's status.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def atrium(env: dict[str, str], *args: str) -> tuple[int, str, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "backend.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=3600)
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


def broken(version_file: Path) -> str:
    """Version 1's file, broken the way an editor might: no {{context}}, the tiny model writing the answers."""
    text = version_file.read_text()
    head, body = text.split("---\n", 2)[1:]
    head = re.sub(r"(?m)^(author|created_at|message):.*\n", "", head)
    head += "answer_mode: generative\nmessage: Shorter, friendlier answers\nauthor: bench\n"
    head = re.sub(r"(?m)^max_tokens:.*$", "max_tokens: 120", head)
    body = body.replace("Context:\n{{context}}", "Be friendly and brief.").replace("{{context}}", "")
    head = head.replace("today, context]", "today]")  # the variables: {{context}} is gone
    return f"---\n{head}---\n{body}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenant", default="engineering")
    parser.add_argument("--assistant", default="eng-assistant")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="atrium-gate-bench-"))
    try:
        prompts = tmp / "prompts"
        shutil.copytree(ROOT / "prompts", prompts)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ATRIUM_", "DATABASE_URL", "REDIS_URL"))}
        env.update(ATRIUM_DATA_DIR=str(tmp / "data"), ATRIUM_PROMPTS_DIR=str(prompts), ATRIUM_LOG_LEVEL="WARNING")
        docs = sorted(str(p) for p in (ROOT / "demo" / "corpus" / args.tenant).glob("*.md"))
        code, out, ingest_s = atrium(env, "ingest", "--tenant", args.tenant, *docs)
        assert code == 0, out[-2000:]
        target = ["--tenant", args.tenant, "--assistant", args.assistant]
        prod_code, prod_out, prod_s = atrium(env, "eval", "run", *target, "--version", "1")
        folder = prompts / args.tenant / args.assistant
        (folder / "v0002.md").write_text(broken(folder / "v0001.md"))
        bad_code, bad_out, bad_s = atrium(env, "eval", "run", *target, "--version", "2")

        os.environ.update(env)
        from backend.container import build_services
        from backend.settings import Settings

        services = build_services(Settings())
        cfg = services.registry.get(args.tenant)
        gate = services.eval_gate.state(cfg, args.assistant, version=2, production=1)
        principal = services.principal_from_claims({"sub": "bench-admin", "name": "Bench",
                                                    "groups": [args.tenant, f"{args.tenant}-admins",
                                                               f"{args.tenant}-editors"]})
        try:
            services.prompt_service.move_label(principal, args.tenant, args.assistant, "production", version=2,
                                               create=False, route="bench")
            move = "moved"
        except Exception as exc:  # noqa: BLE001 - the refusal is the measurement
            move = f"{type(exc).__name__} {getattr(exc, 'code', '')}: {getattr(exc, 'message', exc)}"
        runs = services.evals.runs(args.tenant, args.assistant)
        services.close()

        def run_of(version: int) -> dict:
            r = next(x for x in runs if x["prompt_version"] == version)
            return {"score": r["score"], "passed": r["passed"], "total": r["total"], "median_ms_per_case":
                    r["latency_ms"], "tokens": r["tokens"]}

        print(json.dumps({
            "tenant": args.tenant, "assistant": args.assistant, "ingest_s": round(ingest_s, 1),
            "production_v1": {**run_of(1), "cli_exit": prod_code, "wall_s": round(prod_s, 1)},
            "broken_v2": {**run_of(2), "cli_exit": bad_code, "wall_s": round(bad_s, 1),
                          "cli_regressions": [line for line in bad_out.splitlines() if line.startswith("REGRESSED")]},
            "gate": {"enabled": gate["enabled"], "state": gate["state"], "message": gate["message"],
                     "failing": [c["id"] for c in gate["failing"]]},
            "promote_v2": move,
        }, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
