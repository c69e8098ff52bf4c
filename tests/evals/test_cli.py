"""`atrium eval import | run | export` as a real subprocess, against a model speaking OpenAI's wire protocol whose
answers are scripted: production passes its cases (exit 0); an edited prompt file that breaks one is a regression
(exit 1, the case named); a usage error is exit 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO
from tests.evals.test_runs import BROKEN, case_file, fast_config, scripted
from tests.llm.fakes import FakeOpenAI

RUN = ["eval", "run", "--tenant", "sales", "--assistant", "sales-assistant"]


@pytest.fixture
def atrium(tmp_path, data_dir, prompts_root, no_demo_sets):
    with FakeOpenAI(reply=scripted) as model:
        cfg = fast_config(tmp_path, model)
        env = {**os.environ, "ATRIUM_DATA_DIR": str(data_dir), "ATRIUM_CONFIG_DIR": str(cfg),
               "ATRIUM_PROMPTS_DIR": str(prompts_root), "ATRIUM_EVALS_DIR": no_demo_sets,
               "ATRIUM_RESPONSE_CACHE": "false"}

        def run(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "backend.cli", *args], cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=300)

        run.model = model  # type: ignore[attr-defined]
        yield run


def test_a_regression_fails_the_command_and_names_the_case(atrium, tmp_path, prompts_root):
    pricing = REPO / "demo" / "corpus" / "sales" / "pricing-rules.md"
    assert atrium("ingest", "--tenant", "sales", str(pricing)).returncode == 0
    cases = tmp_path / "cases.yaml"
    cases.write_text(case_file())
    out = atrium("eval", "import", "--tenant", "sales", "--assistant", "sales-assistant", str(cases))
    assert out.returncode == 0 and "5 added, 0 updated, 0 unchanged" in out.stdout, out.stderr

    # Production itself: nothing to compare with, no regression.
    out = atrium(*RUN)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "version 1: 2/5 passed (score 40%)" in out.stdout and "no regression" in out.stdout
    assert "5/5" in out.stderr  # the progress bar reached the end

    # An edited prompt file that breaks the rep's limit: exit 1, the case and its failing checks named. Production's
    # run above is the baseline (same knowledge base): it is not run again.
    v1 = (prompts_root / "sales" / "sales-assistant" / "v0001.md").read_text()
    broken = tmp_path / "v0002.md"
    broken.write_text(v1.replace("tier: local", "tier: fast").rstrip() + f"\n{BROKEN}\n")
    calls = len(atrium.model.requests)
    out = atrium(*RUN, "--file", str(broken))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "REGRESSED c0: What discount can an Account Executive approve on their own?" in out.stdout
    assert "must_not: contains '20%'" in out.stdout and "1 case(s) pass in production and fail" in out.stderr
    assert len(atrium.model.requests) - calls == 4  # only the file's run: production's was reused

    # Production under a score floor above its score fails on the floor alone.
    out = atrium(*RUN, "--min-score", "0.5")
    assert out.returncode == 1 and "below --min-score 50%" in out.stderr

    exported = atrium("eval", "export", "--tenant", "sales", "--assistant", "sales-assistant")
    assert exported.returncode == 0 and len(yaml.safe_load(exported.stdout)["cases"]) == 5


def test_usage_errors_exit_2_with_one_line_saying_why(atrium, tmp_path):
    out = atrium("eval", "run", "--tenant", "sales", "--assistant", "nope")
    assert out.returncode == 2 and "no assistant 'nope'" in out.stderr, out.stderr
    out = atrium(*RUN)  # no case yet
    assert out.returncode == 2 and "has no case to run" in out.stderr, out.stderr
    out = atrium(*RUN, "--file", str(tmp_path / "missing.md"))
    assert out.returncode == 2 and "no such file" in out.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("cases: [{question: '', facts: [x]}]")
    out = atrium("eval", "import", "--tenant", "sales", "--assistant", "sales-assistant", str(bad))
    assert out.returncode == 2 and "cases[1].question" in out.stderr, out.stderr
