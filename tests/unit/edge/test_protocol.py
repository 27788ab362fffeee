"""EdgeHttpToolsProtocol inside a real uvicorn server on 127.0.0.1, driven over raw sockets.

Short limits (0.3 s header timeout) keep the tests quick; every read has a generous deadline and
the assertions are about what was answered, never about how fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import orjson
import pytest
import uvicorn

from clerk_gateway.edge import read_within
from clerk_gateway.edge.protocol import EdgeLimits, edge_http_protocol
from clerk_gateway.errors import GatewayError
from clerk_gateway.proxy.responses import render_error
from tests.support.ports import LOCALHOST, free_port

LIMITS = EdgeLimits(max_header_bytes=8 * 1024, header_timeout=0.3, linger_seconds=1.0)


async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    """``/echo`` reads the body (under a 0.3 s deadline) and answers its length; ``/refuse``
    answers 401 without reading anything."""
    if scope["type"] != "http":
        return
    status, body = 200, b""
    extra: list[tuple[bytes, bytes]] = []
    if scope["path"] in ("/refuse", "/refuse-close"):
        status, body = 401, b"no"
        if scope["path"] == "/refuse-close":
            extra.append((b"connection", b"close"))
    else:
        async def read() -> bytes:
            parts = []
            while True:
                message = await receive()
                parts.append(message.get("body", b""))
                if not message.get("more_body"):
                    return b"".join(parts)

        try:
            body = str(len(await read_within(read(), 0.3))).encode()
        except GatewayError as error:
            status, _, body = render_error(error, graphql=False)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), *extra]})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def running_server(limits: EdgeLimits = LIMITS, keep_alive: float = 5) -> AsyncIterator[int]:
    port = free_port()
    config = uvicorn.Config(app, host=LOCALHOST, port=port, http=edge_http_protocol(limits), lifespan="off",
                            log_level="warning", timeout_keep_alive=keep_alive, timeout_graceful_shutdown=1)
    config.load()
    instance = uvicorn.Server(config)
    instance.lifespan = config.lifespan_class(config)
    await instance.startup()
    try:
        yield port
    finally:
        await instance.shutdown()


@pytest.fixture
async def server() -> AsyncIterator[int]:
    async with running_server() as port:
        yield port


async def read_until_closed(reader: asyncio.StreamReader, deadline: float = 5.0) -> bytes:
    data = b""
    async with asyncio.timeout(deadline):
        while True:
            try:
                chunk = await reader.read(65536)
            except ConnectionResetError:
                raise AssertionError(f"connection reset after {len(data)} bytes: {data[:200]!r}") from None
            if not chunk:
                return data
            data += chunk


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await reader.readexactly(length)
    return int(head.split(b" ", 2)[1]), body


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def request(path: str = "/echo", headers: bytes = b"", body: bytes = b"") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Length: {len(body)}\r\n".encode()
            + headers + b"\r\n" + body)


async def test_a_normal_request_passes(server: int) -> None:
    reader, writer = await asyncio.open_connection(LOCALHOST, server)
    writer.write(request(body=b"hello"))
    assert await read_response(reader) == (200, b"5")
    writer.close()


async def test_oversized_headers_are_answered_431(server: int) -> None:
    reader, writer = await asyncio.open_connection(LOCALHOST, server)
    writer.write(request(headers=b"X-Big: " + b"a" * 64 * 1024 + b"\r\n"))
    response = await read_until_closed(reader)
    assert status_of(response) == 431
    problem = orjson.loads(response.split(b"\r\n\r\n", 1)[1])
    assert problem["status"] == 431 and problem["reason"] == "headers-too-large"
    assert b"connection: close" in response.lower()
    writer.close()


async def test_oversized_headers_arriving_in_pieces_are_answered_431(server: int) -> None:
    reader, writer = await asyncio.open_connection(LOCALHOST, server)
    writer.write(b"GET /echo HTTP/1.1\r\nHost: gw\r\n")
    for _ in range(20):
        writer.write(b"X-Piece: " + b"b" * 1000 + b"\r\n")
        await writer.drain()
        await asyncio.sleep(0)
    response = await read_until_closed(reader)
    assert status_of(response) == 431
    writer.close()


async def test_a_head_just_under_the_limit_followed_by_its_body_in_one_write_passes(server: int) -> None:
    body = b"z" * 20_000  # the write crosses the header limit, but the head ends before it
    head_fill = LIMITS.max_header_bytes - 200
    reader, writer = await asyncio.open_connection(LOCALHOST, server)
    writer.write(request(headers=b"X-Fill: " + b"f" * head_fill + b"\r\n", body=body))
    assert await read_response(reader) == (200, str(len(body)).encode())
    writer.close()


async def test_unfinished_headers_time_out_with_408(server: int) -> None:
    reader, writer = await asyncio.open_connection(LOCALHOST, server)
    writer.write(b"GET /echo HTTP/1.1\r\nHost: gw\r\nX-Slow: ")
    response = await read_until_closed(reader)
    assert status_of(response) == 408
    assert orjson.loads(response.split(b"\r\n\r\n", 1)[1])["reason"] == "headers-timeout"
    writer.close()


async def test_a_connection_that_never_sends_is_closed_without_an_answer(server: int) -> None:
    reader, writer = await asyncio.open_connection(LOCALHOST, server)
    assert await read_until_closed(reader) == b""
    writer.close()


async def test_keep_alive_idle_longer_than_the_header_timeout_is_fine(server: int) -> None:
    reader, writer = await asyncio.open_connection(LOCALHOST, server)
    writer.write(request(body=b"1"))
    assert await read_response(reader) == (200, b"1")
    await asyncio.sleep(LIMITS.header_timeout * 2)  # the keep-alive timeout (5 s) governs this gap
    writer.write(request(body=b"22"))
    assert await read_response(reader) == (200, b"2")
    writer.close()


async def test_a_trickled_body_gets_408_and_the_connection_ends(server: int) -> None:
    reader, writer = await asyncio.open_connection(LOCALHOST, server)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    response = await read_until_closed(reader)
    assert status_of(response) == 408
    assert orjson.loads(response.split(b"\r\n\r\n", 1)[1])["reason"] == "body-timeout"
    writer.close()


async def test_an_answer_before_the_body_is_read_is_delivered_then_the_connection_ends(server: int) -> None:
    reader, writer = await asyncio.open_connection(LOCALHOST, server)
    writer.write(b"POST /refuse HTTP/1.1\r\nHost: gw\r\nContent-Length: 4000000\r\n\r\n" + b"y" * 300_000)
    response = await read_until_closed(reader)
    assert status_of(response) == 401 and response.endswith(b"no")
    writer.close()


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        EdgeLimits(max_header_bytes=100)
    with pytest.raises(ValueError):
        EdgeLimits(header_timeout=0)


async def test_an_answer_before_a_small_body_keeps_the_connection_and_drains_the_body(server: int) -> None:
    """The refusal goes out while the body is still arriving; the rest is read away and the next
    request on the same connection is served (the token-refresh retry)."""
    reader, writer = await asyncio.open_connection(LOCALHOST, server)
    writer.write(b"POST /refuse HTTP/1.1\r\nHost: gw\r\nContent-Length: 30000\r\n\r\n" + b"y" * 100)
    assert await read_response(reader) == (401, b"no")
    for piece in (10_000, 10_000, 9_900):  # the rest of the body, in pieces
        writer.write(b"y" * piece)
        await writer.drain()
        await asyncio.sleep(0.01)
    writer.write(request(body=b"abc"))
    assert await read_response(reader) == (200, b"3")
    writer.close()


async def test_an_answer_with_connection_close_before_the_body_is_read_lingers_instead_of_resetting(
        server: int) -> None:
    reader, writer = await asyncio.open_connection(LOCALHOST, server)
    writer.write(b"POST /refuse-close HTTP/1.1\r\nHost: gw\r\nContent-Length: 4000000\r\n\r\n" + b"y" * 300_000)
    for _ in range(10):  # keep sending after the answer: a plain close would reset the connection
        writer.write(b"y" * 100_000)
        await writer.drain()
    response = await read_until_closed(reader)
    assert status_of(response) == 401 and response.endswith(b"no")
    assert b"connection: close" in response.lower()
    writer.close()


async def test_after_a_drain_an_idle_connection_is_still_closed_by_the_keep_alive_timer() -> None:
    async with running_server(keep_alive=0.5) as port:
        reader, writer = await asyncio.open_connection(LOCALHOST, port)
        writer.write(b"POST /refuse HTTP/1.1\r\nHost: gw\r\nContent-Length: 2000\r\n\r\n")
        assert await read_response(reader) == (401, b"no")
        writer.write(b"y" * 2000)
        await writer.drain()
        started = time.monotonic()
        assert await read_until_closed(reader, deadline=5) == b""
        assert time.monotonic() - started < 3  # the keep-alive timer, not the 5 s test deadline
        writer.close()


async def test_a_drain_beyond_its_byte_budget_gives_the_connection_up() -> None:
    limits = EdgeLimits(max_header_bytes=8 * 1024, header_timeout=0.3, linger_seconds=1.0, linger_bytes=50_000)
    async with running_server(limits) as port:
        reader, writer = await asyncio.open_connection(LOCALHOST, port)
        writer.write(b"POST /refuse HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000000\r\n\r\n")
        assert await read_response(reader) == (401, b"no")
        with contextlib.suppress(ConnectionError):
            for _ in range(10):
                writer.write(b"y" * 100_000)
                await writer.drain()
        assert await read_until_closed(reader) == b""
        writer.close()
