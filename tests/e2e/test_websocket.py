"""GraphQL subscriptions over WebSockets through the real gateway, against a real WebSocket upstream.

The upstream is :class:`~tests.support.ws_upstream.GraphQLWebSocketUpstream`, which speaks both
subprotocols the way Hasura does and records every connection: the assertions are about what it
actually received (upgrade headers, the rewritten ``connection_init``, subscriptions) and about the
frames and close codes the client actually got. The first section proves the double itself
(``-k upstream_double``); the rest is grouped by gateway configuration, one module-scoped gateway
per configuration. Every receive is bounded, so a broken gateway fails a test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin, Subprotocol

from tests.e2e.conftest import Mint, bearer
from tests.support.gateway_process import ADMIN_SECRET, GatewayProcess, gateway_env, hasura_backend
from tests.support.jwks_server import JwksServer
from tests.support.upstream import RecordingUpstream
from tests.support.ws_upstream import (
    LEGACY,
    TRANSPORT,
    GraphQLWebSocketUpstream,
    UpstreamConnection,
    decode_jwt_claims,
)

PROTOCOLS = [TRANSPORT, LEGACY]
SKEW = 1  # CLERK_CLOCK_SKEW_SECONDS of the gateways below: expiry tests wait exp + SKEW
CORS_ORIGIN = "https://app.example.com"
AZP_ORIGIN = "https://azp.example.com"
EVIL_ORIGIN = "https://evil.example.net"
ROLES = ["user", "editor"]
SUB_QUERY = "subscription OnMessage($room: String!) { messages(room: $room) { id text } }"
ORG = {"id": "org_ws", "slg": "acme", "rol": "org:member"}
MAX_MESSAGE_BYTES = 4096


# -- client helpers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Closed:
    code: int
    reason: str
    messages: list[Any]  # what arrived before the close


@contextlib.asynccontextmanager
async def ws_client(url: str, *, subprotocol: str | None = TRANSPORT, offer: list[str] | None = None,
                    headers: dict[str, str] | None = None,
                    origin: str | None = None) -> AsyncIterator[ClientConnection]:
    """A websockets client: no proxy, no keep-alive pings, no compression, bounded open and close."""
    offered = offer if offer is not None else ([subprotocol] if subprotocol else None)
    ws = await asyncio.wait_for(connect(
        url, subprotocols=[Subprotocol(p) for p in offered] if offered else None, additional_headers=headers,
        origin=Origin(origin) if origin else None, proxy=None, ping_interval=None, open_timeout=5,
        close_timeout=2, compression=None), 8)
    try:
        yield ws
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 4)


async def send_json(ws: ClientConnection, message: Any) -> None:
    await ws.send(json.dumps(message))


async def recv_json(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    """The next message that is not a legacy keep-alive (``ka``)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no message within {timeout} s")
        try:
            raw = await asyncio.wait_for(ws.recv(), remaining)
        except TimeoutError:
            raise AssertionError(f"no message within {timeout} s") from None
        message = json.loads(raw)
        if isinstance(message, dict) and message.get("type") == "ka":
            continue
        assert isinstance(message, dict), message
        return message


async def recv_type(ws: ClientConnection, message_type: str, timeout: float = 5.0) -> tuple[dict[str, Any],
                                                                                            list[dict[str, Any]]]:
    """The next message of ``message_type``, and the ones that came before it."""
    skipped: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        message = await recv_json(ws, max(0.01, deadline - time.monotonic()))
        if message.get("type") == message_type:
            return message, skipped
        skipped.append(message)


async def expect_close(ws: ClientConnection, timeout: float = 5.0) -> Closed:
    """Read until the socket closes; the close code and reason the client received."""
    messages: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                raw = await ws.recv()
                try:
                    messages.append(json.loads(raw))
                except ValueError:
                    messages.append(raw)
    except ConnectionClosed as exc:
        if exc.rcvd is None:
            return Closed(1006, "", messages)
        return Closed(exc.rcvd.code, exc.rcvd.reason, messages)
    except TimeoutError:
        raise AssertionError(f"the socket was still open after {timeout} s; received {messages}") from None


