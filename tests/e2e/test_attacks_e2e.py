"""Every case of the attack catalogue (REFERENCE.md §5.4) through the running gateway.

The unit tests hold the verifier to the catalogue; this module holds the *deployment* to it:
settings from the environment, uvicorn's HTTP parsing, token extraction, error rendering, and the
proxy's promise that nothing reaches the upstream before every check passed. A refused case must
answer 401/403 in Hasura's error shape with the expected ``extensions.reason``, challenge on 401,
never echo or log the token, and leave the recording upstream untouched; an accepted case must
reach the upstream as the token's user, through the gateway's admin secret and nothing else.

One gateway serves every case that uses the default key set (``CLERK_AUTHORIZED_PARTIES`` set, so
the ``azp`` rows run on it too; every other token carries the authorized ``azp``). The key-set rows
(22, 24, 25, 26) each need their own published JWKS: they share a second JWKS server and one
gateway at a time, restarted only when the published document changes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import graphql_error
from tests.support.attacks import (
    AUTHORIZED_PARTY,
    CASES,
    DEFAULT_SUBJECT,
    NEEDS_AUDIENCE,
    Accepted,
    AttackCase,
    AttackContext,
    Rejected,
    attack_keys,
)
from tests.support.gateway_process import ADMIN_SECRET, ISSUER, GatewayProcess, gateway_env, hasura_backend
from tests.support.jwks_server import JwksServer
from tests.support.upstream import RecordingUpstream

GRAPHQL = "/hasura/v1/graphql"
#: Generous leeway: the "within leeway" tokens of row 7 sit at half of it and must not expire
#: between minting and verification on a slow machine.
SKEW = 30.0
#: What an HTTP server may answer instead of the gateway when a header field is megabytes long.
TRANSPORT_REFUSALS = {400, 413, 431}


def _environment(jwks_url: str, upstream: RecordingUpstream) -> dict[str, str]:
    return gateway_env(jwks_url, {"hasura": hasura_backend(upstream.url)},
                       CLERK_AUTHORIZED_PARTIES=AUTHORIZED_PARTY, CLERK_CLOCK_SKEW_SECONDS=SKEW,
                       # ~130 refusals from one address in a few seconds: not what this module is about
                       GATEWAY_RATE_LIMIT_ENABLED="false")


def _context() -> AttackContext:
    return AttackContext(issuer=ISSUER, now=time.time(), skew=SKEW, azp=AUTHORIZED_PARTY)


def _canonical(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=True)


class _KeySetGateways:
    """At most one extra gateway alive, publishing the key set the current case needs."""

    def __init__(self, upstream: RecordingUpstream) -> None:
        keys = attack_keys()
        self._upstream = upstream
        self._jwks = JwksServer(keys.k1, keys.k2, keys.k3)
        self._jwks.start()
        self._current: tuple[str, GatewayProcess] | None = None

    def for_document(self, document: dict[str, Any]) -> GatewayProcess:
        wanted = _canonical(document)
        if self._current is not None and self._current[0] == wanted:
            return self._current[1]
        self._stop_current()
        self._jwks.set_document(document)
        gateway = GatewayProcess(_environment(self._jwks.url, self._upstream)).start()
        self._current = (wanted, gateway)
        return gateway

    def _stop_current(self) -> None:
        if self._current is not None:
            self._current[1].close()
            self._current = None

    def close(self) -> None:
        self._stop_current()
        self._jwks.close()


@pytest.fixture(scope="module")
def default_gateway(upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    keys = attack_keys()
    with JwksServer(keys.k1, keys.k2, keys.k3) as jwks_server, \
            GatewayProcess(_environment(jwks_server.url, upstream)) as process:
        yield process


@pytest.fixture(scope="module")
def key_set_gateways(upstream: RecordingUpstream) -> Iterator[_KeySetGateways]:
    pool = _KeySetGateways(upstream)
    try:
        yield pool
    finally:
        pool.close()


def _gateway_for(attack: AttackCase, ctx: AttackContext, request: pytest.FixtureRequest) -> GatewayProcess:
    if attack.key_set is None:
        gateway: GatewayProcess = request.getfixturevalue("default_gateway")
        return gateway
    pool: _KeySetGateways = request.getfixturevalue("key_set_gateways")
    return pool.for_document(attack.document(ctx))


def _fits_in_a_header_field(token: str) -> bool:
    """Visible ASCII, spaces and tabs inside, nothing an HTTP parser would strip at the ends."""
    return token == token.strip(" \t") and all(ch == "\t" or " " <= ch <= "~" for ch in token)


def _segments(token: str) -> list[str]:
    # Short segments ("", "e30") could appear by chance; a real token's are far longer.
    return [segment for segment in token.split(".") if len(segment) >= 16]


def _assert_not_echoed(token: str, *texts: str) -> None:
    for text in texts:
        assert token not in text or not token
        for segment in _segments(token):
            assert segment not in text, "a token segment was echoed"


def _response_text(response: httpx.Response) -> str:
    return response.text + "".join(f"{name}: {value}\n" for name, value in response.headers.items())


def _assert_refused(response: httpx.Response, expected: Rejected) -> None:
    error = graphql_error(response, expected.status, expected.code)
    assert error["extensions"]["reason"] in expected.reasons, error
    challenge = response.headers.get("www-authenticate", "")
    if expected.status == 401:
        assert challenge.startswith('Bearer error="invalid_token", error_description="'), challenge
    assert response.headers.get("x-request-id")


def _assert_reached_upstream_as_the_user(response: httpx.Response, upstream: RecordingUpstream,
                                         token: str) -> None:
    assert response.status_code == 200, response.text
    sent = upstream.last()
    assert sent.header("x-hasura-user-id") == DEFAULT_SUBJECT
    assert sent.header("x-hasura-role") == "user"
    assert sent.header("x-hasura-admin-secret") == ADMIN_SECRET
    assert sent.header("authorization") is None and sent.header("cookie") is None
    _assert_not_echoed(token, "".join(f"{name}: {value}\n" for name, value in sent.headers))


@pytest.mark.parametrize("attack", CASES, ids=lambda attack: attack.id)
def test_attack_through_the_gateway(attack: AttackCase, upstream: RecordingUpstream,
                                    request: pytest.FixtureRequest) -> None:
    if NEEDS_AUDIENCE in attack.needs:
        pytest.skip("no Hasura setting requires an audience: row 9 runs on Fauna in test_attacks_audience_e2e.py")
    ctx = _context()
    token = attack.build(ctx)
    if not _fits_in_a_header_field(token):
        pytest.skip("no HTTP header field can carry this token: the HTTP layer refuses or strips it first")
    gateway = _gateway_for(attack, ctx, request)

    with gateway.client(timeout=30.0) as client:
        # An empty token ("Bearer " with its trailing space) arrives as "Bearer": HTTP strips it.
        response = client.post(GRAPHQL, json={"query": "{ a }"},
                               headers={"Authorization": f"Bearer {token}".rstrip()})

    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    _assert_not_echoed(token, _response_text(response), gateway.stderr_text())
    expected = attack.outcome
    if isinstance(expected, Accepted):
        _assert_reached_upstream_as_the_user(response, upstream, token)
        return
    assert upstream.requests == []
    if attack.oversized and response.status_code in TRANSPORT_REFUSALS:
        return  # answered by the HTTP server before the gateway saw it: allowed, as long as it answers
    _assert_refused(response, expected)
