"""``POST /webhooks/clerk`` end to end: signed deliveries (``standardwebhooks``) to the real gateway.

Session events end that session at once: its WebSockets close with 4403 "session ended" within a
second and its still-unexpired tokens are refused (401 ``session-revoked``), on every replica that
shares the Redis. The endpoint's own protocol (duplicates, unknown types, refusals, limits,
metrics, logs) is checked here too; the users-table writes are in ``test_webhook_user_sync.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from tests.e2e.conftest import Mint, bearer
from tests.support.gateway_process import GatewayProcess, gateway_env, hasura_backend
from tests.support.jwks_server import JwksServer
from tests.support.redis_server import RedisServer, running_redis
from tests.support.upstream import RecordingUpstream
from tests.support.webhook_signing import SECRET, signed_delivery
from tests.support.ws_upstream import TRANSPORT, GraphQLWebSocketUpstream

WEBHOOK = "/webhooks/clerk"
GRAPHQL = "/hasura/v1/graphql"
SOCKET = "/live/v1/graphql"


def session_event(kind: str, session_id: str, user_id: str) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {"type": kind, "object": "event", "timestamp": now, "instance_id": "ins_test",
            "data": {"object": "session", "id": session_id, "user_id": user_id, "client_id": "client_1",
                     "status": kind.split(".")[1], "last_active_at": now, "expire_at": now + 7 * 86400_000,
                     "abandon_at": now + 30 * 86400_000, "created_at": now - 60_000, "updated_at": now,
                     "user": {"object": "user", "id": user_id, "first_name": "Ada", "email_addresses": []}}}


def user_deleted(user_id: str) -> dict[str, Any]:
    return {"type": "user.deleted", "object": "event", "timestamp": int(time.time() * 1000),
            "data": {"object": "user", "id": user_id, "deleted": True}}


def deliver(gateway: GatewayProcess, event: Any, **options: Any) -> httpx.Response:
    body, headers = signed_delivery(event, **options)
    with gateway.client() as client:
        return client.post(WEBHOOK, content=body, headers=headers)


@pytest.fixture(scope="module")
def ws_upstream() -> Iterator[GraphQLWebSocketUpstream]:
    with GraphQLWebSocketUpstream() as server:
        yield server


def webhook_env(jwks_server: JwksServer, upstream: RecordingUpstream, ws_upstream: GraphQLWebSocketUpstream,
                **extra: Any) -> dict[str, str]:
    return gateway_env(jwks_server.url, {"hasura": hasura_backend(upstream.url),
                                         "live": hasura_backend(ws_upstream.http_url)},
                       CLERK_WEBHOOK_SIGNING_SECRET=SECRET, **extra)


@pytest.fixture(scope="module")
def gateway(jwks_server: JwksServer, upstream: RecordingUpstream,
            ws_upstream: GraphQLWebSocketUpstream) -> Iterator[GatewayProcess]:
    with GatewayProcess(webhook_env(jwks_server, upstream, ws_upstream, GATEWAY_WEBHOOK_MAX_BODY_BYTES=4096)) as p:
        yield p


@contextlib.asynccontextmanager
async def subscribed_socket(gateway: GatewayProcess, token: str) -> AsyncIterator[ClientConnection]:
    url = gateway.url.replace("http://", "ws://") + SOCKET
    async with connect(url, subprotocols=[Subprotocol(TRANSPORT)], proxy=None, open_timeout=5,
                       close_timeout=2) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"headers": bearer(token)}}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert ack["type"] == "connection_ack", ack
        yield ws


async def closed_within(ws: ClientConnection, seconds: float) -> tuple[int, str]:
    """The close the gateway sent within ``seconds`` (pings it meanwhile get pongs)."""
    deadline = time.monotonic() + seconds
    try:
        while True:
            await asyncio.wait_for(ws.recv(), max(deadline - time.monotonic(), 0.01))
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "the connection ended without a close frame"
        return closed.rcvd.code, closed.rcvd.reason
    except TimeoutError:
        raise AssertionError(f"the socket was still open after {seconds} s") from None


async def still_open(ws: ClientConnection) -> bool:
    await ws.send(json.dumps({"type": "ping"}))
    try:
        answer = json.loads(await asyncio.wait_for(ws.recv(), 2))
    except (ConnectionClosed, TimeoutError):
        return False
    return bool(answer.get("type") == "pong")


def status_and_reason(gateway: GatewayProcess, token: str) -> tuple[int, str | None]:
    with gateway.client() as client:
        response = client.post(GRAPHQL, json={"query": "{ a }"}, headers=bearer(token))
    if response.status_code == 200:
        return 200, None
    return response.status_code, response.json()["errors"][0]["extensions"]["reason"]


def refused_soon(gateway: GatewayProcess, token: str, seconds: float = 5.0) -> bool:
    """A replica loads the revocations still alive once it is subscribed, just after start-up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if status_and_reason(gateway, token) == (401, "session-revoked"):
            return True
        time.sleep(0.1)
    return False


