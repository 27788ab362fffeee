"""Clerk's JWKS endpoint failing must not take the gateway down with it: loaded keys keep serving;
a gateway that starts during an outage is alive but not ready, answers 503 rather than 401, and
recovers on its own when the keys come back."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Mint, bearer, graphql_error
from tests.support.gateway_process import GatewayProcess, gateway_env, hasura_backend
from tests.support.jwks_server import FailureMode, JwksServer
from tests.support.tokens import SigningKey
from tests.support.upstream import RecordingUpstream

GRAPHQL = "/hasura/v1/graphql"
RECOVERY_DEADLINE_SECONDS = 45.0  # the gateway's retry backoff, not a speed requirement


@pytest.fixture(scope="module")
def warm(jwks_server: JwksServer, upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    with GatewayProcess(gateway_env(jwks_server.url, {"hasura": hasura_backend(upstream.url)})) as process:
        yield process


@pytest.fixture(scope="module")
def cold_jwks(signing_key: SigningKey) -> Iterator[JwksServer]:
    with JwksServer(signing_key) as server:
        server.fail("refused")  # the port stays reserved for the gateway's CLERK_JWKS_URL
        yield server


@pytest.fixture(scope="module")
def cold(cold_jwks: JwksServer, upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    with GatewayProcess(gateway_env(cold_jwks.url, {"hasura": hasura_backend(upstream.url)})) as process:
        yield process


@pytest.mark.parametrize("mode", ["error", "garbage", "reset", "refused"])
def test_loaded_keys_keep_serving_during_an_outage(warm: GatewayProcess, jwks_server: JwksServer,
                                                   upstream: RecordingUpstream, mint: Mint,
                                                   mode: FailureMode) -> None:
    with warm.client() as client:
        assert client.post(GRAPHQL, json={"query": "{ a }"}, headers=bearer(mint())).status_code == 200
        jwks_server.fail(mode)
        try:
            before = jwks_server.fetch_count
            # An unknown kid forces a refetch (cool-down 0), which fails: it cannot be accepted...
            unknown = client.post(GRAPHQL, json={"query": "{ a }"},
                                  headers=bearer(mint(key=SigningKey.rsa("ins_unknown_in_outage"))))
            assert unknown.status_code in (401, 503), unknown.text
            if mode != "refused":
                assert jwks_server.fetch_count > before, "the unknown kid did not make the gateway refetch"
            # ...and the failed refetch must not have thrown away the keys already loaded.
            fresh = client.post(GRAPHQL, json={"query": "{ a }"}, headers=bearer(mint(sub="user_in_outage")))
            assert fresh.status_code == 200, fresh.text
            assert upstream.requests[-1].header("x-hasura-user-id") == "user_in_outage"
            assert client.get("/readyz").status_code == 200
        finally:
            jwks_server.recover()


def test_gateway_started_during_an_outage_recovers(cold: GatewayProcess, cold_jwks: JwksServer,
                                                   upstream: RecordingUpstream, mint: Mint) -> None:
    with cold.client() as client:
        assert client.get("/healthz").status_code == 200
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.text

        token = mint(sub="user_after_outage")
        refused = client.post(GRAPHQL, json={"query": "{ a }"}, headers=bearer(token))
        graphql_error(refused, 503)
        assert token not in refused.text
        assert upstream.requests == []

        cold_jwks.recover()
        deadline = time.monotonic() + RECOVERY_DEADLINE_SECONDS
        ready = client.get("/readyz")
        while ready.status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
            ready = client.get("/readyz")
        assert ready.status_code == 200, f"not ready {RECOVERY_DEADLINE_SECONDS:.0f} s after the JWKS came back: " \
            f"{ready.text}"

        accepted = client.post(GRAPHQL, json={"query": "{ a }"}, headers=bearer(token))
        assert accepted.status_code == 200, accepted.text
        assert upstream.last().header("x-hasura-user-id") == "user_after_outage"
    assert cold.running

