"""uvicorn's httptools protocol with one change: writes made in the same event-loop turn leave as
one ``send()``.

uvicorn writes a response's head and its body separately, so a small proxied answer costs two
system calls and wakes the client twice. On the benchmark machine the client-side write was
the single largest cost of a request in the profile (docs/performance.md); coalescing the writes
of one loop turn keeps every byte and every ordering, and only merges what would have left
microseconds apart anyway.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from clerk_gateway.drain import DRAIN


class CoalescingTransport:
    """Buffers writes until the end of the current loop turn, then writes them at once."""

    __slots__ = ("_buffer", "_loop", "_scheduled", "_transport", "close_hook")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._buffer: list[bytes] = []
        self._scheduled = False
        #: Asked before every close; returning True means it took over closing (a lingering close).
        self.close_hook: Callable[[], bool] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._buffer.append(bytes(data))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        buffer = self._buffer
        if not buffer:
            return
        data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
        buffer.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        hook = self.close_hook
        if hook is not None and hook():
            return
        self._transport.close()

    def abort(self) -> None:
        self._buffer.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GatewayHttpProtocol(HttpToolsProtocol):
    """Passed to uvicorn as ``http=``; everything else is uvicorn's own."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        coalescing = CoalescingTransport(cast(asyncio.Transport, transport), self.loop)
        super().connection_made(cast(asyncio.Transport, coalescing))


# Allocations between two young-generation collections. CPython's default (700) makes a busy
# worker collect thousands of times a second; on the benchmark the collector's pauses were what
# pushed p99 from ~13 ms to 30-50 ms at 64 connections (docs/performance.md).
GC_YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Called once start-up is done: everything alive now (modules, settings, keys) lives for the
    whole process, so it is moved out of the collector's sight, and young collections are made rare."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 100)


class GatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, closing with 1001 "going away" on shutdown instead of 1012
    (the contract's code: a client library reconnects elsewhere instead of treating it as a restart
    of the same service)."""

    def shutdown(self) -> None:
        if self.handshake_complete and not self.close_sent:
            self.queue.put_nowait({"type": "websocket.disconnect", "code": 1001})
            self.conn.send_close(1001, "server shutting down")
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
        super().shutdown()


class GatewayServer(uvicorn.Server):
    """uvicorn's server with the gateway's drain (:mod:`clerk_gateway.drain`) before its own
    graceful shutdown, and a clean exit (status 0) after a drain that SIGTERM started.

    As a worker of :class:`clerk_gateway.supervisor.WorkerPool` it also answers ``SIGUSR1``, the
    pool's "retire": stop accepting at once (the other workers take the new connections), then
    drain what is open the same way. ``on_started`` tells the pool the worker is serving.
    """

    def __init__(self, config: uvicorn.Config, *, drain_seconds: float,
                 on_started: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self.drain_seconds = drain_seconds
        self._drain_deadline: float | None = None
        self._on_started = on_started
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        self._loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR1, self._retire_signal)
            # a pool's worker leaves SIGHUP to the pool (a whole process group may get it)
            signal.signal(signal.SIGHUP, signal.SIG_IGN if self._on_started else self._hangup_signal)
        if self._on_started is not None:
            self._on_started()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self._begin_drain():
            return  # not recorded as a captured signal: a finished drain is a normal exit
        super().handle_exit(sig, frame)

    def _begin_drain(self) -> bool:
        if self._drain_deadline is not None or not self.started or self.drain_seconds <= 0:
            return False
        self._drain_deadline = time.monotonic() + self.drain_seconds
        DRAIN.begin()
        return True

    def _retire_signal(self, sig: int, frame: FrameType | None) -> None:
        if not self._begin_drain():
            self.should_exit = True  # no drain configured: uvicorn's graceful shutdown at once
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop_accepting)

    def _stop_accepting(self) -> None:
        for server in getattr(self, "servers", ()):
            server.close()

    @staticmethod
    def _hangup_signal(sig: int, frame: FrameType | None) -> None:
        logging.getLogger("clerk_gateway.server").warning(
            "SIGHUP ignored: a reload replaces worker processes one by one, which needs GATEWAY_WORKERS >= 2; "
            "with one worker, restart the process (a rolling restart, docs/deploy.md)")

    async def on_tick(self, counter: int) -> bool:
        deadline = self._drain_deadline
        if deadline is not None and not self.should_exit and (
                not self.server_state.tasks or time.monotonic() >= deadline):
            self.should_exit = True
        return await super().on_tick(counter)
