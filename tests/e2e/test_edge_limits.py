"""Limits at the edge of the real gateway, over raw sockets: what a hostile or broken client gets.

* request headers over the limit (64 KiB against the default 32 KiB) → ``431`` *answered*;
* headers that never finish → ``408`` answered, then the connection ends; a connection that never
  sends anything is closed; an idle keep-alive connection is closed after its timeout;
* a body trickled slower than the body deadline → ``408`` in the GraphQL shape, nothing upstream;
* CORS and the auth-failure rate limit, as a browser and an attacker meet them.

Short timeouts (1 s) keep the module quick; assertions are about answers, not about speed.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import Mint, bearer, graphql_error
from tests.support.gateway_process import GatewayProcess, gateway_env, hasura_backend
from tests.support.jwks_server import JwksServer
from tests.support.ports import LOCALHOST
from tests.support.upstream import RecordingUpstream

GRAPHQL = "/hasura/v1/graphql"
APP_ORIGIN = "https://app.example.com"
IP_HEADER = "x-test-client-ip"


@pytest.fixture(scope="module")
def gateway(jwks_server: JwksServer, upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    env = gateway_env(
        jwks_server.url, {"hasura": hasura_backend(upstream.url)},
        GATEWAY_CLIENT_HEADER_TIMEOUT_SECONDS=1,
        GATEWAY_CLIENT_BODY_TIMEOUT_SECONDS=1,
        GATEWAY_KEEP_ALIVE_TIMEOUT_SECONDS=1,
        GATEWAY_CORS_ORIGINS=APP_ORIGIN,
        GATEWAY_RATE_LIMIT_AUTH_FAILURES_BURST=3,
        GATEWAY_RATE_LIMIT_AUTH_FAILURES_RATE=0.01,
        GATEWAY_RATE_LIMIT_CLIENT_IP_HEADER=IP_HEADER,
    )
    with GatewayProcess(env) as process:
        yield process


def connect(gateway: GatewayProcess) -> socket.socket:
    sock = socket.create_connection((LOCALHOST, gateway.port), timeout=10)
    sock.settimeout(10)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the gateway sends until it closes; a reset instead of a close fails the test."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            raise AssertionError(f"connection reset after {len(data)} bytes: {data[:200]!r}") from None
        if not chunk:
            return data
        data += chunk


def split(response: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ", 2)[1]), headers, body


def test_oversized_request_headers_are_answered_431(gateway: GatewayProcess, client: httpx.Client,
                                                    upstream: RecordingUpstream, mint: Mint) -> None:
    with connect(gateway) as sock:
        sock.sendall(f"POST {GRAPHQL} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {mint()}\r\n".encode()
                     + b"X-Big: " + b"a" * 64 * 1024 + b"\r\nContent-Length: 2\r\n\r\n{}")
        status, headers, body = split(read_until_closed(sock))
    assert status == 431
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["reason"] == "headers-too-large"
    assert upstream.requests == []
    assert client.get("/healthz").status_code == 200  # the gateway is unharmed


def test_large_headers_under_the_limit_reach_the_gateway(client: httpx.Client) -> None:
    response = client.post(GRAPHQL, content=b"{}", headers={"x-padding": "p" * 30_000})
    graphql_error(response, 401, "invalid-headers")  # refused for its missing token, not for its size


def test_headers_that_never_finish_get_408_and_the_connection_ends(gateway: GatewayProcess) -> None:
    with connect(gateway) as sock:
        sock.sendall(f"POST {GRAPHQL} HTTP/1.1\r\nHost: gw\r\nX-Slow: ".encode())
        status, _, body = split(read_until_closed(sock))
    assert status == 408
    assert json.loads(body)["reason"] == "headers-timeout"


def test_a_connection_that_sends_nothing_is_closed(gateway: GatewayProcess) -> None:
    with connect(gateway) as sock:
        assert read_until_closed(sock) == b""


def test_an_idle_keep_alive_connection_is_closed(gateway: GatewayProcess) -> None:
    with connect(gateway) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        response = read_until_closed(sock)
    status, headers, body = split(response)
    assert status == 200 and body == b"OK"
    assert headers.get("connection") != "close"  # it was kept alive, then closed for idling


def test_a_trickled_body_gets_408_and_nothing_reaches_the_upstream(gateway: GatewayProcess,
                                                                   upstream: RecordingUpstream, mint: Mint) -> None:
    with connect(gateway) as sock:
        sock.sendall(f"POST {GRAPHQL} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {mint()}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n".encode())
        for piece in (b'{"qu', b'ery":'):
            sock.sendall(piece)
            time.sleep(0.4)
        status, headers, body = split(read_until_closed(sock))
    assert status == 408
    error = json.loads(body)["errors"][0]
    assert error["extensions"] == {"code": "request-timeout", "reason": "body-timeout"}
    assert headers["x-request-id"]
    assert upstream.requests == []


def test_cors_preflight_is_answered_by_the_gateway(client: httpx.Client, upstream: RecordingUpstream) -> None:
    response = client.options(GRAPHQL, headers={"Origin": APP_ORIGIN, "Access-Control-Request-Method": "POST",
                                                "Access-Control-Request-Headers": "authorization,content-type"})
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["access-control-allow-headers"] == "authorization, content-type"
    refused = client.options(GRAPHQL, headers={"Origin": "https://evil.example",
                                               "Access-Control-Request-Method": "POST"})
    assert refused.status_code == 403
    assert not any(name.startswith("access-control-") for name in refused.headers)
    assert upstream.requests == []


def test_gateway_errors_carry_cors_headers_for_a_listed_origin(client: httpx.Client) -> None:
    response = client.post(GRAPHQL, content=b"{}", headers={"Origin": APP_ORIGIN, "Authorization": "Bearer nope",
                                                            IP_HEADER: "198.51.100.1"})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "WWW-Authenticate" in response.headers["access-control-expose-headers"]


def test_an_address_that_keeps_failing_gets_429_yet_its_valid_tokens_pass(
        client: httpx.Client, upstream: RecordingUpstream, mint: Mint) -> None:
    attacker = {IP_HEADER: "203.0.113.66"}
    statuses = [client.post(GRAPHQL, content=b"{}", headers={**attacker, "Authorization": f"Bearer forged{i}"})
                .status_code for i in range(3)]
    assert statuses == [401, 401, 401]
    throttled = client.post(GRAPHQL, content=b"{}", headers={**attacker, "Authorization": "Bearer forged3"})
    error = graphql_error(throttled, 429, "rate-limited")
    assert error["extensions"]["reason"] == "rate-limited-auth-failures"
    assert int(throttled.headers["retry-after"]) >= 1
    assert upstream.requests == []
    # The same address with a token that verifies is served: the failure budget never refuses it.
    valid = client.post(GRAPHQL, content=b"{}", headers={**attacker, **bearer(mint())})
    assert valid.status_code == 200
    neighbour = client.post(GRAPHQL, content=b"{}", headers={IP_HEADER: "203.0.113.67", **bearer(mint())})
    assert neighbour.status_code == 200
