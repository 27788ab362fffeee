"""Upstream HTTP clients behind one small seam.

The hot path needs a fast client: measured on the target machine, a bare aiohttp session serves
several times more requests per second than an ``httpx.AsyncClient`` (see docs/performance.md), so
aiohttp is the default there. httpx stays the project's HTTP client API everywhere else (JWKS,
Clerk's API, probes) and remains selectable here (``GATEWAY_UPSTREAM_CLIENT=httpx``), which is
also what the respx-based unit tests drive. Both clients pass bodies through undecoded, keep no
cookies between users, and add no headers of their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import aiohttp
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


class _AiohttpResponse:
    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers = [(name.lower(), value) for name, value in response.raw_headers]

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            raise UpstreamConnectError(str(exc)) from exc
        except TimeoutError as exc:
            raise UpstreamTimeout() from exc

    def at_eof(self) -> bool:
        return self._response.content.at_eof()

    async def aclose(self) -> None:
        # A fully read response returns its connection to the pool; an abandoned one must not.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class AiohttpUpstream:
    """One pooled aiohttp session per backend."""

    def __init__(self, *, connections: int = 256) -> None:
        self._connector_limit = connections
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float, bool], aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._connector_limit, limit_per_host=0,
                                         ttl_dns_cache=60, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            raise_for_status=False, trust_env=False,
        )
        return self._session

    def _timeout(self, seconds: float, streaming: bool) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get((seconds, streaming))
        if timeout is None:
            timeout = aiohttp.ClientTimeout(total=None, connect=seconds,
                                            sock_read=None if streaming else seconds)
            self._timeouts[(seconds, streaming)] = timeout
        return timeout

    async def send(self, method: str, url: str, headers: list[Header], body: bytes, *,
                   timeout: float, streaming: bool) -> UpstreamResponse:
        session = self._session or self._open()
        text_headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]
        try:
            response = await session.request(
                method, url, headers=text_headers, data=body if body else None,
                timeout=self._timeout(timeout, streaming), allow_redirects=False, compress=None,
            )
        except TimeoutError as exc:
            raise UpstreamTimeout() from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamConnectError(str(exc)) from exc
        return _AiohttpResponse(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


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


def create_upstream_client(kind: str) -> UpstreamClient:
    return HttpxUpstream() if kind == "httpx" else AiohttpUpstream()
