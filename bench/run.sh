#!/usr/bin/env bash
# The benchmark's entry point: make sure the tools exist, then hand over to bench/bench.py.
#
# Kept thin on purpose: all the measuring lives in bench.py (Python, testable, one place); this
# script only does what Python cannot do well by itself — install system packages and the venv.
#
#   bash bench/run.sh                       # full run (15 s per target, 5 min memory run)
#   bash bench/run.sh --quick               # a short smoke run
#   bash bench/run.sh --only gateway,direct --workers 1 --memory-minutes 0
#   bash bench/run.sh --help                # every flag
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
work="$here/.work"
mkdir -p "$work"

# `bash bench/run.sh --ws-scale [flags]`: the WebSocket scale check (bench/ws_scale.py) instead of the
# HTTP benchmark. It needs only the project venv (no nginx, no wrk) and stops what it starts itself.
if [ "${1:-}" = "--ws-scale" ]; then
  shift
  py="$root/.venv/bin/python"
  if [ ! -x "$py" ]; then "${PYTHON:-python3}" -m venv "$root/.venv"; fi
  if ! "$py" -c 'import clerk_gateway, websockets, cryptography' >/dev/null 2>&1; then
    (cd "$root" && "$py" -m pip install -q -e '.[dev]')
  fi
  exec "$py" "$here/ws_scale.py" "$@"
fi

if [ "$(id -u)" -eq 0 ]; then sudo_cmd=(); else sudo_cmd=(sudo); fi

# Which targets were asked for: the Node peer only needs node/npm when it is one of them.
only=""
prev=""
for arg in "$@"; do
  case "$arg" in
    --only=*) only="${arg#--only=}" ;;
  esac
  if [ "$prev" = "--only" ]; then only="$arg"; fi
  prev="$arg"
done

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

missing=()
have nginx || missing+=(nginx)
have wrk || missing+=(wrk)
if { [ -z "$only" ] || [[ ",$only," == *",node,"* ]]; } && ! have node; then
  missing+=(nodejs npm)
fi

if [ "${#missing[@]}" -gt 0 ]; then
  echo "bench: installing ${missing[*]} with apt-get" >&2
  # Debian's nginx package starts a daemon on port 80 when installed; the benchmark starts its
  # own nginx, so a temporary policy-rc.d keeps the packaged service from starting at all.
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | ${sudo_cmd[@]+"${sudo_cmd[@]}"} tee "$policy" >/dev/null
    ${sudo_cmd[@]+"${sudo_cmd[@]}"} chmod 755 "$policy"
    made_policy=1
  fi
  cleanup_policy() { if [ "$made_policy" = 1 ]; then ${sudo_cmd[@]+"${sudo_cmd[@]}"} rm -f "$policy"; fi; }
  trap cleanup_policy EXIT
  ${sudo_cmd[@]+"${sudo_cmd[@]}"} apt-get update
  ${sudo_cmd[@]+"${sudo_cmd[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  cleanup_policy
  made_policy=0
  trap - EXIT
fi

# The project venv: the gateway and the naive peer run from it, and so does bench.py.
py="$root/.venv/bin/python"
if [ ! -x "$py" ]; then
  "${PYTHON:-python3}" -m venv "$root/.venv"
fi
if ! "$py" -c 'import clerk_gateway, jose, fastapi, httpx, uvicorn, cryptography' >/dev/null 2>&1; then
  "$py" -m pip install -q --upgrade pip
  (cd "$root" && "$py" -m pip install -q -e '.[dev]')
fi

# bench.py stops everything it started by itself (also on SIGINT/SIGTERM). It writes the process
# group of each thing it starts to $work/pids; this trap is the second line of defence for the
# case where bench.py itself is killed hard, and ends exactly those groups, nothing else.
pids_file="$work/pids"
rm -f "$pids_file"
stop_leftovers() {
  if [ -f "$pids_file" ]; then
    while read -r pgid; do
      [ -n "$pgid" ] && kill -TERM -- "-$pgid" 2>/dev/null || true
    done <"$pids_file"
    rm -f "$pids_file"
  fi
}
trap stop_leftovers EXIT

# bench.py runs in the background so that a SIGINT/SIGTERM reaching this shell is handled at once
# (bash defers traps while a foreground child runs): it is passed on as SIGTERM, bench.py stops
# its targets and exits, and the EXIT trap above sweeps whatever is left.
"$py" "$here/bench.py" --pids-file "$pids_file" "$@" &
bench_pid=$!
forward() { kill -TERM "$bench_pid" 2>/dev/null || true; }
trap 'forward' INT TERM
status=0
wait "$bench_pid" || status=$?
# A trapped signal interrupts the first wait; wait again so bench.py can finish its cleanup.
if kill -0 "$bench_pid" 2>/dev/null; then wait "$bench_pid" || status=$?; fi
exit "$status"
