"""Nhost adapter: its URLs, its routes (GraphQL and the optional functions), its settings and
default roles, and the four modes inherited from the Hasura adapter."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from importlib.metadata import entry_points
from typing import Any

import pytest
from pydantic import ValidationError

from clerk_gateway.adapters.base import EXCHANGER, MINTER, AdapterServices, IncomingRequest, Route
from clerk_gateway.adapters.nhost import NhostAdapter, NhostSettings
from clerk_gateway.adapters.registry import ENTRY_POINT_GROUP
from clerk_gateway.auth.model import TokenKind, VerifiedToken
from clerk_gateway.errors import ForbiddenError, MethodNotAllowedError, NotFoundError

CLOUD = {"subdomain": "abcdefgh", "region": "eu-central-1"}
GRAPHQL = "https://abcdefgh.graphql.eu-central-1.nhost.run/v1"
FUNCTIONS = "https://abcdefgh.functions.eu-central-1.nhost.run/v1"


def settings(**fields: Any) -> NhostSettings:
    values: dict[str, Any] = {**CLOUD, "auth_mode": "admin_secret", "admin_secret": "nhost-admin-secret"}
    values.update(fields)
    return NhostSettings.model_validate({k: v for k, v in values.items() if v is not None})


def adapter(**fields: Any) -> NhostAdapter:
    return NhostAdapter("nhost", settings(**fields))


def token(claims: dict[str, Any] | None = None) -> VerifiedToken:
    base: dict[str, Any] = {"sub": "user_1", "sid": "sess_1", "exp": 2_000_000_000}
    base.update(claims or {})
    return VerifiedToken(token="tok.en.value", header={"alg": "RS256"}, claims=base, kind=TokenKind.SESSION,
                         subject=base["sub"], expires_at=base["exp"], session_id=base.get("sid"))


async def sent(a: NhostAdapter, route: Route, *headers: tuple[bytes, bytes],
               t: VerifiedToken | None = None) -> dict[str, str]:
    incoming = IncomingRequest(method="POST", path="/nhost/v1/graphql", query_string=b"",
                               headers=list(headers), request_id="r1")
    return {k.decode(): v.decode() for k, v in await a.identity_headers(t or token(), incoming, route)}


# -- URLs --------------------------------------------------------------------------------------------


def test_subdomain_and_region_give_the_graphql_endpoint_used_as_it_is() -> None:
    a = adapter()
    assert a.match("POST", "/v1/graphql").upstream_url == GRAPHQL
    assert a.match("GET", "/v1/graphql").upstream_url == GRAPHQL
    assert a.probe_url() == GRAPHQL


def test_local_nhost_is_subdomain_and_region_local() -> None:
    assert adapter(subdomain="local", region="local").match("POST", "/v1/graphql").upstream_url == \
        "https://local.graphql.local.nhost.run/v1"


def test_an_explicit_url_is_the_graphql_endpoint_itself() -> None:
    a = adapter(subdomain=None, region=None, url="http://nhost.internal:8080/v1/")
    assert a.match("POST", "/v1/graphql").upstream_url == "http://nhost.internal:8080/v1"


# -- routes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/metadata", "/v2/query", "/v1/query", "/console", "/v1beta1/relay",
                                  "/api/rest/users", "/healthz", "/v1/version", "/v1/functions/hello", "/",
                                  "/v1/graphql/explain", "/v1"])
def test_only_graphql_is_served(path: str) -> None:
    with pytest.raises(NotFoundError):
        adapter().match("POST", path)


def test_other_methods_on_graphql_are_405() -> None:
    with pytest.raises(MethodNotAllowedError):
        adapter().match("DELETE", "/v1/graphql")


def test_functions_route_goes_to_the_functions_endpoint() -> None:
    a = adapter(functions=True)
    route = a.match("POST", "/v1/functions/users/sync")
    assert route.upstream_url == FUNCTIONS + "/users/sync"
    assert not route.graphql  # errors on it are problem+json, GraphQL limits do not apply
    assert a.match("GET", "/v1/functions/").upstream_url == FUNCTIONS + "/"
    assert a.match("POST", "/v1/graphql").upstream_url == GRAPHQL


def test_an_explicit_functions_url() -> None:
    a = adapter(subdomain=None, region=None, url="http://nhost:8080/v1", functions=True,
                functions_url="http://functions:3000/v1/")
    assert a.match("PUT", "/v1/functions/hello").upstream_url == "http://functions:3000/v1/hello"


@pytest.mark.parametrize("path", ["/v1/functions/../graphql", "/v1/functions/a/../../x", "/v1/functions/..",
                                  "/v1/functions/a\\..\\b", "/v1/functions/a\r\nHost: evil"])
def test_function_paths_cannot_step_out(path: str) -> None:
    with pytest.raises(NotFoundError):
        adapter(functions=True).match("GET", path)


def test_function_paths_are_percent_encoded_again() -> None:
    # The ASGI path arrives decoded: a decoded "?" or "#" must not become the upstream's query.
    route = adapter(functions=True).match("GET", "/v1/functions/a b?c#d%e/é")
    assert route.upstream_url == FUNCTIONS + "/a%20b%3Fc%23d%25e/%C3%A9"


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "CONNECT", "HEAD"])
def test_function_methods_are_listed(method: str) -> None:
    with pytest.raises(MethodNotAllowedError):
        adapter(functions=True).match(method, "/v1/functions/hello")


async def test_functions_get_the_same_identity_as_graphql() -> None:
    a = adapter(functions=True)
    graphql = await sent(a, a.match("POST", "/v1/graphql"))
    function = await sent(a, a.match("POST", "/v1/functions/hello"))
    assert function == graphql == {"x-hasura-admin-secret": "nhost-admin-secret", "x-hasura-role": "user",
                                   "x-hasura-user-id": "user_1"}


# -- settings ----------------------------------------------------------------------------------------


def test_default_roles_are_those_of_clerks_nhost_template() -> None:
    s = settings()
    assert (s.default_role, s.roles()) == ("user", ("me", "user"))


async def test_the_me_role_can_be_requested_and_others_cannot() -> None:
    a = adapter()
    route = a.match("POST", "/v1/graphql")
    assert (await sent(a, route, (b"x-hasura-role", b"me")))["x-hasura-role"] == "me"
    with pytest.raises(ForbiddenError):
        await sent(a, route, (b"x-hasura-role", b"admin"))


@pytest.mark.parametrize(("fields", "message"), [
    ({"subdomain": None, "region": None}, "needs subdomain and region"),
    ({"region": None}, "subdomain needs region too"),
    ({"subdomain": None}, "region needs subdomain too"),
    ({"url": "https://x.example/v1"}, "either url"),
    ({"subdomain": "evil.example.com/", "region": "x"}, "DNS label"),
    ({"region": "EU"}, "DNS label"),
    ({"subdomain": None, "region": None, "url": "ftp://nhost/v1"}, "http(s) URL"),
    ({"subdomain": None, "region": None, "url": "https://nhost/v1", "functions": True}, "needs functions_url"),
    ({"functions_url": "https://f/v1"}, "functions is false"),
    ({"functions": True, "functions_url": "functions:3000"}, "http(s) URL"),
    ({"expose_rest": True}, "expose_rest is not available"),
    ({"default_role": "editor"}, "default_role 'editor' is not in allowed_roles"),
    ({"org_roles": {"admin": "org_admin"}}, "not in allowed_roles"),
    ({"auth_mode": "exchange"}, "needs template"),
    ({"admin_secret": None}, "needs admin_secret"),
])
def test_contradictions_are_one_line_settings_errors(fields: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {**CLOUD, "auth_mode": "admin_secret", "admin_secret": "s"}
    values.update(fields)
    with pytest.raises(ValidationError) as excinfo:
        NhostSettings.model_validate({k: v for k, v in values.items() if v is not None})
    errors = excinfo.value.errors()
    assert len(errors) == 1, errors
    assert message in errors[0]["msg"] and "\n" not in errors[0]["msg"]


def test_nhost_is_an_ordinary_adapter_registered_by_entry_point() -> None:
    loaded = {entry.name: entry.load() for entry in entry_points(group=ENTRY_POINT_GROUP)}
    assert loaded["nhost"] is NhostAdapter
    assert NhostAdapter.settings_model is NhostSettings


# -- modes -------------------------------------------------------------------------------------------


async def test_forward_mode_sends_the_verified_token() -> None:
    a = adapter(auth_mode="forward", admin_secret=None)
    assert a.accepted_kinds == frozenset(TokenKind) and a.services_needed() == frozenset()
    assert await sent(a, a.match("POST", "/v1/graphql")) == {"authorization": "Bearer tok.en.value"}


class FakeMinter:
    def __init__(self) -> None:
        self.claims: list[Mapping[str, Any]] = []

    async def token_for(self, *, cache_key: Hashable, audience: str, subject: str, claims: Mapping[str, Any],
                        lifetime_seconds: float, not_after: float | None = None) -> str:
        self.claims.append({"aud": audience, **claims})
        return "minted.tok.en"


class FakeExchanger:
    async def token_for(self, session_id: str, template: str) -> str:
        return f"template.{template}.{session_id}"


async def test_mint_mode_signs_nhost_claims() -> None:
    minter = FakeMinter()
    a = adapter(auth_mode="mint", admin_secret=None)
    a.services = AdapterServices(minter=minter)
    assert a.services_needed() == frozenset({MINTER})
    headers = await sent(a, a.match("POST", "/v1/graphql"), t=token({"o": {"id": "org_1", "rol": "admin"}}))
    assert headers == {"authorization": "Bearer minted.tok.en", "x-hasura-role": "user"}
    claims = minter.claims[0]
    assert claims["aud"] == "nhost"
    assert claims["https://hasura.io/jwt/claims"] == {
        "x-hasura-default-role": "user", "x-hasura-allowed-roles": ["me", "user"],
        "x-hasura-user-id": "user_1", "x-hasura-org-id": "org_1", "x-hasura-org-role": "admin"}


async def test_exchange_mode_forwards_the_template_token() -> None:
    a = adapter(auth_mode="exchange", admin_secret=None, template="nhost")
    a.services = AdapterServices(exchanger=FakeExchanger())
    assert a.services_needed() == frozenset({EXCHANGER})
    headers = await sent(a, a.match("POST", "/v1/graphql"))
    assert headers == {"authorization": "Bearer template.nhost.sess_1"}


async def test_admin_secret_mode_sends_the_org_variables() -> None:
    a = adapter(allowed_roles=["me", "user", "org_admin"], org_roles={"org:admin": "org_admin"},
                org_permissions=True)
    org = {"id": "org_1", "slg": "acme", "rol": "admin", "per": "org:read,org:write"}
    headers = await sent(a, a.match("POST", "/v1/graphql"), t=token({"o": org}))
    assert headers["x-hasura-role"] == "org_admin"
    assert headers["x-hasura-org-id"] == "org_1" and headers["x-hasura-org-slug"] == "acme"
    assert headers["x-hasura-org-permissions"] == "{org:read,org:write}"