async def expect_silence(ws: ClientConnection, seconds: float = 0.3) -> None:
    """No message (other than ``ka``) and no close for ``seconds``."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                message = json.loads(await ws.recv())
                assert message.get("type") == "ka", f"unexpected message {message}"


async def init(ws: ClientConnection, payload: Any = None, *, with_payload: bool = True) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "connection_init"}
    if with_payload:
        message["payload"] = payload if payload is not None else {}
    await send_json(ws, message)
    ack = await recv_json(ws)
    assert ack["type"] == "connection_ack", ack
    return ack


def auth_payload(token: str, **headers: str) -> dict[str, Any]:
    return {"headers": {"Authorization": f"Bearer {token}", **headers}}


def subscribe_message(protocol: str, op_id: str, query: str = SUB_QUERY,
                      variables: dict[str, Any] | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"query": query, "variables": variables if variables is not None else {"room": "r1"}}
    return {"id": op_id, "type": "subscribe" if protocol == TRANSPORT else "start", "payload": payload}


def complete_message(protocol: str, op_id: str) -> dict[str, Any]:
    return {"id": op_id, "type": "complete" if protocol == TRANSPORT else "stop"}


def event_type(protocol: str) -> str:
    return "next" if protocol == TRANSPORT else "data"


def exp_of(token: str) -> int:
    claims = decode_jwt_claims(token)
    assert claims is not None
    return int(claims["exp"])


async def sleep_until(unix_time: float) -> None:
    delay = unix_time - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


def deep_subscription(depth: int) -> str:
    return "subscription { " + "a { " * (depth - 1) + "b" + " }" * (depth - 1) + " }"


# -- the upstream double, shared by the whole module --------------------------------------------------


@pytest.fixture(scope="module")
def ws_upstream() -> Iterator[GraphQLWebSocketUpstream]:
    with GraphQLWebSocketUpstream() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_ws_upstream(ws_upstream: GraphQLWebSocketUpstream) -> None:
    ws_upstream.reset()


def upstream_ws(ws_upstream: GraphQLWebSocketUpstream, path: str = "/v1/graphql") -> str:
    return ws_upstream.url + path


# == 1. the double itself (-k upstream_double) =========================================================


async def test_upstream_double_speaks_graphql_transport_ws(ws_upstream: GraphQLWebSocketUpstream) -> None:
    async with ws_client(upstream_ws(ws_upstream), headers={"x-test": "one"}) as ws:
        assert ws.subprotocol == TRANSPORT
        await init(ws, auth_payload("tok", **{"x-hasura-role": "user"}))
        (conn,) = ws_upstream.connections
        assert (conn.path, conn.protocol, conn.subprotocol) == ("/v1/graphql", TRANSPORT, TRANSPORT)
        assert conn.offered_subprotocols == (TRANSPORT,)
        assert conn.header("x-test") == "one"
        assert conn.init_payload == {"headers": {"Authorization": "Bearer tok", "x-hasura-role": "user"}}
        assert conn.bearer_token == "tok" and conn.init_headers["x-hasura-role"] == "user"

        await send_json(ws, subscribe_message(TRANSPORT, "1"))
        await send_json(ws, subscribe_message(TRANSPORT, "2"))
        active = await ws_upstream.wait_for_subscriptions(2)
        assert [op_id for _, op_id in active] == ["1", "2"]
        assert conn.subscribed[0] == ("1", {"query": SUB_QUERY, "variables": {"room": "r1"}})

        assert await ws_upstream.publish({"n": 1}) == 2
        events = [await recv_json(ws), await recv_json(ws)]
        assert events == [{"id": "1", "type": "next", "payload": {"data": {"n": 1}}},
                          {"id": "2", "type": "next", "payload": {"data": {"n": 1}}}]

        await send_json(ws, {"type": "ping", "payload": {"a": 1}})
        assert await recv_json(ws) == {"type": "pong", "payload": {"a": 1}}

        await send_json(ws, complete_message(TRANSPORT, "1"))
        await ws_upstream.wait_for(lambda: conn.active_ids == ["2"], what="the completion")
        assert conn.completed_ids == ["1"]
        await ws_upstream.complete(conn, "2")
        assert await recv_json(ws) == {"id": "2", "type": "complete"}
        assert await ws_upstream.publish("nothing active") == 0

        await send_json(ws, subscribe_message(TRANSPORT, "3"))
        await ws_upstream.wait_for_subscriptions(1)
        assert await ws_upstream.publish("text") == 1
        assert (await recv_json(ws))["payload"] == {"data": {"event": "text"}}
        await ws.close(1000, "bye")
    await conn.wait_closed()
    assert (conn.closed_by, conn.close_code, conn.close_reason) == ("peer", 1000, "bye")
    assert [m.type for m in conn.messages] == ["connection_init", "subscribe", "subscribe", "ping", "complete",
                                               "subscribe"]


@pytest.mark.parametrize("offer", [[LEGACY], [], [TRANSPORT, LEGACY]], ids=["graphql-ws", "none", "both"])
async def test_upstream_double_speaks_legacy_graphql_ws(ws_upstream: GraphQLWebSocketUpstream,
                                                        offer: list[str]) -> None:
    async with ws_client(upstream_ws(ws_upstream), offer=offer) as ws:
        assert ws.subprotocol == (LEGACY if offer else None)
        await init(ws, {"headers": {"Authorization": "Bearer tok"}})
        (conn,) = ws_upstream.connections
        assert conn.protocol == LEGACY and conn.subprotocol == ws.subprotocol
        await send_json(ws, subscribe_message(LEGACY, "a"))
        await ws_upstream.wait_for_subscriptions(1)
        await ws_upstream.publish({"n": 2})
        assert await recv_json(ws) == {"id": "a", "type": "data", "payload": {"data": {"n": 2}}}
        await send_json(ws, complete_message(LEGACY, "a"))
        await ws_upstream.wait_for(lambda: not conn.active_ids, what="the stop")
        assert conn.completed_ids == ["a"]
        await send_json(ws, {"type": "connection_terminate"})
        closed = await expect_close(ws)
    assert closed.code == 1000
    await conn.wait_closed()
    assert conn.closed_by == "upstream"


async def test_upstream_double_close_all_propagates_code_and_reason(ws_upstream: GraphQLWebSocketUpstream) -> None:
    async with ws_client(upstream_ws(ws_upstream)) as modern, \
            ws_client(upstream_ws(ws_upstream), subprotocol=LEGACY) as legacy:
        await init(modern, {})
        await init(legacy, {})
        assert await ws_upstream.close_all(4500, "boom") == 2
        closes = await asyncio.gather(expect_close(modern), expect_close(legacy))
    assert [(c.code, c.reason) for c in closes] == [(4500, "boom"), (4500, "boom")]
    for conn in ws_upstream.connections:
        await conn.wait_closed()
        assert (conn.closed_by, conn.close_code, conn.close_reason) == ("upstream", 4500, "boom")
    assert not ws_upstream.open_connections


async def test_upstream_double_rejects_init_like_hasura(ws_upstream: GraphQLWebSocketUpstream) -> None:
    ws_upstream.reject_init = True
    async with ws_client(upstream_ws(ws_upstream)) as modern:
        await send_json(modern, {"type": "connection_init", "payload": {}})
        closed = await expect_close(modern)
    assert (closed.code, closed.reason, closed.messages) == (4403, "Forbidden", [])
    async with ws_client(upstream_ws(ws_upstream), subprotocol=LEGACY) as legacy:
        await send_json(legacy, {"type": "connection_init", "payload": {}})
        closed = await expect_close(legacy)
    assert closed.code == 4400 and closed.reason.startswith("Connection initialization failed")
    assert [m["type"] for m in closed.messages] == ["connection_error"]
    assert all(conn.rejected for conn in ws_upstream.connections)


async def test_upstream_double_expires_the_socket_at_the_token_exp(ws_upstream: GraphQLWebSocketUpstream,
                                                                   mint: Mint) -> None:
    ws_upstream.expire_at_token_exp = True
    token = mint(lifetime=2)
    async with ws_client(upstream_ws(ws_upstream)) as ws:
        await init(ws, auth_payload(token))
        await send_json(ws, subscribe_message(TRANSPORT, "1"))
        await ws_upstream.wait_for_subscriptions(1)
        closed = await expect_close(ws, timeout=5)
    assert time.time() >= exp_of(token)
    assert closed.code == 1000 and closed.messages == []  # no message: Hasura just tears down
    (conn,) = ws_upstream.connections
    await conn.wait_closed()
    assert conn.expired and conn.token == token and conn.token_exp == exp_of(token)
    assert conn.closed_by == "upstream"

    async with ws_client(upstream_ws(ws_upstream)) as ws:  # already expired: refused at init
        await send_json(ws, {"type": "connection_init", "payload": auth_payload(mint(lifetime=-5))})
        assert (await expect_close(ws)).code == 4403


async def test_upstream_double_answers_healthz_and_404s_other_paths(ws_upstream: GraphQLWebSocketUpstream) -> None:
    probes = ws_upstream.probe_count
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        response = await client.get(ws_upstream.http_url + "/healthz")
    assert response.status_code == 200 and ws_upstream.probe_count == probes + 1
    with pytest.raises(InvalidStatus) as refused:
        async with ws_client(upstream_ws(ws_upstream, "/v1/metadata")):
            pass
    assert refused.value.response.status_code == 404
    assert [path for path, _ in ws_upstream.refused_requests] == ["/v1/metadata"]
    assert ws_upstream.connections == []


async def test_upstream_double_enforces_the_transport_rules(ws_upstream: GraphQLWebSocketUpstream) -> None:
    ws_upstream.init_timeout_seconds = 0.3
    async with ws_client(upstream_ws(ws_upstream)) as ws:
        assert (await expect_close(ws, timeout=3)).code == 4408
    async with ws_client(upstream_ws(ws_upstream)) as ws:
        await send_json(ws, subscribe_message(TRANSPORT, "1"))
        assert (await expect_close(ws)).code == 4401
    async with ws_client(upstream_ws(ws_upstream)) as ws:
        await init(ws)
        await send_json(ws, subscribe_message(TRANSPORT, "1"))
        await send_json(ws, subscribe_message(TRANSPORT, "1"))
        assert (await expect_close(ws)).code == 4409
    async with ws_client(upstream_ws(ws_upstream)) as ws:
        await ws.send("not json")
        assert (await expect_close(ws)).code == 4400


async def test_upstream_double_sends_legacy_keepalives_when_asked(ws_upstream: GraphQLWebSocketUpstream) -> None:
    ws_upstream.legacy_keepalive_seconds = 0.1
    async with ws_client(upstream_ws(ws_upstream), subprotocol=LEGACY) as ws:
        await send_json(ws, {"type": "connection_init", "payload": {}})
        types = [json.loads(await asyncio.wait_for(ws.recv(), 3))["type"] for _ in range(3)]
    assert types == ["connection_ack", "ka", "ka"]


async def test_upstream_double_reset_closes_and_forgets(ws_upstream: GraphQLWebSocketUpstream) -> None:
    ws_upstream.reject_init = True
    async with ws_client(upstream_ws(ws_upstream)) as ws:
        await ws_upstream.wait_for_connections(1)
        ws_upstream.reset()
        assert ws_upstream.connections == [] and ws_upstream.reject_init is False
        closed = await expect_close(ws)
    assert (closed.code, closed.reason) == (1001, "reset")


# == 2. the gateway: admin_secret + forward backends, short skew, small WS limits ==========================


def forward_backend(url: str, **fields: Any) -> dict[str, Any]:
    backend: dict[str, Any] = {"adapter": "hasura", "url": url, "auth_mode": "forward", "timeout_seconds": 10}
    backend.update(fields)
    return backend


@pytest.fixture(scope="module")
def gateway(jwks_server: JwksServer, ws_upstream: GraphQLWebSocketUpstream,
            upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    backends = {
        "hasura": hasura_backend(ws_upstream.http_url, allowed_roles=ROLES),
        "fwd": forward_backend(ws_upstream.http_url),
        # the same settings over HTTP, to compare the WebSocket identity with the HTTP one
        "mirror": hasura_backend(upstream.url, allowed_roles=ROLES),
    }
    env = gateway_env(jwks_server.url, backends, GATEWAY_DEFAULT_BACKEND="hasura",
                      GATEWAY_CORS_ORIGINS=CORS_ORIGIN, CLERK_CLOCK_SKEW_SECONDS=SKEW,
                      GATEWAY_WS_INIT_TIMEOUT_SECONDS=1, GATEWAY_WS_MAX_SUBSCRIPTIONS=2,
                      GATEWAY_RATE_LIMIT_ENABLED="false", GATEWAY_LOG_LEVEL="warning")
    with GatewayProcess(env) as process:
        yield process


def gw(gateway: GatewayProcess, path: str = "/hasura/v1/graphql") -> str:
    return "ws" + gateway.url.removeprefix("http") + path


def http_identity(gateway: GatewayProcess, upstream: RecordingUpstream, token: str,
                  role: str | None = None) -> dict[str, str]:
    """The x-hasura-* headers the same token gets over HTTP (the ``mirror`` backend)."""
    headers = bearer(token)
    if role is not None:
        headers["x-hasura-role"] = role
    with gateway.client() as client:
        response = client.post("/mirror/v1/graphql", json={"query": "{ a }"}, headers=headers)
    assert response.status_code == 200, response.text
    received = upstream.requests[-1]
    return {name: value for name, value in received.headers if name.startswith("x-hasura-")}


async def connected(ws_upstream: GraphQLWebSocketUpstream, n: int = 1) -> UpstreamConnection:
    return (await ws_upstream.wait_for_connections(n))[n - 1]


async def assert_no_upstream_connection(ws_upstream: GraphQLWebSocketUpstream) -> None:
    await asyncio.sleep(0.1)
    assert ws_upstream.connections == [], ws_upstream.describe()


# -- routing and subprotocols --


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_clients_subprotocol_is_passed_upstream_and_echoed(gateway: GatewayProcess,
                                                                     ws_upstream: GraphQLWebSocketUpstream,
                                                                     mint: Mint, protocol: str) -> None:
    async with ws_client(gw(gateway), subprotocol=protocol) as ws:
        assert ws.subprotocol == protocol
        await init(ws, auth_payload(mint()))
        conn = await connected(ws_upstream)
    assert (conn.path, conn.subprotocol, conn.protocol) == ("/v1/graphql", protocol, protocol)


async def test_no_subprotocol_is_the_legacy_protocol_upstream(gateway: GatewayProcess,
                                                              ws_upstream: GraphQLWebSocketUpstream,
                                                              mint: Mint) -> None:
    async with ws_client(gw(gateway), subprotocol=None) as ws:
        assert ws.subprotocol is None
        await init(ws, auth_payload(mint()))
        await send_json(ws, subscribe_message(LEGACY, "1"))
        await ws_upstream.wait_for_subscriptions(1)
        await ws_upstream.publish({"n": 1})
        assert await recv_json(ws) == {"id": "1", "type": "data", "payload": {"data": {"n": 1}}}
    assert ws_upstream.connections[0].protocol == LEGACY


async def test_the_default_backend_socket_is_at_slash_graphql(gateway: GatewayProcess,
                                                              ws_upstream: GraphQLWebSocketUpstream,
                                                              mint: Mint) -> None:
    async with ws_client(gw(gateway, "/graphql")) as ws:
        await init(ws, auth_payload(mint(sub="user_default")))
        conn = await connected(ws_upstream)
    assert conn.path == "/v1/graphql" and conn.init_headers["x-hasura-user-id"] == "user_default"


# -- the rewritten connection_init --


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_admin_secret_mode_sends_exactly_the_verified_identity(gateway: GatewayProcess,
                                                                     ws_upstream: GraphQLWebSocketUpstream,
                                                                     upstream: RecordingUpstream,
                                                                     mint: Mint, protocol: str) -> None:
    token = mint(sub="user_ws_admin", o=ORG)
    expected = http_identity(gateway, upstream, token)
    assert expected["x-hasura-org-id"] == "org_ws"  # the org variables are part of the identity
    spoofed = {"x-hasura-admin-secret": "evil-secret", "x-hasura-user-id": "user_evil",
               "x-hasura-org-id": "org_evil", "x-custom": "1"}
    payload = {**auth_payload(token, **spoofed), "extra": {"x": 1}}
    upgrade = {"x-hasura-admin-secret": "evil-upgrade", "x-hasura-user-id": "user_evil_upgrade",
               "Cookie": "theme=dark"}
    async with ws_client(gw(gateway), subprotocol=protocol, headers=upgrade) as ws:
        await init(ws, payload)
        conn = await connected(ws_upstream)
        assert conn.init_count == 1
    assert set(conn.init_payload) == {"headers"}, conn.init_payload
    assert conn.init_headers == expected
    assert conn.init_headers["x-hasura-admin-secret"] == ADMIN_SECRET
    assert conn.init_headers["x-hasura-role"] == "user"
    assert conn.init_headers["x-hasura-user-id"] == "user_ws_admin"
    # nothing the client injected in the upgrade request reaches the upstream's upgrade request
    assert not any("evil" in value for _, value in conn.headers), conn.headers
    assert not conn.has_header("cookie") and not conn.has_header("authorization")
    assert token not in json.dumps(conn.headers)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_payload_role_selects_an_allowed_role(gateway: GatewayProcess,
                                                        ws_upstream: GraphQLWebSocketUpstream,
                                                        mint: Mint, protocol: str) -> None:
    async with ws_client(gw(gateway), subprotocol=protocol) as ws:
        await init(ws, auth_payload(mint(sub="user_editor"), **{"x-hasura-role": "editor"}))
        conn = await connected(ws_upstream)
    assert conn.init_headers["x-hasura-role"] == "editor"
    assert conn.init_headers["x-hasura-user-id"] == "user_editor"


@pytest.mark.parametrize("source", ["payload.headers.Authorization", "payload.headers.authorization",
                                    "payload.Authorization", "payload.authToken", "upgrade Authorization",
                                    "upgrade cookie from an allowed Origin"])
async def test_the_token_is_found_where_clients_put_it(gateway: GatewayProcess,
                                                       ws_upstream: GraphQLWebSocketUpstream,
                                                       mint: Mint, source: str) -> None:
    token = mint(sub="user_source")
    headers: dict[str, str] | None = None
    origin: str | None = None
    payload: Any = {}
    with_payload = True
    if source == "payload.headers.Authorization":
        payload = {"headers": {"Authorization": f"Bearer {token}"}}
    elif source == "payload.headers.authorization":
        payload = {"headers": {"authorization": f"Bearer {token}"}}
    elif source == "payload.Authorization":
        payload = {"Authorization": f"Bearer {token}"}
    elif source == "payload.authToken":
        payload = {"authToken": token}
    elif source == "upgrade Authorization":
        headers, with_payload = bearer(token), False
    else:
        headers, origin = {"Cookie": f"theme=dark; __session={token}"}, CORS_ORIGIN
    async with ws_client(gw(gateway), headers=headers, origin=origin) as ws:
        await init(ws, payload, with_payload=with_payload)
        conn = await connected(ws_upstream)
    assert conn.init_headers["x-hasura-user-id"] == "user_source"
    assert conn.init_headers["x-hasura-admin-secret"] == ADMIN_SECRET
    assert not conn.has_header("cookie") and not conn.has_header("authorization")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_forward_mode_sends_only_the_verified_token(gateway: GatewayProcess,
                                                          ws_upstream: GraphQLWebSocketUpstream,
                                                          mint: Mint, protocol: str) -> None:
    token = mint(sub="user_fwd")
    payload = {**auth_payload(token, **{"x-hasura-user-id": "user_evil", "x-hasura-admin-secret": "evil"}),
               "authToken": "junk"}
    async with ws_client(gw(gateway, "/fwd/v1/graphql"), subprotocol=protocol) as ws:
        await init(ws, payload)
        conn = await connected(ws_upstream)
    assert set(conn.init_payload) == {"headers"}, conn.init_payload
    assert conn.init_headers == {"authorization": f"Bearer {token}"}
    assert conn.path == "/v1/graphql"


async def test_forward_mode_passes_a_requested_role(gateway: GatewayProcess,
                                                    ws_upstream: GraphQLWebSocketUpstream, mint: Mint) -> None:
    token = mint(sub="user_fwd_role")
    async with ws_client(gw(gateway, "/fwd/v1/graphql")) as ws:
        await init(ws, auth_payload(token, **{"x-hasura-role": "editor"}))
        conn = await connected(ws_upstream)
    assert conn.init_headers == {"authorization": f"Bearer {token}", "x-hasura-role": "editor"}


# -- refusals: the upstream never sees a connection --


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", ["garbage", "expired", "missing", "foreign role"])
async def test_a_bad_token_is_refused_before_the_upstream(gateway: GatewayProcess,
                                                          ws_upstream: GraphQLWebSocketUpstream,
                                                          mint: Mint, protocol: str, case: str) -> None:
    payload: dict[str, Any] = {
        "garbage": {"headers": {"Authorization": "Bearer not.a.jwt"}},
        "expired": auth_payload(mint(lifetime=-30)),
        "missing": {"headers": {"x-hasura-role": "user"}},
        "foreign role": auth_payload(mint(), **{"x-hasura-role": "admin"}),
    }[case]
    async with ws_client(gw(gateway), subprotocol=protocol) as ws:
        await send_json(ws, {"type": "connection_init", "payload": payload})
        closed = await expect_close(ws)
    if protocol == TRANSPORT:
        assert closed.code == 4403 and closed.reason, closed
        assert closed.messages == [], closed
    else:
        assert closed.code == 4400, closed
        assert [m["type"] for m in closed.messages] == ["connection_error"], closed
        assert closed.messages[0].get("payload"), closed
    await assert_no_upstream_connection(ws_upstream)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("first", ["subscribe", "not json", "ping"])
async def test_a_first_message_other_than_connection_init_closes_4400(gateway: GatewayProcess,
                                                                      ws_upstream: GraphQLWebSocketUpstream,
                                                                      protocol: str, first: str) -> None:
    async with ws_client(gw(gateway), subprotocol=protocol) as ws:
        if first == "subscribe":
            await send_json(ws, subscribe_message(protocol, "1"))
        elif first == "ping":
            await send_json(ws, {"type": "ping", "payload": {}})
        else:
            await ws.send("hello")
        closed = await expect_close(ws)
    assert closed.code == 4400, closed
    await assert_no_upstream_connection(ws_upstream)


async def test_no_connection_init_in_time_closes_4408(gateway: GatewayProcess,
                                                      ws_upstream: GraphQLWebSocketUpstream) -> None:
    async with ws_client(gw(gateway)) as modern, ws_client(gw(gateway), subprotocol=LEGACY) as legacy:
        started = time.monotonic()
        closes = await asyncio.gather(expect_close(modern, 4), expect_close(legacy, 4))
    assert [c.code for c in closes] == [4408, 4408], closes
    assert time.monotonic() - started >= 0.8  # GATEWAY_WS_INIT_TIMEOUT_SECONDS=1
    await assert_no_upstream_connection(ws_upstream)


# -- Origin (cross-site WebSocket hijacking) --


async def test_a_cookie_upgrade_from_a_foreign_origin_is_refused(gateway: GatewayProcess,
                                                                 ws_upstream: GraphQLWebSocketUpstream,
                                                                 mint: Mint) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with ws_client(gw(gateway), headers={"Cookie": f"__session={mint()}"}, origin=EVIL_ORIGIN):
            pass
    assert refused.value.response.status_code == 403
    await assert_no_upstream_connection(ws_upstream)


async def test_a_token_in_the_payload_works_from_any_origin(gateway: GatewayProcess,
                                                            ws_upstream: GraphQLWebSocketUpstream,
                                                            mint: Mint) -> None:
    async with ws_client(gw(gateway), origin=EVIL_ORIGIN) as ws:
        await init(ws, auth_payload(mint(sub="user_any_origin")))
        conn = await connected(ws_upstream)
    assert conn.init_headers["x-hasura-user-id"] == "user_any_origin"


# -- relay --


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_subscriptions_events_and_completions_are_relayed(gateway: GatewayProcess,
                                                                ws_upstream: GraphQLWebSocketUpstream,
                                                                mint: Mint, protocol: str) -> None:
    async with ws_client(gw(gateway), subprotocol=protocol) as ws:
        await init(ws, auth_payload(mint()))
        await send_json(ws, subscribe_message(protocol, "s1", variables={"room": "one"}))
        await send_json(ws, subscribe_message(protocol, "s2", variables={"room": "two"}))
        ((conn, _), _) = await ws_upstream.wait_for_subscriptions(2)
        assert conn.subscribed == [("s1", {"query": SUB_QUERY, "variables": {"room": "one"}}),
                                   ("s2", {"query": SUB_QUERY, "variables": {"room": "two"}})]
        await ws_upstream.publish({"messages": [{"id": 1, "text": "hi"}]})
        events = sorted([await recv_json(ws), await recv_json(ws)], key=lambda m: m["id"])
        assert events == [{"id": op_id, "type": event_type(protocol),
                           "payload": {"data": {"messages": [{"id": 1, "text": "hi"}]}}} for op_id in ("s1", "s2")]

        await send_json(ws, complete_message(protocol, "s1"))
        await ws_upstream.wait_for(lambda: conn.active_ids == ["s2"], what="the client's completion")
        assert conn.completed_ids == ["s1"]

        await ws_upstream.complete(conn, "s2")
        assert await recv_json(ws) == {"id": "s2", "type": "complete"}


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_an_upstream_close_reaches_the_client_with_its_code(gateway: GatewayProcess,
                                                                  ws_upstream: GraphQLWebSocketUpstream,
                                                                  mint: Mint, protocol: str) -> None:
    async with ws_client(gw(gateway), subprotocol=protocol) as ws:
        await init(ws, auth_payload(mint()))
        await connected(ws_upstream)
        await ws_upstream.close_all(4500, "boom")
        closed = await expect_close(ws)
    assert (closed.code, closed.reason) == (4500, "boom")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_client_close_closes_the_upstream(gateway: GatewayProcess,
                                                  ws_upstream: GraphQLWebSocketUpstream,
                                                  mint: Mint, protocol: str) -> None:
    async with ws_client(gw(gateway), subprotocol=protocol) as ws:
        await init(ws, auth_payload(mint()))
        await send_json(ws, subscribe_message(protocol, "1"))
        ((conn, _),) = await ws_upstream.wait_for_subscriptions(1)
        await ws.close(1000, "done")
    await conn.wait_closed(timeout=5)
    assert conn.closed_by == "peer", conn.summary()


async def test_an_ordinary_ping_is_relayed_and_the_upstream_pong_returns(gateway: GatewayProcess,
                                                                         ws_upstream: GraphQLWebSocketUpstream,
                                                                         mint: Mint) -> None:
    async with ws_client(gw(gateway)) as ws:
        await init(ws, auth_payload(mint()))
        conn = await connected(ws_upstream)
        await send_json(ws, {"type": "ping", "payload": {"hello": "world"}})
        pong, _ = await recv_type(ws, "pong")
        assert pong == {"type": "pong", "payload": {"hello": "world"}}
    assert [m.payload for m in conn.messages_of_type("ping")] == [{"hello": "world"}]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_subscription_over_the_socket_limit_gets_an_error(gateway: GatewayProcess,
                                                                  ws_upstream: GraphQLWebSocketUpstream,
                                                                  mint: Mint, protocol: str) -> None:
    async with ws_client(gw(gateway), subprotocol=protocol) as ws:
        await init(ws, auth_payload(mint()))
        for n in (1, 2, 3):
            await send_json(ws, subscribe_message(protocol, f"op-{n}"))
        error, before = await recv_type(ws, "error")
        assert before == []
        assert error["id"] == "op-3", error
        if protocol == TRANSPORT:
            assert isinstance(error["payload"], list) and error["payload"][0]["message"], error
        ((conn, _), _) = await ws_upstream.wait_for_subscriptions(2)
        await asyncio.sleep(0.2)
        assert conn.subscribed_ids == ["op-1", "op-2"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_too_deep_subscription_gets_an_error_and_is_never_forwarded(gateway: GatewayProcess,
                                                                            ws_upstream: GraphQLWebSocketUpstream,
                                                                            mint: Mint, protocol: str) -> None:
    async with ws_client(gw(gateway), subprotocol=protocol) as ws:
        await init(ws, auth_payload(mint()))
        await send_json(ws, subscribe_message(protocol, "deep", query=deep_subscription(30), variables={}))
        error, _ = await recv_type(ws, "error")
        assert error["id"] == "deep", error
        if protocol == TRANSPORT:
            assert isinstance(error["payload"], list) and error["payload"][0]["message"], error
        await send_json(ws, subscribe_message(protocol, "fine"))  # the socket stays usable
        ((conn, op_id),) = await ws_upstream.wait_for_subscriptions(1)
    assert op_id == "fine" and conn.subscribed_ids == ["fine"]
    assert not any(m.id == "deep" for _, m in ws_upstream.all_messages())


# -- expiry and renewal --


async def test_the_socket_closes_4403_when_the_token_expires(gateway: GatewayProcess,
                                                             ws_upstream: GraphQLWebSocketUpstream,
                                                             mint: Mint) -> None:
    token = mint(sub="user_expiring", lifetime=3)
    async with ws_client(gw(gateway)) as modern, ws_client(gw(gateway), subprotocol=LEGACY) as legacy:
        for ws, protocol in ((modern, TRANSPORT), (legacy, LEGACY)):
            await init(ws, auth_payload(token))
            await send_json(ws, subscribe_message(protocol, "1"))
        await ws_upstream.wait_for_subscriptions(2)
        closes = await asyncio.gather(expect_close(modern, 8), expect_close(legacy, 8))
    assert time.time() >= exp_of(token)
    assert [(c.code, c.reason) for c in closes] == [(4403, "token expired")] * 2, closes
    for conn in ws_upstream.connections:
        await conn.wait_closed(timeout=3)
        assert conn.closed_by == "peer", conn.summary()


async def test_a_ping_with_a_fresh_token_renews_the_socket(gateway: GatewayProcess,
                                                           ws_upstream: GraphQLWebSocketUpstream,
                                                           mint: Mint) -> None:
    first = mint(sub="user_renew", sid="sess_renew", lifetime=3)
    fresh = mint(sub="user_renew", sid="sess_renew", lifetime=60)
    async with ws_client(gw(gateway)) as ws:
        await init(ws, auth_payload(first))
        await send_json(ws, subscribe_message(TRANSPORT, "1"))
        ((conn, _),) = await ws_upstream.wait_for_subscriptions(1)

        await send_json(ws, {"type": "ping", "payload": {"token": fresh}})
        pong, before = await recv_type(ws, "pong")
        assert before == []
        assert set(pong) == {"type", "payload"} and set(pong["payload"]) == {"expires_at"}, pong
        expires_at = pong["payload"]["expires_at"]
        assert isinstance(expires_at, int) and exp_of(fresh) <= expires_at <= exp_of(fresh) + SKEW, pong

        await sleep_until(exp_of(first) + SKEW + 1.0)  # past the first token's expiry (and skew)
        await ws_upstream.publish({"still": "here"})
        assert await recv_json(ws) == {"id": "1", "type": "next", "payload": {"data": {"still": "here"}}}
        assert conn.is_open
    assert not any(fresh in str(m.raw) for _, m in ws_upstream.all_messages())
    assert not any(m.type == "ping" and "token" in json.dumps(m.payload) for _, m in ws_upstream.all_messages())


@pytest.mark.parametrize("case", ["another user", "another session", "invalid token"])
async def test_a_renewal_that_does_not_match_closes_4403(gateway: GatewayProcess,
                                                         ws_upstream: GraphQLWebSocketUpstream,
                                                         mint: Mint, case: str) -> None:
    token = mint(sub="user_owner", sid="sess_owner")
    renewal = {
        "another user": mint(sub="user_other", sid="sess_owner"),
        "another session": mint(sub="user_owner", sid="sess_other"),
        "invalid token": "not.a.jwt",
    }[case]
    async with ws_client(gw(gateway)) as ws:
        await init(ws, auth_payload(token))
        conn = await connected(ws_upstream)
        await send_json(ws, {"type": "ping", "payload": {"token": renewal}})
        closed = await expect_close(ws)
    assert closed.code == 4403, closed
    assert not any(m.type == "pong" for m in closed.messages if isinstance(m, dict)), closed
    await conn.wait_closed(timeout=3)
    assert not conn.messages_of_type("ping")


async def test_forward_mode_renewal_moves_the_subscriptions_to_a_new_upstream_identity(
        gateway: GatewayProcess, ws_upstream: GraphQLWebSocketUpstream, mint: Mint) -> None:
    """Hasura tears a socket down at its token's exp: the gateway must switch to a new upstream
    connection carrying the fresh token, re-subscribe under the same ids, and the client sees no close."""
    ws_upstream.expire_at_token_exp = True
    first = mint(sub="user_fwd_renew", sid="sess_fwd_renew", lifetime=4)
    fresh = mint(sub="user_fwd_renew", sid="sess_fwd_renew", lifetime=60)
    async with ws_client(gw(gateway, "/fwd/v1/graphql")) as ws:
        await init(ws, auth_payload(first))
        await send_json(ws, subscribe_message(TRANSPORT, "op-1", variables={"room": "a"}))
        await send_json(ws, subscribe_message(TRANSPORT, "op-2", variables={"room": "b"}))
        ((old, _), _) = await ws_upstream.wait_for_subscriptions(2)
        assert old.bearer_token == first

        await send_json(ws, {"type": "ping", "payload": {"token": fresh}})
        pong, _ = await recv_type(ws, "pong")
        assert pong["payload"]["expires_at"] >= exp_of(fresh)

        def switched() -> UpstreamConnection | None:
            for conn in ws_upstream.connections[1:]:
                if conn.bearer_token == fresh and sorted(conn.active_ids) == ["op-1", "op-2"]:
                    return conn
            return None

        new = await ws_upstream.wait_for(switched, timeout=3, what="re-subscribed connection with the new token")
        assert new.init_headers == {"authorization": f"Bearer {fresh}"}
        assert sorted(new.subscribed) == sorted(old.subscribed)
        await old.wait_closed(timeout=max(1.0, exp_of(first) - time.time()))
        assert old.closed_by == "peer" and not old.expired, old.summary()  # retired by the gateway

        await sleep_until(exp_of(first) + SKEW + 0.5)
        assert await ws_upstream.publish({"after": "renewal"}) == 2
        events = sorted([await recv_json(ws), await recv_json(ws)], key=lambda m: m["id"])
        assert events == [{"id": op_id, "type": "next", "payload": {"data": {"after": "renewal"}}}
                          for op_id in ("op-1", "op-2")]
        await expect_silence(ws)  # no duplicate events, no second connection_ack, no close
        assert ws.close_code is None and new.is_open


# == 3. a gateway with a small message limit and CLERK_AUTHORIZED_PARTIES ==================================


@pytest.fixture(scope="module")
def limits_gateway(jwks_server: JwksServer, ws_upstream: GraphQLWebSocketUpstream) -> Iterator[GatewayProcess]:
    env = gateway_env(jwks_server.url, {"hasura": hasura_backend(ws_upstream.http_url)},
                      GATEWAY_WS_MAX_MESSAGE_BYTES=MAX_MESSAGE_BYTES, CLERK_AUTHORIZED_PARTIES=AZP_ORIGIN,
                      GATEWAY_RATE_LIMIT_ENABLED="false", GATEWAY_LOG_LEVEL="warning")
    with GatewayProcess(env) as process:
        yield process


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_message_over_the_size_limit_closes_1009(limits_gateway: GatewayProcess,
                                                         ws_upstream: GraphQLWebSocketUpstream,
                                                         mint: Mint, protocol: str) -> None:
    async with ws_client(gw(limits_gateway), subprotocol=protocol) as ws:
        await init(ws, auth_payload(mint(azp=AZP_ORIGIN)))
        conn = await connected(ws_upstream)
        await send_json(ws, subscribe_message(protocol, "big", variables={"blob": "x" * (MAX_MESSAGE_BYTES + 100)}))
        closed = await expect_close(ws)
    assert closed.code == 1009, closed
    assert all(len(m.raw) <= MAX_MESSAGE_BYTES for m in conn.messages)
    await conn.wait_closed(timeout=3)


async def test_a_cookie_upgrade_from_an_authorized_party_works(limits_gateway: GatewayProcess,
                                                               ws_upstream: GraphQLWebSocketUpstream,
                                                               mint: Mint) -> None:
    token = mint(sub="user_azp_cookie", azp=AZP_ORIGIN)
    async with ws_client(gw(limits_gateway), headers={"Cookie": f"__session={token}"}, origin=AZP_ORIGIN) as ws:
        await init(ws, {})
        conn = await connected(ws_upstream)
    assert conn.init_headers["x-hasura-user-id"] == "user_azp_cookie"
    with pytest.raises(InvalidStatus) as refused:
        async with ws_client(gw(limits_gateway), headers={"Cookie": f"__session={token}"}, origin=CORS_ORIGIN):
            pass
    assert refused.value.response.status_code == 403


# == 4. shutdown: a gateway of its own, stopped by the test =================================================


async def test_stopping_the_gateway_closes_sockets_with_1001(jwks_server: JwksServer,
                                                             ws_upstream: GraphQLWebSocketUpstream,
                                                             mint: Mint) -> None:
    env = gateway_env(jwks_server.url, {"hasura": hasura_backend(ws_upstream.http_url)},
                      GATEWAY_DRAIN_SECONDS=2, GATEWAY_RATE_LIMIT_ENABLED="false", GATEWAY_LOG_LEVEL="warning")
    process = GatewayProcess(env).start()
    try:
        async with ws_client(gw(process)) as modern, ws_client(gw(process), subprotocol=LEGACY) as legacy:
            for ws, protocol in ((modern, TRANSPORT), (legacy, LEGACY)):
                await init(ws, auth_payload(mint()))
                await send_json(ws, subscribe_message(protocol, "1"))
            await ws_upstream.wait_for_subscriptions(2)
            stopping = asyncio.ensure_future(asyncio.to_thread(process.stop, 10.0))
            closes = await asyncio.gather(expect_close(modern, 8), expect_close(legacy, 8))
            exit_code = await asyncio.wait_for(stopping, 15)
        assert [c.code for c in closes] == [1001, 1001], closes
        # uvicorn re-raises the SIGTERM it handled gracefully, so the exit status is -15, not a crash
        assert exit_code is not None and not process.running
    finally:
        process.close()
