"""GraphQL subscriptions through the gateway with the client frontends ship: npm ``graphql-ws``.

``ws_client/client.mjs`` (graphql-ws 6.4.2, ``ws``, ``graphql``; pinned by ``ws_client/package-lock.json``,
installed by ``scripts/test-tools/node.sh``) talks to the real gateway, which stands in front of a
small graphql-transport-ws server defined here (:class:`CounterUpstream`: it acknowledges
``connection_init``, streams ``{"counter": n}`` every 200 ms per subscription, answers ``ping``, and
records what it received). What a frontend relies on, seen from the library's side:

* the token in ``connectionParams.headers.Authorization`` works, and the upstream's
  ``connection_init`` carries the gateway's identity (the admin secret), never the client's token;
* a refused token makes ``iterate`` throw a ``CloseEvent`` 4403;
* at the token's ``exp`` plus ``CLERK_CLOCK_SKEW_SECONDS`` the socket closes 4403 "token expired";
* the renewal ping ``{"type":"ping","payload":{"token":…}}`` is answered with a pong whose payload
  (graphql-ws's ``on.pong(received, payload)``) holds the new ``expires_at``, and events go on past
  the first token's expiry; a renewal token of another user or session closes 4403;
* with ``retryAttempts`` and a ``connectionParams`` *function*, the client reconnects after the
  expiry close with a fresh token and the subscription continues (what docs/realtime.md recommends).

Skipped only when ``node`` is not installed (CI installs it); a failing ``npm ci`` fails the tests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from tests.e2e.conftest import Mint
from tests.support.gateway_process import ADMIN_SECRET, GatewayProcess, gateway_env, hasura_backend
from tests.support.jwks_server import JwksServer
from tests.support.ports import LOCALHOST
from tests.support.tokens import SigningKey

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = Path(__file__).resolve().parent / "ws_client"
NODE = shutil.which("node")
SKEW = 1  # CLERK_CLOCK_SKEW_SECONDS of the gateway under test
PROTOCOL = "graphql-transport-ws"
QUERY = "subscription Counter { counter }"

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed: the graphql-ws client tests need it")

Events = list[dict[str, Any]]


# -- the upstream: a tiny graphql-transport-ws server ----------------------------------------------


@dataclass
class UpstreamConnection:
    path: str
    subprotocol: str | None
    messages: list[dict[str, Any]] = field(default_factory=list)
    init_payload: Any = None
    subscriptions: list[str] = field(default_factory=list)
    close_code: int | None = None
    closed: bool = False

    @property
    def types(self) -> list[str]:
        return [str(message.get("type")) for message in self.messages]


class CounterUpstream:
    """graphql-transport-ws on 127.0.0.1 ``/v1/graphql`` (and ``GET /healthz``), in a background thread.

    Acks ``connection_init`` (recording its payload), sends ``next`` ``{"data": {"counter": n}}`` every
    ``interval`` seconds for each ``subscribe`` until ``complete`` or the socket's end, answers
    ``ping`` with ``pong``. Every connection is recorded in :attr:`connections`.
    """

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.connections: list[UpstreamConnection] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="CounterUpstream", daemon=True)
        self._server: Server | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def __enter__(self) -> CounterUpstream:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)
        self.port = int(next(iter(self._server.sockets)).getsockname()[1])
        return self

    def __exit__(self, *exc_info: object) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"upstream: {what} within {timeout} s; saw {self.connections}")
            time.sleep(0.02)

    async def _serve(self) -> Server:
        return await serve(self._handle, LOCALHOST, 0, subprotocols=[Subprotocol(PROTOCOL)],
                           process_request=self._process_request, ping_interval=None, compression=None)

    @staticmethod
    def _process_request(connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if request.path != "/v1/graphql":
            return connection.respond(HTTPStatus.NOT_FOUND, "no socket here\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        conn = UpstreamConnection(path=ws.request.path if ws.request else "", subprotocol=ws.subprotocol)
        self.connections.append(conn)
        counters: dict[str, asyncio.Task[None]] = {}
        try:
            async for raw in ws:
                message = json.loads(raw)
                conn.messages.append(message)
                kind, operation = message.get("type"), message.get("id")
                if kind == "connection_init":
                    conn.init_payload = message.get("payload")
                    await ws.send('{"type":"connection_ack"}')
                elif kind == "subscribe" and isinstance(operation, str):
                    conn.subscriptions.append(operation)
                    counters[operation] = asyncio.create_task(self._count(ws, operation))
                elif kind == "complete" and isinstance(operation, str):
                    task = counters.pop(operation, None)
                    if task is not None:
                        task.cancel()
                elif kind == "ping":
                    await ws.send('{"type":"pong"}')
        except ConnectionClosed:
            pass
        finally:
            for task in counters.values():
                task.cancel()
            conn.close_code = ws.close_code
            conn.closed = True

    async def _count(self, ws: ServerConnection, operation: str) -> None:
        counter = 0
        with contextlib.suppress(ConnectionClosed):
            while True:
                counter += 1
                await ws.send(json.dumps({"id": operation, "type": "next", "payload": {"data": {"counter": counter}}}))
                await asyncio.sleep(self.interval)


# -- fixtures and helpers ----------------------------------------------------------------------------


def _node_env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if name.lower() not in {"http_proxy", "https_proxy", "all_proxy", "node_options"}
           and not name.startswith("WS_")}
    env["NO_PROXY"] = "*"
    env.update(extra)
    return env


def _ensure_packages() -> None:
    if all((CLIENT_DIR / "node_modules" / name / "package.json").exists() for name in ("graphql-ws", "ws", "graphql")):
        return
    result = subprocess.run(["bash", str(ROOT / "scripts" / "test-tools" / "node.sh")],
                            capture_output=True, text=True, timeout=180, check=False)
    if result.returncode != 0:
        pytest.fail(f"scripts/test-tools/node.sh failed:\n{result.stdout}\n{result.stderr}")
    if not (CLIENT_DIR / "node_modules" / "graphql-ws" / "package.json").exists():
        pytest.fail("scripts/test-tools/node.sh did not install tests/e2e/ws_client's packages")


@pytest.fixture(scope="module")
def counter_upstream() -> Iterator[CounterUpstream]:
    with CounterUpstream() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_counter_upstream(counter_upstream: CounterUpstream) -> None:
    counter_upstream.connections.clear()


@pytest.fixture(scope="module")
def gateway(jwks_server: JwksServer, counter_upstream: CounterUpstream) -> Iterator[GatewayProcess]:
    assert NODE is not None
    _ensure_packages()
    env = gateway_env(jwks_server.url, {"hasura": hasura_backend(counter_upstream.base_url)},
                      GATEWAY_DEFAULT_BACKEND="hasura", CLERK_CLOCK_SKEW_SECONDS=SKEW)
    with GatewayProcess(env) as process:
        yield process


def ws_url(gateway: GatewayProcess, path: str = "/hasura/v1/graphql") -> str:
    return "ws" + gateway.url[4:] + path


def expires_at(token: str) -> int:
    payload = token.split(".")[1]
    exp: int = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]
    return exp


def run_client(scenario: str, url: str, *, timeout_ms: int = 20000, **env: str) -> Events:
    """Runs ``client.mjs <scenario> <url>`` and returns its JSON lines; a non-zero exit fails the test."""
    assert NODE is not None
    result = subprocess.run([NODE, "client.mjs", scenario, url], cwd=CLIENT_DIR,
                            env=_node_env(WS_TIMEOUT_MS=str(timeout_ms), **env), capture_output=True, text=True,
                            timeout=timeout_ms / 1000 + 10, check=False)
    events: Events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0, (f"client.mjs {scenario} exited {result.returncode}:\n{result.stdout}\n"
                                    f"{result.stderr}")
    assert events and events[-1]["event"] == "done", events
    return events


def of(events: Events, kind: str) -> Events:
    return [event for event in events if event["event"] == kind]


def counters(events: Events) -> list[int]:
    return [event["counter"] for event in of(events, "next")]


def assert_gateway_identity(conn: UpstreamConnection, sub: str, *tokens: str) -> None:
    """The upstream's connection_init holds the admin-secret identity, and none of the client's tokens."""
    assert isinstance(conn.init_payload, dict) and set(conn.init_payload) == {"headers"}, conn.init_payload
    headers = conn.init_payload["headers"]
    assert headers["x-hasura-admin-secret"] == ADMIN_SECRET, headers
    assert headers["x-hasura-user-id"] == sub and headers["x-hasura-role"] == "user", headers
    assert "authorization" not in {name.lower() for name in headers}, headers
    seen = json.dumps(conn.messages)
    for token in tokens:
        assert token not in seen and token.split(".")[2] not in seen


# -- the tests -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/hasura/v1/graphql", "/graphql"])
def test_subscribe_with_the_token_in_connection_params(gateway: GatewayProcess, counter_upstream: CounterUpstream,
                                                       mint: Mint, path: str) -> None:
    token = mint(sub="user_npm", sid="sess_npm", lifetime=60)
    events = run_client("events", ws_url(gateway, path), WS_TOKEN=token, WS_EVENTS="3")

    assert counters(events) == [1, 2, 3], events
    assert of(events, "connected") == [{"event": "connected", "t": of(events, "connected")[0]["t"],
                                        "was_retry": False}]
    assert not of(events, "thrown"), events
    counter_upstream.wait_for(lambda: len(counter_upstream.connections) == 1 and counter_upstream.connections[0].closed,
                              "one connection, closed after dispose")
    conn = counter_upstream.connections[0]
    assert conn.path == "/v1/graphql" and conn.subprotocol == PROTOCOL
    assert conn.types == ["connection_init", "subscribe", "complete"], conn.messages
    assert conn.messages[1]["payload"]["query"] == QUERY and conn.messages[2]["id"] == conn.subscriptions[0]
    assert_gateway_identity(conn, "user_npm", token)


def _foreign_key_token(mint: Mint) -> str:
    """Signed by a key the JWKS does not publish, under the published kid: a bad signature."""
    foreign = SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=2048), kid="ins_e2e", alg="RS256")
    return mint(key=foreign, sub="user_npm", sid="sess_npm")


@pytest.mark.parametrize("make_token", [
    pytest.param(_foreign_key_token, id="bad-signature"),
    pytest.param(lambda mint: mint(sub="user_npm", sid="sess_npm", lifetime=-30), id="expired"),
    pytest.param(lambda mint: "not-a-jwt", id="garbage"),
])
def test_a_refused_token_makes_iterate_throw_4403(gateway: GatewayProcess, counter_upstream: CounterUpstream,
                                                  mint: Mint, make_token: Callable[[Mint], str]) -> None:
    events = run_client("refused", ws_url(gateway), WS_TOKEN=make_token(mint))

    thrown = of(events, "thrown")
    assert len(thrown) == 1 and thrown[0]["code"] == 4403, events
    assert thrown[0]["reason"].startswith("Forbidden"), thrown
    assert not of(events, "next") and not of(events, "connected"), events
    assert counter_upstream.connections == []


def test_the_socket_closes_4403_token_expired_at_exp_plus_skew(gateway: GatewayProcess,
                                                                counter_upstream: CounterUpstream,
                                                                mint: Mint) -> None:
    token = mint(sub="user_npm", sid="sess_npm", lifetime=4)
    exp = expires_at(token)
    events = run_client("run", ws_url(gateway), WS_TOKEN=token, WS_RUN_UNTIL=str(exp + SKEW + 4))

    closed, thrown = of(events, "closed"), of(events, "thrown")
    assert [(e["code"], e["reason"]) for e in closed] == [(4403, "token expired")], events
    assert [(e["code"], e["reason"]) for e in thrown] == [(4403, "token expired")], events
    assert exp + SKEW - 0.5 <= closed[0]["t"] <= exp + SKEW + 1.5, (exp, closed)
    received = counters(events)
    assert received == list(range(1, len(received) + 1)) and len(received) >= 5, events
    assert all(event["t"] < closed[0]["t"] for event in of(events, "next"))
    counter_upstream.wait_for(lambda: bool(counter_upstream.connections) and counter_upstream.connections[0].closed,
                              "the upstream connection closed with the client's")
    assert len(counter_upstream.connections) == 1


def test_a_renewal_ping_moves_the_expiry_and_the_socket_lives_on(gateway: GatewayProcess,
                                                                  counter_upstream: CounterUpstream,
                                                                  mint: Mint) -> None:
    token = mint(sub="user_npm", sid="sess_npm", lifetime=4)
    fresh = mint(sub="user_npm", sid="sess_npm", lifetime=120)
    first_expiry = expires_at(token) + SKEW
    events = run_client("run", ws_url(gateway), WS_TOKEN=token, WS_RENEW_TOKEN=fresh, WS_RENEW_AFTER_MS="1000",
                        WS_RUN_UNTIL=str(first_expiry + 2))

    pongs = of(events, "pong")
    assert pongs == [{"event": "pong", "t": pongs[0]["t"], "received": True,
                      "payload": {"expires_at": expires_at(fresh)}}], events
    assert not of(events, "thrown"), events
    ended = of(events, "ended")
    assert len(ended) == 1, events
    # the only close is the client's own, after it stopped (dispose)
    assert [(e["code"], e["t"] >= ended[0]["t"]) for e in of(events, "closed")] == [(1000, True)], events
    received = counters(events)
    assert received == list(range(1, len(received) + 1)), events  # one upstream stream, no gap, no restart
    late = [event for event in of(events, "next") if event["t"] > first_expiry + 0.5]
    assert len(late) >= 5, (first_expiry, events)

    counter_upstream.wait_for(lambda: bool(counter_upstream.connections) and counter_upstream.connections[0].closed,
                              "the upstream connection closed after dispose")
    assert len(counter_upstream.connections) == 1
    conn = counter_upstream.connections[0]
    assert conn.types == ["connection_init", "subscribe", "complete"], conn.messages  # the renewal ping stays
    assert_gateway_identity(conn, "user_npm", token, fresh)


@pytest.mark.parametrize(("sub", "sid"), [("user_other", "sess_npm"), ("user_npm", "sess_other")],
                         ids=["other-user", "other-session"])
def test_a_renewal_with_another_users_token_closes_4403(gateway: GatewayProcess, counter_upstream: CounterUpstream,
                                                        mint: Mint, sub: str, sid: str) -> None:
    token = mint(sub="user_npm", sid="sess_npm", lifetime=60)
    other = mint(sub=sub, sid=sid, lifetime=120)
    events = run_client("run", ws_url(gateway), WS_TOKEN=token, WS_RENEW_TOKEN=other, WS_RENEW_AFTER_MS="600",
                        WS_RUN_UNTIL=str(time.time() + 8))

    expected = [(4403, "Forbidden: renewal-other-session")]
    assert [(e["code"], e["reason"]) for e in of(events, "closed")] == expected, events
    assert [(e["code"], e["reason"]) for e in of(events, "thrown")] == expected, events
    assert not of(events, "pong") and of(events, "next"), events
    counter_upstream.wait_for(lambda: bool(counter_upstream.connections) and counter_upstream.connections[0].closed,
                              "the upstream connection closed")
    assert "ping" not in counter_upstream.connections[0].types


def test_the_client_reconnects_on_4403_with_a_fresh_token(gateway: GatewayProcess, counter_upstream: CounterUpstream,
                                                          mint: Mint) -> None:
    first = mint(sub="user_npm", sid="sess_npm", lifetime=3)
    second = mint(sub="user_npm", sid="sess_npm", lifetime=120)
    first_expiry = expires_at(first) + SKEW
    events = run_client("reconnect", ws_url(gateway), WS_TOKENS=json.dumps([first, second]),
                        WS_RUN_UNTIL=str(first_expiry + 2.5))

    assert [e["call"] for e in of(events, "connection_params")] == [1, 2], events
    assert [e["was_retry"] for e in of(events, "connected")] == [False, True], events
    closes = [(e["code"], e["reason"]) for e in of(events, "closed")]
    assert closes == [(4403, "token expired"), (1000, "Normal Closure")], events
    assert not of(events, "thrown") and len(of(events, "ended")) == 1, events

    expired_at = of(events, "closed")[0]["t"]
    reconnected_at = of(events, "connected")[1]["t"]
    assert expired_at <= reconnected_at < expired_at + 2, events
    # split by the order the client logged its events (timestamps are whole milliseconds, and the first
    # event of the new stream can share one with the reconnection)
    reconnection = events.index(of(events, "connected")[1])
    before = [e["counter"] for e in events[:reconnection] if e["event"] == "next"]
    after = [e["counter"] for e in events[reconnection:] if e["event"] == "next"]
    assert before == list(range(1, len(before) + 1)) and len(before) >= 3, events
    assert after == list(range(1, len(after) + 1)) and len(after) >= 5, events  # a new upstream stream

    counter_upstream.wait_for(lambda: len(counter_upstream.connections) == 2
                              and all(conn.closed for conn in counter_upstream.connections), "two connections, closed")
    old, new = counter_upstream.connections
    assert old.subscriptions == new.subscriptions and len(old.subscriptions) == 1  # re-subscribed under its id
    assert_gateway_identity(old, "user_npm", first, second)
    assert_gateway_identity(new, "user_npm", first, second)
