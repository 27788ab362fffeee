#!/usr/bin/env bash
# Installs the npm packages of the GraphQL-over-HTTP audit (graphql-http, graphql; versions pinned by
# tests/e2e/graphql_upstream/package-lock.json) when they are missing:
# tests/e2e/test_graphql_http_audit.py runs graphql-http's reference server and its audit with them.
# Node and npm themselves are not installed here; without `node` that test skips.
# Idempotent, and quiet unless the install fails (then npm's output is shown).
set -euo pipefail
cd "$(dirname "$0")/../../tests/e2e/graphql_upstream"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node.sh: node/npm not found; the graphql-http audit test will be skipped" >&2
  exit 0
fi
if [ -f node_modules/graphql-http/package.json ] && [ -f node_modules/graphql/package.json ] \
    && [ node_modules/.package-lock.json -nt package-lock.json ]; then
  exit 0
fi
output="$(mktemp)"
trap 'rm -f "$output"' EXIT
if ! npm ci --no-audit --no-fund --loglevel=error >"$output" 2>&1; then
  cat "$output" >&2
  echo "node.sh: npm ci failed in tests/e2e/graphql_upstream" >&2
  exit 1
fi