# -- session events --------------------------------------------------------------------------------

async def test_session_ended_closes_that_sessions_sockets_within_a_second_and_refuses_its_tokens(
        gateway: GatewayProcess, mint: Mint) -> None:
    ended, other = mint(sub="user_ada", sid="sess_ended"), mint(sub="user_ada", sid="sess_other")
    assert status_and_reason(gateway, ended) == (200, None)  # verified and cached before the event
    async with subscribed_socket(gateway, ended) as doomed, subscribed_socket(gateway, other) as kept:
        started = time.monotonic()
        answer = await asyncio.to_thread(deliver, gateway, session_event("session.ended", "sess_ended", "user_ada"))
        assert answer.status_code == 200 and answer.json() == {"status": "revoked"}
        assert await closed_within(doomed, 1.0) == (4403, "session ended")
        assert time.monotonic() - started < 1.5
        assert await still_open(kept)
    assert status_and_reason(gateway, ended) == (401, "session-revoked")
    assert status_and_reason(gateway, other) == (200, None)
    fresh = mint(sub="user_ada", sid="sess_ended")  # a token of the ended session minted later: still refused
    assert status_and_reason(gateway, fresh) == (401, "session-revoked")


@pytest.mark.parametrize("kind", ["session.removed", "session.revoked"])
async def test_removed_and_revoked_sessions_end_too(gateway: GatewayProcess, mint: Mint, kind: str) -> None:
    sid = f"sess_{kind.split('.')[1]}"
    token = mint(sub="user_grace", sid=sid)
    async with subscribed_socket(gateway, token) as ws:
        assert (await asyncio.to_thread(deliver, gateway, session_event(kind, sid, "user_grace"))).status_code == 200
        assert await closed_within(ws, 1.0) == (4403, "session ended")
    assert status_and_reason(gateway, token) == (401, "session-revoked")


async def test_user_deleted_ends_every_session_of_the_user(gateway: GatewayProcess, mint: Mint) -> None:
    first, second = mint(sub="user_gone", sid="sess_g1"), mint(sub="user_gone", sid="sess_g2")
    bystander = mint(sub="user_stays", sid="sess_s1")
    async with subscribed_socket(gateway, first) as a, subscribed_socket(gateway, second) as b, \
            subscribed_socket(gateway, bystander) as c:
        answer = await asyncio.to_thread(deliver, gateway, user_deleted("user_gone"))
        assert answer.status_code == 200 and answer.json() == {"status": "revoked"}  # no GATEWAY_USER_SYNC here
        assert await closed_within(a, 1.0) == (4403, "session ended")
        assert await closed_within(b, 1.0) == (4403, "session ended")
        assert await still_open(c)
    assert status_and_reason(gateway, first) == (401, "session-revoked")
    assert status_and_reason(gateway, second) == (401, "session-revoked")
    assert status_and_reason(gateway, bystander) == (200, None)


# -- the endpoint's protocol -------------------------------------------------------------------------

def test_a_repeated_delivery_is_a_no_op_and_unknown_types_are_acknowledged(gateway: GatewayProcess) -> None:
    event = session_event("session.ended", "sess_repeat", "user_repeat")
    first = deliver(gateway, event, message_id="msg_repeat")
    again = deliver(gateway, event, message_id="msg_repeat")  # Svix re-signs a retry: a new timestamp
    assert first.json() == {"status": "revoked"} and again.json() == {"status": "duplicate"}
    other = deliver(gateway, {"type": "organization.created", "object": "event", "data": {"id": "org_1"}})
    assert other.status_code == 200 and other.json() == {"status": "unhandled"}
    created = deliver(gateway, {"type": "user.created", "object": "event", "timestamp": 1,
                                "data": {"id": "user_x", "updated_at": 1}})
    assert created.json() == {"status": "ignored"}  # no GATEWAY_USER_SYNC: nothing to write


