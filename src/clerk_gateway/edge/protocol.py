"""The gateway's httptools protocol with the limits uvicorn lacks: header size and header time.

What uvicorn 0.54 with httptools does on its own (measured over a raw socket): llhttp has no
limit on the size of the request head, so a 64 KiB header — or a 20 MB one, held in memory —
reaches the application; and nothing times out a connection that is opened and never
finishes its headers (the keep-alive timer only runs *after* a response), so a slowloris client
holds a connection for ever. The h11 protocol has a size limit (``h11_max_incomplete_event_size``)
but it is applied only when the head spans several reads, and h11 costs far more per request.

So the gateway keeps httptools — through :class:`clerk_gateway.server.GatewayHttpProtocol`, whose
coalesced writes it inherits — and adds, per connection:

* a **size limit** on the request line plus headers (``max_header_bytes``): past it the client gets
  a ``431`` problem+json answer — answered, never a dropped connection;
* a **time limit** on the head (``header_timeout``): from the connection's start for its first
  request, from the first byte for the next ones. A client that sent part of a head gets a ``408``;
  an idle connection that never sent a byte is just closed;
* a **drain** after an answer sent while the request body is still arriving, when the answer
  kept the connection (a refusal of a small declared body, see :mod:`clerk_gateway.edge.keepalive`):
  the rest of the body is parsed and thrown away — at most ``linger_bytes`` within
  ``linger_seconds`` — and the connection then serves the client's next request as usual;
* a **lingering close** whenever the gateway must close before it read the whole request (those
  two refusals, and any answer that says ``Connection: close`` while the body is still arriving —
  a 413 for a large body, a chunked one, the body-timeout 408, or a drain that ran out): the
  answer is written, the write side is shut (FIN), and what the client still sends is read and
  discarded for a little while before the socket closes. Closing at once with unread data makes
  the kernel send a reset, which can destroy the answer before the client reads it.

Bytes are counted as they arrive, before the parser sees them, so a huge head is refused without
being buffered. (With HTTP pipelining a head that starts inside the read that ended the previous
request is counted from the next read on: the limit is then exact to within one read.)
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from clerk_gateway.drain import DRAIN
from clerk_gateway.errors import GatewayError
from clerk_gateway.proxy.responses import render_error
from clerk_gateway.server import CoalescingTransport, GatewayHttpProtocol

from .errors import HeaderFieldsTooLargeError, RequestTimeoutError

__all__ = ["EdgeHttpToolsProtocol", "EdgeLimits", "edge_http_protocol"]

log = logging.getLogger("clerk_gateway.edge")


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """Per-connection limits; picklable, so a multi-worker uvicorn can hand them to its workers."""

    max_header_bytes: int = 32 * 1024
    header_timeout: float = 10.0
    linger_seconds: float = 5.0
    linger_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_header_bytes < 1024:
            raise ValueError("max_header_bytes must be at least 1024")
        if self.header_timeout <= 0 or self.linger_seconds <= 0 or self.linger_bytes < 0:
            raise ValueError("timeouts must be positive")


def _answer(error: GatewayError) -> bytes:
    status, headers, body = render_error(error, graphql=False)
    lines = [STATUS_LINE[status]]
    lines.extend(name + b": " + value + b"\r\n" for name, value in headers)
    lines.append(b"content-length: " + str(len(body)).encode() + b"\r\n")
    lines.append(b"connection: close\r\n\r\n")
    lines.append(body)
    return b"".join(lines)


class EdgeHttpToolsProtocol(GatewayHttpProtocol):
    """The gateway's httptools protocol (coalesced writes) plus :class:`EdgeLimits`."""

    def __init__(self, *args: Any, limits: EdgeLimits | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits or EdgeLimits()
        self._in_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._lingering = False
        self._linger_left = 0
        self._linger_timer: asyncio.TimerHandle | None = None
        self._draining = False
        self._drain_left = 0
        self._drain_timer: asyncio.TimerHandle | None = None

    # -- connection --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        coalescing = cast(CoalescingTransport, self.transport)
        coalescing.close_hook = self._close_gently
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._end_drain()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._linger_left -= len(data)
            if self._linger_left < 0:
                self.transport.close()
            return
        if not self._in_head:
            if self._draining:
                self._drain_data(data)
                return
            super().data_received(data)
            return
        if self._head_timer is None:
            self._arm_head_timer()
        room = self.limits.max_header_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            super().data_received(data)
            return
        # The head fits only if it ends within the first `room` bytes: let the parser see just
        # those, and refuse if the headers are still not complete.
        if room > 0:
            self._head_bytes += room
            super().data_received(data[:room])
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return
        if self._in_head:
            self._refuse(HeaderFieldsTooLargeError(self.limits.max_header_bytes))
            return
        super().data_received(data[room:])

    # -- parser callbacks --------------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()
        if DRAIN.active and self.cycle is not None:
            self.cycle.keep_alive = False  # draining: this answer says Connection: close

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0
        self._end_drain()

    def on_response_complete(self) -> None:
        if self._lingering:  # the answer said Connection: close; _close_gently took over
            self.server_state.total_requests += 1
            return
        cycle = self.cycle
        if (cycle is not None and cycle.more_body and not self.pipeline
                and not self.transport.is_closing()):
            # Answered before the body was read, keeping the connection (the answer did not say
            # Connection: close): read the rest of the body away, then serve the next request.
            self._start_drain()
        super().on_response_complete()

    def _close_gently(self) -> bool:
        """The transport's close hook: an answer that closes while its request body is still
        arriving lingers instead of closing at once (which could reset the answer away)."""
        cycle = self.cycle
        if (self._lingering or self._in_head or cycle is None or not cycle.response_complete
                or not cycle.more_body):
            return False
        self.server_state.total_requests += 1
        self._linger()
        return True

    # -- drain -------------------------------------------------------------------------------------

    def _start_drain(self) -> None:
        self._draining = True
        self._drain_left = self.limits.linger_bytes
        self._drain_timer = self.loop.call_later(self.limits.linger_seconds, self._drain_ran_out)

    def _drain_data(self, data: bytes) -> None:
        self._drain_left -= len(data)
        if self._drain_left < 0:
            self._drain_ran_out()
            return
        cycle = self.cycle
        super().data_received(data)  # uvicorn drops body bytes of an answered request
        if self._draining or self.transport.is_closing():
            return
        # The body ended inside this read. Unless the next request began in it, the connection is
        # idle now: uvicorn armed its keep-alive timer when the answer completed and this read
        # cancelled it, so arm it again.
        if self.cycle is cycle and self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                self.timeout_keep_alive_handler)

    def _drain_ran_out(self) -> None:
        """More than ``linger_bytes``, or not done within ``linger_seconds``: the client does not
        send the body it declared, so the connection is given up (gently)."""
        if not self._draining:
            return
        self._end_drain()
        if not self.transport.is_closing():
            self._linger()

    def _end_drain(self) -> None:
        self._draining = False
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None

    # -- limits ------------------------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self._lingering or not self._in_head:
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            self._arm_head_timer()  # a pipelined head during a response: check again later
            return
        if self._head_bytes == 0:
            self.transport.close()  # idle, never sent a byte: nobody to answer
            return
        self._refuse(RequestTimeoutError("headers", self.limits.header_timeout))

    def _refuse(self, error: GatewayError) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            self.transport.close()  # a pipelined head while a response is under way: no room to answer
            return
        client = self.client[0] if self.client else None
        log.info("request refused at the edge", extra={"status": error.status, "reason": error.reason,
                                                       "client": client})
        self.transport.write(_answer(error))
        self._linger()

    def _linger(self) -> None:
        self._lingering = True
        self._cancel_head_timer()
        self._unset_keepalive_if_required()
        transport = self.transport
        self.flow.resume_reading()
        flush = getattr(transport, "flush", None)  # the coalescing transport holds this turn's writes
        if flush is not None:
            flush()
        if transport.can_write_eof():
            transport.write_eof()
        self._linger_left = self.limits.linger_bytes
        self._linger_timer = self.loop.call_later(self.limits.linger_seconds, transport.close)


def edge_http_protocol(limits: EdgeLimits) -> type[asyncio.Protocol]:
    """The value for uvicorn's ``http=`` option: the protocol bound to ``limits``.

    uvicorn only ever calls it like a class (``http(config=…, server_state=…, app_state=…)``);
    a ``functools.partial`` of a module-level class pickles, which ``workers > 1`` needs.
    """
    return cast("type[asyncio.Protocol]", functools.partial(EdgeHttpToolsProtocol, limits=limits))
