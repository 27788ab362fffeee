"""A GraphQL-over-WebSocket server on 127.0.0.1 that stands in for Hasura's ``/v1/graphql`` socket.

It speaks both subprotocols the way Hasura chooses between them (REFERENCE.md §2.6): a client that
offers exactly ``graphql-transport-ws`` gets that protocol (``connection_init`` → ``connection_ack``;
``subscribe`` → ``next``/``error``/``complete``; ``ping`` ↔ ``pong``; ``complete`` from the client);
every other offer, none included, gets the legacy Apollo protocol (``graphql-ws``: ``start`` →
``data``; ``stop``; ``connection_terminate``; optional ``ka`` keep-alives). The offered
``graphql-ws`` is echoed; an offer without it is answered without a subprotocol.

The double never produces events on its own. A test drives it:

``await publish(data)``            a ``next`` (``data`` in legacy) with payload ``{"data": data}`` for
                                   every active subscription of every open, acknowledged connection
``await send(conn, message)``      any message on one connection
``await close_all(code, reason)``  the upstream closes its sockets (close propagation);
                                   ``close_connection(conn, …)`` one of them
``await wait_for_connections(n)``, ``await wait_for_subscriptions(n)``, ``await wait_for(pred)``,
``await conn.wait_closed()``       polling waits, each with a timeout (an ``AssertionError`` that
                                   describes what the double saw, never a hang)

The network-facing methods are coroutines run on the double's own loop and awaited from the test's
loop, so a websockets client in the test keeps being served while the double works (a blocking
call would stall the client's close handshake).

Behaviour switches (attributes; :meth:`reset` restores the constructor's values):

``reject_init``          answer ``connection_init`` like Hasura refusing the identity:
                         ``graphql-transport-ws`` closes 4403 ``Forbidden``; legacy sends
                         ``connection_error`` then closes 4400
``expire_at_token_exp``  like Hasura in JWT mode: decode (never verify) the bearer token of
                         ``payload.headers.Authorization`` (else the upgrade ``Authorization``) and
                         tear the socket down when its ``exp`` passes — no message, close
                         ``expiry_close_code`` (``None``: drop the TCP connection). A token already
                         expired at ``connection_init`` is refused like ``reject_init``
``init_timeout_seconds`` ``graphql-transport-ws`` closes 4408 without ``connection_init`` in time
``legacy_keepalive_seconds``  legacy ``ka`` after the ack and then periodically (``None``: off)

Everything each connection did is recorded on an :class:`UpstreamConnection`: the upgrade path and
headers, the offered and chosen subprotocol, every message received (raw and parsed), the
``connection_init`` payload, the subscriptions, every message sent, and how it ended (code, reason,
and which side closed). ``GET /healthz`` answers 200 (the gateway's readiness probe); an upgrade to a
path Hasura has no socket on answers 404 and is recorded in :attr:`refused_requests`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from .ports import LOCALHOST, BackgroundServer

__all__ = ["LEGACY", "TRANSPORT", "WS_PATHS", "GraphQLWebSocketUpstream", "ReceivedMessage",
           "UpstreamConnection", "decode_jwt_claims"]

T = TypeVar("T")
Protocol = Literal["graphql-transport-ws", "graphql-ws"]
TRANSPORT: Final = "graphql-transport-ws"
LEGACY: Final = "graphql-ws"
ClosedBy = Literal["peer", "upstream", "abnormal"]
WS_PATHS = frozenset({"/v1/graphql", "/v1alpha1/graphql", "/v1beta1/relay"})
_POLL = 0.01


def decode_jwt_claims(token: str) -> dict[str, Any] | None:
    """The claims of a compact JWS, *not verified* (what Hasura reads ``exp`` from); ``None`` if unreadable."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        segment = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(segment.encode("ascii")))
    except (ValueError, UnicodeError):
        return None
    return claims if isinstance(claims, dict) else None


