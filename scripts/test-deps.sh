#!/usr/bin/env bash
# Things only the tests need: the real OpenID provider and axe-core (npm), Chromium for browser tests and nginx (Debian).
set -uo pipefail
cd "$(dirname "$0")/.."

if command -v npm >/dev/null 2>&1 && [[ -f tests/oidc/package.json ]]; then
  if [[ ! -d tests/oidc/node_modules ]] || [[ tests/oidc/package-lock.json -nt tests/oidc/node_modules ]]; then
    echo "test-deps: npm ci (oidc-provider, axe-core)"
    npm ci --prefix tests/oidc --no-audit --no-fund --loglevel=error && touch tests/oidc/node_modules
  fi
else
  echo "test-deps: npm missing: the OpenID provider tests will be skipped" >&2
fi

# Debian packages: Chromium (browser tests) and nginx (the local topology's load balancer, tests/test_topology.py,
# and the check of the rendered nginx routing). Missing ones are installed as root; otherwise those tests fail or
# skip, saying why.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
if (( ${#missing[@]} )); then
  if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
    echo "test-deps: apt-get install ${missing[*]}"
    apt-get update -qq || echo "test-deps: apt-get update failed" >&2
    for package in "${missing[@]}"; do  # one at a time: one that fails does not keep the other out
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null \
        || echo "test-deps: $package could not be installed: the tests that need it will say so" >&2
    done
  else
    echo "test-deps: ${missing[*]} missing and not root: the tests that need them will say so" >&2
  fi
fi
exit 0
