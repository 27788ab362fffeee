#!/usr/bin/env bash
# Installs the npm packages of the Node test helpers when they are missing (versions pinned by each
# folder's package-lock.json):
# - tests/e2e/graphql_upstream (graphql-http, graphql): tests/e2e/test_graphql_http_audit.py runs
#   graphql-http's reference server and its audit with them;
# - tests/e2e/ws_client (graphql-ws, ws, graphql): tests/e2e/test_websocket_npm.py subscribes through
#   the gateway with the graphql-ws client;
# - tests/e2e/frontend_fixture (@apollo/client, the Apollo manifest generator, GraphQL Codegen, graphql):
#   tests/e2e/test_documents_npm.py generates the trusted-documents manifests and drives the gateway
#   with Apollo Client's persisted-queries link.
# Node and npm themselves are not installed here; without `node` those tests skip.
# Idempotent, and quiet unless the install fails (then npm's output is shown).
set -euo pipefail
cd "$(dirname "$0")/../../tests/e2e"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node.sh: node/npm not found; the graphql-http audit and graphql-ws client tests will be skipped" >&2
  exit 0
fi

# npm_ci DIR PACKAGE...: `npm ci` in DIR unless every PACKAGE is installed from the current lock file.
npm_ci() {
  local dir="$1" package missing=0
  shift
  for package in "$@"; do
    [ -f "$dir/node_modules/$package/package.json" ] || missing=1
  done
  if [ "$missing" -eq 0 ] && [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
    return 0
  fi
  local output
  output="$(mktemp)"
  if ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >"$output" 2>&1; then
    cat "$output" >&2
    rm -f "$output"
    echo "node.sh: npm ci failed in tests/e2e/$dir" >&2
    exit 1
  fi
  rm -f "$output"
}

npm_ci graphql_upstream graphql-http graphql
npm_ci ws_client graphql-ws ws graphql
npm_ci frontend_fixture graphql @apollo/client @apollo/persisted-query-lists \
  @apollo/generate-persisted-query-manifest @graphql-codegen/cli @graphql-codegen/client-preset
