"""The keep-alive rule for answers sent before the request body was read."""

from __future__ import annotations

import pytest

from clerk_gateway.edge.keepalive import DRAIN_BYTES, refusal_can_keep_connection


@pytest.mark.parametrize(("headers", "keeps"), [
    ([], True),  # no body at all
    ([(b"content-length", b"0")], True),
    ([(b"content-length", b"20000")], True),
    ([(b"content-length", str(DRAIN_BYTES).encode())], True),
    ([(b"content-length", str(DRAIN_BYTES + 1).encode())], False),
    ([(b"transfer-encoding", b"chunked")], False),  # unknown length
    ([(b"content-length", b"100"), (b"expect", b"100-continue")], False),  # the body may never come
    ([(b"content-length", b"0"), (b"expect", b"100-continue")], True),
    ([(b"content-length", b"x")], False),
])
def test_only_a_small_declared_body_keeps_the_connection(headers: list[tuple[bytes, bytes]], keeps: bool) -> None:
    assert refusal_can_keep_connection(headers) is keeps
