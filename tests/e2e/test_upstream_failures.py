"""When Hasura is down or slow the client gets a 502/504 in the GraphQL error shape; whatever
Hasura itself answers (errors included) passes through unchanged."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import Mint, bearer, graphql_error
from tests.support.gateway_process import GatewayProcess, gateway_env, hasura_backend
from tests.support.jwks_server import JwksServer
from tests.support.ports import free_port
from tests.support.upstream import RecordingUpstream

TIMEOUT_SECONDS = 1


@pytest.fixture(scope="module", params=["http1", "httpx"])
def gateway(request: pytest.FixtureRequest, jwks_server: JwksServer,
            upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    """Both upstream clients the gateway can use on the hot path must map failures the same way."""
    closed = f"http://127.0.0.1:{free_port()}"
    backends = {
        "hasura": hasura_backend(upstream.url, timeout_seconds=TIMEOUT_SECONDS),
        "down": hasura_backend(closed, timeout_seconds=TIMEOUT_SECONDS),
    }
    env = gateway_env(jwks_server.url, backends, GATEWAY_UPSTREAM_CLIENT=request.param)
    with GatewayProcess(env) as process:
        yield process


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with gateway.client(timeout=30.0) as client:
        yield client


def test_closed_upstream_port_is_502(client: httpx.Client, mint: Mint) -> None:
    response = client.post("/down/v1/graphql", json={"query": "{ a }"},
                           headers={**bearer(mint()), "X-Request-ID": "req-502"})

    graphql_error(response, 502)
    assert response.headers["x-request-id"] == "req-502"


def test_upstream_dropping_the_connection_is_502(client: httpx.Client, upstream: RecordingUpstream,
                                                 mint: Mint) -> None:
    response = client.post("/hasura/v1/graphql", json={"query": "{ a }"},
                           headers={**bearer(mint()), "x-test-mode": "abort"})

    graphql_error(response, 502)
    assert len(upstream.requests) == 1


def test_upstream_slower_than_the_timeout_is_504(client: httpx.Client, upstream: RecordingUpstream,
                                                 mint: Mint) -> None:
    gate = upstream.gate("slow-504")
    response = client.post("/hasura/v1/graphql", json={"query": "{ a }"},
                           headers={**bearer(mint()), "x-test-mode": "hang", "x-test-gate": "slow-504"})

    graphql_error(response, 504)
    assert gate.disconnected.wait(10), "the gateway kept its upstream request open after timing out"


def test_upstream_errors_pass_through_unchanged(client: httpx.Client, mint: Mint) -> None:
    response = client.post("/hasura/v1/graphql", json={"query": "{ a }"},
                           headers={**bearer(mint()), "x-test-status": "500"})

    assert response.status_code == 500
    assert response.json()["data"]["echo"]["path"] == "/v1/graphql"
