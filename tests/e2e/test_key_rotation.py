"""Clerk rotates its signing key: a token signed with a key published after the gateway started is
accepted on its first request, both without a cool-down and with one (the start-up fetch must not
start the cool-down); the cool-down then limits how often unknown ``kid`` values refetch."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import Mint, bearer
from tests.support.gateway_process import GatewayProcess, gateway_env, hasura_backend
from tests.support.jwks_server import JwksServer
from tests.support.tokens import SigningKey
from tests.support.upstream import RecordingUpstream

GRAPHQL = "/hasura/v1/graphql"


def _start(jwks: JwksServer, upstream: RecordingUpstream, cooldown: int) -> GatewayProcess:
    env = gateway_env(jwks.url, {"hasura": hasura_backend(upstream.url)}, CLERK_JWKS_COOLDOWN_SECONDS=cooldown)
    return GatewayProcess(env).start()


@pytest.fixture(scope="module")
def jwks_no_cooldown(signing_key: SigningKey) -> Iterator[JwksServer]:
    with JwksServer(signing_key) as server:
        yield server


@pytest.fixture(scope="module")
def jwks_with_cooldown(signing_key: SigningKey) -> Iterator[JwksServer]:
    with JwksServer(signing_key) as server:
        yield server


@pytest.fixture(scope="module")
def no_cooldown(jwks_no_cooldown: JwksServer, upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    process = _start(jwks_no_cooldown, upstream, cooldown=0)
    yield process
    process.close()


@pytest.fixture(scope="module")
def with_cooldown(jwks_with_cooldown: JwksServer, upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    process = _start(jwks_with_cooldown, upstream, cooldown=10)
    yield process
    process.close()


def status(gateway: GatewayProcess, token: str) -> int:
    with gateway.client() as client:
        return client.post(GRAPHQL, json={"query": "{ a }"}, headers=bearer(token)).status_code


def test_new_keys_are_accepted_at_once_without_cooldown(no_cooldown: GatewayProcess,
                                                        jwks_no_cooldown: JwksServer,
                                                        upstream: RecordingUpstream, mint: Mint) -> None:
    assert status(no_cooldown, mint()) == 200

    for kid in ("ins_rotated_1", "ins_rotated_2"):
        new_key = SigningKey.rsa(kid)
        jwks_no_cooldown.add_key(new_key)
        assert status(no_cooldown, mint(key=new_key, sub=f"user_{kid}")) == 200
        assert upstream.requests[-1].header("x-hasura-user-id") == f"user_{kid}"

    assert status(no_cooldown, mint(key=SigningKey.rsa("ins_never_published"))) == 401


def test_the_startup_fetch_does_not_start_the_cooldown(with_cooldown: GatewayProcess,
                                                       jwks_with_cooldown: JwksServer,
                                                       upstream: RecordingUpstream, mint: Mint) -> None:
    jwks = jwks_with_cooldown
    assert status(with_cooldown, mint()) == 200
    fetched_at_start = jwks.fetch_count
    assert fetched_at_start >= 1, "the gateway never fetched the JWKS"
    assert status(with_cooldown, mint()) == 200
    assert jwks.fetch_count == fetched_at_start, "a known kid must be served from the cache"

    rotated = SigningKey.rsa("ins_rotated_cooldown")
    jwks.add_key(rotated)
    assert status(with_cooldown, mint(key=rotated, sub="user_rotated")) == 200
    assert upstream.requests[-1].header("x-hasura-user-id") == "user_rotated"
    fetched_after_rotation = jwks.fetch_count
    assert fetched_after_rotation > fetched_at_start

    # Within the cool-down, another unknown kid is refused without hammering the JWKS endpoint.
    too_soon = SigningKey.rsa("ins_rotated_too_soon")
    jwks.add_key(too_soon)
    assert status(with_cooldown, mint(key=too_soon)) == 401
    assert jwks.fetch_count == fetched_after_rotation
    # ...while the keys already known keep working.
    assert status(with_cooldown, mint(key=rotated)) == 200


def test_cooldown_gateway_still_answers_health(with_cooldown: GatewayProcess) -> None:
    with httpx.Client(base_url=with_cooldown.url, trust_env=False) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
