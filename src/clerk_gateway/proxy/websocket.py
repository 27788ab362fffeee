"""GraphQL subscriptions over WebSocket, with auth that holds for the socket's whole life.

A browser cannot set headers on a WebSocket and Clerk tokens live 60 s, so the gateway does for a
socket what it does for a request, and more:

* **Auth on ``connection_init``.** The token comes from the init payload (``headers.Authorization``,
  ``Authorization``, ``authToken``) or else the upgrade request (``Authorization``, the ``__session``
  cookie — the latter only from an allowed ``Origin``: anything else is cross-site WebSocket
  hijacking, refused with 403 before the upgrade). It is verified like a request, and the upstream
  receives an init payload holding exactly the identity the backend's mode calls for
  (:meth:`Adapter.connection_init`), never what the client wrote.
* **Expiry.** At the token's ``exp`` plus the clock skew the socket closes with 4403 "token expired":
  the client reconnects with a fresh token instead of meeting Hasura's silent teardown.
* **Renewal** (``graphql-transport-ws``): ``{"type":"ping","payload":{"token":…}}`` with a fresh token
  of the same ``sub`` and ``sid`` moves the expiry, is answered ``pong`` with the new ``expires_at``
  and never reaches the upstream. Where the upstream's own identity would expire (``forward``,
  ``exchange``), the gateway opens a new upstream connection with the new identity, re-subscribes
  the client's operations under their ids and retires the old one; the client sees no close.
* **Relay.** Frames pass both ways as they come; close codes and reasons propagate; a message over
  the size limit closes with 1009; subscriptions per socket are bounded and their documents obey
  the same GraphQL limits as HTTP (an ``error`` for that operation, the socket stays).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from clerk_gateway.adapters.base import Adapter, Header
from clerk_gateway.auth.model import VerifiedToken
from clerk_gateway.auth.token_sources import bearer_token, cookie_value, find_token
from clerk_gateway.auth.verifier import TokenVerifier
from clerk_gateway.errors import AuthenticationError, ForbiddenError, GatewayError, MissingTokenError
from clerk_gateway.observability.metrics import AUTH_FAILURES

from .request_id import request_id_from
from .ws_protocols import LEGACY, TRANSPORT, WsProtocol, choose_protocol, parse
from .ws_sessions import SocketRegistry

if TYPE_CHECKING:
    from clerk_gateway.documents.resolver import DocumentResolver
    from clerk_gateway.observability.tracing import Tracing

__all__ = ["WebSocketLimits", "WebSocketProxy"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
QueryCheck = Callable[[str, bytes | None], str | None]

log = logging.getLogger("clerk_gateway.websocket")

EXPIRED = (4403, "token expired")
GOING_AWAY = 1001
UNSENDABLE = {1005, 1006, 1015}  # codes that describe a close but may not be sent in one


@dataclass(frozen=True, slots=True)
class WebSocketLimits:
    init_timeout: float = 10.0
    max_message_bytes: int = 1024 * 1024
    max_subscriptions: int = 100
    clock_skew: float = 5.0


class _Closed(Exception):
    """The socket is done; carries the close to send the client (``None``: nothing to send)."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        self.code, self.reason = code, reason


