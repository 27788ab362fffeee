"""Forwards one HTTP request to a backend and streams the answer back (raw ASGI, no framework).

The order is chosen so that nothing reaches the upstream before every check passed: route
allow-list (404/405) → declared body size (413) → token → verification (401/403) → body read under
the limit (413) → the adapter's identity headers → upstream. Responses are streamed chunk by chunk;
a client that goes away cancels the upstream request. On a route that ends at token expiry (an
event stream) one loop timer, armed only there, ends the response when the verified token expires.

The head is held back until the first body bytes, so that an upstream failing before them is
still a clean 502. An event stream (``text/event-stream``, ``multipart/mixed``; see
:mod:`.upstream` for its timeout rule) that has no event yet is the exception: its client yields an
empty chunk, the head goes out at once and the disconnect watcher starts — with no read timeout,
nothing else would notice a client that leaves before the first event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from clerk_gateway.adapters.base import Adapter, Header, IncomingRequest, Route
from clerk_gateway.auth.token_sources import find_token
from clerk_gateway.auth.verifier import TokenVerifier
from clerk_gateway.edge.body import read_within
from clerk_gateway.edge.errors import RequestTimeoutError
from clerk_gateway.edge.keepalive import BODY_READ, CONNECTION_CLOSE, refusal_can_keep_connection
from clerk_gateway.errors import (
    AuthenticationError,
    ForbiddenError,
    GatewayError,
    MissingTokenError,
    PayloadTooLargeError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from clerk_gateway.observability.metrics import AUTH_FAILURES, REQUESTS, UPSTREAM_LATENCY

from .guards import RequestContext, RequestGuard
from .headers import RequestHeaderFilter, filter_response_headers
from .request_id import request_id_from
from .upstream import UpstreamClient, UpstreamConnectError, UpstreamResponse, UpstreamTimeout

if TYPE_CHECKING:
    from clerk_gateway.documents.resolver import DocumentResolver
    from clerk_gateway.observability.tracing import Tracing

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

log = logging.getLogger("clerk_gateway.proxy")


class ClientDisconnected(Exception):
    """The client went away before its request body arrived; nothing is left to answer."""


#: Scope key holding the verified token's ``exp``; set only on routes with ``ends_at_token_expiry``.
_EXPIRES_AT = "clerk_gateway.token_expires_at"


class _StreamState:
    """What the relay shares with the disconnect watcher and the expiry timer. ``reading`` is true
    only while the relay waits for the upstream: the one moment the expiry timer may cancel it,
    because a cancelled client write could leave the client half a chunk."""

    __slots__ = ("expired", "finished", "reading")

    def __init__(self) -> None:
        self.finished = False
        self.expired = False
        self.reading = False


class _StreamExpired(Exception):
    """The token expired while the relay was writing to the client; it ends after the write."""


class BackendProxy:
    """Everything one backend needs on the request path, resolved once at start-up."""

    def __init__(self, adapter: Adapter, client: UpstreamClient, verifier: TokenVerifier, *,
                 cookie_names: Sequence[str], max_body_bytes: int, access_log: bool = False,
                 guards: Sequence[RequestGuard] = (), body_timeout: float | None = None,
                 tracing: Tracing | None = None, documents: DocumentResolver | None = None) -> None:
        self.adapter = adapter
        #: Trusted documents / APQ, and the cleaning of what goes upstream (GraphQL backends only).
        self.documents = documents
        self.client = client
        self.verifier = verifier
        self.cookie_names = tuple(cookie_names)
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log
        self.guards = tuple(guards)
        self.body_timeout = body_timeout
        self.tracing = tracing
        self._filter = RequestHeaderFilter(adapter.header_policy)
        self._latency = UPSTREAM_LATENCY.labels(adapter.name)
        self._request_counters: dict[int, Any] = {}

    def _count(self, status: int) -> None:
        counter = self._request_counters.get(status)
        if counter is None:
            counter = self._request_counters[status] = REQUESTS.labels(self.adapter.name, str(status))
        counter.inc()

    async def handle(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        raw_headers: list[Header] = scope["headers"]
        request_id = request_id_from(raw_headers)
        route: Route | None = None
        context: RequestContext | None = None
        try:
            route = self.adapter.match(scope["method"], path)
            if self.guards:
                client = scope.get("client")
                context = RequestContext(self.adapter.name, scope["method"], route, raw_headers,
                                         client[0] if client else None, query_string=scope["query_string"])
            response = await self._forward(scope, receive, raw_headers, route, request_id, context)
        except GatewayError as error:
            if context is not None:
                for guard in self.guards:
                    error = await guard.on_refused(context, error) or error
            await self._refuse(send, error, route, request_id, close=_must_close(scope, error))
            return
        except ClientDisconnected:
            return
        except Exception as exc:  # a bug must still answer in the contract's shape, never with a traceback
            log.exception("request failed inside the gateway",
                          extra={"backend": self.adapter.name, "request_id": request_id.decode()})
            await self._refuse(send, GatewayError("internal-error", "the gateway failed to handle this request"),
                               route, request_id, close=_must_close(scope, exc))
            return
        expires_at: float | None = scope.get(_EXPIRES_AT) if route.ends_at_token_expiry else None
        await self._stream(send, receive, response, request_id, route, expires_at)
        if self.access_log:
            log.info("request", extra={"backend": self.adapter.name, "method": scope["method"], "path": path,
                                       "status": response.status, "request_id": request_id.decode()})

    async def _forward(self, scope: Scope, receive: Receive, raw_headers: list[Header], route: Route,
                       request_id: bytes, context: RequestContext | None) -> UpstreamResponse:
        declared = _content_length(raw_headers)
        if declared is not None and declared > self.max_body_bytes:
            raise PayloadTooLargeError(self.max_body_bytes)
        if context is not None:
            for guard in self.guards:
                await guard.before_auth(context)
        token_text = find_token(raw_headers, self.cookie_names)
        if token_text is None:
            raise MissingTokenError()
        token = await self.verifier.verify(token_text)
        tracing = self.tracing
        if tracing is not None:
            tracing.identified(token)
        if token.kind not in self.adapter.accepted_kinds:
            raise AuthenticationError("token-kind-not-accepted",
                                      f"{token.kind.value} tokens are not accepted by this backend")
        body = await read_within(_read_body(receive, self.max_body_bytes), self.body_timeout)
        scope[BODY_READ] = True
        query_string: bytes = scope["query_string"]
        if self.documents is not None and route.graphql:
            if scope["method"] == "GET":
                query_string = await self.documents.resolve_query_string(query_string, raw_headers)
            else:
                body = await self.documents.resolve_body(body, raw_headers)
            if context is not None:
                context.query_string = query_string
        if route.ends_at_token_expiry:
            scope[_EXPIRES_AT] = token.expires_at
        if context is not None:
            context.token, context.body = token, body
            for guard in self.guards:
                await guard.after_auth(context)
        client = scope.get("client")
        incoming = IncomingRequest(
            method=scope["method"], path=scope["path"], query_string=scope["query_string"],
            headers=raw_headers, request_id=request_id.decode(), client_ip=client[0] if client else None,
        )
        headers = self._filter.apply(raw_headers)
        if tracing is None:
            headers.extend(await self.adapter.identity_headers(token, incoming, route))
        else:
            span = tracing.adapter_span(self.adapter)
            try:
                headers.extend(await self.adapter.identity_headers(token, incoming, route))
            finally:
                span.end()
        headers.append((b"x-request-id", request_id))
        url = route.upstream_url
        if query_string:
            url = f"{url}?{query_string.decode('latin-1')}"
        started = time.perf_counter()
        try:
            if tracing is None:
                response = await self.client.send(scope["method"], url, headers, body,
                                                  timeout=self.adapter.timeout_seconds,
                                                  streaming=route.streaming)
            else:
                response = await self._send_traced(tracing, scope["method"], url, headers, body, route)
        except UpstreamConnectError as exc:
            log.warning("upstream unreachable", extra={"backend": self.adapter.name,
                                                       "request_id": request_id.decode(), "error": str(exc)})
            raise UpstreamUnavailableError(self.adapter.name) from None
        except UpstreamTimeout:
            raise UpstreamTimeoutError(self.adapter.name) from None
        self._latency.observe(time.perf_counter() - started)
        return response

    async def _send_traced(self, tracing: Tracing, method: str, url: str, headers: list[Header], body: bytes,
                           route: Route) -> UpstreamResponse:
        """The upstream call as a client span; the upstream gets that span as its parent."""
        span = tracing.upstream_span(method, url)
        try:
            response = await self.client.send(method, url, tracing.with_trace_context(headers, span), body,
                                              timeout=self.adapter.timeout_seconds, streaming=route.streaming)
            tracing.responded(span, response.status)
            return response
        except UpstreamConnectError:
            tracing.failed(span, "upstream-unavailable")
            raise
        except UpstreamTimeout:
            tracing.failed(span, "upstream-timeout")
            raise
        finally:
            span.end()

    async def _refuse(self, send: Send, error: GatewayError, route: Route | None, request_id: bytes, *,
                      close: bool = False) -> None:
        status, headers, body = self.adapter.render_error(error, route)
        headers.append((b"x-request-id", request_id))
        headers.append((b"content-length", str(len(body)).encode()))
        if close:
            headers.append(CONNECTION_CLOSE)
        if isinstance(error, AuthenticationError | ForbiddenError):
            AUTH_FAILURES.labels(error.reason).inc()
        if self.tracing is not None:
            self.tracing.refused(error)
        self._count(status)
        log.info("request refused", extra={"backend": self.adapter.name, "status": status,
                                          "reason": error.reason, "request_id": request_id.decode()})
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _stream(self, send: Send, receive: Receive, response: UpstreamResponse, request_id: bytes,
                      route: Route | None = None, expires_at: float | None = None) -> None:
        headers = filter_response_headers(response.headers)
        headers.append((b"x-request-id", request_id))
        chunks = response.chunks()
        state = _StreamState()
        watcher: asyncio.Task[None] | None = None
        timer: asyncio.TimerHandle | None = None
        started = False
        last = b""
        try:
            if expires_at is not None:
                timer = _expiry_timer(expires_at, state)
            state.reading = True
            try:
                first = await anext(chunks, b"")  # b"" also when an event stream has no event yet
            except (UpstreamConnectError, UpstreamTimeout):
                await self._refuse(send, UpstreamUnavailableError(self.adapter.name), None, request_id)
                return
            state.reading = False
            self._count(response.status)
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            started = True
            if response.at_eof():
                state.finished = True
                await send({"type": "http.response.body", "body": first})
                return
            current = asyncio.current_task()
            assert current is not None
            watcher = asyncio.create_task(_cancel_on_disconnect(receive, current, state))
            await send({"type": "http.response.body", "body": first, "more_body": True})
            last = first
            if state.expired:
                raise _StreamExpired()
            state.reading = True
            async for chunk in chunks:
                state.reading = False
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                last = chunk
                if state.expired:
                    raise _StreamExpired()
                state.reading = True
            state.finished = True
            watcher.cancel()
            await send({"type": "http.response.body", "body": b""})
        except (UpstreamConnectError, UpstreamTimeout):
            # Headers are gone already: ending without completing the body makes the server close
            # the connection, so the client sees a truncated response, never a silently short one.
            log.warning("upstream failed mid-stream", extra={"backend": self.adapter.name,
                                                              "request_id": request_id.decode()})
        except _StreamExpired:
            await self._end_expired(send, response, route, request_id, started, last, state)
        except asyncio.CancelledError:
            if not state.finished and watcher is not None and watcher.done():
                log.info("client disconnected; upstream request closed",
                         extra={"backend": self.adapter.name, "request_id": request_id.decode()})
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
                return
            if state.expired and not state.finished:
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
                await self._end_expired(send, response, route, request_id, started, last, state)
                return
            raise
        finally:
            state.finished = True
            if watcher is not None:
                watcher.cancel()
            if timer is not None:
                timer.cancel()
            await chunks.aclose()  # type: ignore[attr-defined]
            await response.aclose()

    async def _end_expired(self, send: Send, response: UpstreamResponse, route: Route | None,
                           request_id: bytes, started: bool, last: bytes, state: _StreamState) -> None:
        """End a response whose token expired: a 401 when nothing was sent yet; otherwise the
        adapter's closing bytes (e.g. a terminal event) and a completed body, or a cut connection
        when the adapter has none or the body is content-encoded (bytes cannot be appended)."""
        state.finished = True  # from here on neither the watcher nor the timer interrupts
        log.info("token expired; stream ended", extra={"backend": self.adapter.name,
                                                       "request_id": request_id.decode()})
        if not started:
            await self._refuse(send, AuthenticationError("token-expired", "the token has expired"), route,
                               request_id)
            return
        encoded = any(name == b"content-encoding" for name, _ in response.headers)
        ending = None if route is None or encoded else self.adapter.stream_expired_ending(route, last)
        if ending is None:
            return  # an unfinished body makes the server close the connection
        if ending:
            await send({"type": "http.response.body", "body": ending, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


class TracedBackendProxy(BackendProxy):
    """A backend proxy whose every request is a server span (tracing on). A subclass, so that with
    tracing off the request path has not even a branch for it.

    A request that was sampled out records nothing below its server span, so it takes the plain
    path (``_plain``, the same proxy without tracing) and only its upstream learns the trace: the
    client's trace headers are replaced by the server span's before the header filter, which
    passes them on like any end-to-end header."""

    def __init__(self, adapter: Adapter, client: UpstreamClient, verifier: TokenVerifier, **options: Any) -> None:
        super().__init__(adapter, client, verifier, **options)
        self._plain = BackendProxy(adapter, client, verifier, **{**options, "tracing": None})

    async def handle(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        tracing = self.tracing
        assert tracing is not None
        span, context = tracing.begin_request(scope["method"], scope["path"], scope["headers"], self.adapter.name)
        try:
            if not tracing.records_below(span):
                scope["headers"] = tracing.with_trace_context(scope["headers"], span)
                await self._plain.handle(scope, receive, send, path)
                return

            async def send_recording_status(message: MutableMapping[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    tracing.responded(span, message["status"])
                await send(message)

            await super().handle(scope, receive, send_recording_status, path)
        finally:
            tracing.end_request(span, context)


def _expiry_timer(expires_at: float, state: _StreamState) -> asyncio.TimerHandle:
    """One loop timer at the token's ``exp`` (wall clock, converted to the loop's clock)."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    return loop.call_later(max(expires_at - time.time(), 0.0), _expire, task, state)


def _expire(task: asyncio.Task[Any], state: _StreamState) -> None:
    if state.finished:
        return
    state.expired = True
    if state.reading:  # otherwise the relay sees the flag right after its current write
        task.cancel()


async def _cancel_on_disconnect(receive: Receive, task: asyncio.Task[Any], state: _StreamState) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not state.finished:
                task.cancel()
            return


def _must_close(scope: Scope, error: Exception) -> bool:
    """Whether a refusal must announce ``Connection: close`` (see :mod:`clerk_gateway.edge.keepalive`):
    its body was not read and is too large, of unknown length or held back for ``100 Continue`` —
    or it is arriving so slowly that the body deadline ran out, so draining it would be no better."""
    if scope.get(BODY_READ):
        return False
    return isinstance(error, RequestTimeoutError) or not refusal_can_keep_connection(scope["headers"])


def _content_length(headers: list[Header]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _read_body(receive: Receive, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(limit)
            parts.append(chunk)
        if not message.get("more_body", False):
            break
    return parts[0] if len(parts) == 1 else b"".join(parts)
