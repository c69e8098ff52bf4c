#!/usr/bin/env bash
# Runs the whole suite; points the PostgreSQL/Redis tests at the local servers when they answer.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"

probe() { "$VENV/bin/python" - "$1" "$2" <<'PY'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
PY
}
if [[ -z "${ATRIUM_TEST_POSTGRES_URL:-}" ]] && probe 127.0.0.1 5432; then
  export ATRIUM_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
fi
if [[ -z "${ATRIUM_TEST_REDIS_URL:-}" ]] && probe 127.0.0.1 6379; then
  export ATRIUM_TEST_REDIS_URL="redis://127.0.0.1:6379/15"
fi
echo "test: postgres=${ATRIUM_TEST_POSTGRES_URL:-none} redis=${ATRIUM_TEST_REDIS_URL:-none}"
"$VENV/bin/ruff" check . || exit 1
# Three workers (pytest-xdist), a test file each at a time: most of the suite waits on served apps, the browser
# and the model, so three files side by side keep two cores busier than two did (1,714 tests: 19.9 min, where
# two workers took 21 min for 1,598). ATRIUM_TEST_WORKERS=0 runs it in one process.
# The files go out slowest first (tests/file_order.py, by tests/file_seconds.tsv), not in xdist's own order (most
# tests first), which left the browser files, a few minute-long tests each, for the end: --no-loadscope-reorder
# keeps that order. Refresh the table now and then:
#   bash scripts/test.sh --durations=0 | .venv/bin/python scripts/file_seconds.py
workers="${ATRIUM_TEST_WORKERS:-3}"
dist=()
[[ "$workers" != "0" ]] && dist=(-n "$workers" --dist loadfile --no-loadscope-reorder)
# Temp files (every test's data dir, served apps' databases, Chromium's profiles) on tmpfs when the machine has one:
# each in-process app migrates a fresh SQLite database, and its commits' fsyncs on this disk took ~1 s of a 2-3 s
# app build under load. Still real SQLite; only the disk under it is memory. TMPDIR set by the caller wins.
tmp_made=""
if [[ -z "${TMPDIR:-}" && -d /dev/shm && -w /dev/shm ]] && tmp_made=$(mktemp -d /dev/shm/atrium-tests.XXXXXX); then
  export TMPDIR="$tmp_made"
fi
"$VENV/bin/python" -m pytest -ra "${dist[@]}" "$@"
rc=$?
if [[ -n "$tmp_made" ]]; then  # kept when something failed: its served apps' logs say why
  if (( rc == 0 )); then rm -rf "$tmp_made"; else echo "test: temp files kept for the failures in $tmp_made"; fi
fi
exit $rc