@pytest.mark.parametrize(("options", "reason"), [
    ({"secrets": ("whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY",)}, "invalid-signature"),
    ({"timestamp": int(time.time()) - 3600}, "stale-timestamp"),
    ({"timestamp": int(time.time()) + 3600}, "future-timestamp"),
    ({"body": b'{"type": "user.created", "x": "\xff"}'}, "invalid-body"),
])
def test_a_refused_delivery_is_a_400_problem_with_its_reason(gateway: GatewayProcess, options: dict[str, Any],
                                                              reason: str, mint: Mint) -> None:
    answer = deliver(gateway, session_event("session.ended", "sess_never", "user_never"), **options)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["reason"] == reason
    with gateway.client() as client:
        metrics = client.get("/metrics").text
    assert f'gateway_webhook_events_total{{outcome="{reason}",type="unverified"}}' in metrics
    assert status_and_reason(gateway, mint(sub="user_never", sid="sess_never")) == (200, None)  # nothing applied


def test_missing_headers_wrong_method_and_oversized_bodies(gateway: GatewayProcess) -> None:
    with gateway.client() as client:
        bare = client.post(WEBHOOK, content=b'{"type": "session.ended"}')
        assert bare.status_code == 400 and bare.json()["reason"] == "missing-headers"
        wrong = client.get(WEBHOOK)
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    big_event = {**session_event("session.ended", "sess_big", "user_big"), "padding": "x" * 5000}
    answer = deliver(gateway, big_event)
    assert answer.status_code == 413 and answer.json()["reason"] == "body-too-large"


def test_the_endpoint_needs_no_clerk_token_and_the_log_never_holds_the_body(gateway: GatewayProcess) -> None:
    event = session_event("session.ended", "sess_logged", "user_logged")
    event["data"]["user"]["email_addresses"] = [{"id": "idn_1", "email_address": "secret-person@example.com"}]
    body, headers = signed_delivery(event, message_id="msg_logcheck")
    with gateway.client() as client:
        assert client.post(WEBHOOK, content=body, headers=headers).status_code == 200
        metrics = client.get("/metrics").text
    assert 'gateway_webhook_events_total{outcome="revoked",type="session.ended"}' in metrics
    assert 'gateway_webhook_events_total{outcome="invalid-signature",type="unverified"}' in metrics
    time.sleep(0.2)
    log = gateway.stderr_text()
    assert "msg_logcheck" in log  # the message id is logged, to find a delivery in the Svix dashboard
    assert "secret-person@example.com" not in log and SECRET not in log and headers["svix-signature"] not in log


def test_without_a_signing_secret_there_is_no_endpoint(jwks_server: JwksServer, upstream: RecordingUpstream) -> None:
    env = gateway_env(jwks_server.url, {"hasura": hasura_backend(upstream.url)})
    with GatewayProcess(env) as process:
        body, headers = signed_delivery(session_event("session.ended", "s", "u"))
        with process.client() as client:
            assert client.post(WEBHOOK, content=body, headers=headers).status_code == 404


# -- replicas sharing one Redis -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


async def test_a_revocation_reaches_every_replica_within_a_second(
        jwks_server: JwksServer, upstream: RecordingUpstream, ws_upstream: GraphQLWebSocketUpstream,
        redis_server: RedisServer, mint: Mint) -> None:
    env = webhook_env(jwks_server, upstream, ws_upstream, GATEWAY_REDIS_URL=redis_server.url)
    token = mint(sub="user_multi", sid="sess_multi")
    with GatewayProcess(env) as first, GatewayProcess(env) as second:
        assert status_and_reason(second, token) == (200, None)
        async with subscribed_socket(second, token) as on_second:
            await asyncio.sleep(0.3)  # both replicas subscribed to the channel
            started = time.monotonic()
            answer = await asyncio.to_thread(deliver, first, session_event("session.ended", "sess_multi",
                                                                             "user_multi"), message_id="msg_multi")
            assert answer.json() == {"status": "revoked"}
            assert await closed_within(on_second, 1.0) == (4403, "session ended")
            assert time.monotonic() - started < 1.5
        assert status_and_reason(second, token) == (401, "session-revoked")
        assert status_and_reason(first, token) == (401, "session-revoked")
        # the delivery log is shared too: Svix retrying on the other replica is a no-op
        again = deliver(second, session_event("session.ended", "sess_multi", "user_multi"), message_id="msg_multi")
        assert again.json() == {"status": "duplicate"}
        # a replica that starts later loads the revocations still alive from Redis
        with GatewayProcess(env) as late:
            assert await asyncio.to_thread(refused_soon, late, token)
