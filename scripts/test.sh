#!/usr/bin/env bash
# Installs the project with its dev extras into .venv and runs linters, type checks and the tests.
# This is the README's test command and what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[dev]'
for tool in scripts/test-tools/*.sh; do
  if [ -e "$tool" ]; then bash "$tool"; fi
done
.venv/bin/ruff check src tests $( [ -d bench ] && echo bench )
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
