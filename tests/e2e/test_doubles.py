"""The doubles on their own (no gateway): if these fail, every other e2e failure is suspect."""

from __future__ import annotations

import gzip
import hashlib
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.support.jwks_server import JwksServer
from tests.support.ports import free_port
from tests.support.tokens import SigningKey
from tests.support.upstream import (
    FIRST_CHUNK,
    GZIP_BODY,
    GZIP_PLAIN,
    LAST_CHUNK,
    RecordingUpstream,
    large_body,
)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        yield client


def test_free_port_is_closed() -> None:
    port = free_port()
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))


def test_jwks_server_serves_counts_rotates_and_fails(client: httpx.Client, signing_key: SigningKey) -> None:
    other = SigningKey.rsa("ins_other")
    with JwksServer(signing_key) as server:
        server.set_headers({"Cache-Control": "public, max-age=7"})
        response = client.get(server.url)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "public, max-age=7"
        assert [key["kid"] for key in response.json()["keys"]] == ["ins_e2e"]
        server.add_key(other)
        assert [key["kid"] for key in client.get(server.url).json()["keys"]] == ["ins_e2e", "ins_other"]

        server.fail("error")
        assert client.get(server.url).status_code == 500
        server.fail("garbage")
        garbage = client.get(server.url)
        assert garbage.status_code == 200
        with pytest.raises(ValueError):
            garbage.json()
        server.fail("reset")
        with pytest.raises(httpx.TransportError):
            client.get(server.url)
        server.fail("refused")
        with pytest.raises(httpx.ConnectError):
            client.get(server.url)
        server.recover()
        assert client.get(server.url).status_code == 200
        assert server.fetch_count == 6  # every request that reached the path; refused ones never did


def test_jwks_server_slow_answer_waits_for_release(signing_key: SigningKey) -> None:
    with JwksServer(signing_key, slow_max_seconds=10) as server:
        server.fail("slow")
        with httpx.Client(timeout=0.3, trust_env=False) as quick, pytest.raises(httpx.ReadTimeout):
            quick.get(server.url)
        server.release_slow()
        server.recover()
        with httpx.Client(timeout=5, trust_env=False) as client:
            assert client.get(server.url).status_code == 200


def test_upstream_records_and_echoes(upstream: RecordingUpstream, client: httpx.Client) -> None:
    response = client.post(f"{upstream.url}/v1/graphql?a=1", content=b'{"query":"{x}"}',
                           headers={"X-Thing": "one", "x-test-status": "418"})
    assert response.status_code == 418
    assert response.json() == {"data": {"echo": {"method": "POST", "path": "/v1/graphql", "query": "a=1",
                                                 "body": '{"query":"{x}"}'}}}
    recorded = upstream.last()
    assert recorded.header("x-thing") == "one"
    assert recorded.json() == {"query": "{x}"}
    assert client.get(f"{upstream.url}/healthz").status_code == 200
    assert len(upstream.requests) == 1 and upstream.probe_count >= 1


def test_upstream_stream_mode_holds_the_last_chunk(upstream: RecordingUpstream) -> None:
    gate = upstream.gate("doubles")
    with httpx.Client(timeout=5.0, trust_env=False) as client, client.stream(
        "POST", f"{upstream.url}/v1/graphql", headers={"x-test-mode": "stream", "x-test-gate": "doubles"},
    ) as response:
        received = b""
        chunks = response.iter_raw()
        while len(received) < len(FIRST_CHUNK):
            received += next(chunks)
        assert received == FIRST_CHUNK
        assert not gate.last_sent.is_set()
        gate.release()
        received += b"".join(chunks)
    assert received == FIRST_CHUNK + LAST_CHUNK
    assert gate.last_sent.is_set()


def test_upstream_sees_a_client_disconnect(upstream: RecordingUpstream) -> None:
    gate = upstream.gate("gone")
    with httpx.Client(timeout=5.0, trust_env=False) as client, client.stream(
        "POST", f"{upstream.url}/v1/graphql", headers={"x-test-mode": "stream", "x-test-gate": "gone"},
    ) as response:
        next(response.iter_raw())
    assert gate.disconnected.wait(5)
    assert not gate.last_sent.is_set()


def test_upstream_hang_gzip_large_abort(upstream: RecordingUpstream, client: httpx.Client) -> None:
    with httpx.Client(timeout=0.3, trust_env=False) as quick, pytest.raises(httpx.ReadTimeout):
        quick.post(f"{upstream.url}/v1/graphql", headers={"x-test-mode": "hang", "x-test-gate": "h"})
    assert upstream.gate("h").disconnected.wait(5)

    with client.stream("POST", f"{upstream.url}/v1/graphql", headers={"x-test-mode": "gzip"}) as response:
        raw = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    assert raw == GZIP_BODY and gzip.decompress(raw) == GZIP_PLAIN

    big = client.post(f"{upstream.url}/v1/graphql", headers={"x-test-mode": "large", "x-test-size": "300000"})
    assert hashlib.sha256(big.content).digest() == hashlib.sha256(large_body(300000)).digest()

    with pytest.raises(httpx.TransportError):
        client.post(f"{upstream.url}/v1/graphql", headers={"x-test-mode": "abort"})