def _header_lookup(headers: Any, name: str) -> Any:
    """A header from a JSON object of headers, by case-insensitive name (as Hasura reads them)."""
    if not isinstance(headers, Mapping):
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == wanted:
            return value
    return None


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One data frame from the peer: the raw text (or bytes) and, when it is JSON, the parsed value."""

    raw: str | bytes
    parsed: Any
    at: float

    @property
    def type(self) -> str | None:
        return self.parsed.get("type") if isinstance(self.parsed, dict) else None

    @property
    def id(self) -> str | None:
        return self.parsed.get("id") if isinstance(self.parsed, dict) else None

    @property
    def payload(self) -> Any:
        return self.parsed.get("payload") if isinstance(self.parsed, dict) else None


@dataclass(eq=False)
class UpstreamConnection:
    """Everything one WebSocket connection to the double did. Written on the double's loop, read by tests."""

    index: int
    path: str
    headers: tuple[tuple[str, str], ...]  # upgrade request headers, names lower-cased, order kept
    offered_subprotocols: tuple[str, ...]
    subprotocol: str | None  # what the double echoed
    protocol: Protocol  # what it speaks
    opened_at: float = field(default_factory=time.time)
    messages: list[ReceivedMessage] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    init_payload: Any = None
    init_count: int = 0
    acked: bool = False
    rejected: bool = False
    token: str | None = None  # the bearer token read for expire_at_token_exp
    token_exp: float | None = None
    expired: bool = False  # the double tore the socket down at the token's exp
    active: dict[str, Any] = field(default_factory=dict)  # id -> subscribe/start payload, in order
    subscribed: list[tuple[str, Any]] = field(default_factory=list)  # every subscribe/start ever
    completed_ids: list[str] = field(default_factory=list)  # ids the peer completed (stop in legacy)
    close_code: int | None = None
    close_reason: str | None = None
    closed_by: ClosedBy | None = None
    _ws: ServerConnection | None = field(default=None, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set, repr=False)
    _expiry: asyncio.TimerHandle | None = field(default=None, repr=False)

    # -- reading -------------------------------------------------------------------------------

    def header_values(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self.headers if key == wanted]

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        if len(values) > 1:
            raise AssertionError(f"upgrade header {name!r} arrived {len(values)} times: {values!r}")
        return values[0] if values else None

    def has_header(self, name: str) -> bool:
        return bool(self.header_values(name))

    @property
    def header_names(self) -> set[str]:
        return {key for key, _ in self.headers}

    def messages_of_type(self, message_type: str) -> list[ReceivedMessage]:
        return [message for message in list(self.messages) if message.type == message_type]

    @property
    def init_headers(self) -> dict[str, Any]:
        """``connection_init`` ``payload.headers`` with lower-cased names (``{}`` when absent)."""
        headers = self.init_payload.get("headers") if isinstance(self.init_payload, dict) else None
        if not isinstance(headers, dict):
            return {}
        return {str(name).lower(): value for name, value in headers.items()}

    @property
    def bearer_token(self) -> str | None:
        """The token of ``payload.headers.Authorization`` (any case), without ``Bearer``."""
        value = self.init_headers.get("authorization")
        if not isinstance(value, str):
            return None
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None

    @property
    def active_ids(self) -> list[str]:
        return list(dict(self.active))

    @property
    def subscribed_ids(self) -> list[str]:
        return [op_id for op_id, _ in list(self.subscribed)]

    @property
    def is_open(self) -> bool:
        return not self._done.is_set()

    @property
    def closed(self) -> bool:
        return self._done.is_set()

    async def wait_closed(self, timeout: float = 5.0) -> UpstreamConnection:
        deadline = time.monotonic() + timeout
        while not self._done.is_set():
            if time.monotonic() >= deadline:
                raise AssertionError(f"upstream connection #{self.index} still open after {timeout} s: "
                                     f"{self.summary()}")
            await asyncio.sleep(_POLL)
        return self

    def summary(self) -> str:
        types = [message.type or "<not json>" for message in list(self.messages)]
        return (f"#{self.index} {self.path} {self.protocol} received={types} active={self.active_ids} "
                f"closed={self.closed} code={self.close_code} reason={self.close_reason!r} by={self.closed_by}")


