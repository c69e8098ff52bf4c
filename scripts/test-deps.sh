#!/usr/bin/env bash
# Things only the tests need: the real OpenID provider (npm) and Chromium for browser tests (Debian).
set -uo pipefail
cd "$(dirname "$0")/.."

if command -v npm >/dev/null 2>&1 && [[ -f tests/oidc/package.json ]]; then
  if [[ ! -d tests/oidc/node_modules ]] || [[ tests/oidc/package-lock.json -nt tests/oidc/node_modules ]]; then
    echo "test-deps: npm ci (oidc-provider)"
    npm ci --prefix tests/oidc --no-audit --no-fund --loglevel=error && touch tests/oidc/node_modules
  fi
else
  echo "test-deps: npm missing: the OpenID provider tests will be skipped" >&2
fi

if ! command -v chromium >/dev/null 2>&1; then
  if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
    echo "test-deps: apt-get install chromium"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "test-deps: chromium could not be installed: browser tests will be skipped" >&2
  else
    echo "test-deps: chromium missing and not root: browser tests will be skipped" >&2
  fi
fi
exit 0
