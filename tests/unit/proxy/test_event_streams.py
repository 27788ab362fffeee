"""Event streams in-process: which content types count, and how each upstream client reads them.

The rule (docs/realtime.md, "Other streams"): a ``text/event-stream`` or ``multipart/mixed`` answer on
an ordinary route has no read timeout once its head arrived, and the client yields an empty chunk
when it has no event yet, so that the proxy can send the head at once; every other answer keeps
``timeout`` as the limit of every wait for body bytes. The end-to-end proof over real sockets is
tests/e2e/test_event_streams.py; these tests pin the clients' side with short timeouts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import pytest
from aiohttp import web

from clerk_gateway.adapters.hasura import HasuraAdapter, HasuraSettings
from clerk_gateway.proxy import http1
from clerk_gateway.proxy.http import BackendProxy
from clerk_gateway.proxy.http1 import Http1Upstream
from clerk_gateway.proxy.upstream import (
    HttpxUpstream,
    UpstreamClient,
    UpstreamTimeout,
    create_upstream_client,
    is_event_stream,
)
from tests.support.stubs import GOOD_TOKEN, StubVerifier

TIMEOUT = 0.3  # the backend's timeout_seconds in these tests
GAP = 0.7  # an idle gap longer than TIMEOUT
EVENT = b"event: next\ndata: {}\n\n"


@pytest.mark.parametrize("value", [
    b"text/event-stream", b"Text/Event-Stream; charset=utf-8", b"text/event-stream ;charset=utf-8",
    b"multipart/mixed", b'multipart/mixed; boundary="-"', b'MULTIPART/MIXED;boundary="-";deferSpec=20220824',
])
def test_event_stream_content_types(value: bytes) -> None:
    assert is_event_stream([(b"date", b"x"), (b"content-type", value)])


@pytest.mark.parametrize("value", [
    b"application/json", b"application/graphql-response+json; charset=utf-8", b"text/event-streams",
    b"text/plain; note=text/event-stream", b"multipart/x-mixed-replace; boundary=x", b"multipart/form-data",
    b"application/x-ndjson", b"",
])
def test_other_content_types_are_not_event_streams(value: bytes) -> None:
    assert not is_event_stream([(b"content-type", value)])


def test_no_content_type_and_the_first_content_type_wins() -> None:
    assert not is_event_stream([(b"content-length", b"0")])
    assert not is_event_stream([(b"content-type", b"application/json"), (b"content-type", b"text/event-stream")])


# -- both clients against a real local server ---------------------------------------------------------

class Upstream:
    """``POST /<content type>/<gap>``: the head at once, then two events, each after ``gap`` seconds.
    ``/whole`` answers a small JSON body in one write. Handlers that end early record it."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.url = ""

    async def events(self, request: web.Request) -> web.StreamResponse:
        return await self._events(request, request.match_info["kind"], float(request.match_info["gap"]))

    async def graphql(self, request: web.Request) -> web.StreamResponse:
        """Where the Hasura adapter sends ``/v1/graphql``: an SSE stream whose first event takes 5 s."""
        return await self._events(request, "sse", 5.0)

    async def _events(self, request: web.Request, kind: str, gap: float) -> web.StreamResponse:
        content_type = {"sse": "text/event-stream", "multipart": 'multipart/mixed; boundary="-"',
                        "json": "application/json"}[kind]
        response = web.StreamResponse(headers={"content-type": content_type})
        try:
            await response.prepare(request)
            for _ in range(2):
                await asyncio.sleep(gap)
                await response.write(EVENT)
            await response.write_eof()
        except (asyncio.CancelledError, ConnectionError):
            self.cancelled.set()
            raise
        return response

    async def whole(self, request: web.Request) -> web.Response:
        return web.json_response({"data": {}})


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    double = Upstream()
    app = web.Application()
    app.router.add_post("/whole", double.whole)
    app.router.add_post("/v1/graphql", double.graphql)
    app.router.add_post("/{kind}/{gap}", double.events)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    double.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    yield double
    await runner.cleanup()