class WebSocketProxy:
    """The WebSocket half of one backend; ``handle`` runs for the socket's whole life."""

    def __init__(self, adapter: Adapter, verifier: TokenVerifier, *, cookie_names: Sequence[str],
                 origin_allowed: Callable[[str], bool], limits: WebSocketLimits, registry: SocketRegistry,
                 check_query: QueryCheck | None = None, tracing: Tracing | None = None,
                 documents: DocumentResolver | None = None) -> None:
        self.adapter = adapter
        self.documents = documents
        self.tracing = tracing
        self.verifier = verifier
        self.cookie_names = tuple(cookie_names)
        self.origin_allowed = origin_allowed
        self.limits = limits
        self.registry = registry
        self.check_query = check_query

    async def handle(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        upstream_url = self.adapter.websocket_url(path)
        headers: list[Header] = scope["headers"]
        if upstream_url is None or self._cross_site_cookie(headers):
            await send({"type": "websocket.close", "code": 1008})  # answered 403 before the upgrade
            return
        protocol, subprotocol = choose_protocol(scope.get("subprotocols") or [])
        await send({"type": "websocket.accept", "subprotocol": subprotocol})
        socket = _Socket(self, scope, receive, send, protocol, subprotocol, upstream_url)
        self.registry.add(socket)
        try:
            await socket.run()
        finally:
            self.registry.discard(socket)

    def _cross_site_cookie(self, headers: list[Header]) -> bool:
        """A cookie-only upgrade from an Origin that is not ours: the browser attached the user's
        session cookie to another site's page (cross-site WebSocket hijacking)."""
        if any(name == b"authorization" for name, _ in headers):
            return False
        cookie = next((value for name, value in headers if name == b"cookie"), None)
        if cookie is None or cookie_value(cookie.decode("latin-1"), self.cookie_names) is None:
            return False
        origin = next((value.decode("latin-1") for name, value in headers if name == b"origin"), None)
        return origin is None or not self.origin_allowed(origin)


def _payload_token(payload: Any) -> str | None:
    if not isinstance(payload, dict):
        return None
    headers = payload.get("headers")
    candidates: list[Any] = []
    if isinstance(headers, dict):
        candidates += [headers.get("Authorization"), headers.get("authorization")]
    candidates += [payload.get("Authorization"), payload.get("authorization"), payload.get("authToken")]
    for value in candidates:
        if isinstance(value, str) and value.strip():
            return bearer_token(value)
    return None


class _Socket:
    """One client socket and the upstream connection behind it."""

    def __init__(self, proxy: WebSocketProxy, scope: Scope, receive: Receive, send: Send, protocol: WsProtocol,
                 subprotocol: str | None, upstream_url: str) -> None:
        self.proxy, self.scope, self.receive, self.send = proxy, scope, receive, send
        self.protocol, self.subprotocol, self.upstream_url = protocol, subprotocol, upstream_url
        self.request_id = request_id_from(scope["headers"]).decode()
        self.token: VerifiedToken | None = None
        self.init_payload: dict[str, Any] = {}
        self.upstream: ClientConnection | None = None
        self.operations: dict[str, str] = {}  #: id → the subscribe/start message, to re-subscribe on renewal
        self._expiry: asyncio.TimerHandle | None = None
        self._pump: asyncio.Task[None] | None = None
        self._closing: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    # -- what the registry uses --------------------------------------------------------------------

    @property
    def subject(self) -> str | None:
        return self.token.subject if self.token else None

    @property
    def session_id(self) -> str | None:
        return self.token.session_id if self.token else None

    def close_soon(self, code: int, reason: str = "") -> None:
        """Close from outside the socket's own tasks (expiry, shutdown, a revoked session)."""
        if not self._closing.done():
            self._closing.set_result((code, reason))

    # -- life of the socket ------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            if self.proxy.tracing is None:
                await self._authenticate()
            else:
                await self._authenticate_traced(self.proxy.tracing)
            await self._relay()
        except _Closed as closed:
            if closed.code is not None:
                await self._close_client(closed.code, closed.reason)
        finally:
            if self._expiry is not None:
                self._expiry.cancel()
            if self._pump is not None:
                self._pump.cancel()
            if self.upstream is not None:
                with contextlib.suppress(Exception):
                    await self.upstream.close()

    async def _authenticate(self) -> None:
        limits = self.proxy.limits
        try:
            first = await asyncio.wait_for(self.receive(), limits.init_timeout)
        except TimeoutError:
            raise _Closed(4408, "Connection initialisation timeout") from None
        if first["type"] == "websocket.disconnect":
            raise _Closed(None)
        text = first.get("text")
        message = parse(text) if text else None
        if message is None or message.get("type") != "connection_init":
            raise _Closed(4400, "expected connection_init")
        payload = message.get("payload")
        self.init_payload = payload if isinstance(payload, dict) else {}
        try:
            token = await self._verify(_payload_token(payload) or find_token(self.scope["headers"],
                                                                             self.proxy.cookie_names))
            identity = await self._identity(token)
        except GatewayError as error:
            await self._refuse(error)
            raise _Closed(None) from None
        self.token = token
        self.upstream = await self._open_upstream(identity)
        self._arm_expiry()

    async def _authenticate_traced(self, tracing: Tracing) -> None:
        """The socket's start (upgrade to the upstream's ``connection_init``) as a server span; the
        socket's whole life would be a span of hours, which tracing back ends show badly."""
        backend = self.proxy.adapter.name
        span, context = tracing.begin_request("GET", self.scope["path"], self.scope["headers"], backend,
                                              name=f"WebSocket /{backend}")
        try:
            await self._authenticate()
            if self.token is not None:
                tracing.identified(self.token)
        except _Closed as closed:
            if closed.code is not None:
                span.set_attribute("clerk_gateway.websocket.close_code", closed.code)
            raise
        finally:
            tracing.end_request(span, context)

    async def _identity(self, token: VerifiedToken) -> dict[str, Any]:
        tracing = self.proxy.tracing
        if tracing is None:
            return await self.proxy.adapter.connection_init(token, self.init_payload)
        span = tracing.adapter_span(self.proxy.adapter)
        try:
            return await self.proxy.adapter.connection_init(token, self.init_payload)
        finally:
            span.end()

    async def _verify(self, token_text: str | None) -> VerifiedToken:
        if token_text is None:
            raise MissingTokenError()
        token = await self.proxy.verifier.verify(token_text)
        if token.kind not in self.proxy.adapter.accepted_kinds:
            raise AuthenticationError("token-kind-not-accepted",
                                      f"{token.kind.value} tokens are not accepted by this backend")
        return token

    async def _refuse(self, error: GatewayError) -> None:
        if isinstance(error, AuthenticationError | ForbiddenError):
            AUTH_FAILURES.labels(error.reason).inc()  # the same counter as HTTP refusals
        log.info("websocket refused", extra={"backend": self.proxy.adapter.name, "reason": error.reason,
                                             "request_id": self.request_id})
        if self.proxy.tracing is not None:
            self.proxy.tracing.refused(error)
        reason = f"Forbidden: {error.reason}"
        if self.protocol is LEGACY:
            await self._send_text(orjson.dumps({"type": "connection_error",
                                                "payload": {"message": error.message, "reason": error.reason}
                                                }).decode())
            await self._close_client(4400, reason)
        else:
            await self._close_client(4403, reason)

    async def _open_upstream(self, identity: dict[str, Any]) -> ClientConnection:
        tracing = self.proxy.tracing
        if tracing is None:
            return await self._connect_upstream(identity, [("x-request-id", self.request_id)])
        span = tracing.websocket_connect_span(self.upstream_url)
        try:
            return await self._connect_upstream(identity, [("x-request-id", self.request_id),
                                                           *tracing.trace_headers(span)])
        except _Closed:
            tracing.failed(span, "upstream-unavailable")
            raise
        finally:
            span.end()

    async def _connect_upstream(self, identity: dict[str, Any], headers: list[tuple[str, str]]) -> ClientConnection:
        try:
            upstream = await connect(
                self.upstream_url, subprotocols=[self.subprotocol] if self.subprotocol else None,  # type: ignore[list-item]
                additional_headers=headers,
                open_timeout=self.proxy.adapter.timeout_seconds, max_size=self.proxy.limits.max_message_bytes,
                ping_interval=None, compression=None, user_agent_header=None)
            await upstream.send(orjson.dumps({"type": "connection_init", "payload": identity}).decode())
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError, ConnectionClosed) as exc:
            log.warning("websocket upstream unreachable", extra={"backend": self.proxy.adapter.name,
                                                                 "request_id": self.request_id,
                                                                 "error": type(exc).__name__})
            if self.protocol is LEGACY:
                await self._send_text('{"type":"connection_error","payload":{"message":"upstream unavailable"}}')
            raise _Closed(1011, "upstream unavailable") from None
        return upstream

    def _arm_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        assert self.token is not None
        delay = self.token.expires_at + self.proxy.limits.clock_skew - time.time()
        self._expiry = asyncio.get_running_loop().call_later(max(delay, 0.0), self.close_soon, *EXPIRED)

    # -- relay ---------------------------------------------------------------------------------------

    async def _relay(self) -> None:
        assert self.upstream is not None
        self._pump = asyncio.create_task(self._upstream_to_client(self.upstream))
        client = asyncio.create_task(self._client_to_upstream())
        closing = self._closing
        try:
            waiters: set[asyncio.Future[Any]] = {client, closing}
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if closing in done:
                code, reason = closing.result()
                raise _Closed(code, reason)
            client.result()  # raises _Closed
        finally:
            client.cancel()

    async def _client_to_upstream(self) -> None:
        limits = self.proxy.limits
        while True:
            event = await self.receive()
            if event["type"] == "websocket.disconnect":
                code = event.get("code", 1000)
                if self.upstream is not None:
                    with contextlib.suppress(Exception):
                        await self.upstream.close(code if code not in UNSENDABLE else 1000)
                raise _Closed(None)
            data = event.get("text")
            if data is None:
                data = event.get("bytes") or b""
            if len(data) > limits.max_message_bytes:
                raise _Closed(1009, "message too big")
            forward: str | bytes | None = await self._inspect(data) if isinstance(data, str) else data
            if forward is not None:
                assert self.upstream is not None
                try:
                    await self.upstream.send(forward)
                except ConnectionClosed:
                    return  # the pump sees the close and propagates it

    async def _inspect(self, text: str) -> str | None:
        """What the gateway itself acts on in a client message: the text to forward (a subscribe's
        payload resolved and cleaned by the backend's documents mode), or None to keep it back."""
        message = parse(text)
        if message is None:
            return text  # the upstream answers malformed messages in its own way
        kind = message.get("type")
        protocol = self.protocol
        if kind == "ping" and protocol is TRANSPORT and isinstance(message.get("payload"), dict) \
                and "token" in message["payload"]:
            await self._renew(message["payload"]["token"])
            return None
        operation = message.get("id")
        if kind == protocol.subscribe and isinstance(operation, str):
            documents = self.proxy.documents
            if documents is not None and isinstance(message.get("payload"), dict):
                try:
                    payload = await documents.resolve_operation(message["payload"], self._role_header())
                except GatewayError as refused:  # a document the mode refuses: an error for this operation only
                    await self._send_text(protocol.error(operation, refused.message))
                    return None
                message["payload"] = payload
                text = orjson.dumps(message).decode()
            refusal = self._check_subscription(operation, message.get("payload"))
            if refusal is not None:
                await self._send_text(protocol.error(operation, refusal))
                return None
            self.operations[operation] = text
        elif kind == protocol.stop and isinstance(operation, str):
            self.operations.pop(operation, None)
        return text

    def _role_header(self) -> list[Header]:
        """The role the client asked for in ``connection_init`` (for the documents' ``bypass_roles``)."""
        role = self._requested_role()
        return [(b"x-hasura-role", role.encode())] if role is not None else []

    def _requested_role(self) -> str | None:
        headers = self.init_payload.get("headers")
        value = next((value for name, value in headers.items() if str(name).lower() == "x-hasura-role"),
                     None) if isinstance(headers, dict) else None
        return value if isinstance(value, str) else None

    def _check_subscription(self, operation: str, payload: Any) -> str | None:
        if operation not in self.operations and len(self.operations) >= self.proxy.limits.max_subscriptions:
            return f"too many operations on this socket (at most {self.proxy.limits.max_subscriptions})"
        check = self.proxy.check_query
        query = payload.get("query") if isinstance(payload, dict) else None
        if check is not None and isinstance(query, str):
            # the role the client asked for, matched without case as Adapter.connection_init reads it
            role = self._requested_role()
            return check(query, role.encode() if role is not None else None)
        return None

    async def _upstream_to_client(self, upstream: ClientConnection) -> None:
        ended = self.protocol.ended
        try:
            async for frame in upstream:
                if isinstance(frame, str):
                    if '"type"' in frame and any(f'"{kind}"' in frame for kind in ended):
                        message = parse(frame)
                        if message is not None and message.get("type") in ended:
                            self.operations.pop(str(message.get("id")), None)
                    await self.send({"type": "websocket.send", "text": frame})
                else:
                    await self.send({"type": "websocket.send", "bytes": frame})
        except ConnectionClosed:
            pass
        except Exception:  # the client side failed (gone mid-send): end the socket, don't leak the task's error
            self.close_soon(1011, "relay failed")
            return
        if upstream is not self.upstream:
            return  # retired after a renewal: its end is not the socket's
        code = upstream.close_code
        reason = upstream.close_reason or ""
        if code is None or code in UNSENDABLE:
            code, reason = 1011, reason or "upstream closed"
        self.close_soon(code, reason)

    # -- renewal -------------------------------------------------------------------------------------

    async def _renew(self, token_text: Any) -> None:
        previous = self.token
        assert previous is not None
        try:
            if not isinstance(token_text, str):
                raise AuthenticationError("renewal-invalid", "the renewal token is not a string")
            fresh = await self._verify(bearer_token(token_text))
            if fresh.subject != previous.subject or fresh.session_id != previous.session_id:
                raise AuthenticationError("renewal-other-session",
                                          "the renewal token belongs to another user or session")
            identity = await self.proxy.adapter.renewed_connection_init(fresh, self.init_payload)
        except GatewayError as error:
            if isinstance(error, AuthenticationError | ForbiddenError):
                AUTH_FAILURES.labels(error.reason).inc()
            log.info("websocket renewal refused", extra={"backend": self.proxy.adapter.name,
                                                         "reason": error.reason, "request_id": self.request_id})
            raise _Closed(4403, f"Forbidden: {error.reason}") from None
        if self.proxy.adapter.socket_identity_expires():
            await self._switch_upstream(identity)
        self.token = fresh
        self._arm_expiry()
        await self._send_text(orjson.dumps({"type": "pong", "payload": {"expires_at": int(fresh.expires_at)}}
                                           ).decode())

    async def _switch_upstream(self, identity: dict[str, Any]) -> None:
        """A new upstream connection with the renewed identity, the client's operations re-subscribed
        under their ids, then the old connection retired — the client sees no close."""
        fresh = await self._open_upstream(identity)
        try:
            await asyncio.wait_for(self._await_ack(fresh), self.proxy.adapter.timeout_seconds)
            for text in self.operations.values():
                await fresh.send(text)
        except (TimeoutError, ConnectionClosed):
            with contextlib.suppress(Exception):
                await fresh.close()
            raise _Closed(1011, "upstream unavailable") from None
        old, old_pump = self.upstream, self._pump
        self.upstream = fresh
        self._pump = asyncio.create_task(self._upstream_to_client(fresh))
        if old_pump is not None:
            old_pump.cancel()
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close()

    @staticmethod
    async def _await_ack(upstream: ClientConnection) -> None:
        async for frame in upstream:
            message = parse(frame) if isinstance(frame, str) else None
            if message is not None and message.get("type") == "connection_ack":
                return

    # -- sending ---------------------------------------------------------------------------------------

    async def _send_text(self, text: str) -> None:
        with contextlib.suppress(Exception):
            await self.send({"type": "websocket.send", "text": text})

    async def _close_client(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.send({"type": "websocket.close", "code": code, "reason": reason[:120]})
