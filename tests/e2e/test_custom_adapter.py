"""Adapters of your own: a package installed with pip is found through its entry point and serves
traffic through the running gateway; a broken entry point stops start-up with one line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Mint, bearer
from tests.support.gateway_process import GatewayProcess, gateway_env
from tests.support.jwks_server import JwksServer
from tests.support.upstream import RecordingUpstream

EXAMPLE = Path(__file__).resolve().parents[1] / "example_adapter"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install`` of the example package into a folder of its own (the test venv stays as it was)."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(EXAMPLE)], check=True, cwd=build, timeout=300,
                   env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert any(path.name.startswith("clerk_gateway_example_adapter-") for path in target.iterdir())
    return target


def _with_path(env: dict[str, str], folder: Path) -> dict[str, str]:
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH", "")]))
    return env


@pytest.fixture(scope="module")
def gateway(installed: Path, jwks_server: JwksServer, upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    env = _with_path(gateway_env(jwks_server.url, {"users": {"adapter": "userapi", "url": upstream.url}}), installed)
    with GatewayProcess(env) as process:
        yield process


def test_the_installed_adapter_routes_traffic_with_its_identity(gateway: GatewayProcess, upstream: RecordingUpstream,
                                                                mint: Mint) -> None:
    with gateway.client() as client:
        response = client.get("/users/api/me", headers={**bearer(mint(sub="user_plugin", o={"id": "org_9"})),
                                                          "x-user-id": "spoofed"})
    assert response.status_code == 200, response.text
    (seen,) = upstream.requests
    assert seen.path == "/api/me"
    assert seen.header("x-user-id") == "user_plugin" and seen.header("x-user-org") == "org_9"
    assert not seen.has_header("authorization")


def test_its_refusals_use_its_own_error_shape(gateway: GatewayProcess, upstream: RecordingUpstream) -> None:
    with gateway.client() as client:
        missing = client.get("/users/api/me")
        outside = client.get("/users/admin", headers={"authorization": "Bearer x"})
    assert missing.status_code == 401 and missing.json()["ok"] is False and "www-authenticate" in missing.headers
    assert outside.status_code == 404 and outside.json()["error"] == "not-found"
    assert upstream.requests == []


def test_a_broken_entry_point_stops_start_up_with_one_line(jwks_server: JwksServer, tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = site / "broken_adapter-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-adapter\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[clerk_gateway.adapters]\nbroken = no_such_module_anywhere:Adapter\n")
    env = _with_path(gateway_env(jwks_server.url, {"hasura": {"url": "http://127.0.0.1:9", "auth_mode": "forward"}}),
                     site)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("CLERK_", "GATEWAY_"))}, **env}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2] / "src"), str(site)])
    result = subprocess.run([sys.executable, "-m", "clerk_gateway", "serve"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if "broken" in line]
    assert len(lines) == 1 and "entry point 'broken' (no_such_module_anywhere:Adapter)" in lines[0]
    assert "ModuleNotFoundError" in lines[0]
