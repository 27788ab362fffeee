#!/usr/bin/env bash
# Installs the Kubernetes manifest checkers that tests/unit/test_kubernetes_manifests.py runs:
# - kubernetes-validate (the Kubernetes API's JSON schemas, strict: unknown fields fail),
# - checkov (the policy scanner).
# They live in their own venv, .tools/deploy-checkers/, not in .venv: checkov pins dozens of packages
# (boto3, jsonschema, packaging, ...) that would fight the project's own dependencies.
# Rendering the kustomization needs `kubectl kustomize` (kustomize v5), which comes with this machine's
# kubectl; it is not installed here (no registry reachable from CI ships a current one).
# Idempotent (nothing is installed when both tools are at their pinned versions), and quiet unless the
# install fails (then pip's output is shown).
set -euo pipefail
cd "$(dirname "$0")/../.."
KUBERNETES_VALIDATE_VERSION="1.37.0"
CHECKOV_VERSION="3.3.30"
VENV=".tools/deploy-checkers"
PY="${PYTHON:-python3}"

# installed_versions_match: true when the venv's python runs and reports exactly the pinned versions.
installed_versions_match() {
  [ -x "$VENV/bin/python" ] || return 1
  "$VENV/bin/python" - "$KUBERNETES_VALIDATE_VERSION" "$CHECKOV_VERSION" <<'PYTHON' >/dev/null 2>&1
import sys
from importlib.metadata import PackageNotFoundError, version

try:
    ok = version("kubernetes-validate") == sys.argv[1] and version("checkov") == sys.argv[2]
except PackageNotFoundError:
    ok = False
sys.exit(0 if ok else 1)
PYTHON
}

if ! command -v kubectl >/dev/null 2>&1 || ! kubectl kustomize --help >/dev/null 2>&1; then
  echo "deploy-checkers.sh: no 'kubectl kustomize' on PATH; the Kubernetes render tests will be skipped" >&2
fi
if installed_versions_match; then
  exit 0
fi
output="$(mktemp)"
trap 'rm -f "$output"' EXIT
# A venv whose interpreter no longer runs (the system Python changed) is rebuilt from scratch.
if [ -e "$VENV" ] && ! "$VENV/bin/python" -c "" >/dev/null 2>&1; then
  rm -rf "$VENV"
fi
if ! { { [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"; } \
    && "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
       "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "checkov==$CHECKOV_VERSION"; } >"$output" 2>&1; then
  cat "$output" >&2
  echo "deploy-checkers.sh: could not install kubernetes-validate and checkov into $VENV" >&2
  exit 1
fi
if ! installed_versions_match; then
  echo "deploy-checkers.sh: $VENV does not report kubernetes-validate $KUBERNETES_VALIDATE_VERSION" \
    "and checkov $CHECKOV_VERSION after installing them" >&2
  exit 1
fi
