#!/usr/bin/env bash
# Installs PostgreSQL (Debian's `postgresql` package) when its server binaries are missing:
# tests/e2e/test_hasura_migrations.py starts a throw-away cluster on 127.0.0.1 (tests/support/postgres.py) to apply
# hasura/migrations for real. The tests run initdb and postgres as the package's `postgres` user when run as root.
# Idempotent, and quiet unless the install fails (then apt's output is shown).
set -euo pipefail
have_server() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ] && [ -x "$dir/psql" ]; then
      return 0
    fi
  done
  return 1
}
if have_server && id -u postgres >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
fi
output="$(mktemp)"
trap 'rm -f "$output"' EXIT
if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
    --no-install-recommends postgresql; } >"$output" 2>&1; then
  cat "$output" >&2
  echo "postgres.sh: could not install postgresql" >&2
  exit 1
fi
# The package may create and start a `main` cluster; the tests run their own server, so stop it.
if command -v service >/dev/null 2>&1; then
  $SUDO service postgresql stop >/dev/null 2>&1 || true
fi
have_server
