#!/usr/bin/env bash
# A separate venv for LiteLLM's own proxy (the comparison point of bench/gateway) and py-spy (profile.py), never
# the app's .venv.
# `pip install 'litellm[proxy]==1.110.2'` fails on pins the registry lacks (litellm-proxy,
# litellm-enterprise==0.1.83.post1, litellm-proxy-extras==0.4.114.post1): install the extra's other
# requirements, read from the wheel's METADATA, and those two unpinned when available.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=bench/.venv-proxy
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "litellm==1.110.2"
META=$("$VENV/bin/python" -c "import importlib.metadata as m; print(m.distribution('litellm')._path)")/METADATA
REQS=$(grep "extra == 'proxy'" "$META" | sed -E "s/^Requires-Dist: //; s/ ;.*$//" \
       | grep -v -E "^(litellm-proxy|litellm-enterprise|litellm-proxy-extras)\b" | grep -v "python_full_version >= '3.15'" \
       | sed -E "s/ ;.*//")
# shellcheck disable=SC2086
echo "$REQS" | tr '\n' '\0' | xargs -0 "$VENV/bin/pip" install -q
"$VENV/bin/pip" install -q litellm-enterprise litellm-proxy-extras || echo "(litellm-enterprise/-extras unavailable: the proxy runs without them)"
# bench/gateway/profile.py samples the Atrium process with py-spy from this venv (a tool of the bench, not a
# dependency of the app, so not in the app's .venv); it is a binary wheel on PyPI.
"$VENV/bin/pip" install -q py-spy
"$VENV/bin/litellm" --version || true
"$VENV/bin/py-spy" --version
