"""``clerk-gateway inspect`` as an operator runs it while setting up: no settings at all, then full ones.

Each run is a subprocess with a scrubbed environment (no ``CLERK_*``/``GATEWAY_*`` variable) in an
empty directory (no ``.env``), so what the test sees is what a fresh shell sees.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Mint
from tests.support.gateway_process import gateway_env, hasura_backend
from tests.support.jwks_server import JwksServer

SRC = str(Path(__file__).resolve().parents[2] / "src")
DEV_ISSUER = "http://127.0.0.1:8001"


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CLERK_", "GATEWAY_"))}
    base.update(env or {})
    base["PYTHONPATH"] = SRC
    return subprocess.run([sys.executable, "-m", "clerk_gateway", *args], env=base, cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("inspect")


@pytest.fixture(scope="module")
def dev_token(workdir: Path) -> Any:
    """``dev_token("--lifetime=60")`` → a token minted by ``clerk-gateway token`` with one development key."""

    def _mint(*args: str) -> str:
        minted = run_cli("token", "--key-file", str(workdir / "dev-key.pem"), *args, cwd=workdir)
        assert minted.returncode == 0, minted.stderr
        return minted.stdout.strip()

    return _mint


def assert_no_secret(result: subprocess.CompletedProcess[str], token: str) -> None:
    output = result.stdout + result.stderr
    assert token not in output
    assert token.rsplit(".", 1)[1] not in output, "the signature must never be printed"
    assert "Traceback" not in output


def test_without_settings_a_session_token_is_decoded_and_the_missing_settings_named(
        dev_token: Any, workdir: Path) -> None:
    token = dev_token("--sub", "user_setup", "--azp", "http://localhost:3000")
    result = run_cli("inspect", token, cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.startswith("token: session token (Clerk session token v2)\n")
    for line in ("  sub: user_setup", "  azp: http://localhost:3000", "  v: 2",
                 "  cat: cl_B7d4PD111AAA (session token)", '  "iss": "http://127.0.0.1:8001"',
                 "[ok] token format:", "[ok] header policy:", "[ok] validity period:",
                 "[ok] session status: not pending", "[ok] token kind: session token"):
        assert line in out, out
    assert "  sid: sess_dev_" in out
    exp = next(line for line in out.splitlines() if line.startswith("  exp: "))
    assert " UTC, " in exp and " local " in exp and "expires in 59 min" in exp
    not_run = {line.split(":", 1)[0]: line for line in out.splitlines() if line.startswith("[not run]")}
    assert set(not_run) == {"[not run] signing key", "[not run] algorithm", "[not run] signature",
                            "[not run] issuer", "[not run] authorized party", "[not run] backend token kinds"}
    assert "CLERK_PUBLISHABLE_KEY" in not_run["[not run] signature"]
    assert "CLERK_JWT_KEY" in not_run["[not run] signature"]
    assert "CLERK_ISSUER" in not_run["[not run] issuer"]
    assert "CLERK_AUTHORIZED_PARTIES" in not_run["[not run] authorized party"]
    assert "GATEWAY_BACKENDS" in not_run["[not run] backend token kinds"]
    assert "GATEWAY_BACKENDS: no backend configured" in out  # the settings problems, as a note
    assert out.strip().splitlines()[-1].startswith("no check failed")
    assert_no_secret(result, token)


def test_without_settings_an_expired_token_fails(dev_token: Any, workdir: Path) -> None:
    token = dev_token("--lifetime=-100")
    result = run_cli("inspect", token, cwd=workdir)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "[FAIL] validity period: the token has expired" in result.stdout
    assert re.search(r"\(expired 1 min 4\d s ago\)", result.stdout), result.stdout
    assert result.stdout.strip().splitlines()[-1] == "rejected: 1 check(s) failed"
    assert_no_secret(result, token)


def test_without_settings_a_pending_session_with_an_organization(mint: Mint, workdir: Path) -> None:
    token = mint(sts="pending", o={"id": "org_1", "slg": "acme", "rol": "admin", "per": "read,manage"})
    result = run_cli("inspect", token, cwd=workdir)
    assert result.returncode == 1
    assert "[FAIL] session status: the session is pending" in result.stdout
    assert "  org: id org_1, slug acme, role admin, permissions read, manage" in result.stdout
    assert "  sts: pending" in result.stdout
    assert_no_secret(result, token)


@pytest.mark.parametrize(("garbage", "reason"), [
    ("garbage", "the token is not a JWT (expected three dot-separated parts)"),
    ("a.b", "the token is not a JWT (expected three dot-separated parts)"),
    ("eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln", "the token payload is not valid UTF-8 JSON"),
    ("a.b.c.d.e", "encrypted tokens (JWE) are not accepted"),
])
def test_a_token_that_cannot_be_decoded_is_one_clear_line(garbage: str, reason: str, workdir: Path) -> None:
    result = run_cli("inspect", garbage, cwd=workdir)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"clerk-gateway inspect: the token cannot be decoded: {reason}")
    assert "Traceback" not in result.stderr


def test_json_output_for_scripts(dev_token: Any, workdir: Path) -> None:
    token = dev_token("--sub", "user_json")
    result = run_cli("inspect", "--json", token, cwd=workdir)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"header", "claims", "kind", "times", "checks", "settings_problems", "accepted"} <= set(data)
    assert data["kind"] == "session" and data["accepted"] is None and data["configured"] is False
    assert data["header"]["alg"] == "RS256" and data["claims"]["sub"] == "user_json"
    assert 3500 < data["times"]["exp"]["seconds_left"] <= 3600
    assert set(data["times"]["exp"]) == {"unix", "utc", "local", "seconds_left"}
    assert set(data["times"]["iat"]) == {"unix", "utc", "local"}
    statuses = {check["name"]: check for check in data["checks"]}
    assert statuses["validity period"]["status"] == "passed"
    assert statuses["signature"]["status"] == "not-run" and "CLERK_JWKS_URL" in statuses["signature"]["setting"]
    assert statuses["backend token kinds"]["setting"] == "GATEWAY_BACKENDS"
    assert any(problem["variable"] == "GATEWAY_BACKENDS" for problem in data["settings_problems"])
    assert_no_secret(result, token)

    expired = run_cli("inspect", "--json", dev_token("--lifetime=-10"), cwd=workdir)
    assert expired.returncode == 1
    data = json.loads(expired.stdout)
    assert data["accepted"] is False and data["times"]["exp"]["seconds_left"] < 0

    broken = run_cli("inspect", "--json", "garbage", cwd=workdir)
    assert broken.returncode == 1
    data = json.loads(broken.stdout)
    assert data["header"] is None and data["accepted"] is False and "three" in data["error"]


def test_the_token_can_come_from_standard_input(dev_token: Any, workdir: Path) -> None:
    token = dev_token()
    result = run_cli("inspect", "-", cwd=workdir, stdin=f"Bearer {token}\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "token: session token" in result.stdout
    assert_no_secret(result, token)
    assert run_cli("inspect", "-", cwd=workdir, stdin="").returncode == 1


def test_the_help_documents_the_exit_status(workdir: Path) -> None:
    result = run_cli("inspect", "--help", cwd=workdir)
    assert result.returncode == 0
    assert "incomplete settings:  0 every check that could run passed, 1 one of them failed" in result.stdout
    assert "--json" in result.stdout


def test_with_settings_from_a_jwks_server_it_verifies_as_before(jwks_server: JwksServer, mint: Mint,
                                                                 workdir: Path) -> None:
    env = gateway_env(jwks_server.url, {"hasura": hasura_backend("http://127.0.0.1:9")})
    token = mint()
    good = run_cli("inspect", token, env=env, cwd=workdir)
    assert good.returncode == 0, good.stdout + good.stderr
    lines = good.stdout.strip().splitlines()
    assert lines[-2] == "accepted"
    assert lines[-1] == "backends and the token kinds they accept: {'hasura': ['session']}"
    assert "[ok] signature: valid RS256 signature" in good.stdout
    assert "token: session token (Clerk session token v2)" in good.stdout
    assert_no_secret(good, token)
    data = json.loads(run_cli("inspect", "--json", token, env=env, cwd=workdir).stdout)
    assert data["accepted"] is True and data["configured"] is True and data["settings_problems"] == []
    assert {check["status"] for check in data["checks"]} == {"passed"}
    assert data["backends"] == {"hasura": {"token_kinds": ["session"], "accepts_token": True}}


def test_with_a_static_key_it_verifies_the_minted_token(dev_token: Any, workdir: Path) -> None:
    pem = run_cli("token", "--public-pem", "--key-file", str(workdir / "dev-key.pem"), cwd=workdir).stdout
    env = {"CLERK_JWT_KEY": pem, "CLERK_ISSUER": DEV_ISSUER,
           "GATEWAY_BACKENDS": '{"hasura": {"url": "http://127.0.0.1:9"}}'}
    token = dev_token()
    result = run_cli("inspect", token, env=env, cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-2] == "accepted"
    assert "  sub: user_dev" in result.stdout and "[ok] signature: valid RS256 signature" in result.stdout
    assert_no_secret(result, token)
    expired = run_cli("inspect", dev_token("--lifetime=-100"), env=env, cwd=workdir)
    assert expired.returncode == 1
    assert "[FAIL] validity period: the token has expired" in expired.stdout
    assert expired.stdout.strip().splitlines()[-1] == "rejected"
