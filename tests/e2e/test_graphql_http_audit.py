"""GraphQL-over-HTTP conformance through the gateway: graphql-http's own audit (npm ``graphql-http``).

graphql-http's reference server (``graphql_upstream/server.mjs``) stands behind the real gateway,
and the audit (``graphql_upstream/audit.mjs``) runs against ``/graphql`` with a valid token. A
bearer-checking proxy must not cost any conformance: every MUST audit has to pass, as it does
against the server directly (run too, for comparison). SHOULD/MAY results are printed.

The GraphQL limits run at their defaults. One MUST audit (28B9) queries ``__type``, and the
default refuses introspection to every role but ``admin``; so the main run asks for the
``admin`` role, and a second run as the default role checks that introspection refusals are the
only audits it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Mint
from tests.support.gateway_process import GatewayProcess, gateway_env, hasura_backend
from tests.support.jwks_server import JwksServer
from tests.support.ports import LOCALHOST, free_port
from tests.support.processes import stop_process

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_DIR = Path(__file__).resolve().parent / "graphql_upstream"
NODE = shutil.which("node")
INTROSPECTION_REASON = "graphql-introspection-disabled"
DEEP = "{ " + "f { " * 20 + "id" + " }" * 21

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed: the graphql-http audit needs it")

AuditResults = list[dict[str, Any]]


def _node_env() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if name.lower() not in {"http_proxy", "https_proxy", "all_proxy", "node_options"}}
    env["NO_PROXY"] = "*"
    return env


def _ensure_packages() -> None:
    if (UPSTREAM_DIR / "node_modules" / "graphql-http" / "package.json").exists():
        return
    result = subprocess.run(["bash", str(ROOT / "scripts" / "test-tools" / "node.sh")],
                            capture_output=True, text=True, timeout=180, check=False)
    if result.returncode != 0:
        pytest.fail(f"scripts/test-tools/node.sh failed:\n{result.stdout}\n{result.stderr}")


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the reference server exited with {process.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection((LOCALHOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"the reference server did not listen within {timeout:.0f} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def reference_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """graphql-http's handler on 127.0.0.1; yields its base URL (endpoint at ``/v1/graphql``)."""
    assert NODE is not None
    _ensure_packages()
    port = free_port()
    log = tmp_path_factory.mktemp("graphql-upstream") / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen([NODE, "server.mjs", str(port)], cwd=UPSTREAM_DIR, env=_node_env(),
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, process, log)
        yield f"http://{LOCALHOST}:{port}"
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def gateway(jwks_server: JwksServer, reference_server: str) -> Iterator[GatewayProcess]:
    backend = hasura_backend(reference_server, allowed_roles=["user", "admin"])
    env = gateway_env(jwks_server.url, {"hasura": backend}, GATEWAY_DEFAULT_BACKEND="hasura")
    with GatewayProcess(env) as process:
        yield process


def run_audit(url: str, token: str | None = None, headers: dict[str, str] | None = None) -> AuditResults:
    assert NODE is not None
    env = _node_env()
    env.pop("AUDIT_TOKEN", None)
    if token:
        env["AUDIT_TOKEN"] = token
    env["AUDIT_HEADERS"] = json.dumps(headers or {})
    result = subprocess.run([NODE, "audit.mjs", url], cwd=UPSTREAM_DIR, env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, f"audit.mjs failed ({result.returncode}):\n{result.stderr}"
    results: AuditResults = json.loads(result.stdout)
    assert len(results) >= 60, f"expected the full audit, got {len(results)} results"
    return results


def summary(results: AuditResults) -> str:
    counts = Counter((item["level"], item["status"] == "ok") for item in results)
    parts = [f"{level} {counts[(level, True)]}/{counts[(level, True)] + counts[(level, False)]} ok"
             for level in ("MUST", "SHOULD", "MAY")]
    failed = [f"{item['id']}({item['status']})" for item in results if item["status"] != "ok"]
    return ", ".join(parts) + (f"; not ok: {' '.join(failed)}" if failed else "")


def failures(results: AuditResults, level: str | None = None) -> AuditResults:
    return [item for item in results if item["status"] != "ok" and (level is None or item["level"] == level)]


def describe(items: AuditResults) -> str:
    return "\n".join(f"{item['id']} {item['name']}: {item.get('reason')} -> {item.get('response')}"
                     for item in items)


def limits_active(gateway: GatewayProcess, token: str) -> bool:
    """Whether the gateway applies the GraphQL limits (the guard is wired into the runtime)."""
    with gateway.client() as client:
        response = client.post("/graphql", json={"query": DEEP}, headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    errors = response.json().get("errors") or []
    return any(error.get("extensions", {}).get("reason") == "graphql-depth-limit" for error in errors)


def test_graphql_http_audit_through_the_gateway(gateway: GatewayProcess, reference_server: str, mint: Mint,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    token = mint(sub="user_audit", lifetime=300)
    direct = run_audit(f"{reference_server}/v1/graphql")
    as_admin = run_audit(f"{gateway.url}/graphql", token, {"x-hasura-role": "admin"})
    as_user = run_audit(f"{gateway.url}/graphql", token)
    active = limits_active(gateway, token)

    with capsys.disabled():
        print(f"\n[graphql-http audit] upstream directly:            {summary(direct)}")
        print(f"[graphql-http audit] gateway /graphql, role admin:  {summary(as_admin)}")
        print(f"[graphql-http audit] gateway /graphql, role user:   {summary(as_user)}"
              f"{'' if active else '  (GraphQL limits not wired: plain proxy)'}")

    assert not failures(direct, "MUST"), describe(failures(direct))
    assert not failures(as_admin, "MUST"), describe(failures(as_admin, "MUST"))
    # Going through the gateway costs nothing the server itself passes, at any level.
    direct_ok = {item["id"] for item in direct if item["status"] == "ok"}
    lost = [item for item in failures(as_admin) if item["id"] in direct_ok]
    assert not lost, describe(lost)

    # As a role that may not introspect, the only audits lost are the ones that use __type, and
    # the refusal keeps the GraphQL-over-HTTP status rules (BF61: 200 for application/json).
    for item in failures(as_user):
        assert active and INTROSPECTION_REASON in (item.get("response") or {}).get("body", ""), describe([item])
    assert {item["id"] for item in failures(as_user, "MUST")} <= {"28B9"}


def test_limits_answer_by_the_graphql_over_http_rules(gateway: GatewayProcess, mint: Mint) -> None:
    token = mint(sub="user_limits", lifetime=300)
    if not limits_active(gateway, token):
        pytest.skip("the GraphQL limits guard is not wired into the runtime yet")
    headers = {"authorization": f"Bearer {token}"}
    with gateway.client() as client:
        plain = client.post("/graphql", json={"query": DEEP}, headers={**headers, "accept": "application/json"})
        strict = client.post("/graphql", json={"query": DEEP},
                             headers={**headers, "accept": "application/graphql-response+json"})
        typename = client.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
        batch = client.post("/graphql", json=[{"query": "{ hello }"}] * 11, headers=headers)

    assert plain.status_code == 200 and set(plain.json()) == {"errors"}
    assert plain.json()["errors"][0]["extensions"] == {"code": "validation-failed", "reason": "graphql-depth-limit"}
    assert strict.status_code == 400 and set(strict.json()) == {"errors"}
    assert typename.status_code == 200 and typename.json() == {"data": {"__typename": "Query"}}
    assert batch.json()["errors"][0]["extensions"]["reason"] == "graphql-batch-limit"
    assert isinstance(httpx.Headers(plain.headers).get("x-request-id"), str)
