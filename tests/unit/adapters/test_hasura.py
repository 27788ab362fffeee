"""Hasura adapter: allow-list, claim mapping, role selection, and what each mode sends."""

from __future__ import annotations

from typing import Any

import pytest

from clerk_gateway.adapters.base import IncomingRequest
from clerk_gateway.adapters.claims import ClaimsError, json_path, postgres_array
from clerk_gateway.adapters.hasura import HasuraAdapter, HasuraSettings
from clerk_gateway.auth.model import TokenKind, VerifiedToken
from clerk_gateway.errors import ForbiddenError, MethodNotAllowedError, NotFoundError

NS = "https://hasura.io/jwt/claims"


def adapter(**fields: Any) -> HasuraAdapter:
    values: dict[str, Any] = {"url": "http://hasura:8080", "auth_mode": "admin_secret", "admin_secret": "s3cret"}
    values.update(fields)
    return HasuraAdapter("hasura", HasuraSettings.model_validate(values))


def token(claims: dict[str, Any] | None = None, kind: TokenKind = TokenKind.SESSION) -> VerifiedToken:
    base = {"sub": "user_1", "sid": "sess_1", "exp": 2_000_000_000, "o": {"id": "org_9", "rol": "admin"}}
    base.update(claims or {})
    return VerifiedToken(token="tok.en.value", header={"alg": "RS256"}, claims=base, kind=kind,
                         subject=base["sub"], expires_at=base["exp"], session_id=base.get("sid"))


def request(*headers: tuple[bytes, bytes]) -> IncomingRequest:
    return IncomingRequest(method="POST", path="/hasura/v1/graphql", query_string=b"",
                           headers=list(headers), request_id="r1")


async def sent(a: HasuraAdapter, t: VerifiedToken, *headers: tuple[bytes, bytes]) -> dict[str, str]:
    route = a.match("POST", "/v1/graphql")
    return {k.decode(): v.decode() for k, v in await a.identity_headers(t, request(*headers), route)}


@pytest.mark.parametrize("path", ["/v1/metadata", "/v2/query", "/v1/query", "/v1alpha1/pg_dump",
                                  "/console", "/api/rest/x", "/v1/graphql/explain", "/healthz", "/"])
def test_admin_and_unlisted_paths_are_not_found(path: str) -> None:
    with pytest.raises(NotFoundError):
        adapter().match("POST", path)


def test_allowed_paths_and_methods() -> None:
    a = adapter()
    assert a.match("POST", "/v1/graphql").upstream_url == "http://hasura:8080/v1/graphql"
    assert a.match("GET", "/v1/graphql").graphql
    assert a.match("POST", "/v1beta1/relay").upstream_url.endswith("/v1beta1/relay")
    with pytest.raises(MethodNotAllowedError):
        a.match("DELETE", "/v1/graphql")


def test_rest_only_when_enabled() -> None:
    route = adapter(expose_rest=True).match("GET", "/api/rest/users")
    assert route.upstream_url == "http://hasura:8080/api/rest/users" and not route.graphql


async def test_admin_secret_mode_sends_explicit_role_and_user() -> None:
    headers = await sent(adapter(), token({"o": None}))
    assert headers == {"x-hasura-admin-secret": "s3cret", "x-hasura-role": "user", "x-hasura-user-id": "user_1"}


async def test_role_selection_within_allowed_roles() -> None:
    a = adapter(allowed_roles=["user", "editor"])
    assert (await sent(a, token(), (b"x-hasura-role", b"editor")))["x-hasura-role"] == "editor"
    with pytest.raises(ForbiddenError) as excinfo:
        await sent(a, token(), (b"x-hasura-role", b"admin"))
    assert excinfo.value.code == "access-denied"


async def test_claims_map_paths_literals_and_defaults() -> None:
    a = adapter(claims_map={"x-hasura-org-id": {"path": "$.o.id"}, "x-hasura-tenant": "acme",
                            "x-hasura-team": {"path": "$.team", "default": "none"}})
    headers = await sent(a, token())
    assert headers["x-hasura-org-id"] == "org_9"
    assert headers["x-hasura-tenant"] == "acme"
    assert headers["x-hasura-team"] == "none"


async def test_claims_map_missing_path_without_default_is_refused() -> None:
    a = adapter(claims_map={"x-hasura-org-id": {"path": "$.org.id"}})
    with pytest.raises(ForbiddenError):
        await sent(a, token())


async def test_namespace_claims_win_and_arrays_use_postgres_literals() -> None:
    ns = {"x-hasura-default-role": "me", "x-hasura-allowed-roles": ["me", "user"],
          "x-hasura-user-id": "user_1", "x-hasura-groups": ["a", "b c"], "x-hasura-role": "admin"}
    headers = await sent(adapter(), token({NS: ns}), (b"x-hasura-role", b"user"))
    assert headers["x-hasura-role"] == "user"
    assert headers["x-hasura-groups"] == '{a,"b c"}'
    assert "x-hasura-allowed-roles" not in headers and "x-hasura-default-role" not in headers


@pytest.mark.parametrize(("ns", "code"), [
    ({"x-hasura-default-role": "user"}, "jwt-missing-role-claims"),
    ({"x-hasura-allowed-roles": ["user"]}, "jwt-missing-role-claims"),
    ({"x-hasura-default-role": "user", "x-hasura-allowed-roles": "user"}, "jwt-invalid-claims"),
    ({"x-hasura-default-role": ["user"], "x-hasura-allowed-roles": ["user"]}, "jwt-invalid-claims"),
    ({"x-hasura-default-role": "user", "x-hasura-allowed-roles": ["user"], "x-hasura-x": {"a": 1}},
     "jwt-invalid-claims"),
    ({"x-hasura-default-role": "user", "x-hasura-allowed-roles": ["user"], "x-hasura-x": "a\r\nb"},
     "jwt-invalid-claims"),
])
async def test_bad_namespace_claims_use_hasura_codes(ns: dict[str, Any], code: str) -> None:
    with pytest.raises(ClaimsError) as excinfo:
        await sent(adapter(), token({NS: ns}))
    assert excinfo.value.code == code and excinfo.value.status == 401


async def test_forward_mode_sends_only_the_verified_token() -> None:
    a = adapter(auth_mode="forward", admin_secret=None)
    assert a.accepted_kinds == frozenset(TokenKind)
    headers = await sent(a, token())
    assert headers == {"authorization": "Bearer tok.en.value"}


async def test_forward_mode_checks_role_against_namespace() -> None:
    a = adapter(auth_mode="forward", admin_secret=None)
    ns = {"x-hasura-default-role": "user", "x-hasura-allowed-roles": ["user"]}
    with pytest.raises(ForbiddenError):
        await sent(a, token({NS: ns}), (b"x-hasura-role", b"admin"))


def test_admin_secret_mode_accepts_session_tokens_only_by_default() -> None:
    assert adapter().accepted_kinds == frozenset({TokenKind.SESSION})
    assert adapter(token_kinds="session,template").accepted_kinds == frozenset(TokenKind)


def test_json_path_and_array_literals() -> None:
    doc = {"o": {"id": "x", "list": [{"k-1": "v"}]}}
    assert json_path(doc, "$.o.list[0]['k-1']") == (True, "v")
    assert json_path(doc, "$.o.missing") == (False, None)
    assert json_path(doc, "o.id") == (False, None)
    assert postgres_array(["a", "b,c", 'q"', ""]) == '{a,"b,c","q\\"",""}'
