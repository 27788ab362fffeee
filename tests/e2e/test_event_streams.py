"""Event streams (``text/event-stream``: GraphQL over SSE; ``multipart/mixed``: incremental delivery
with ``@defer``/``@stream``) on an ordinary, non-streaming route are relayed event by event with no
deadline on the body, while a JSON answer keeps the backend's ``timeout_seconds`` for every wait.

The rule under test (docs/realtime.md, "Other streams"): for a response whose Content-Type is one of
the two (any case, parameters allowed) the head must still arrive within ``timeout_seconds``; after
that the body has no read timeout at all — neither per gap nor in total — and when no event is
there yet the head goes to the client at once. The stream ends when the upstream ends it or the
client goes away (which closes the upstream request). Ordering is proved with gates in the
upstream; only the timeout tests use time, with margins of at least half a second either way.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import Mint, bearer, graphql_error
from tests.support.gateway_process import GatewayProcess, gateway_env, hasura_backend
from tests.support.jwks_server import JwksServer
from tests.support.upstream import (
    MULTIPART_CONTENT_TYPE,
    SSE_CONTENT_TYPE,
    RecordingUpstream,
    event_chunks,
    gzip_stream,
)

TIMEOUT_SECONDS = 1.5
GRAPHQL = "/hasura/v1/graphql"  # timeout_seconds = TIMEOUT_SECONDS
PATIENT = "/patient/v1/graphql"  # timeout_seconds = 60: only the client's disconnect can end a held request
MODES = ["sse", "multipart"]
CONTENT_TYPES = {"sse": SSE_CONTENT_TYPE, "multipart": MULTIPART_CONTENT_TYPE}
QUERY = {"query": "subscription { items }"}


@pytest.fixture(scope="module", params=["http1", "httpx"])
def gateway(request: pytest.FixtureRequest, jwks_server: JwksServer,
            upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    """Both upstream clients the gateway can use on the hot path must treat event streams alike."""
    backends = {"hasura": hasura_backend(upstream.url, timeout_seconds=TIMEOUT_SECONDS),
                "patient": hasura_backend(upstream.url, timeout_seconds=60)}
    env = gateway_env(jwks_server.url, backends, GATEWAY_UPSTREAM_CLIENT=request.param)
    with GatewayProcess(env) as process:
        yield process


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with gateway.client(timeout=10.0) as client:
        yield client


def stream_headers(mint: Mint, mode: str, **test_headers: str) -> dict[str, str]:
    """``x-test-*`` headers for the upstream double: ``gate="g"`` → ``x-test-gate: g``."""
    headers = {**bearer(mint()), "x-test-mode": mode, "Accept": CONTENT_TYPES[mode].split(";")[0]}
    headers.update({f"x-test-{name}": value for name, value in test_headers.items()})
    return headers


def read_until(chunks: Iterator[bytes], received: bytes, size: int) -> bytes:
    """Read from ``chunks`` until ``received`` holds at least ``size`` bytes."""
    while len(received) < size:
        received += next(chunks)
    return received


@pytest.mark.parametrize("mode", MODES)
def test_events_reach_the_client_one_by_one(client: httpx.Client, upstream: RecordingUpstream, mint: Mint,
                                            mode: str) -> None:
    gate = upstream.gate(f"order-{mode}")
    events = event_chunks(mode, 4)
    headers = stream_headers(mint, mode, gate=gate.name, events=str(len(events)))
    with client.stream("POST", GRAPHQL, json=QUERY, headers=headers) as response:
        # The head is relayed as soon as the upstream sent it, before any event exists.
        assert response.status_code == 200
        assert response.headers["content-type"] == CONTENT_TYPES[mode]
        assert response.headers.get("x-request-id")
        assert gate.events_sent == 0
        chunks = response.iter_raw()
        received = b""
        for index in range(len(events)):
            gate.step()  # the upstream may now produce event `index`, and only that one
            received = read_until(chunks, received, len(b"".join(events[:index + 1])))
            assert received == b"".join(events[:index + 1]), f"event {index} arrived incomplete or merged"
            assert gate.events_sent <= index + 1, "the client got an event only after the next was produced"
        received += b"".join(chunks)

    assert received == b"".join(events)
    assert gate.last_sent.is_set()


@pytest.mark.parametrize("mode", MODES)
def test_a_stream_longer_than_the_timeout_is_not_cut(client: httpx.Client, mint: Mint, mode: str) -> None:
    """Seven events 0.6 s apart: 3.6 s in all, more than twice ``timeout_seconds``."""
    headers = stream_headers(mint, mode, events="7", interval="0.6")
    started = time.monotonic()
    with client.stream("POST", GRAPHQL, json=QUERY, headers=headers) as response:
        assert response.status_code == 200
        body = b"".join(response.iter_raw())

    assert time.monotonic() - started > 2 * TIMEOUT_SECONDS
    assert body == b"".join(event_chunks(mode, 7))


@pytest.mark.parametrize(("mode", "content_type"), [
    ("sse", "Text/Event-Stream; charset=utf-8"),
    ("multipart", 'MULTIPART/MIXED;boundary="-";deferSpec=20220824'),
])
def test_an_idle_gap_longer_than_the_timeout_is_not_cut(client: httpx.Client, mint: Mint, mode: str,
                                                        content_type: str) -> None:
    """2 s of silence between two events (an SSE server between two keep-alives): the stream stays."""
    headers = stream_headers(mint, mode, events="2", interval="2.0", **{"content-type": content_type})
    with client.stream("POST", GRAPHQL, json=QUERY, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == content_type
        body = b"".join(response.iter_raw())

    assert body == b"".join(event_chunks(mode, 2))


def test_a_json_body_with_an_idle_gap_longer_than_the_timeout_is_still_cut(client: httpx.Client,
                                                                           mint: Mint) -> None:
    """The same bytes as ``application/json``: today's per-read timeout applies, the body is cut."""
    headers = stream_headers(mint, "sse", events="2", interval="2.0", **{"content-type": "application/json"})
    events = event_chunks("sse", 2)
    with client.stream("POST", GRAPHQL, json=QUERY, headers=headers) as response:
        assert response.status_code == 200
        chunks = response.iter_raw()
        assert read_until(chunks, b"", len(events[0])) == events[0]
        with pytest.raises(httpx.RemoteProtocolError):  # a truncated body, never a silently short one
            b"".join(chunks)


