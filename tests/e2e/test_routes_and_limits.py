"""Only the allow-listed GraphQL endpoints reach Hasura, and only bodies under the limit."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import Mint, bearer, graphql_error
from tests.support.gateway_process import GatewayProcess, gateway_env, hasura_backend
from tests.support.jwks_server import JwksServer
from tests.support.upstream import RecordingUpstream

LIMIT = 1024
GRAPHQL = "/hasura/v1/graphql"


@pytest.fixture(scope="module")
def gateway(jwks_server: JwksServer, upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    env = gateway_env(jwks_server.url, {"hasura": hasura_backend(upstream.url)}, GATEWAY_MAX_BODY_BYTES=LIMIT)
    with GatewayProcess(env) as process:
        yield process


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/hasura/v1/metadata"),
    ("POST", "/hasura/v2/query"),
    ("POST", "/hasura/v1/query"),
    ("POST", "/hasura/v1alpha1/pg_dump"),
    ("GET", "/hasura/console"),
    ("GET", "/hasura/console/settings"),
    ("GET", "/hasura/api/rest/users"),
    ("POST", "/hasura/"),
    ("POST", "/hasura/v1/graphql/extra"),
    ("POST", "/hasura/v1/graphql%2f..%2fmetadata"),
    ("GET", "/nope"),
    ("POST", "/v1/graphql"),
])
def test_paths_outside_the_allow_list_are_404(client: httpx.Client, upstream: RecordingUpstream, mint: Mint,
                                              method: str, path: str) -> None:
    response = client.request(method, path, json={"type": "export_metadata", "args": {}},
                              headers=bearer(mint()))

    assert response.status_code == 404, response.text
    assert upstream.requests == []


def test_body_with_a_declared_length_over_the_limit_is_413(client: httpx.Client, upstream: RecordingUpstream,
                                                          mint: Mint) -> None:
    response = client.post(GRAPHQL, content=b"x" * (LIMIT + 1), headers=bearer(mint()))

    graphql_error(response, 413)
    assert upstream.requests == []


def test_chunked_body_over_the_limit_is_413(client: httpx.Client, upstream: RecordingUpstream,
                                           mint: Mint) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b"y" * 256  # no Content-Length: the gateway must count as it reads

    response = client.post(GRAPHQL, content=chunks(), headers=bearer(mint()))

    graphql_error(response, 413)
    assert upstream.requests == []


def test_body_at_the_limit_passes_intact(client: httpx.Client, upstream: RecordingUpstream, mint: Mint) -> None:
    body = b'{"query":"' + b"q" * (LIMIT - 12) + b'"}'
    assert len(body) == LIMIT

    response = client.post(GRAPHQL, content=body, headers={**bearer(mint()), "Content-Type": "application/json"})

    assert response.status_code == 200, response.text
    assert upstream.last().body == body
