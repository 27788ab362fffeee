"""Responses are relayed as they arrive, byte for byte, and a client that goes away takes the
upstream request with it. Ordering is proved with gates in the upstream, never with timings."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import Mint, bearer
from tests.support.gateway_process import GatewayProcess, gateway_env, hasura_backend
from tests.support.jwks_server import JwksServer
from tests.support.upstream import FIRST_CHUNK, GZIP_BODY, LAST_CHUNK, RecordingUpstream, large_body

GRAPHQL = "/hasura/v1/graphql"


@pytest.fixture(scope="module", params=["http1", "httpx"])
def gateway(request: pytest.FixtureRequest, jwks_server: JwksServer,
            upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    """Both upstream clients the gateway can use on the hot path must stream the same way."""
    # A long upstream timeout: only the client's disconnect may end the held-back requests below.
    env = gateway_env(jwks_server.url, {"hasura": hasura_backend(upstream.url, timeout_seconds=60)},
                      GATEWAY_UPSTREAM_CLIENT=request.param)
    with GatewayProcess(env) as process:
        yield process


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with gateway.client(timeout=20.0) as client:
        yield client


def read_at_least(chunks: Iterator[bytes], size: int) -> bytes:
    received = b""
    while len(received) < size:
        received += next(chunks)
    return received


def test_first_chunk_arrives_before_the_upstream_sends_the_last(client: httpx.Client,
                                                                upstream: RecordingUpstream, mint: Mint) -> None:
    gate = upstream.gate("ordering")
    headers = {**bearer(mint()), "x-test-mode": "stream", "x-test-gate": "ordering"}
    with client.stream("POST", GRAPHQL, json={"query": "subscription-ish"}, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers.get("x-request-id")
        chunks = response.iter_raw()
        received = read_at_least(chunks, len(FIRST_CHUNK))
        assert received == FIRST_CHUNK
        assert not gate.last_sent.is_set(), "the upstream sent its last chunk before the client got the first"
        gate.release()
        received += b"".join(chunks)

    assert received == FIRST_CHUNK + LAST_CHUNK
    assert gate.last_sent.is_set()


def test_gzip_body_passes_through_byte_identical(client: httpx.Client, mint: Mint) -> None:
    headers = {**bearer(mint()), "x-test-mode": "gzip", "Accept-Encoding": "gzip"}
    with client.stream("POST", GRAPHQL, json={"query": "{ a }"}, headers=headers) as response:
        raw = b"".join(response.iter_raw())

    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert raw == GZIP_BODY


def test_large_body_arrives_complete(client: httpx.Client, mint: Mint) -> None:
    size = 5 * 1024 * 1024 + 17
    headers = {**bearer(mint()), "x-test-mode": "large", "x-test-size": str(size)}
    digest = hashlib.sha256()
    length = 0
    with client.stream("POST", GRAPHQL, json={"query": "{ a }"}, headers=headers) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            digest.update(chunk)
            length += len(chunk)

    assert length == size
    assert digest.digest() == hashlib.sha256(large_body(size)).digest()


def test_client_disconnect_closes_the_upstream_request(gateway: GatewayProcess, upstream: RecordingUpstream,
                                                       mint: Mint) -> None:
    gate = upstream.gate("abandoned")
    headers = {**bearer(mint()), "x-test-mode": "stream", "x-test-gate": "abandoned"}
    with gateway.client(timeout=20.0) as own_client:  # its own connection, closed with the response
        with own_client.stream("POST", GRAPHQL, json={"query": "{ a }"}, headers=headers) as response:
            assert read_at_least(response.iter_raw(), len(FIRST_CHUNK)) == FIRST_CHUNK
        # leaving the block closes the unfinished response, and with it the connection

    assert gate.disconnected.wait(10), "the upstream request stayed open after the client went away"
    assert not gate.last_sent.is_set()
