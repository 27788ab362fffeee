"""After a refusal, the next request on the same keep-alive connection never fails in transport.

The rule (docs/security.md, "Refusals and keep-alive"): when the gateway answers before it read
the whole request body, it either reads and discards a small rest (≤ 64 KiB declared) and keeps
the connection, or announces ``Connection: close`` in the refusal itself and closes gently. Both
halves are exercised here with every kind of refusal, bodies from empty to the limit, over a few
ordinary keep-alive clients.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import Mint
from tests.support.gateway_process import GatewayProcess, gateway_env, hasura_backend
from tests.support.jwks_server import JwksServer
from tests.support.ports import LOCALHOST
from tests.support.refusal_mix import TokenKit, describe, json_body, run_mix, run_single_client_malformed
from tests.support.tokens import SigningKey
from tests.support.upstream import RecordingUpstream

LIMIT = 256 * 1024
GRAPHQL = "/hasura/v1/graphql"
#: Documentation-range addresses, only ever written into a header (nothing is sent to them).
ADDRESSES = tuple(f"203.0.113.{n}" for n in range(1, 9))


@pytest.fixture(scope="module")
def gateway(jwks_server: JwksServer, upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    env = gateway_env(
        jwks_server.url, {"hasura": hasura_backend(upstream.url)},
        GATEWAY_MAX_BODY_BYTES=LIMIT,
        GATEWAY_RATE_LIMIT_PER_USER_BURST=40, GATEWAY_RATE_LIMIT_PER_USER_RATE=0.5,
        GATEWAY_RATE_LIMIT_AUTH_FAILURES_BURST=60, GATEWAY_RATE_LIMIT_AUTH_FAILURES_RATE=1,
        GATEWAY_RATE_LIMIT_CLIENT_IP_HEADER="x-forwarded-for",
        GATEWAY_LOG_LEVEL="warning",
    )
    with GatewayProcess(env) as process:
        yield process


@pytest.fixture(scope="module")
def tokens(mint: Mint) -> TokenKit:
    return TokenKit(
        users=[mint(sub=f"user_mix_{n}", sid=f"sess_mix_{n}", lifetime=600) for n in range(300)],
        hot_user=mint(sub="user_hot", sid="sess_hot", lifetime=600),
        expired=mint(now=time.time() - 600, lifetime=60),
        bad_signature=mint(key=SigningKey.rsa("forger"), header={"kid": "ins_e2e"}),
    )


def test_ten_thousand_refusals_of_every_kind_cost_no_transport_error(gateway: GatewayProcess,
                                                                    tokens: TokenKit) -> None:
    result = run_mix(gateway.url, tokens, requests=12_000, clients=4, limit=LIMIT, addresses=ADDRESSES)
    message = describe(result)
    assert result.transport_errors == 0, message
    assert not result.unexpected, message
    assert result.refusals >= 10_000, message
    for status in (200, 401, 403, 413, 429):
        assert result.statuses[status] > 50, f"too few {status}s to prove anything\n{message}"


def test_the_defects_own_measurement_has_no_transport_error(gateway: GatewayProcess) -> None:
    result = run_single_client_malformed(gateway.url, requests=3_000, body_bytes=20_000)
    assert result.transport_errors == 0, describe(result)
    assert set(result.statuses) <= {401, 429}, describe(result)


def _raw_exchange(sock: socket.socket, request: bytes) -> bytes:
    """Send ``request`` and read one whole response (head + Content-Length body)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


_fresh_addresses = (f"198.51.100.{n}" for n in range(1, 255))


def _post(body_headers: bytes, body: bytes, token: str | None = "not-a-jwt") -> bytes:
    """A raw POST from an address of its own, so earlier tests' failure budgets do not apply."""
    auth = f"authorization: Bearer {token}\r\n".encode() if token else b""
    return (f"POST {GRAPHQL} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
            f"x-forwarded-for: {next(_fresh_addresses)}\r\n".encode()
            + auth + body_headers + b"\r\n" + body)


def test_a_small_unread_body_is_drained_and_the_connection_kept(gateway: GatewayProcess, mint: Mint) -> None:
    """A 401 sent while a 40 KB body is still arriving: no close announced, the rest is read and
    discarded, and a valid request on the same socket then succeeds."""
    body = json_body(40_000)
    with socket.create_connection((LOCALHOST, gateway.port), timeout=10) as sock:
        head = _post(f"content-length: {len(body)}\r\n".encode(), b"")
        sock.sendall(head + body[:100])  # the gateway answers before the rest arrives
        sock.settimeout(10)
        first = b""
        while b"\r\n\r\n" not in first:
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 401")
        assert b"connection: close" not in first.lower()
        time.sleep(0.05)
        sock.sendall(body[100:])
        time.sleep(0.05)
        second = _raw_exchange(sock, _post(b"content-length: 2\r\n", b"{}", token=mint(lifetime=600)))
        assert second.startswith(b"HTTP/1.1 200"), second[:300]


@pytest.mark.parametrize("framing", ["declared-large", "chunked", "expect-continue"])
def test_a_refusal_that_cannot_drain_announces_the_close(gateway: GatewayProcess, framing: str) -> None:
    """Bodies the gateway will not read after refusing (over 64 KiB, of unknown length, or not sent
    yet because the client waits for 100-continue) get ``Connection: close`` in the refusal."""
    if framing == "declared-large":
        extra = f"content-length: {200_000}\r\n".encode()
    elif framing == "chunked":
        extra = b"transfer-encoding: chunked\r\n"
    else:
        extra = b"content-length: 1000\r\nexpect: 100-continue\r\n"
    with socket.create_connection((LOCALHOST, gateway.port), timeout=10) as sock:
        sock.sendall(_post(extra, b"" if framing == "expect-continue" else b"a" * 10 if framing != "chunked"
                           else b"a\r\n0123456789\r\n"))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, "closed without an answer"
            data += chunk
        head = data.split(b"\r\n\r\n", 1)[0].lower()
        assert head.startswith(b"http/1.1 401")
        assert b"\r\nconnection: close" in head


def test_a_post_to_an_unknown_path_with_a_large_body_announces_the_close(gateway: GatewayProcess) -> None:
    with gateway.client() as client:
        response = client.post("/no-such-backend/x", content=b"a" * 300_000)
        assert response.status_code == 404
        assert response.headers.get("connection") == "close"
        follow_up = client.get("/healthz")
        assert follow_up.status_code == 200


def test_keep_alive_survives_a_refusal_for_httpx_async(gateway: GatewayProcess) -> None:
    """The token-refresh case with the async client most frontends' servers use."""
    import asyncio

    async def scenario() -> list[int]:
        async with httpx.AsyncClient(base_url=gateway.url, trust_env=False, timeout=10,
                                     limits=httpx.Limits(max_connections=1)) as client:
            statuses = []
            for _ in range(200):
                response = await client.post(GRAPHQL, content=json_body(30_000),
                                             headers={"authorization": "Bearer expired.or.bad"})
                statuses.append(response.status_code)
            return statuses

    assert set(asyncio.run(scenario())) <= {401, 429}
