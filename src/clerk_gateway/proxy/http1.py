"""A small HTTP/1.1 client for the upstream hot path: asyncio protocol + the httptools parser.

Why it exists: on the benchmark (docs/performance.md) the upstream client is the largest cost a
proxied request pays; aiohttp spends most of its time in request/response object machinery a
proxy does not need. This client does only what the proxy needs: one request per pooled
keep-alive connection, headers in and out as bytes, the body streamed as it arrives with flow
control, no redirects, no cookies, no decoding. httptools (llhttp, the parser uvicorn uses) does
all the parsing, including chunked framing.
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl
from collections import deque
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import urlsplit

import httptools

from .upstream import Header, UpstreamConnectError, UpstreamResponse, UpstreamTimeout, is_event_stream

_HIGH_WATER = 256 * 1024  # buffered body bytes above which the upstream socket stops being read
_LOW_WATER = 64 * 1024


class _Origin:
    """Where one pool's connections go, parsed once per URL prefix."""

    __slots__ = ("host", "host_header", "key", "port", "server_hostname", "ssl")

    def __init__(self, scheme: str, host: str, port: int | None) -> None:
        self.host = host
        secure = scheme == "https"
        self.port = port or (443 if secure else 80)
        default = (secure and self.port == 443) or (not secure and self.port == 80)
        self.host_header = (host if default else f"{host}:{self.port}").encode("idna")
        self.ssl: ssl.SSLContext | None = ssl.create_default_context() if secure else None
        self.server_hostname = host if secure else None
        self.key = (scheme, host, self.port)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; carries at most one response at a time."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: _Response | None = None
        self.closed = False
        self.reused = False
        self._headers: list[Header] = []
        self._until_close = False  # a body without length or chunking ends when the connection does

    # asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._abort(UpstreamConnectError(f"invalid response from upstream: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        response = self.response
        if response is not None and not response.complete:
            if self._until_close and exc is None and response.headers_ready.done():
                response.finish()
            else:
                response.fail(UpstreamConnectError("upstream closed the connection"))

    # httptools callbacks ----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        if self.response is not None:
            names = {name for name, _ in self._headers}
            self._until_close = b"content-length" not in names and b"transfer-encoding" not in names
            self.response.start(self.parser.get_status_code(), self._headers)

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response.feed(body)

    def on_message_complete(self) -> None:
        response = self.response
        if response is None:
            return
        keep_alive = self.parser.should_keep_alive()
        response.finish()
        self.response = None
        self.resume()  # the last bytes may have crossed the high-water mark
        if keep_alive and not response.head:
            self.pool.release(self)
        else:
            self.close()

    # ----------------------------------------------------------------------------------------
    def _abort(self, error: Exception) -> None:
        if self.response is not None:
            self.response.fail(error)
            self.response = None
        self.close()

    def close(self) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.transport is not None:
            self.transport.close()

    def pause(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()


class _Response:
    """The answer on one connection: a future for the head, then a queue of body chunks."""

    __slots__ = ("_buffered", "_chunks", "_paused", "_waiter", "complete", "connection", "error", "head",
                 "headers", "headers_ready", "status")

    def __init__(self, connection: _Connection, head: bool) -> None:
        self.connection = connection
        self.head = head
        self.status = 0
        self.headers: list[Header] = []
        self.headers_ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self.complete = False
        self.error: Exception | None = None

    def start(self, status: int, headers: list[Header]) -> None:
        self.status, self.headers = status, headers
        if not self.headers_ready.done():
            self.headers_ready.set_result(None)
        if self.head:  # a HEAD answer has no body whatever its headers say
            self.finish()

    def feed(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused:
            self._paused = True
            self.connection.pause()
        self._wake()

    def finish(self) -> None:
        self.complete = True
        self._wake()

    def fail(self, error: Exception) -> None:
        self.error = error
        self.complete = True
        if not self.headers_ready.done():
            self.headers_ready.set_exception(error)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def next_ready_chunk(self) -> bytes | None:
        if not self._chunks:
            return None
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._paused and self._buffered < _LOW_WATER:
            self._paused = False
            self.connection.resume()
        return chunk

    async def wait(self, timeout: float | None) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            if timeout is None:
                await self._waiter
            else:
                async with asyncio.timeout(timeout):
                    await self._waiter
        finally:
            self._waiter = None


def _expire(response: _Response) -> None:
    if not response.headers_ready.done():
        response.headers_ready.set_exception(UpstreamTimeout())


class _Http1Response:
    """What the proxy sees (the UpstreamResponse protocol)."""

    __slots__ = ("_pool", "_read_timeout", "_response", "headers", "status")

    def __init__(self, pool: _Pool, response: _Response, read_timeout: float | None) -> None:
        self._pool = pool
        self._response = response
        self._read_timeout = read_timeout
        self.status = response.status
        self.headers = response.headers

    async def chunks(self) -> AsyncIterator[bytes]:
        response = self._response
        timeout = self._read_timeout
        classify = timeout is not None  # an ordinary route: an event stream lifts the read timeout
        head_only = True  # nothing of the body yielded yet
        while True:
            chunk = response.next_ready_chunk()
            if chunk is not None:
                head_only = False
                yield chunk
                continue
            if response.error is not None:
                raise response.error
            if response.complete:
                return
            if classify:
                # The first wait for body bytes, once per response: an answer that arrived whole
                # never gets here, so ordinary requests pay nothing for the check.
                classify = False
                if is_event_stream(response.headers):
                    timeout = self._read_timeout = None
                    if head_only:
                        yield b""  # no event yet: the head can go to the client now
                    continue
            try:
                await response.wait(timeout)
            except TimeoutError as exc:
                raise UpstreamTimeout() from exc

    def at_eof(self) -> bool:
        response = self._response
        return response.complete and response.error is None and not response._chunks

    async def aclose(self) -> None:
        response = self._response
        if not response.complete:
            # Abandoned mid-body (client gone, error): the connection's state is unknown.
            response.connection.response = None
            response.connection.close()


class _Pool:
    """Keep-alive connections to one origin, at most ``max_connections`` open at once: a burst of
    clients waits for a free connection (within the backend's timeout) instead of opening
    thousands of sockets to the backend."""

    def __init__(self, origin: _Origin, max_idle: int, max_connections: int) -> None:
        self.origin = origin
        self.max_idle = max_idle
        self.max_connections = max_connections
        self.idle: list[_Connection] = []
        self.open: set[_Connection] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()

    def release(self, connection: _Connection) -> None:
        if connection.closed or len(self.idle) >= self.max_idle:
            connection.close()
            return
        connection.reused = True
        self.idle.append(connection)
        self._wake_one()

    def forget(self, connection: _Connection) -> None:
        """A connection closed: its slot is free again (idempotent)."""
        if connection in self.open:
            self.open.discard(connection)
            self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def acquire(self, connect_timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + connect_timeout
        while True:
            while self.idle:
                connection = self.idle.pop()
                if not connection.closed:
                    return connection
            if len(self.open) < self.max_connections:
                return await self._connect(max(deadline - loop.time(), 0.0))
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                raise UpstreamTimeout() from None

    async def _connect(self, timeout: float) -> _Connection:
        connection = _Connection(self)
        self.open.add(connection)
        try:
            async with asyncio.timeout(timeout):
                await asyncio.get_running_loop().create_connection(
                    lambda: connection, self.origin.host, self.origin.port,
                    ssl=self.origin.ssl, server_hostname=self.origin.server_hostname)
        except TimeoutError as exc:
            self.forget(connection)
            raise UpstreamTimeout() from exc
        except (OSError, ssl.SSLError) as exc:
            self.forget(connection)
            raise UpstreamConnectError(type(exc).__name__) from exc
        return connection

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()


class Http1Upstream:
    """The proxy's default upstream client (``GATEWAY_UPSTREAM_CLIENT=http1``)."""

    def __init__(self, *, max_connections_per_origin: int = 256) -> None:
        self._max_connections = max_connections_per_origin
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        self._targets: dict[str, tuple[_Pool, bytes]] = {}

    def _target(self, url: str) -> tuple[_Pool, bytes]:
        """Pool and request-target for a URL, cached per URL without its query."""
        base, _, query = url.partition("?")
        cached = self._targets.get(base)
        if cached is None:
            parts = urlsplit(base)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise UpstreamConnectError("unsupported upstream URL")
            origin = _Origin(parts.scheme, parts.hostname, parts.port)
            pool = self._pools.get(origin.key)
            if pool is None:
                pool = self._pools[origin.key] = _Pool(origin, self._max_connections, self._max_connections)
            cached = (pool, (parts.path or "/").encode())
            if len(self._targets) < 4096:
                self._targets[base] = cached
        pool, path = cached
        return pool, path + b"?" + query.encode("latin-1") if query else path

    async def send(self, method: str, url: str, headers: list[Header], body: bytes, *,
                   timeout: float, streaming: bool) -> UpstreamResponse:
        pool, target = self._target(url)
        head = b"".join((method.encode(), b" ", target, b" HTTP/1.1\r\nhost: ", pool.origin.host_header,
                         b"\r\n", *[name + b": " + value + b"\r\n" for name, value in headers],
                         b"content-length: %d\r\n\r\n" % len(body) if body or method not in ("GET", "HEAD")
                         else b"\r\n"))
        payload = head + body if body else head
        for attempt in (0, 1):
            connection = await pool.acquire(timeout)
            response = _Response(connection, head=method == "HEAD")
            connection.response = response
            assert connection.transport is not None
            connection.transport.write(payload)
            # A bare timer is much cheaper than asyncio.timeout() on a path taken by every request. Its own
            # empty context: a cancelled timer stays in the loop's heap until its time, and would keep the
            # request's context (a trace span, say) alive that long.
            timer = asyncio.get_running_loop().call_later(timeout, _expire, response, context=contextvars.Context())
            try:
                await response.headers_ready
            except UpstreamTimeout:
                connection.response = None
                connection.close()
                raise
            except UpstreamConnectError:
                # A reused keep-alive connection the upstream had already closed: nothing of the
                # request was processed, so one retry on a fresh connection is safe.
                if attempt == 0 and connection.reused and not response.headers:
                    continue
                raise
            finally:
                timer.cancel()
            return _Http1Response(pool, response, None if streaming else timeout)
        raise UpstreamConnectError("upstream closed the connection")  # pragma: no cover

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._targets.clear()
