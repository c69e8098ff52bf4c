"""The image's build procedure, without a container daemon (none runs on these machines): the Dockerfile's contract
(the dependency layer is built from pyproject.toml, constraints.txt and scripts/install.sh alone, before the source
is copied; torch from PyTorch's CPU index; the user the manifests run as) and scripts/install.sh's, run for real
against a recording stand-in for pip (what it is asked to install, with which index)."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from backend.deploy.kubernetes import UID
from tests.conftest import REPO

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _stages() -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    stages: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            current = line.split(" AS ")[-1].strip()
            stages[current] = []
        elif current is not None:
            stages[current].append(line)
    return stages


def _index(instructions: list[str], pattern: str) -> int:
    found = [i for i, line in enumerate(instructions) if re.search(pattern, line)]
    assert len(found) == 1, (pattern, found, instructions)
    return found[0]


def test_the_dependency_layer_comes_before_the_source_and_takes_torch_from_the_cpu_index():
    build = _stages()["build"]
    manifests = _index(build, r"^COPY pyproject\.toml constraints\.txt /app/$")
    script = _index(build, r"^COPY scripts/install\.sh /app/scripts/install\.sh$")
    deps = _index(build, r"^RUN .*STAGE=deps .*bash scripts/install\.sh")
    source = _index(build, r"^COPY \. /app$")
    project = _index(build, r"^RUN .*STAGE=project .*bash scripts/install\.sh")
    assert manifests < deps and script < deps < source < project
    assert not [line for line in build[:deps] if line.startswith(("COPY", "ADD"))
                and line not in (build[manifests], build[script])]  # nothing else of the source under the deps
    assert f"ARG TORCH_INDEX_URL={CPU_INDEX}" in build[:deps]
    assert 'TORCH_INDEX_URL="$TORCH_INDEX_URL"' in build[deps]
    assert "TORCH_INDEX_URL" not in build[project]


def test_the_image_runs_as_the_user_the_manifests_name_and_believes_only_the_configured_proxies():
    runtime = _stages()["runtime"]
    useradd = next(line for line in runtime if "useradd" in line)
    assert re.search(rf"--uid {UID}\b", useradd) and re.search(rf"--gid {UID}\b", useradd)
    assert f"USER {UID}:{UID}" in runtime  # numeric: the kubelet can check runAsNonRoot against it
    [cmd] = [line for line in runtime if line.startswith("CMD ")]
    assert "atrium" in cmd and "serve" in cmd and "forwarded-allow-ips" not in cmd  # ATRIUM_TRUSTED_PROXIES decides


def _sandbox(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """A folder with only what the dependency layer gets, and a venv whose python records pip's arguments (and the
    requirements file it is given) instead of installing; any other use runs the real interpreter."""
    root = tmp_path / "src"
    (root / "scripts").mkdir(parents=True)
    for name in ("pyproject.toml", "constraints.txt", "scripts/install.sh"):
        shutil.copy(REPO / name, root / name)
    log = tmp_path / "pip.log"
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f"""#!/usr/bin/env bash
if [[ "$1" == "-m" && "$2" == "pip" ]]; then
  shift 2
  [[ "$1" == "--disable-pip-version-check" ]] && shift
  echo "pip $*" >> {log}
  while (( $# )); do
    if [[ "$1" == "-r" ]]; then sed 's/^/  requirement /' "$2" >> {log}; fi
    shift
  done
  exit 0
fi
exec {sys.executable} "$@"
""")
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_INDEX_URL", "STAGE", "EXTRAS", "EDITABLE")}
    env["VENV"] = str(tmp_path / "venv")
    return root, log, env


def _install(root: Path, env: dict[str, str], **extra: str) -> subprocess.CompletedProcess:
    (Path(env["VENV"]) / ".atrium-installed").unlink(missing_ok=True)
    r = subprocess.run(["bash", str(root / "scripts" / "install.sh")], env={**env, **extra}, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r


def _calls(log: Path) -> list[str]:
    calls = [line for line in log.read_text().splitlines() if line.startswith("pip ")]
    log.unlink()
    return calls


def test_install_sh_takes_torch_alone_from_the_given_index_and_needs_only_the_dependency_files(tmp_path):
    root, log, env = _sandbox(tmp_path)
    index = "https://torch-index.invalid/whl/cpu"
    _install(root, env, STAGE="deps", EXTRAS="local", TORCH_INDEX_URL=index)
    text = log.read_text()
    calls = _calls(log)
    torch_calls = [c for c in calls if any(t.startswith("torch==") for t in c.split())]
    assert torch_calls == [f"pip install -q --no-deps --index-url {index} torch==2.13.0"]
    assert [c for c in calls if index in c] == torch_calls  # the index is used for torch only
    requirements = [line.split(" ", 3)[-1] for line in text.splitlines() if line.startswith("  requirement ")]
    assert "llama-cpp-python==0.3.36" in requirements and "chainlit~=2.12.0" in requirements
    assert not [r for r in requirements if r in (".", "-e .") or r.startswith("atrium")]  # not the app: no source yet
    bulk = next(i for i, c in enumerate(calls) if "-r" in c.split())
    assert calls.index(torch_calls[0]) < bulk and "-c constraints.txt" in calls[bulk]  # torch first, then the pins

    _install(root, env, STAGE="project", EXTRAS="local", TORCH_INDEX_URL=index)
    assert _calls(log) == ["pip install -q --no-deps -e ."]  # the app only; no dependency touched


def test_install_sh_without_an_index_installs_as_make_does(tmp_path):
    root, log, env = _sandbox(tmp_path)
    _install(root, env, EXTRAS="local,dev")
    calls = _calls(log)
    assert "pip install -q torch==2.13.0" in calls and not [c for c in calls if "--index-url" in c]
    assert "pip install -q -c constraints.txt -e .[local,dev]" in calls
    r = subprocess.run(["bash", str(root / "scripts" / "install.sh")], env={**env, "EXTRAS": "local,dev"},
                       capture_output=True, text=True, timeout=60)
    assert "is up to date" in r.stdout and not log.exists()  # the stamp: nothing asked of pip the second time
