"""The per-address failure limit cannot turn one bad client into an outage for everyone.

Every test client here connects from 127.0.0.1, exactly like every user of a gateway behind a load
balancer or an ingress: one shared peer address. With the default settings a retry storm of bad
tokens must not get anybody a 429, and a valid token must always pass; only when the address can
be trusted (a client-IP header, or the explicit opt-in) does the limit run, and even then it never
refuses a token that verifies.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Mint, bearer
from tests.e2e.test_cli import run_cli
from tests.support.gateway_process import GatewayProcess, gateway_env, hasura_backend
from tests.support.jwks_server import JwksServer
from tests.support.upstream import RecordingUpstream

GRAPHQL = "/hasura/v1/graphql"
HINT_SETTINGS = ("GATEWAY_RATE_LIMIT_CLIENT_IP_HEADER", "GATEWAY_RATE_LIMIT_TRUST_PEER_ADDRESS")


@pytest.fixture(scope="module")
def defaults_env(jwks_server: JwksServer, upstream: RecordingUpstream) -> dict[str, str]:
    return gateway_env(jwks_server.url, {"hasura": hasura_backend(upstream.url)})


@pytest.fixture(scope="module")
def gateway(defaults_env: dict[str, str]) -> Iterator[GatewayProcess]:
    with GatewayProcess(defaults_env) as process:
        yield process


def test_a_retry_storm_behind_one_address_gets_nobody_a_429_by_default(gateway: GatewayProcess,
                                                                      mint: Mint) -> None:
    expired = mint(now=time.time() - 600, lifetime=60)
    with gateway.client() as storm, gateway.client() as neighbour:
        statuses = {storm.post(GRAPHQL, content=b"{}", headers=bearer(expired)).status_code for _ in range(400)}
        assert statuses == {401}  # the default budget is 100: past it, this used to be 429 for everyone
        assert neighbour.post(GRAPHQL, content=b"{}", headers=bearer(mint())).status_code == 200


def test_the_start_up_log_says_how_to_turn_the_limit_on(gateway: GatewayProcess) -> None:
    log = gateway.stderr_text()
    assert "per-address limit on failed authentications is off" in log
    assert all(name in log for name in HINT_SETTINGS)


def test_check_says_how_to_turn_the_limit_on(defaults_env: dict[str, str], tmp_path: Path) -> None:
    result = run_cli("check", env=defaults_env, cwd=tmp_path)
    line = next(line for line in result.stdout.splitlines() if "rate limits:" in line)
    assert line.startswith("[note]") and all(name in line for name in HINT_SETTINGS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_with_the_opt_in_failures_get_429_but_a_valid_token_still_passes(
        jwks_server: JwksServer, upstream: RecordingUpstream, mint: Mint, tmp_path: Path) -> None:
    env = gateway_env(jwks_server.url, {"hasura": hasura_backend(upstream.url)},
                      GATEWAY_RATE_LIMIT_TRUST_PEER_ADDRESS="true", GATEWAY_RATE_LIMIT_AUTH_FAILURES_BURST=5,
                      GATEWAY_RATE_LIMIT_AUTH_FAILURES_RATE=0.01)
    with GatewayProcess(env) as process, process.client() as client:
        statuses = [client.post(GRAPHQL, content=b"{}", headers=bearer("forged.token.here")).status_code
                    for _ in range(8)]
        assert statuses == [401] * 5 + [429] * 3
        assert client.post(GRAPHQL, content=b"{}", headers=bearer(mint())).status_code == 200
        assert "keyed on the connection's peer address" in run_cli("check", env=env, cwd=tmp_path).stdout
