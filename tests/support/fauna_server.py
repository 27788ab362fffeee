"""A fake Fauna on 127.0.0.1 that speaks the FQL v10 wire protocol well enough for the official driver.

It stands in for the open-source Fauna core (fauna/faunadb) in the drop-in tests: the real
``fauna`` Python driver talks to the gateway, the gateway talks to this double. Every request is
recorded (see :class:`~tests.support.upstream.RecordedRequest`) so a test can assert what the
gateway *sent*: the Bearer secret, ``X-Query-Tags``, the driver's own headers. ``GET /ping``
answers 200 and is counted apart (the gateway's readiness probe).

``POST /query/1``  ``{"query": {"fql": [...]}, "arguments": {...}}`` → Fauna's success body
                   (``data``, ``static_type``, ``summary``, ``txn_ts``, ``stats``, ``schema_version``,
                   ``query_tags`` echoing the header). A query whose text contains ``eventSource()``
                   returns a new ``{"@stream": token}``; any other returns :data:`QUERY_DATA`.
``POST /stream/1`` ``{"token", "cursor"?, "start_ts"?}`` → 200 chunked ``application/json``, one
                   tagged event per line ended by ``\\r\\n``: a ``status`` event first, then each
                   event the test produces with :meth:`StreamHandle.push`, on demand — so a test
                   proves that one event reached the client before the next one existed.
``POST /feed/1``   ``{"token", "page_size"?, "cursor"?}`` → ``{"events", "cursor", "has_next", "stats"}``.

:meth:`FaunaServer.fail_next` makes the next request on a path answer with Fauna's error shape.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .ports import BackgroundServer
from .upstream import RecordedRequest

__all__ = ["QUERY_DATA", "FaunaServer", "StreamHandle", "data_event"]

#: What an ordinary query returns, in Fauna's tagged format (the driver decodes ``@int``).
QUERY_DATA: dict[str, Any] = {"greeting": "hello", "answer": {"@int": "42"}}
STATS: dict[str, Any] = {"compute_ops": 1, "read_ops": 0, "write_ops": 0, "query_time_ms": 1,
                         "contention_retries": 0, "storage_bytes_read": 0, "storage_bytes_write": 0,
                         "rate_limits_hit": []}
_EVENT_STATS: dict[str, Any] = {"read_ops": 1, "storage_bytes_read": 0, "compute_ops": 1, "processing_time_ms": 0,
                                "rate_limits_hit": []}


def now_micros() -> int:
    return int(time.time() * 1_000_000)


def data_event(kind: str, number: int, *, cursor: str | None = None) -> dict[str, Any]:
    """A stream or feed event as the core writes it (``add``/``update``/``remove``)."""
    return {"type": kind, "data": {"name": f"item-{number}", "number": {"@int": str(number)}},
            "txn_ts": now_micros(), "cursor": cursor or f"cursor-{number}", "stats": _EVENT_STATS}


@dataclass
class StreamHandle:
    """One event source: the test produces events, the handler writes them as they come.

    The handler sets the ``threading.Event`` flags; the test waits on them with a timeout.
    ``opened`` counts the ``/stream/1`` requests for this token (a driver that reconnects opens
    it again)."""

    token: str
    _server: FaunaServer
    opened: int = 0
    produced: int = 0
    started: threading.Event = field(default_factory=threading.Event)
    disconnected: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    _queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)

    def push(self, event: dict[str, Any]) -> None:
        """Produce one event now (from the test thread)."""
        self.produced += 1
        self._server.call_soon(lambda: self._queue.put_nowait(event))

    def end(self) -> None:
        """End the stream from the Fauna side (a completed chunked body)."""
        self._server.call_soon(lambda: self._queue.put_nowait(None))


@dataclass(frozen=True, slots=True)
class _Failure:
    status: int
    code: str
    message: str


class FaunaServer(BackgroundServer):
    """The fake Fauna core. ``hold_max_seconds`` bounds how long a stream waits for the next event."""

    def __init__(self, *, port: int | None = None, hold_max_seconds: float = 30.0) -> None:
        super().__init__(self._build_app, port=port)
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._streams: dict[str, StreamHandle] = {}
        self._failures: dict[str, _Failure] = {}
        self._tokens = itertools.count(1)
        self.probes = 0
        self.hold_max_seconds = hold_max_seconds
        self.feed_events: list[dict[str, Any]] = [data_event("add", 1), data_event("update", 1)]

    # -- what tests read and set ----------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.base_url

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.path == path]

    def stream(self, token: str) -> StreamHandle:
        """The handle of an event source (created on first use)."""
        with self._lock:
            handle = self._streams.get(token)
            if handle is None:
                handle = self._streams[token] = StreamHandle(token, self)
            return handle

    def fail_next(self, path: str, status: int, code: str, message: str = "refused by the fake") -> None:
        """The next request to ``path`` gets Fauna's error body ``{"error":{code,message}}``."""
        with self._lock:
            self._failures[path] = _Failure(status, code, message)

    def reset(self) -> None:
        with self._lock:
            handles = list(self._streams.values())
            self._requests.clear()
            self._streams.clear()
            self._failures.clear()
        for handle in handles:  # a held stream from an earlier test must not linger
            handle.end()

    # -- the server -----------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ping", self._ping)
        app.router.add_post("/query/1", self._recorded(self._query))
        app.router.add_post("/stream/1", self._recorded(self._stream))
        app.router.add_post("/feed/1", self._recorded(self._feed))
        return app

    async def _ping(self, request: web.Request) -> web.Response:
        with self._lock:
            self.probes += 1
        return web.Response(text="Scope write is OK")

    def _recorded(self, handler: Callable[[web.Request, dict[str, Any]], Any]) -> Any:
        async def wrapper(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            recorded = RecordedRequest(
                method=request.method, path=request.path, query=request.query_string,
                headers=tuple((name.decode("latin-1").lower(), value.decode("latin-1"))
                              for name, value in request.raw_headers),
                body=body)
            with self._lock:
                self._requests.append(recorded)
                failure = self._failures.pop(request.path, None)
            if failure is not None:
                return web.json_response({"error": {"code": failure.code, "message": failure.message}},
                                         status=failure.status)
            try:
                payload = json.loads(body)
            except ValueError:
                return web.json_response({"error": {"code": "invalid_request",
                                                    "message": "request body is not valid JSON"}}, status=400)
            response: web.StreamResponse = await handler(request, payload)
            return response

        return wrapper

    async def _query(self, request: web.Request, payload: dict[str, Any]) -> web.Response:
        text = _query_text(payload.get("query"))
        data: Any = QUERY_DATA
        static_type = "{ greeting: String, answer: Int }"
        if "eventSource()" in text:
            data, static_type = {"@stream": f"stream-token-{next(self._tokens)}"}, "EventSource<Any>"
        body: dict[str, Any] = {"data": data, "static_type": static_type, "summary": "", "txn_ts": now_micros(),
                                "stats": STATS, "schema_version": 0}
        tags = request.headers.get("x-query-tags")
        if tags:
            body["query_tags"] = tags
        return web.json_response(body)

    async def _stream(self, request: web.Request, payload: dict[str, Any]) -> web.StreamResponse:
        handle = self.stream(str(payload.get("token")))
        handle.opened += 1
        response = web.StreamResponse(headers={"Content-Type": "application/json;charset=utf-8",
                                               "x-fauna-stream-id": f"{handle.token}-{handle.opened}"})
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            ts = now_micros()
            await _write_event(response, {"type": "status", "txn_ts": ts, "cursor": f"status-{ts}",
                                          "stats": _EVENT_STATS})
            handle.started.set()
            while True:
                try:
                    event = await asyncio.wait_for(handle._queue.get(), self.hold_max_seconds)
                except TimeoutError:
                    event = None
                if event is None:
                    break
                await _write_event(response, event)
            await response.write_eof()
            handle.ended.set()
        except asyncio.CancelledError:
            handle.disconnected.set()
            raise
        except ConnectionError:
            handle.disconnected.set()
            raise asyncio.CancelledError() from None  # the peer is gone: end quietly
        return response

    async def _feed(self, request: web.Request, payload: dict[str, Any]) -> web.Response:
        events = self.feed_events
        cursor = events[-1]["cursor"] if events else payload.get("cursor", "feed-start")
        return web.json_response({"events": events, "cursor": cursor, "has_next": False,
                                  "stats": {**STATS, "read_ops": len(events)}})


async def _write_event(response: web.StreamResponse, event: dict[str, Any]) -> None:
    await response.write(json.dumps(event, separators=(",", ":")).encode() + b"\r\n")


def _query_text(query: Any) -> str:
    """The FQL text of a driver's query (``{"fql": ["text", {"value": …}, …]}``) or a plain string."""
    if isinstance(query, str):
        return query
    if isinstance(query, dict) and isinstance(query.get("fql"), list):
        return "".join(part if isinstance(part, str) else _query_text(part) for part in query["fql"])
    return ""