def test_a_json_head_without_a_body_within_the_timeout_is_still_502(client: httpx.Client,
                                                                    upstream: RecordingUpstream,
                                                                    mint: Mint) -> None:
    """The head arrives but no body byte within ``timeout_seconds``: today's 502, unchanged."""
    gate = upstream.gate("json-no-body")
    headers = stream_headers(mint, "sse", gate=gate.name, **{"content-type": "application/json"})
    response = client.post(GRAPHQL, json=QUERY, headers=headers)

    assert response.status_code == 502, response.text
    assert gate.disconnected.wait(10), "the gateway kept its upstream request open after giving up"
    assert gate.events_sent == 0


def test_json_slower_than_the_timeout_still_gets_504(client: httpx.Client, upstream: RecordingUpstream,
                                                     mint: Mint) -> None:
    gate = upstream.gate("json-504")
    started = time.monotonic()
    response = client.post(GRAPHQL, json=QUERY,
                           headers={**bearer(mint()), "x-test-mode": "hang", "x-test-gate": gate.name})

    graphql_error(response, 504)
    assert time.monotonic() - started >= TIMEOUT_SECONDS - 0.1
    assert gate.disconnected.wait(10), "the gateway kept its upstream request open after timing out"


@pytest.mark.parametrize("mode", MODES)
def test_a_compressed_event_stream_passes_untouched_event_by_event(client: httpx.Client,
                                                                   upstream: RecordingUpstream, mint: Mint,
                                                                   mode: str) -> None:
    gate = upstream.gate(f"gzip-{mode}")
    events = event_chunks(mode, 3)
    headers = {**stream_headers(mint, mode, gate=gate.name, encoding="gzip"), "Accept-Encoding": "gzip"}
    decoder = zlib.decompressobj(wbits=31)
    raw = b""
    decoded = b""
    gate.step()  # the first event is there when the head is
    with client.stream("POST", GRAPHQL, json=QUERY, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-encoding"] == "gzip"
        chunks = response.iter_raw()
        for index in range(len(events)):
            if index:
                gate.step()
            expected = b"".join(events[:index + 1])
            while len(decoded) < len(expected):
                chunk = next(chunks)
                raw += chunk
                decoded += decoder.decompress(chunk)
            assert decoded == expected
            assert gate.events_sent <= index + 1
        raw += b"".join(chunks)

    assert raw == b"".join(gzip_stream(events)), "the compressed bytes were changed on the way"
    assert zlib.decompress(raw, wbits=31) == b"".join(events)


@pytest.mark.parametrize("mode", MODES)
def test_client_disconnect_mid_stream_closes_the_upstream(gateway: GatewayProcess, upstream: RecordingUpstream,
                                                          mint: Mint, mode: str) -> None:
    gate = upstream.gate(f"left-mid-{mode}")
    first = event_chunks(mode, 3)[0]
    gate.step()  # one event; the next one waits for a step that never comes
    with gateway.client(timeout=10.0) as own_client:  # its own connection, closed with the response
        with own_client.stream("POST", PATIENT, json=QUERY,
                               headers=stream_headers(mint, mode, gate=gate.name)) as response:
            assert read_until(response.iter_raw(), b"", len(first)) == first
        # leaving the block closes the unfinished response, and with it the connection

    assert gate.disconnected.wait(10), "the upstream request stayed open after the client went away"
    assert gate.events_sent == 1
    assert not gate.last_sent.is_set()


@pytest.mark.parametrize("mode", MODES)
def test_client_disconnect_before_the_first_event_closes_the_upstream(gateway: GatewayProcess,
                                                                      upstream: RecordingUpstream,
                                                                      mint: Mint, mode: str) -> None:
    """No event yet and no read timeout: the gateway must still notice the client leaving."""
    gate = upstream.gate(f"left-early-{mode}")
    with gateway.client(timeout=5.0) as own_client:
        with own_client.stream("POST", PATIENT, json=QUERY,
                               headers=stream_headers(mint, mode, gate=gate.name)) as response:
            assert response.status_code == 200
            assert gate.events_sent == 0

    assert gate.disconnected.wait(10), "the upstream request stayed open after the client went away"
    assert gate.events_sent == 0