class GraphQLWebSocketUpstream(BackgroundServer):
    """The fake Hasura WebSocket endpoint, in its own thread and loop (see the module docstring)."""

    def __init__(self, *, port: int | None = None, reject_init: bool = False,
                 reject_message: str = "Authentication hook unauthorized this request",
                 expire_at_token_exp: bool = False, expiry_close_code: int | None = 1000,
                 init_timeout_seconds: float | None = 3.0, legacy_keepalive_seconds: float | None = None,
                 close_timeout: float = 2.0) -> None:
        super().__init__(_no_aiohttp_app, port=port)
        self._defaults: dict[str, Any] = {
            "reject_init": reject_init, "reject_message": reject_message,
            "expire_at_token_exp": expire_at_token_exp, "expiry_close_code": expiry_close_code,
            "init_timeout_seconds": init_timeout_seconds, "legacy_keepalive_seconds": legacy_keepalive_seconds,
        }
        self.reject_init = reject_init
        self.reject_message = reject_message
        self.expire_at_token_exp = expire_at_token_exp
        self.expiry_close_code = expiry_close_code
        self.init_timeout_seconds = init_timeout_seconds
        self.legacy_keepalive_seconds = legacy_keepalive_seconds
        self._close_timeout = close_timeout
        self._server: Server | None = None
        self._lock = threading.Lock()
        self._connections: list[UpstreamConnection] = []
        self._refused: list[tuple[str, tuple[tuple[str, str], ...]]] = []
        self._probes = 0
        self._counter = 0
        self._background: set[asyncio.Task[Any]] = set()

    # -- lifecycle (the websockets server instead of BackgroundServer's aiohttp runner) ----------

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        if self._loop is None:
            self._start_loop()
        if self._server is None:
            self.run(self._serve())

    def stop(self) -> None:
        """Stop listening and close every open connection with 1001 (going away)."""
        if self._server is not None and self._loop is not None:
            self.run(self._shutdown(), timeout=self._close_timeout + 5)

    async def _serve(self) -> None:
        self._server = await serve(
            self._handler, LOCALHOST, self._port or 0,
            select_subprotocol=self._select_subprotocol, process_request=self._process_request,
            compression=None, ping_interval=None, close_timeout=self._close_timeout, max_size=None,
            open_timeout=5,
        )
        if self._port is None:
            self._port = int(next(iter(self._server.sockets)).getsockname()[1])

    async def _shutdown(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close(close_connections=True)
            try:
                await asyncio.wait_for(server.wait_closed(), self._close_timeout + 3)
            except TimeoutError:
                pass

    # -- what tests read -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>`` (the socket itself lives at ``/v1/graphql``)."""
        return f"ws://{LOCALHOST}:{self.port}"

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:<port>``: a Hasura backend's ``url`` for the gateway."""
        return self.base_url

    @property
    def connections(self) -> list[UpstreamConnection]:
        """Every WebSocket connection since the last :meth:`reset` (open or closed), oldest first."""
        with self._lock:
            return list(self._connections)

    @property
    def open_connections(self) -> list[UpstreamConnection]:
        return [conn for conn in self.connections if conn.is_open]

    @property
    def refused_requests(self) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
        """Upgrades to paths Hasura has no socket on (path, headers), answered 404."""
        with self._lock:
            return list(self._refused)

    @property
    def probe_count(self) -> int:
        with self._lock:
            return self._probes

    def active_subscriptions(self) -> list[tuple[UpstreamConnection, str]]:
        """(connection, id) of every active subscription on every open connection."""
        return [(conn, op_id) for conn in self.open_connections for op_id in conn.active_ids]

    def all_messages(self) -> list[tuple[UpstreamConnection, ReceivedMessage]]:
        return [(conn, message) for conn in self.connections for message in list(conn.messages)]

    def describe(self) -> str:
        connections = self.connections
        if not connections:
            return "no upstream connection"
        return "; ".join(conn.summary() for conn in connections)

    def reset(self) -> None:
        """Forget every recorded connection, close those still open (1001) and restore the switches."""
        for name, value in self._defaults.items():
            setattr(self, name, value)
        with self._lock:
            lingering = [conn for conn in self._connections if conn.is_open]
            self._connections.clear()
            self._refused.clear()
        if lingering and self._loop is not None:
            self.run(self._close_quickly(lingering, 1001, "reset"), timeout=5)

    # -- waits (polling from the test's loop, each bounded) ---------------------------------------

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float = 5.0, what: str = "condition") -> T:
        """Poll ``predicate`` until it returns something truthy, and return that."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(f"upstream: no {what} within {timeout} s ({self.describe()})")
            await asyncio.sleep(_POLL)

    async def wait_for_connections(self, n: int = 1, timeout: float = 5.0) -> list[UpstreamConnection]:
        def enough() -> list[UpstreamConnection] | None:
            connections = self.connections
            return connections if len(connections) >= n else None

        return await self.wait_for(enough, timeout, f"{n} connection(s)")

    async def wait_for_subscriptions(self, n: int = 1, timeout: float = 5.0) -> list[tuple[UpstreamConnection, str]]:
        """Until ``n`` subscriptions are active on open connections; returns them as (connection, id)."""
        def enough() -> list[tuple[UpstreamConnection, str]] | None:
            active = self.active_subscriptions()
            return active if len(active) >= n else None

        return await self.wait_for(enough, timeout, f"{n} active subscription(s)")

    # -- driving the double from a test ------------------------------------------------------------

    async def publish(self, data: Any, *, connection: UpstreamConnection | None = None) -> int:
        """An event for every active subscription (of ``connection``, or of every open, acknowledged
        connection): ``next`` / legacy ``data`` with payload ``{"data": data}``; a ``str`` becomes
        ``{"data": {"event": data}}``. Returns how many events were sent."""
        body = {"event": data} if isinstance(data, str) else data
        return await self._call(self._publish({"data": body}, connection))

    async def send(self, connection: UpstreamConnection, message: Mapping[str, Any] | str) -> None:
        """One message (an object is JSON-encoded) on ``connection``."""
        await self._call(self._send(connection, message))

    async def complete(self, connection: UpstreamConnection, op_id: str) -> None:
        """The upstream ends one operation (``complete`` in both protocols)."""
        async def complete_on_loop() -> None:
            connection.active.pop(op_id, None)
            await self._send(connection, {"id": op_id, "type": "complete"})

        await self._call(complete_on_loop())

    async def close_all(self, code: int = 1000, reason: str = "") -> int:
        """The upstream closes every open connection with ``code``/``reason``; returns how many."""
        return await self._call(self._close_connections(self.open_connections, code, reason),
                                timeout=self._close_timeout + 5)

    async def close_connection(self, connection: UpstreamConnection, code: int = 1000, reason: str = "") -> None:
        """The upstream closes one connection (``close()`` itself is the double's shutdown)."""
        await self._call(self._close_connections([connection], code, reason), timeout=self._close_timeout + 5)

    # -- loop plumbing ------------------------------------------------------------------------------

    async def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run ``coro`` on the double's loop and await it from the caller's loop without blocking it."""
        if self._loop is None:
            coro.close()
            raise RuntimeError("the upstream loop is not running")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)

    def _spawn(self, coro: Coroutine[Any, Any, Any], owner: UpstreamConnection | None = None) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        bucket = owner._tasks if owner is not None else self._background
        bucket.add(task)
        task.add_done_callback(bucket.discard)

    # -- HTTP side: health probe, Hasura's paths, subprotocol choice ----------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            with self._lock:
                self._probes += 1
            return connection.respond(200, "OK\n")
        if path not in WS_PATHS:
            with self._lock:
                self._refused.append((request.path, _lowered(request.headers)))
            return connection.respond(404, "not found\n")
        return None

    @staticmethod
    def _select_subprotocol(connection: ServerConnection, subprotocols: Any) -> Subprotocol | None:
        offered = list(subprotocols)
        if offered == [TRANSPORT]:
            return Subprotocol(TRANSPORT)
        if LEGACY in offered:
            return Subprotocol(LEGACY)
        return None  # legacy protocol, no subprotocol header

    # -- one connection --------------------------------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        offered = tuple(item.strip() for value in request.headers.get_all("Sec-WebSocket-Protocol")
                        for item in value.split(",") if item.strip())
        with self._lock:
            self._counter += 1
            conn = UpstreamConnection(
                index=self._counter, path=request.path, headers=_lowered(request.headers),
                offered_subprotocols=offered, subprotocol=ws.subprotocol,
                protocol=TRANSPORT if ws.subprotocol == TRANSPORT else LEGACY, _ws=ws)
            self._connections.append(conn)
        if conn.protocol == TRANSPORT and self.init_timeout_seconds:
            self._spawn(self._init_timeout(conn, self.init_timeout_seconds), conn)
        try:
            async for raw in ws:
                await self._on_message(conn, raw)
        except ConnectionClosed:
            pass
        except Exception as exc:  # a bug in the double must show up as a close, not a silent hang
            await self._close_connections([conn], 1011, f"double error: {type(exc).__name__}"[:120])
            raise
        finally:
            if conn._expiry is not None:
                conn._expiry.cancel()
            for task in list(conn._tasks):
                if task is not asyncio.current_task():
                    task.cancel()
            self._record_close(conn, ws)

    def _record_close(self, conn: UpstreamConnection, ws: ServerConnection) -> None:
        protocol = ws.protocol
        rcvd, sent = protocol.close_rcvd, protocol.close_sent
        if protocol.close_rcvd_then_sent is True and rcvd is not None:
            conn.closed_by, conn.close_code, conn.close_reason = "peer", rcvd.code, rcvd.reason
        elif sent is not None:
            conn.closed_by, conn.close_code, conn.close_reason = "upstream", sent.code, sent.reason
        elif rcvd is not None:
            conn.closed_by, conn.close_code, conn.close_reason = "peer", rcvd.code, rcvd.reason
        else:
            conn.closed_by, conn.close_code, conn.close_reason = "abnormal", 1006, ""
        conn._done.set()

    async def _on_message(self, conn: UpstreamConnection, raw: str | bytes) -> None:
        try:
            parsed: Any = json.loads(raw)
        except (ValueError, UnicodeError):
            parsed = None
        message = ReceivedMessage(raw, parsed, time.time())
        conn.messages.append(message)
        if not isinstance(parsed, dict) or not isinstance(parsed.get("type"), str):
            await self._close_connections([conn], 4400, "Invalid message received")
            return
        if conn.protocol == TRANSPORT:
            await self._on_transport(conn, message)
        else:
            await self._on_legacy(conn, message)

    async def _on_transport(self, conn: UpstreamConnection, message: ReceivedMessage) -> None:
        kind, op_id, payload = message.type, message.id, message.payload
        if kind == "connection_init":
            if conn.init_count:
                await self._close_connections([conn], 4429, "Too many initialisation requests")
                return
            conn.init_count += 1
            conn.init_payload = payload
            if self.reject_init or not self._accept_token(conn):
                conn.rejected = True
                await self._close_connections([conn], 4403, "Forbidden")
                return
            conn.acked = True
            await self._send(conn, {"type": "connection_ack"})
        elif kind == "ping":
            answer: dict[str, Any] = {"type": "pong"}
            if payload is not None:
                answer["payload"] = payload
            await self._send(conn, answer)
        elif kind == "pong":
            pass
        elif kind == "subscribe":
            if not conn.acked:
                await self._close_connections([conn], 4401, "Unauthorized")
            elif not isinstance(op_id, str) or not op_id:
                await self._close_connections([conn], 4400, "Invalid message received")
            elif op_id in conn.active:
                await self._close_connections([conn], 4409, f"Subscriber for {op_id} already exists"[:120])
            else:
                conn.subscribed.append((op_id, payload))
                conn.active[op_id] = payload
        elif kind == "complete":
            if isinstance(op_id, str):
                conn.completed_ids.append(op_id)
                conn.active.pop(op_id, None)
        else:
            await self._close_connections([conn], 4400, f"Invalid message type: {kind}"[:120])

    async def _on_legacy(self, conn: UpstreamConnection, message: ReceivedMessage) -> None:
        kind, op_id, payload = message.type, message.id, message.payload
        if kind == "connection_init":
            conn.init_count += 1
            conn.init_payload = payload if conn.init_count == 1 else conn.init_payload
            if self.reject_init or not self._accept_token(conn):
                conn.rejected = True
                await self._send(conn, {"type": "connection_error", "payload": self.reject_message})
                reason = f"Connection initialization failed: {self.reject_message}"
                await self._close_connections([conn], 4400, reason.encode()[:120].decode("utf-8", "ignore"))
                return
            conn.acked = True
            await self._send(conn, {"type": "connection_ack"})
            if self.legacy_keepalive_seconds:
                self._spawn(self._keepalive(conn, self.legacy_keepalive_seconds), conn)
        elif kind == "start":
            if not conn.acked:
                await self._send(conn, {"type": "connection_error",
                                        "payload": "start received before the connection is initialised"})
                await self._close_connections([conn], 4400, "Connection not initialised")
            elif isinstance(op_id, str) and op_id:
                conn.subscribed.append((op_id, payload))
                conn.active[op_id] = payload
            else:
                await self._send(conn, {"type": "error", "payload": {"message": "start without an id"}})
        elif kind == "stop":
            if isinstance(op_id, str):
                conn.completed_ids.append(op_id)
                conn.active.pop(op_id, None)
        elif kind == "connection_terminate":
            await self._close_connections([conn], 1000, "")
        else:
            await self._send(conn, {"type": "error", "id": op_id,
                                    "payload": {"message": f"unknown message type {kind}"}})

    # -- Hasura's JWT-mode expiry -----------------------------------------------------------------------

    def _accept_token(self, conn: UpstreamConnection) -> bool:
        """Schedules the tear-down at ``exp``; ``False`` for a token already expired (Hasura refuses it)."""
        if not self.expire_at_token_exp:
            return True
        value = _header_lookup(conn.init_payload.get("headers") if isinstance(conn.init_payload, dict) else None,
                               "authorization") or conn.header("authorization")
        if not isinstance(value, str):
            return True
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer":
            return True
        conn.token = token.strip()
        claims = decode_jwt_claims(conn.token)
        exp = claims.get("exp") if claims else None
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            return True
        conn.token_exp = float(exp)
        delay = conn.token_exp - time.time()
        if delay <= 0:
            return False
        loop = asyncio.get_running_loop()
        conn._expiry = loop.call_later(delay, lambda: self._spawn(self._expire(conn), conn))
        return True

    async def _expire(self, conn: UpstreamConnection) -> None:
        if conn.closed:
            return
        conn.expired = True
        if self.expiry_close_code is None:
            ws = conn._ws
            if ws is not None:
                ws.transport.abort()
            return
        await self._close_connections([conn], self.expiry_close_code, "")

    # -- sending and closing (on the double's loop) -----------------------------------------------------

    async def _send(self, conn: UpstreamConnection, message: Mapping[str, Any] | str) -> bool:
        ws = conn._ws
        if ws is None or conn.closed:
            return False
        text = message if isinstance(message, str) else json.dumps(dict(message))
        try:
            await ws.send(text)
        except ConnectionClosed:
            return False
        if not isinstance(message, str):
            conn.sent.append(dict(message))
        return True

    async def _publish(self, payload: dict[str, Any], only: UpstreamConnection | None) -> int:
        sent = 0
        targets = [only] if only is not None else self.open_connections
        for conn in targets:
            if not conn.acked or conn.closed:
                continue
            kind = "next" if conn.protocol == TRANSPORT else "data"
            for op_id in conn.active_ids:
                if await self._send(conn, {"id": op_id, "type": kind, "payload": payload}):
                    sent += 1
        return sent

    async def _close_connections(self, conns: list[UpstreamConnection], code: int, reason: str) -> int:
        closing = [conn for conn in conns if conn.is_open and conn._ws is not None]

        async def close_one(conn: UpstreamConnection) -> None:
            assert conn._ws is not None
            try:
                await conn._ws.close(code, reason)
            except ConnectionClosed:
                pass

        if closing:
            await asyncio.gather(*(close_one(conn) for conn in closing), return_exceptions=True)
        return len(closing)

    async def _close_quickly(self, conns: list[UpstreamConnection], code: int, reason: str) -> None:
        """Send the close frames now and let the handshakes finish in the background (reset)."""
        for conn in conns:
            self._spawn(self._close_connections([conn], code, reason))
        await asyncio.sleep(0)

    async def _init_timeout(self, conn: UpstreamConnection, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if conn.init_count == 0 and conn.is_open:
            await self._close_connections([conn], 4408, "Connection initialisation timeout")

    async def _keepalive(self, conn: UpstreamConnection, seconds: float) -> None:
        while conn.is_open:
            if not await self._send(conn, {"type": "ka"}):
                return
            await asyncio.sleep(seconds)


def _lowered(headers: Headers) -> tuple[tuple[str, str], ...]:
    return tuple((name.lower(), value) for name, value in headers.raw_items())


def _no_aiohttp_app() -> Any:
    raise RuntimeError("GraphQLWebSocketUpstream serves with websockets, not aiohttp")
