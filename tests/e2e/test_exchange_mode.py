"""``exchange`` mode end to end: the real gateway, a fake Clerk Backend API, a recording upstream.

The gateway verifies the Clerk session token, asks :class:`FakeClerkApi` (real HTTP on 127.0.0.1,
the documented request and answer shapes) for the session's ``hasura`` template token with
``CLERK_SECRET_KEY``, and forwards exactly that token. Each test uses its own session id, so the
gateway's per-session cache of one test never serves another.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from jose import jwt

from tests.e2e.conftest import Mint, bearer, graphql_error
from tests.support.clerk_api import HASURA_NAMESPACE, TEMPLATE_CATEGORY, FailureMode, FakeClerkApi
from tests.support.gateway_process import ISSUER, GatewayProcess, gateway_env
from tests.support.jwks_server import JwksServer
from tests.support.tokens import SigningKey
from tests.support.upstream import RecordingUpstream

GRAPHQL = "/hasura/v1/graphql"
QUERY = {"query": "{ viewer { id } }"}
SECRET = "sk_test_" + "e2eExchangeSecret" * 3


@pytest.fixture(scope="module")
def clerk_api(signing_key: SigningKey) -> Iterator[FakeClerkApi]:
    """Clerk signs template tokens with the instance key, the one the JWKS server publishes."""
    with FakeClerkApi(signing_key, secret_key=SECRET, issuer=ISSUER) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_clerk_api(clerk_api: FakeClerkApi) -> Iterator[None]:
    clerk_api.recover()
    clerk_api.reset()
    yield
    clerk_api.recover()


@pytest.fixture(scope="module")
def gateway(jwks_server: JwksServer, upstream: RecordingUpstream,
            clerk_api: FakeClerkApi) -> Iterator[GatewayProcess]:
    backend = {"adapter": "hasura", "url": upstream.url, "auth_mode": "exchange", "template": "hasura",
               "timeout_seconds": 10}
    env = gateway_env(jwks_server.url, {"hasura": backend}, CLERK_SECRET_KEY=SECRET, CLERK_API_URL=clerk_api.url)
    with GatewayProcess(env) as process:
        yield process


def live_session(clerk_api: FakeClerkApi, user_id: str = "user_exchange") -> str:
    session_id = f"sess_{uuid.uuid4().hex[:24]}"
    clerk_api.add_session(session_id, user_id)
    return session_id


def test_a_live_session_is_forwarded_with_its_template_token(
        client: httpx.Client, clerk_api: FakeClerkApi, upstream: RecordingUpstream, mint: Mint,
        signing_key: SigningKey) -> None:
    sid = live_session(clerk_api, "user_live")
    session_token = mint(sub="user_live", sid=sid)
    response = client.post(GRAPHQL, json=QUERY, headers={**bearer(session_token), "x-hasura-role": "user",
                                                         "x-hasura-user-id": "user_forged"})
    assert response.status_code == 200, response.text

    [call] = clerk_api.token_calls
    assert (call.method, call.path) == ("POST", f"/v1/sessions/{sid}/tokens/hasura")
    assert call.authorization == f"Bearer {SECRET}"
    [template_token] = clerk_api.issued

    seen = upstream.last()
    assert seen.header("authorization") == f"Bearer {template_token}"
    assert seen.header("x-hasura-role") == "user"
    assert not seen.has_header("x-hasura-user-id") and not seen.has_header("x-hasura-admin-secret")
    assert session_token not in repr(seen.headers)
    # What a Hasura with Clerk's JWKS would verify: Clerk's signature, the template class, the claims.
    claims = jwt.decode(template_token, signing_key.public_pem(), algorithms=["RS256"], issuer=ISSUER)
    assert jwt.get_unverified_header(template_token)["cat"] == TEMPLATE_CATEGORY
    assert claims["sub"] == "user_live" and "sid" not in claims
    assert claims[HASURA_NAMESPACE] == {"x-hasura-allowed-roles": ["user"], "x-hasura-default-role": "user",
                                        "x-hasura-user-id": "user_live"}


def test_the_next_request_of_the_session_is_served_from_the_cache(
        client: httpx.Client, clerk_api: FakeClerkApi, upstream: RecordingUpstream, mint: Mint) -> None:
    sid = live_session(clerk_api)
    for _ in range(3):  # three session tokens of the same session (a client refreshes every ~50 s)
        response = client.post(GRAPHQL, json=QUERY, headers=bearer(mint(sub="user_exchange", sid=sid)))
        assert response.status_code == 200, response.text
    assert len(clerk_api.token_calls_for(sid)) == 1
    [template_token] = clerk_api.issued
    assert [seen.header("authorization") for seen in upstream.requests] == [f"Bearer {template_token}"] * 3


def test_other_sessions_get_their_own_tokens(client: httpx.Client, clerk_api: FakeClerkApi,
                                             upstream: RecordingUpstream, mint: Mint) -> None:
    first, second = live_session(clerk_api, "user_one"), live_session(clerk_api, "user_two")
    for sid, sub in ((first, "user_one"), (second, "user_two")):
        assert client.post(GRAPHQL, json=QUERY, headers=bearer(mint(sub=sub, sid=sid))).status_code == 200
    assert len(clerk_api.token_calls) == 2
    forwarded = [seen.header("authorization") for seen in upstream.requests]
    assert forwarded == [f"Bearer {token}" for token in clerk_api.issued] and forwarded[0] != forwarded[1]


def test_concurrent_first_requests_share_one_call_to_clerk(
        gateway: GatewayProcess, clerk_api: FakeClerkApi, upstream: RecordingUpstream, mint: Mint) -> None:
    sid = live_session(clerk_api)
    clerk_api.fail("slow")

    def send() -> int:
        with gateway.client() as own:
            return own.post(GRAPHQL, json=QUERY, headers=bearer(mint(sub="user_exchange", sid=sid))).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(send) for _ in range(6)]
        deadline = time.monotonic() + 5
        while not clerk_api.token_calls_for(sid) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # the others reach the gateway meanwhile and join the call in flight
        clerk_api.recover()
        statuses = [future.result(timeout=15) for future in futures]
    assert statuses == [200] * 6
    assert len(clerk_api.token_calls_for(sid)) == 1
    assert len(upstream.requests) == 6


@pytest.mark.parametrize(("how", "reason"), [("ended", "session-ended"), ("revoked", "session-ended"),
                                             ("unknown", "session-not-found")])
def test_a_session_clerk_refuses_is_a_401_and_never_reaches_the_backend(
        client: httpx.Client, clerk_api: FakeClerkApi, upstream: RecordingUpstream, mint: Mint,
        how: str, reason: str) -> None:
    sid = f"sess_{uuid.uuid4().hex[:24]}"
    if how != "unknown":
        clerk_api.add_session(sid)
        clerk_api.end_session(sid, how)
    response = client.post(GRAPHQL, json=QUERY, headers=bearer(mint(sid=sid)))
    error = graphql_error(response, 401, "invalid-jwt")
    assert error["extensions"]["reason"] == reason
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert len(clerk_api.token_calls_for(sid)) == 1
    assert upstream.requests == []


def test_clerk_failing_is_a_502_and_never_reaches_the_backend(
        client: httpx.Client, clerk_api: FakeClerkApi, upstream: RecordingUpstream, mint: Mint) -> None:
    sid = live_session(clerk_api)
    clerk_api.fail("error")
    response = client.post(GRAPHQL, json=QUERY, headers=bearer(mint(sid=sid)))
    error = graphql_error(response, 502, "bad-gateway")
    assert error["extensions"]["reason"] == "clerk-unavailable"
    assert upstream.requests == []
    clerk_api.recover()  # a failure is not cached: the next request gets through
    assert client.post(GRAPHQL, json=QUERY, headers=bearer(mint(sid=sid))).status_code == 200
    assert len(clerk_api.token_calls_for(sid)) == 2


@pytest.mark.parametrize("mode", ["garbage", "no-jwt", "reset", "refused"])
def test_clerk_unusable_or_unreachable_is_a_502(client: httpx.Client, clerk_api: FakeClerkApi,
                                                upstream: RecordingUpstream, mint: Mint, mode: FailureMode) -> None:
    sid = live_session(clerk_api)
    clerk_api.fail(mode)
    response = client.post(GRAPHQL, json=QUERY, headers=bearer(mint(sid=sid)))
    graphql_error(response, 502, "bad-gateway")
    assert upstream.requests == []


def test_clerks_rate_limit_is_a_503_with_retry_after(client: httpx.Client, clerk_api: FakeClerkApi,
                                                     upstream: RecordingUpstream, mint: Mint) -> None:
    sid = live_session(clerk_api)
    clerk_api.fail("rate-limited")
    response = client.post(GRAPHQL, json=QUERY, headers=bearer(mint(sid=sid)))
    error = graphql_error(response, 503, "unavailable")
    assert error["extensions"]["reason"] == "clerk-rate-limited"
    assert response.headers["retry-after"] == "3"
    assert upstream.requests == []


def test_no_secret_or_token_in_the_log_or_the_metrics(gateway: GatewayProcess, client: httpx.Client,
                                                      clerk_api: FakeClerkApi, mint: Mint) -> None:
    sid = live_session(clerk_api)
    session_token = mint(sid=sid)
    assert client.post(GRAPHQL, json=QUERY, headers=bearer(session_token)).status_code == 200
    clerk_api.fail("error")
    client.post(GRAPHQL, json=QUERY, headers=bearer(mint(sid=live_session(clerk_api))))
    clerk_api.recover()
    metrics = client.get("/metrics").text
    assert 'gateway_token_exchanges_total{outcome="fetched"}' in metrics
    log = gateway.stderr_text()
    assert "token exchange" in log  # the 502 above was logged …
    for secret in (SECRET, session_token, *clerk_api.issued):
        assert secret not in log  # … without the secret or any token
        assert secret not in metrics
