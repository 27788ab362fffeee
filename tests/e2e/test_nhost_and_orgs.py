"""An Nhost backend and Clerk organizations through the real gateway: what the recording upstream
(standing in for Nhost's GraphQL endpoint and its functions) actually received."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import Mint, bearer, graphql_error
from tests.support.gateway_process import ADMIN_SECRET, GatewayProcess, gateway_env
from tests.support.jwks_server import JwksServer
from tests.support.upstream import RecordedRequest, RecordingUpstream

QUERY = json.dumps({"query": "query { todos { id } }"}).encode()
ADMIN = {"id": "org_1", "slg": "acme", "rol": "org:admin", "per": "org:read,org:write"}
MEMBER = {"id": "org_1", "slg": "acme", "rol": "org:member", "per": "org:read"}
ORG_HEADERS = ("x-hasura-org-id", "x-hasura-org-slug", "x-hasura-org-role", "x-hasura-org-permissions")


@pytest.fixture(scope="module")
def gateway(jwks_server: JwksServer, upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    nhost = {
        "url": upstream.url + "/v1",  # the GraphQL endpoint itself, as Nhost's .../v1
        "auth_mode": "admin_secret", "admin_secret": ADMIN_SECRET, "timeout_seconds": 10,
        "allowed_roles": ["me", "user", "org_admin"],
        "org_roles": {"admin": "org_admin"}, "org_permissions": True,
        "functions": True, "functions_url": upstream.url + "/functions/v1",
    }
    env = gateway_env(jwks_server.url, {"nhost": nhost})  # "adapter" defaults to the built-in name
    with GatewayProcess(env) as process:
        yield process


def post_graphql(client: httpx.Client, headers: dict[str, str]) -> httpx.Response:
    return client.post("/nhost/v1/graphql", content=QUERY, headers={"Content-Type": "application/json", **headers})


def assert_identity(received: RecordedRequest, sub: str, role: str) -> None:
    assert received.header_values("x-hasura-admin-secret") == [ADMIN_SECRET]
    assert received.header_values("x-hasura-role") == [role]
    assert received.header_values("x-hasura-user-id") == [sub]
    assert not received.has_header("authorization")


def test_graphql_goes_to_the_url_as_it_is_with_the_org_variables(client: httpx.Client,
                                                                 upstream: RecordingUpstream, mint: Mint) -> None:
    response = post_graphql(client, bearer(mint(sub="user_admin", o=ADMIN)))

    assert response.status_code == 200, response.text
    received = upstream.last()
    assert (received.method, received.path, received.body) == ("POST", "/v1", QUERY)
    assert_identity(received, "user_admin", role="org_admin")  # org_roles: admin → org_admin
    assert received.header_values("x-hasura-org-id") == ["org_1"]
    assert received.header_values("x-hasura-org-slug") == ["acme"]
    assert received.header_values("x-hasura-org-role") == ["admin"]
    assert received.header_values("x-hasura-org-permissions") == ["{org:read,org:write}"]


def test_client_sent_org_variables_are_dropped(client: httpx.Client, upstream: RecordingUpstream,
                                               mint: Mint) -> None:
    spoofed = {"x-hasura-org-id": "org_evil", "X-Hasura-Org-Role": "admin", "x-hasura-org-slug": "evil",
               "x-hasura-org-permissions": "{org:everything}"}
    without_org = post_graphql(client, {**bearer(mint(sub="user_solo")), **spoofed})
    assert without_org.status_code == 200, without_org.text
    received = upstream.last()
    assert_identity(received, "user_solo", role="user")
    assert not any(received.has_header(name) for name in ORG_HEADERS)  # no o: none of them, ever

    upstream.reset()
    with_org = post_graphql(client, {**bearer(mint(sub="user_member", o=MEMBER)), **spoofed})
    assert with_org.status_code == 200, with_org.text
    received = upstream.last()
    assert received.header_values("x-hasura-org-id") == ["org_1"]
    assert received.header_values("x-hasura-org-role") == ["member"]
    assert received.header_values("x-hasura-org-permissions") == ["{org:read}"]
    assert "evil" not in repr(received.headers) and "everything" not in repr(received.headers)


def test_a_plain_member_cannot_take_the_reserved_role(client: httpx.Client, upstream: RecordingUpstream,
                                                      mint: Mint) -> None:
    token = mint(sub="user_member", o=MEMBER)
    refused = post_graphql(client, {**bearer(token), "x-hasura-role": "org_admin"})
    graphql_error(refused, 403, "access-denied")
    no_org = post_graphql(client, {**bearer(mint(sub="user_solo")), "x-hasura-role": "org_admin"})
    graphql_error(no_org, 403, "access-denied")
    assert upstream.requests == []

    allowed = post_graphql(client, {**bearer(token), "x-hasura-role": "me"})
    assert allowed.status_code == 200, allowed.text
    assert_identity(upstream.last(), "user_member", role="me")


def test_the_admin_may_choose_a_lesser_role(client: httpx.Client, upstream: RecordingUpstream, mint: Mint) -> None:
    response = post_graphql(client, {**bearer(mint(sub="user_admin", o=ADMIN)), "x-hasura-role": "user"})
    assert response.status_code == 200, response.text
    assert_identity(upstream.last(), "user_admin", role="user")


def test_functions_get_the_same_identity(client: httpx.Client, upstream: RecordingUpstream, mint: Mint) -> None:
    response = client.post("/nhost/v1/functions/orgs/invite", params={"dry": "1"}, content=b'{"email":"a@b.c"}',
                           headers={**bearer(mint(sub="user_admin", o=ADMIN)), "Content-Type": "application/json",
                                    "x-hasura-org-id": "org_evil"})

    assert response.status_code == 200, response.text
    received = upstream.last()
    assert (received.method, received.path, received.query) == ("POST", "/functions/v1/orgs/invite", "dry=1")
    assert received.body == b'{"email":"a@b.c"}'
    assert_identity(received, "user_admin", role="org_admin")
    assert received.header_values("x-hasura-org-id") == ["org_1"]


def test_function_refusals_are_problem_json(client: httpx.Client, upstream: RecordingUpstream) -> None:
    response = client.get("/nhost/v1/functions/hello")

    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert upstream.requests == []


@pytest.mark.parametrize("path", ["/nhost/v1/functions/a/%2e%2e/%2e%2e/v1", "/nhost/v1/functions/%2E%2E/x",
                                  "/nhost/v1/metadata", "/nhost/console", "/nhost/v1beta1/relay",
                                  "/nhost/healthz"])
def test_traversal_and_hasura_admin_paths_are_404(client: httpx.Client, upstream: RecordingUpstream,
                                                   mint: Mint, path: str) -> None:
    response = client.post(path, content=QUERY, headers=bearer(mint(o=ADMIN)))

    assert response.status_code == 404, response.text
    assert upstream.requests == []
