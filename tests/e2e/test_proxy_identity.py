"""A verified Clerk session becomes Hasura's identity upstream — and nothing the client sends can
pose as one. Every assertion is about what the recording upstream actually received."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import Mint, bearer, graphql_error
from tests.support.gateway_process import ADMIN_SECRET, GatewayProcess, gateway_env, hasura_backend
from tests.support.jwks_server import JwksServer
from tests.support.upstream import RecordedRequest, RecordingUpstream

QUERY = json.dumps({"query": "query { me { id } }", "variables": {"n": 1}}).encode()


@pytest.fixture(scope="module")
def gateway(jwks_server: JwksServer, upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    backend = hasura_backend(
        upstream.url, allowed_roles=["user", "editor"],
        claims_map={"x-hasura-org-id": {"path": "$.o.id", "default": "org_none"}},
    )
    env = gateway_env(jwks_server.url, {"hasura": backend}, GATEWAY_DEFAULT_BACKEND="hasura")
    with GatewayProcess(env) as process:
        yield process


def post_graphql(client: httpx.Client, headers: dict[str, str], path: str = "/hasura/v1/graphql",
                 body: bytes = QUERY) -> httpx.Response:
    return client.post(path, content=body, headers={"Content-Type": "application/json", **headers})


def assert_identity(received: RecordedRequest, sub: str, role: str = "user") -> None:
    assert received.header_values("x-hasura-admin-secret") == [ADMIN_SECRET]
    assert received.header_values("x-hasura-role") == [role]
    assert received.header_values("x-hasura-user-id") == [sub]
    assert not received.has_header("authorization")
    assert not received.has_header("cookie")


def test_bearer_token_becomes_the_hasura_identity(client: httpx.Client, upstream: RecordingUpstream,
                                                  mint: Mint) -> None:
    token = mint(sub="user_bearer")
    response = post_graphql(client, {**bearer(token), "X-Request-ID": "req-e2e-0001"})

    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "req-e2e-0001"
    assert response.json()["data"]["echo"]["body"] == QUERY.decode()
    received = upstream.last()
    assert (received.method, received.path) == ("POST", "/v1/graphql")
    assert received.body == QUERY
    assert received.header("content-type") == "application/json"
    assert received.header_values("x-request-id") == ["req-e2e-0001"]
    assert_identity(received, "user_bearer")


def test_request_id_is_generated_when_absent(client: httpx.Client, upstream: RecordingUpstream,
                                             mint: Mint) -> None:
    token = mint()
    first = post_graphql(client, bearer(token))
    second = post_graphql(client, bearer(token))

    assert first.status_code == second.status_code == 200
    ids = [first.headers.get("x-request-id"), second.headers.get("x-request-id")]
    assert all(ids) and ids[0] != ids[1]
    assert [r.header("x-request-id") for r in upstream.requests] == ids


def test_session_cookie_is_accepted_and_never_forwarded(client: httpx.Client, upstream: RecordingUpstream,
                                                        mint: Mint) -> None:
    token = mint(sub="user_cookie")
    response = post_graphql(client, {"Cookie": f"theme=dark; __session={token}; other=1"})

    assert response.status_code == 200, response.text
    assert_identity(upstream.last(), "user_cookie")


def test_bearer_header_wins_over_the_cookie(client: httpx.Client, upstream: RecordingUpstream,
                                            mint: Mint) -> None:
    headers = {**bearer(mint(sub="user_header")), "Cookie": f"__session={mint(sub='user_from_cookie')}"}
    response = post_graphql(client, headers)

    assert response.status_code == 200, response.text
    assert_identity(upstream.last(), "user_header")


def test_client_cannot_set_session_variables_or_secrets(client: httpx.Client, upstream: RecordingUpstream,
                                                        mint: Mint) -> None:
    spoofed = {
        "x-hasura-user-id": "user_attacker",
        "X-Hasura-Admin-Secret": "guessed-secret",
        "x-hasura-access-key": "guessed-key",
        "X-HASURA-ORG-ID": "org_evil",
        "x-hasura-is-owner": "true",
    }
    response = post_graphql(client, {**bearer(mint(sub="user_real")), **spoofed})

    assert response.status_code == 200, response.text
    received = upstream.last()
    assert_identity(received, "user_real")
    assert not received.has_header("x-hasura-access-key")
    assert not received.has_header("x-hasura-is-owner")
    assert received.header_values("x-hasura-org-id") == ["org_none"]  # the claims_map default, not the client's
    assert "guessed" not in repr(received.headers) and "attacker" not in repr(received.headers)


def test_claims_map_values_come_from_the_token(client: httpx.Client, upstream: RecordingUpstream,
                                               mint: Mint) -> None:
    token = mint(sub="user_org", o={"id": "org_42", "rol": "admin"})
    response = post_graphql(client, {**bearer(token), "x-hasura-org-id": "org_evil"})

    assert response.status_code == 200, response.text
    assert upstream.last().header_values("x-hasura-org-id") == ["org_42"]


def test_an_allowed_role_can_be_requested(client: httpx.Client, upstream: RecordingUpstream,
                                          mint: Mint) -> None:
    response = post_graphql(client, {**bearer(mint(sub="user_editor")), "x-hasura-role": "editor"})

    assert response.status_code == 200, response.text
    assert_identity(upstream.last(), "user_editor", role="editor")


@pytest.mark.parametrize("role", ["admin", "Editor"])
def test_a_role_outside_the_allowed_roles_is_403(client: httpx.Client, upstream: RecordingUpstream,
                                                 mint: Mint, role: str) -> None:
    response = post_graphql(client, {**bearer(mint()), "x-hasura-role": role})

    graphql_error(response, 403, "access-denied")
    assert upstream.requests == []


def test_relay_endpoint_and_get_queries_are_forwarded(client: httpx.Client, upstream: RecordingUpstream,
                                                      mint: Mint) -> None:
    token = mint(sub="user_relay")
    relay = post_graphql(client, bearer(token), path="/hasura/v1beta1/relay")
    get = client.get("/hasura/v1/graphql", params={"query": "{ me { id } }"}, headers=bearer(token))

    assert relay.status_code == 200, relay.text
    assert get.status_code == 200, get.text
    relay_received, get_received = upstream.requests
    assert (relay_received.method, relay_received.path, relay_received.body) == ("POST", "/v1beta1/relay", QUERY)
    assert (get_received.method, get_received.path) == ("GET", "/v1/graphql")
    assert httpx.QueryParams(get_received.query)["query"] == "{ me { id } }"
    assert_identity(relay_received, "user_relay")
    assert_identity(get_received, "user_relay")


def test_default_backend_serves_slash_graphql(client: httpx.Client, upstream: RecordingUpstream,
                                              mint: Mint) -> None:
    response = post_graphql(client, bearer(mint(sub="user_default")), path="/graphql")

    assert response.status_code == 200, response.text
    received = upstream.last()
    assert received.path == "/v1/graphql"
    assert_identity(received, "user_default")


def test_upstream_status_and_body_pass_through(client: httpx.Client, upstream: RecordingUpstream,
                                               mint: Mint) -> None:
    response = post_graphql(client, {**bearer(mint()), "x-test-status": "418"})

    assert response.status_code == 418
    assert response.json()["data"]["echo"]["path"] == "/v1/graphql"
    assert upstream.last().header("x-test-status") == "418"


def test_hop_by_hop_headers_are_not_forwarded(client: httpx.Client, upstream: RecordingUpstream,
                                              mint: Mint) -> None:
    headers = {**bearer(mint()), "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0", "Keep-Alive": "timeout=5",
               "X-Custom-Header": "kept"}
    response = post_graphql(client, headers)

    assert response.status_code == 200, response.text
    received = upstream.last()
    assert received.header("x-custom-header") == "kept"
    assert not received.has_header("proxy-authorization")
    assert not received.has_header("keep-alive")
