"""Upstream HTTP clients behind one small seam.

The hot path needs a fast client. Measured with the project's benchmark (docs/performance.md),
the client decides the gateway's throughput, so the default is the small HTTP/1.1 client in
:mod:`.http1` (about five times cheaper per request than aiohttp, the best library measured).
httpx stays the project's HTTP client API everywhere else (JWKS, Clerk's API, probes) and remains
selectable here (``GATEWAY_UPSTREAM_CLIENT=httpx``), which is also what the respx-based unit tests
drive. Both pass bodies through undecoded, keep no cookies between users and add no headers of
their own beyond ``Host`` and ``Content-Length``.
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


class UpstreamResponse(Protocol):
    status: int
    headers: list[Header]

    def chunks(self) -> AsyncIterator[bytes]: ...

    def at_eof(self) -> bool: ...

    async def aclose(self) -> None: ...


class UpstreamClient(Protocol):
    async def send(self, method: str, url: str, headers: list[Header], body: bytes, *,
                   timeout: float, streaming: bool) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


class _HttpxResponse:
    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers = [(name.lower(), value) for name, value in response.headers.raw]

    async def chunks(self) -> AsyncIterator[bytes]:
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
        request.extensions["timeout"] = httpx.Timeout(timeout, read=read).as_dict()
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout() from exc
        except httpx.TransportError as exc:
            raise UpstreamConnectError(str(exc)) from exc
        return _HttpxResponse(response)

    async def aclose(self) -> None:
        await self._client.aclose()


def create_upstream_client(kind: str, max_connections: int = 256) -> UpstreamClient:
    if kind == "httpx":
        return HttpxUpstream(connections=max_connections)
    from .http1 import Http1Upstream

    return Http1Upstream(max_connections_per_origin=max_connections)