@pytest.fixture(params=["http1", "httpx"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[UpstreamClient]:
    client = create_upstream_client(request.param)
    yield client
    await client.aclose()


async def read_all(client: UpstreamClient, url: str, *, streaming: bool = False) -> list[bytes]:
    response = await client.send("POST", url, [(b"content-type", b"application/json")], b"{}",
                                 timeout=TIMEOUT, streaming=streaming)
    try:
        return [chunk async for chunk in response.chunks()]
    finally:
        await response.aclose()


@pytest.mark.parametrize("kind", ["sse", "multipart"])
async def test_an_event_stream_has_no_read_timeout_and_signals_its_head(client: UpstreamClient,
                                                                        upstream: Upstream, kind: str) -> None:
    chunks = await read_all(client, f"{upstream.url}/{kind}/{GAP}")

    assert chunks[0] == b"", "no empty chunk: the proxy would hold the head back until the first event"
    assert b"".join(chunks) == EVENT * 2


async def test_a_json_body_keeps_the_read_timeout_for_every_wait(client: UpstreamClient,
                                                                 upstream: Upstream) -> None:
    with pytest.raises(UpstreamTimeout):
        await read_all(client, f"{upstream.url}/json/{GAP}")


async def test_a_json_body_whose_waits_are_short_is_not_cut(client: UpstreamClient, upstream: Upstream) -> None:
    """Two gaps of 0.2 s: 0.4 s in all, longer than the timeout, but no single wait is."""
    assert b"".join(await read_all(client, f"{upstream.url}/json/0.2")) == EVENT * 2


async def test_a_streaming_route_is_unchanged(client: UpstreamClient, upstream: Upstream) -> None:
    """The route decides there (no read timeout, no empty chunk), whatever the content type."""
    for kind in ("sse", "json"):
        assert await read_all(client, f"{upstream.url}/{kind}/{GAP}", streaming=True) == [EVENT, EVENT]


async def test_http1_never_classifies_an_answer_that_arrived_whole(upstream: Upstream,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The hot path: a small answer is complete when its head is, so the check never runs."""
    calls: list[object] = []

    def counting(headers: Any) -> bool:
        calls.append(headers)
        return False

    monkeypatch.setattr(http1, "is_event_stream", counting)
    client = Http1Upstream()
    try:
        for _ in range(3):
            assert await read_all(client, f"{upstream.url}/whole") == [b'{"data": {}}']
        assert calls == []
        await read_all(client, f"{upstream.url}/json/0.05")  # an answer that has to wait: looked at once
        assert len(calls) == 1
    finally:
        await client.aclose()


# -- the proxy: the head goes out before the first event, and a client leaving closes the upstream ----

Message = MutableMapping[str, Any]


class Asgi:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.sent = asyncio.Event()
        self.leave = asyncio.Event()
        self._body_read = False

    async def receive(self) -> Message:
        if not self._body_read:
            self._body_read = True
            return {"type": "http.request", "body": b'{"query":"subscription { a }"}', "more_body": False}
        await self.leave.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.messages.append(message)
        self.sent.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(5):
            while not condition():
                self.sent.clear()
                await self.sent.wait()


def proxy_for(url: str, client: UpstreamClient) -> BackendProxy:
    settings = HasuraSettings.model_validate({"url": url, "auth_mode": "admin_secret", "admin_secret": "s",
                                              "timeout_seconds": TIMEOUT})
    return BackendProxy(HasuraAdapter("hasura", settings), client, StubVerifier(),  # type: ignore[arg-type]
                        cookie_names=("__session",), max_body_bytes=1024)


def run(proxy: BackendProxy, asgi: Asgi, path: str) -> Awaitable[None]:
    scope = {"type": "http", "method": "POST", "path": "/hasura/v1/graphql", "query_string": b"",
             "headers": [(b"authorization", f"Bearer {GOOD_TOKEN}".encode())], "client": ("127.0.0.1", 5)}
    return asyncio.create_task(proxy.handle(scope, asgi.receive, asgi.send, path))


async def test_the_head_goes_out_before_the_first_event_and_leaving_closes_the_upstream(
        client: UpstreamClient, upstream: Upstream) -> None:
    asgi = Asgi()
    task = run(proxy_for(upstream.url, client), asgi, "/v1/graphql")  # the first event would take 5 s

    await asgi.until(lambda: len(asgi.messages) >= 1)
    start = asgi.messages[0]
    assert start["type"] == "http.response.start" and start["status"] == 200
    assert (b"content-type", b"text/event-stream") in start["headers"]

    asgi.leave.set()  # the client goes away before any event
    async with asyncio.timeout(5):
        await task
        await upstream.cancelled.wait()
    assert not any(message.get("body") for message in asgi.messages)


async def test_httpx_lifts_only_the_read_timeout_of_that_request(upstream: Upstream) -> None:
    """The read timeout is lifted in the request's own timeouts: the next request has it again."""
    client = HttpxUpstream()
    try:
        assert b"".join(await read_all(client, f"{upstream.url}/sse/{GAP}")) == EVENT * 2
        with pytest.raises(UpstreamTimeout):
            await read_all(client, f"{upstream.url}/json/{GAP}")
    finally:
        await client.aclose()
