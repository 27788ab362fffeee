#!/usr/bin/env bash
# Installs redis-server (Debian's package) when it is missing: tests/e2e/test_ratelimit_redis.py
# starts a throw-away server on 127.0.0.1 to prove that gateway replicas share one rate limit.
# Idempotent, and quiet unless the install fails (then apt's output is shown).
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
fi
output="$(mktemp)"
trap 'rm -f "$output"' EXIT
if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
    --no-install-recommends redis-server; } >"$output" 2>&1; then
  cat "$output" >&2
  echo "redis.sh: could not install redis-server" >&2
  exit 1
fi
# The package may start a system service; the tests run their own server, so stop it.
if command -v service >/dev/null 2>&1; then
  $SUDO service redis-server stop >/dev/null 2>&1 || true
fi
command -v redis-server >/dev/null
