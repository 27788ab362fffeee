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
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .ports import BackgroundServer

__all__ = ["FIRST_CHUNK", "GZIP_BODY", "GZIP_PLAIN", "LAST_CHUNK", "Gate", "RecordedRequest",
           "RecordingUpstream", "large_body"]

FIRST_CHUNK = b'{"data":{"first":"' + b"f" * 64 + b'",'
LAST_CHUNK = b'"last":"' + b"l" * 64 + b'"}}'
GZIP_PLAIN = json.dumps({"data": {"compressed": "z" * 2048}}).encode()
GZIP_BODY = gzip.compress(GZIP_PLAIN, mtime=0)
_CHUNK = 64 * 1024


def large_body(size: int) -> bytes:
    """Deterministic, incompressible bytes: a truncated or reordered relay changes the digest."""
    return random.Random(size).randbytes(size)


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

    def release(self) -> None:
        self._server.call_soon(self._release.set)

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
