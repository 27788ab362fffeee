"""The command line as an operator uses it: serve's start-up errors, check, token, inspect."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import Mint
from tests.support.gateway_process import gateway_env, hasura_backend
from tests.support.jwks_server import JwksServer
from tests.support.ports import free_port
from tests.support.processes import stop_process
from tests.support.upstream import RecordingUpstream

SRC = str(Path(__file__).resolve().parents[2] / "src")


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CLERK_", "GATEWAY_"))}
    base.update(env or {})
    base["PYTHONPATH"] = SRC
    return subprocess.run([sys.executable, "-m", "clerk_gateway", *args], env=base, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_serve_refuses_bad_settings_with_one_line_per_problem(tmp_path: Path) -> None:
    result = run_cli("serve", env={"CLERK_CLOCK_SKEW_SECONDS": "soon", "GATEWAY_PORT": "-1",
                                   "CLERK_SECRET_KEY": "sk_test_do-not-print-me"}, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    named = {line.strip().split(":", 1)[0] for line in lines[1:]}
    assert {"CLERK_CLOCK_SKEW_SECONDS", "GATEWAY_PORT", "GATEWAY_BACKENDS"} <= named
    assert "Traceback" not in result.stderr
    assert "do-not-print-me" not in result.stderr + result.stdout


def test_check_passes_when_keys_and_backend_answer(jwks_server: JwksServer, upstream: RecordingUpstream,
                                                   tmp_path: Path) -> None:
    env = gateway_env(jwks_server.url, {"hasura": hasura_backend(upstream.url)})
    result = run_cli("check", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[ok] keys (jwks): 1 usable key(s)" in result.stdout
    assert "[ok] backend hasura" in result.stdout


def test_check_fails_when_backend_is_down(jwks_server: JwksServer, tmp_path: Path) -> None:
    env = gateway_env(jwks_server.url, {"hasura": hasura_backend(f"http://127.0.0.1:{free_port()}")})
    result = run_cli("check", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "[FAIL] backend hasura" in result.stdout


def test_inspect_explains_acceptance_and_rejection(jwks_server: JwksServer, mint: Mint, tmp_path: Path) -> None:
    env = gateway_env(jwks_server.url, {"hasura": hasura_backend("http://127.0.0.1:9")})
    good = run_cli("inspect", mint(), env=env, cwd=tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.strip().splitlines()[-2] == "accepted"
    expired = mint(now=1_600_000_000)
    bad = run_cli("inspect", expired, env=env, cwd=tmp_path)
    assert bad.returncode == 1
    assert "rejected" in bad.stdout and "FAIL" in bad.stdout
    assert expired not in bad.stdout


def test_token_command_mints_a_token_the_gateway_accepts(tmp_path: Path) -> None:
    minted = run_cli("token", "--sub", "user_cli", "--key-file", str(tmp_path / "k.pem"), cwd=tmp_path)
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    pem = run_cli("token", "--public-pem", "--key-file", str(tmp_path / "k.pem"), cwd=tmp_path).stdout
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    env = {"CLERK_JWT_KEY": pem, "CLERK_ISSUER": "http://127.0.0.1:8001",
           "GATEWAY_BACKENDS": '{"hasura": {"url": "http://127.0.0.1:9"}}'}
    explained = run_cli("inspect", token, env=env, cwd=tmp_path)
    assert explained.returncode == 0, explained.stdout + explained.stderr


def test_demo_prints_a_token_that_works_through_its_gateway(tmp_path: Path) -> None:
    """The README's first command: the demo must serve, and its printed token and curl line must work."""
    import re
    import time

    import httpx

    port, backend_port = free_port(), free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CLERK_", "GATEWAY_"))}
    base["PYTHONPATH"] = SRC
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "clerk_gateway", "demo", "--port", str(port),
                                    "--backend-port", str(backend_port)], env=base, cwd=tmp_path,
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        ready = False
        while time.monotonic() < deadline and process.poll() is None:
            try:
                ready = httpx.get(f"{url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                ready = False
            if ready:
                break
            time.sleep(0.1)
        text = log.read_text()
        assert ready, text
        token = re.search(r"^(eyJ[\w-]+\.[\w-]+\.[\w-]+)$", text, re.M)
        assert token is not None, text
        assert f"curl -s {url}/demo/v1/graphql" in text
        answer = httpx.post(f"{url}/demo/v1/graphql", json={"query": "{ me { id } }"},
                            headers={"Authorization": f"Bearer {token.group(1)}"})
        assert answer.status_code == 200
        assert answer.json()["data"]["identity"] == {"x-hasura-role": "user", "x-hasura-user-id": "user_demo"}
        assert httpx.post(f"{url}/demo/v1/graphql", json={}).status_code == 401
    finally:
        stop_process(process, 10)
