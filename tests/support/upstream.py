"""A recording upstream on 127.0.0.1 that stands in for Hasura.

Every request it receives is recorded (method, path, query, headers in arrival order, body) so a
test can assert what the gateway actually *sent* — the only way to prove that client headers were
dropped and identity headers added. ``GET /healthz`` answers 200 for the gateway's readiness probe
and is counted apart, so that "the upstream was never called" ignores probes.

Any other path answers ``{"data": {"echo": {...}}}`` describing what arrived. A request header
``x-test-mode`` selects a behaviour (the gateway only drops client ``x-hasura-*`` headers, so the
``x-test-*`` headers reach this double):

``echo`` (default)  the echo; ``x-test-status: <code>`` sets the status.
``stream``          :data:`FIRST_CHUNK`, then wait for the :class:`Gate` named by ``x-test-gate``,
                    then :data:`LAST_CHUNK` — proves the gateway streams without timing anything.
``hang``            wait for the gate (or the client to go away) *before* sending headers — the 504.
``gzip``            :data:`GZIP_BODY` with ``Content-Encoding: gzip`` — must pass through untouched.
``large``           ``x-test-size`` bytes of :func:`large_body`, streamed in 64 KiB chunks.
``abort``           drop the connection without answering — an upstream crash.
``sse``             ``Content-Type: text/event-stream``: the ``x-test-events`` (default 3) chunks of
                    :func:`event_chunks`, each written only after the test called :meth:`Gate.step`
                    on the gate named by ``x-test-gate`` (or, with ``x-test-interval: <seconds>``, the
                    first at once and each next one that many seconds later — a slow stream).
``multipart``       the same with ``Content-Type: multipart/mixed; boundary="-"`` and incremental-delivery
                    parts (``@defer``/``@stream``). For both: ``x-test-content-type`` overrides the
                    content type, ``x-test-encoding: gzip`` compresses (one sync-flushed gzip member,
                    :func:`gzip_stream`), and the gate counts what was written (:attr:`Gate.events_sent`).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .ports import BackgroundServer

__all__ = ["FIRST_CHUNK", "GZIP_BODY", "GZIP_PLAIN", "LAST_CHUNK", "MULTIPART_CONTENT_TYPE", "SSE_CONTENT_TYPE",
           "Gate", "RecordedRequest", "RecordingUpstream", "event_chunks", "gzip_stream", "large_body"]

FIRST_CHUNK = b'{"data":{"first":"' + b"f" * 64 + b'",'
LAST_CHUNK = b'"last":"' + b"l" * 64 + b'"}}'
GZIP_PLAIN = json.dumps({"data": {"compressed": "z" * 2048}}).encode()
GZIP_BODY = gzip.compress(GZIP_PLAIN, mtime=0)
_CHUNK = 64 * 1024
SSE_CONTENT_TYPE = "text/event-stream"
MULTIPART_CONTENT_TYPE = 'multipart/mixed; boundary="-"'
_PART_HEAD = b"\r\n---\r\ncontent-type: application/json; charset=utf-8\r\n\r\n"
_MULTIPART_END = b"\r\n-----\r\n"


def large_body(size: int) -> bytes:
    """Deterministic, incompressible bytes: a truncated or reordered relay changes the digest."""
    return random.Random(size).randbytes(size)


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def event_chunks(mode: str, count: int) -> list[bytes]:
    """What the ``sse``/``multipart`` modes write, one chunk per event, in order.

    ``sse``: graphql-sse ``next`` events. ``multipart``: the initial result with a pending
    ``@stream``, then one incremental part per item; the last part carries ``hasNext: false`` and
    the closing delimiter.
    """
    if mode == "sse":
        return [b"event: next\ndata: " + _compact({"data": {"n": index}}) + b"\n\n" for index in range(count)]
    if mode != "multipart":
        raise ValueError(f"not an event-stream mode: {mode!r}")
    parts = []
    for index in range(count):
        more = index < count - 1
        payload = ({"data": {"items": []}, "pending": [{"id": "0", "path": ["items"]}], "hasNext": more}
                   if index == 0 else {"incremental": [{"id": "0", "items": [index]}], "hasNext": more})
        parts.append(_PART_HEAD + _compact(payload) + (b"" if more else _MULTIPART_END))
    return parts


def gzip_stream(chunks: list[bytes]) -> list[bytes]:
    """``chunks`` as one gzip member, each chunk sync-flushed so that it can be decoded as soon as it
    arrives; the last item is the member's trailer. Deterministic: the test computes the same bytes."""
    compressor = zlib.compressobj(wbits=31)
    out = [compressor.compress(chunk) + compressor.flush(zlib.Z_SYNC_FLUSH) for chunk in chunks]
    out.append(compressor.flush())
    return out


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the upstream received it (header names lower-cased, order and repeats kept)."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header_values(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self.headers if key == wanted]

    def header(self, name: str) -> str | None:
        """The header's only value; ``None`` when absent. Repeats are an error the test should see."""
        values = self.header_values(name)
        if len(values) > 1:
            raise AssertionError(f"header {name!r} arrived {len(values)} times: {values!r}")
        return values[0] if values else None

    def has_header(self, name: str) -> bool:
        return bool(self.header_values(name))

    @property
    def header_names(self) -> set[str]:
        return {key for key, _ in self.headers}

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Gate:
    """Coordinates one held-back response between the handler (server loop) and the test thread.

    The handler sets the ``threading.Event`` flags as it goes; the test waits on them with a
    timeout and calls :meth:`release` to let the handler continue.
    """

    name: str
    _server: RecordingUpstream
    first_sent: threading.Event = field(default_factory=threading.Event)
    last_sent: threading.Event = field(default_factory=threading.Event)
    disconnected: threading.Event = field(default_factory=threading.Event)
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    # event-stream modes: one step per event; the handler counts what it wrote
    _steps: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(0))
    _progress: threading.Condition = field(default_factory=threading.Condition)
    _events_sent: int = 0

    def release(self) -> None:
        """Let the held handler go on; in the event-stream modes every remaining event goes out."""
        self._server.call_soon(self._release.set)

    def step(self, count: int = 1) -> None:
        """Event-stream modes: let the handler write its next ``count`` events."""
        for _ in range(count):
            self._server.call_soon(self._steps.release)

    @property
    def events_sent(self) -> int:
        """How many events the handler has written so far (event-stream modes)."""
        with self._progress:
            return self._events_sent

    def wait_events_sent(self, count: int, timeout: float) -> bool:
        """Block (test thread) until the handler wrote at least ``count`` events."""
        with self._progress:
            return self._progress.wait_for(lambda: self._events_sent >= count, timeout)

    def event_sent(self) -> None:
        """Handler side: one more event was written."""
        with self._progress:
            self._events_sent += 1
            self._progress.notify_all()

    async def wait_step(self, max_seconds: float) -> bool:
        """Handler side: wait for the next :meth:`step` (or a :meth:`release`); False on timeout."""
        if self._release.is_set():
            return True
        step = asyncio.ensure_future(self._steps.acquire())
        released = asyncio.ensure_future(self._release.wait())
        try:
            done, _ = await asyncio.wait((step, released), timeout=max_seconds,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            step.cancel()
            released.cancel()
        return bool(done)

    async def wait_released(self, max_seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._release.wait(), max_seconds)
        except TimeoutError:
            return False
        return True


class RecordingUpstream(BackgroundServer):
    """The fake Hasura. ``gate_max_seconds`` bounds every hold so a broken gateway cannot hang a test."""

    def __init__(self, *, port: int | None = None, gate_max_seconds: float = 15.0) -> None:
        super().__init__(self._build_app, port=port)
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._probes = 0
        self._gates: dict[str, Gate] = {}
        self.gate_max_seconds = gate_max_seconds

    # -- what tests read ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.base_url

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request except readiness probes, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def probe_count(self) -> int:
        with self._lock:
            return self._probes

    def last(self) -> RecordedRequest:
        """The only request since the last :meth:`reset` (a test that sent one expects exactly one)."""
        requests = self.requests
        assert len(requests) == 1, f"expected exactly one upstream request, got {len(requests)}: " + \
            repr([(r.method, r.path) for r in requests])
        return requests[0]

    def gate(self, name: str) -> Gate:
        """The gate a request names with ``x-test-gate: <name>`` (created on first use)."""
        with self._lock:
            gate = self._gates.get(name)
            if gate is None:
                gate = self._gates[name] = Gate(name, self)
            return gate

    def reset(self) -> None:
        """Forget recorded requests and gates (called before every test)."""
        with self._lock:
            gates = list(self._gates.values())
            self._requests.clear()
            self._gates.clear()
        for gate in gates:  # a held handler from an earlier test must not linger
            gate.release()

    # -- the server -----------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _healthz(self, request: web.Request) -> web.Response:
        with self._lock:
            self._probes += 1
        return web.Response(text="OK")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        recorded = RecordedRequest(
            method=request.method, path=request.path, query=request.query_string,
            headers=tuple((name.decode("latin-1").lower(), value.decode("latin-1"))
                          for name, value in request.raw_headers),
            body=body,
        )
        with self._lock:
            self._requests.append(recorded)
        mode = request.headers.get("x-test-mode", "echo")
        gate_name = request.headers.get("x-test-gate", mode)
        if mode == "stream":
            return await self._stream(request, self.gate(gate_name))
        if mode in ("sse", "multipart"):
            return await self._event_stream(request, mode, self.gate(gate_name))
        if mode == "hang":
            gate = self.gate(gate_name)
            try:
                await gate.wait_released(self.gate_max_seconds)
            except asyncio.CancelledError:
                gate.disconnected.set()
                raise
        if mode == "gzip":
            return web.Response(body=GZIP_BODY, headers={"Content-Type": "application/json",
                                                         "Content-Encoding": "gzip"})
        if mode == "large":
            return await self._large(request, int(request.headers.get("x-test-size", "1048576")))
        if mode == "abort":
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError()
        echo = {"method": recorded.method, "path": recorded.path, "query": recorded.query,
                "body": body.decode("utf-8", "replace")}
        status = int(request.headers.get("x-test-status", "200"))
        return web.json_response({"data": {"echo": echo}}, status=status)

    async def _stream(self, request: web.Request, gate: Gate) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            await response.prepare(request)
            await response.write(FIRST_CHUNK)
            gate.first_sent.set()
            await gate.wait_released(self.gate_max_seconds)
            await response.write(LAST_CHUNK)
            gate.last_sent.set()
            await response.write_eof()
        except asyncio.CancelledError:
            gate.disconnected.set()
            raise
        except ConnectionError:
            gate.disconnected.set()
            raise asyncio.CancelledError() from None  # the peer is gone: end quietly
        return response

    async def _large(self, request: web.Request, size: int) -> web.StreamResponse:
        data = large_body(size)
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        try:
            await response.prepare(request)
            for start in range(0, size, _CHUNK):
                await response.write(data[start:start + _CHUNK])
            await response.write_eof()
        except ConnectionError:
            raise asyncio.CancelledError() from None  # the peer is gone: end quietly
        return response

    async def _event_stream(self, request: web.Request, mode: str, gate: Gate) -> web.StreamResponse:
        chunks = event_chunks(mode, int(request.headers.get("x-test-events", "3")))
        interval = request.headers.get("x-test-interval")
        default_type = SSE_CONTENT_TYPE if mode == "sse" else MULTIPART_CONTENT_TYPE
        headers = {"Content-Type": request.headers.get("x-test-content-type", default_type),
                   "Cache-Control": "no-cache"}
        trailer = b""
        if request.headers.get("x-test-encoding") == "gzip":
            headers["Content-Encoding"] = "gzip"
            *chunks, trailer = gzip_stream(chunks)
        response = web.StreamResponse(headers=headers)
        try:
            await response.prepare(request)  # the head goes out now, before the first event
            for index, chunk in enumerate(chunks):
                if interval is None:
                    await gate.wait_step(self.gate_max_seconds)
                elif index:
                    await asyncio.sleep(float(interval))
                await response.write(chunk)
                gate.event_sent()
            if trailer:
                await response.write(trailer)
            await response.write_eof()
            gate.last_sent.set()
        except asyncio.CancelledError:
            gate.disconnected.set()
            raise
        except ConnectionError:
            gate.disconnected.set()
            raise asyncio.CancelledError() from None  # the peer is gone: end quietly
        return response
