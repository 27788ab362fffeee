"""A deadline for reading the request body, so that a client trickling its body cannot hold a
request task (and the upstream slot behind it) for as long as it likes.

The deadline covers the whole body, not the gap between two chunks: a client that sends one
byte every few seconds would satisfy any per-chunk idle timeout forever. The default
(``GATEWAY_CLIENT_BODY_TIMEOUT_SECONDS``, 30 s) lets a 1 MiB body through at about 35 KB/s.

Every proxied request pays for this, so it is a bare loop timer that cancels the reading task
(what ``asyncio.timeout`` does, without its context-manager machinery), and the cancellation is
turned into a 408 only when this timer caused it.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable
from typing import TypeVar

from .errors import RequestTimeoutError

__all__ = ["read_within"]

T = TypeVar("T")


class _Deadline:
    __slots__ = ("expired", "task")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        self.expired = False

    def expire(self) -> None:
        self.expired = True
        self.task.cancel()


async def read_within(read: Awaitable[T], seconds: float | None) -> T:
    """Await ``read`` (the body read); past ``seconds`` raise :class:`RequestTimeoutError` (408).

    ``None`` or a value ≤ 0 means no deadline. A cancellation that comes from elsewhere (the
    server shutting down) stays a cancellation. The proxy renders the 408 in the backend's error
    shape; the server then ends the connection, since the rest of the body was never read.
    """
    if seconds is None or seconds <= 0:
        return await read
    task = asyncio.current_task()
    if task is None:  # pragma: no cover - always inside a task under an ASGI server
        return await read
    cancelling = task.cancelling()
    deadline = _Deadline(task)
    # a fresh context: the timer needs none, and the request's (with its trace span) would stay alive in the
    # loop's timer heap until the deadline, even after the cancel below
    timer = asyncio.get_running_loop().call_later(seconds, deadline.expire, context=contextvars.Context())
    try:
        return await read
    except asyncio.CancelledError:
        if deadline.expired and task.uncancel() <= cancelling:
            raise RequestTimeoutError("body", seconds) from None
        raise
    finally:
        timer.cancel()
