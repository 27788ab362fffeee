"""read_within: the body-read deadline."""

from __future__ import annotations

import asyncio

import pytest

from clerk_gateway.edge import RequestTimeoutError, read_within
from clerk_gateway.proxy.responses import render_error


async def test_returns_what_the_read_returns() -> None:
    async def read() -> bytes:
        return b"body"

    assert await read_within(read(), 5) == b"body"
    assert await read_within(read(), None) == b"body"
    assert await read_within(read(), 0) == b"body"


async def test_a_read_past_the_deadline_is_a_408() -> None:
    never = asyncio.Event()

    async def read() -> bytes:
        await never.wait()
        return b""

    with pytest.raises(RequestTimeoutError) as caught:
        await read_within(read(), 0.05)
    error = caught.value
    assert error.status == 408 and error.reason == "body-timeout" and error.code == "request-timeout"
    status, _, body = render_error(error, graphql=True)
    assert status == 408 and b"request-timeout" in body


async def test_other_errors_pass_through() -> None:
    async def read() -> bytes:
        raise ValueError("boom")

    with pytest.raises(ValueError):
        await read_within(read(), 1)


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    started = asyncio.Event()

    async def read() -> bytes:
        started.set()
        await asyncio.Event().wait()
        return b""

    task = asyncio.create_task(read_within(read(), 10))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_task_is_usable_after_a_timeout() -> None:
    async def read() -> bytes:
        await asyncio.sleep(10)
        return b""

    with pytest.raises(RequestTimeoutError):
        await read_within(read(), 0.02)
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0
    await asyncio.sleep(0)  # no cancellation left pending on this task
