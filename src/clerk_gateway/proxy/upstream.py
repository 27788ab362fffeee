"""Upstream HTTP clients behind one small seam.

The hot path needs a fast client. Measured with the project's benchmark (docs/performance.md),
the client decides the gateway's throughput, so the default is the small HTTP/1.1 client in
:mod:`.http1` (about five times cheaper per request than aiohttp, the best library measured).
httpx stays the project's HTTP client API everywhere else (JWKS, Clerk's API, probes) and remains
selectable here (``GATEWAY_UPSTREAM_CLIENT=httpx``), which is also what the respx-based unit tests
drive. Both pass bodies through undecoded, keep no cookies between users and add no headers of
their own beyond ``Host`` and ``Content-Length``.

Timeouts (``timeout`` is the backend's ``timeout_seconds``). http1: a connection (waiting for a pool
slot and connecting share one deadline) within ``timeout``, then the response head within
``timeout`` of writing the request. httpx: pool, connect and write each within ``timeout``, the
head within ``timeout`` per socket read. Then, in both, the body with ``timeout`` as an *idle*
limit on every wait for more bytes — never a deadline for the whole body. Two kinds of body have no
read timeout at all: a route marked ``streaming`` (decided by the adapter; there httpx waits for
the head without one too), and an event stream — a response whose Content-Type is
``text/event-stream`` (GraphQL over SSE) or ``multipart/mixed`` (incremental delivery,
``@defer``/``@stream``), see :func:`is_event_stream`; its head is still due within ``timeout``.
SSE servers send keep-alive comments when idle, but how often is theirs to choose, so no idle
limit of the gateway's can be right for all of them; such a stream ends when the upstream ends it
or the client goes away. The content type is looked at once per response, and only where the
answer could still be an event stream: the http1 client looks the first time it has to wait for
body bytes (a small answer that arrived whole never pays for it); httpx before its first body read
(its read timeout cannot be lifted after it fired).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import httpx

Header = tuple[bytes, bytes]


class UpstreamConnectError(Exception):
    """The upstream could not be reached (refused, reset, DNS, TLS)."""


class UpstreamTimeout(Exception):
    """The upstream did not answer within the backend's timeout."""


_EVENT_STREAM_TYPES = frozenset({b"text/event-stream", b"multipart/mixed"})


def is_event_stream(headers: list[Header]) -> bool:
    """Whether a response (lower-case header names) is an event stream: its first Content-Type is
    ``text/event-stream`` or ``multipart/mixed``, in any case, with or without parameters."""
    for name, value in headers:
        if name == b"content-type":
            return value.partition(b";")[0].strip().lower() in _EVENT_STREAM_TYPES
    return False


class UpstreamResponse(Protocol):
    status: int
    headers: list[Header]

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives. An empty chunk says: no body bytes yet, and the body has no read
        timeout from here on (an event stream) — the proxy sends the head now and starts watching
        the client, instead of holding the head back until the first bytes."""
        ...

    def at_eof(self) -> bool: ...

    async def aclose(self) -> None: ...


class UpstreamClient(Protocol):
    async def send(self, method: str, url: str, headers: list[Header], body: bytes, *,
                   timeout: float, streaming: bool) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


class _HttpxResponse:
    __slots__ = ("_response", "_timeouts", "headers", "status")

    def __init__(self, response: httpx.Response, timeouts: dict[str, float | None] | None) -> None:
        self._response = response
        self._timeouts = timeouts  # the request's timeouts while its body still has a read timeout
        self.status = response.status_code
        self.headers = [(name.lower(), value) for name, value in response.headers.raw]

    async def chunks(self) -> AsyncIterator[bytes]:
        timeouts = self._timeouts
        if timeouts is not None and is_event_stream(self.headers):
            # httpcore takes the read timeout from this very dict when the body's first read
            # starts, which is after this: the whole body is read without one.
            timeouts["read"] = None
            yield b""
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout() from exc
        except httpx.TransportError as exc:
            raise UpstreamConnectError(str(exc)) from exc

    def at_eof(self) -> bool:
        return self._response.is_closed

    async def aclose(self) -> None:
        await self._response.aclose()


class HttpxUpstream:
    """httpx, selectable for the hot path; requests are built by hand so the client's cookie jar and
    default headers never touch them."""

    def __init__(self, client: httpx.AsyncClient | None = None, *, connections: int = 256) -> None:
        self._client = client or httpx.AsyncClient(
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            trust_env=False, follow_redirects=False,
        )

    async def send(self, method: str, url: str, headers: list[Header], body: bytes, *,
                   timeout: float, streaming: bool) -> UpstreamResponse:
        read = None if streaming else timeout
        request = httpx.Request(method, url, headers=headers, content=body if body else None)
        timeouts = request.extensions["timeout"] = httpx.Timeout(timeout, read=read).as_dict()
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout() from exc
        except httpx.TransportError as exc:
            raise UpstreamConnectError(str(exc)) from exc
        return _HttpxResponse(response, None if streaming else timeouts)

    async def aclose(self) -> None:
        await self._client.aclose()


def create_upstream_client(kind: str, max_connections: int = 256) -> UpstreamClient:
    if kind == "httpx":
        return HttpxUpstream(connections=max_connections)
    from .http1 import Http1Upstream

    return Http1Upstream(max_connections_per_origin=max_connections)
