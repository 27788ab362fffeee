"""Clerk organizations: the active organization (``o``) becomes Hasura session variables, and
``org_roles`` picks and reserves Hasura roles — in every mode that derives an identity."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import pytest
from pydantic import ValidationError

from clerk_gateway.adapters.base import AdapterServices, IncomingRequest
from clerk_gateway.adapters.claims import ClaimsError, HasuraIdentity
from clerk_gateway.adapters.hasura import HasuraAdapter, HasuraSettings
from clerk_gateway.adapters.orgs import OrgPolicy, active_organization, organization_permissions
from clerk_gateway.auth.model import TokenKind, VerifiedToken
from clerk_gateway.errors import ForbiddenError
from clerk_gateway.proxy.headers import RequestHeaderFilter

NS = "https://hasura.io/jwt/claims"
ORG = {"id": "org_1", "slg": "acme", "rol": "org:admin", "per": "org:read,org:write"}
MEMBER = {"id": "org_1", "slg": "acme", "rol": "member", "per": "org:read"}
ORG_VARS = {"x-hasura-org-id", "x-hasura-org-slug", "x-hasura-org-role", "x-hasura-org-permissions"}


def adapter(**fields: Any) -> HasuraAdapter:
    values: dict[str, Any] = {"url": "http://hasura:8080", "auth_mode": "admin_secret", "admin_secret": "s3cret"}
    values.update(fields)
    return HasuraAdapter("hasura", HasuraSettings.model_validate(values))


def org_roles_adapter(**fields: Any) -> HasuraAdapter:
    values: dict[str, Any] = {"allowed_roles": ["user", "editor", "org_admin"], "org_roles": {"admin": "org_admin"}}
    values.update(fields)
    return adapter(**values)


def token(claims: dict[str, Any] | None = None, *, text: str = "tok.en.value") -> VerifiedToken:
    base: dict[str, Any] = {"sub": "user_1", "sid": "sess_1", "exp": 2_000_000_000}
    base.update(claims or {})
    return VerifiedToken(token=text, header={"alg": "RS256"}, claims=base, kind=TokenKind.SESSION,
                         subject=base["sub"], expires_at=base["exp"], session_id=base.get("sid"))


def request(*headers: tuple[bytes, bytes]) -> IncomingRequest:
    return IncomingRequest(method="POST", path="/hasura/v1/graphql", query_string=b"",
                           headers=list(headers), request_id="r1")


async def sent(a: HasuraAdapter, t: VerifiedToken, role: str | None = None) -> dict[str, str]:
    headers = [(b"x-hasura-role", role.encode())] if role is not None else []
    route = a.match("POST", "/v1/graphql")
    return {k.decode(): v.decode() for k, v in await a.identity_headers(t, request(*headers), route)}


def org_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.startswith("x-hasura-org-")}


# -- the variables -----------------------------------------------------------------------------------


async def test_active_organization_becomes_id_slug_and_bare_role() -> None:
    headers = await sent(adapter(), token({"o": ORG}))
    assert org_headers(headers) == {"x-hasura-org-id": "org_1", "x-hasura-org-slug": "acme",
                                    "x-hasura-org-role": "admin"}
    assert headers["x-hasura-role"] == "user" and headers["x-hasura-user-id"] == "user_1"


async def test_session_token_v2_role_without_prefix_is_sent_as_is() -> None:
    headers = await sent(adapter(), token({"o": {"id": "org_2", "rol": "billing_manager"}}))
    assert org_headers(headers) == {"x-hasura-org-id": "org_2", "x-hasura-org-role": "billing_manager"}


@pytest.mark.parametrize(("per", "expected"), [
    ("org:read,org:write", "{org:read,org:write}"),
    (" org:read , org:write ,", "{org:read,org:write}"),
    (["org:read", "org:write"], "{org:read,org:write}"),
    ("", "{}"),
    (None, "{}"),
])
async def test_permissions_as_a_hasura_array_when_asked_for(per: Any, expected: str) -> None:
    org = {**ORG, "per": per} if per is not None else {k: v for k, v in ORG.items() if k != "per"}
    headers = await sent(adapter(org_permissions=True), token({"o": org}))
    assert headers["x-hasura-org-permissions"] == expected


async def test_permissions_are_not_sent_by_default() -> None:
    assert "x-hasura-org-permissions" not in await sent(adapter(), token({"o": ORG}))


def test_v2_feature_permission_map_expands_like_clerks_sdk() -> None:
    # fea lists the features, per the permission names, fpm one bit mask per organization feature
    # (most significant bit = first name): dashboard has manage+read (0b11), billing read (0b01).
    org = {"id": "org_1", "rol": "admin", "per": "manage,read", "fpm": "3,1"}
    claims = {"o": org, "fea": "o:dashboard,u:profile,o:billing"}
    assert organization_permissions(org, claims["fea"]) == (
        "org:dashboard:manage", "org:dashboard:read", "org:billing:read")
    found = active_organization(claims)
    assert found is not None and found.permissions[0] == "org:dashboard:manage"


async def test_org_claims_false_sends_no_org_variables() -> None:
    headers = await sent(adapter(org_claims=False), token({"o": ORG}))
    assert org_headers(headers) == {}


@pytest.mark.parametrize("claims", [{}, {"o": None}, {"o": {"slg": "acme", "rol": "admin"}}])
async def test_without_an_active_organization_nothing_is_sent(claims: dict[str, Any]) -> None:
    headers = await sent(adapter(org_permissions=True), token(claims))
    assert org_headers(headers) == {}


async def test_claims_map_entries_of_the_same_name_win() -> None:
    a = adapter(claims_map={"x-hasura-org-id": "org_fixed", "x-hasura-org-role": {"path": "$.o.rol"}})
    headers = await sent(a, token({"o": ORG}))
    assert headers["x-hasura-org-id"] == "org_fixed"
    assert headers["x-hasura-org-role"] == "org:admin"  # the claims_map path, unstripped, as written
    assert headers["x-hasura-org-slug"] == "acme"


async def test_namespace_token_also_gets_the_org_variables() -> None:
    ns = {"x-hasura-default-role": "user", "x-hasura-allowed-roles": ["user"], "x-hasura-user-id": "user_1",
          "x-hasura-org-slug": "from-template"}
    headers = await sent(adapter(org_permissions=True), token({NS: ns, "o": ORG}))
    assert headers["x-hasura-org-id"] == "org_1"
    assert headers["x-hasura-org-slug"] == "from-template"  # what the template says wins
    assert headers["x-hasura-org-permissions"] == "{org:read,org:write}"


@pytest.mark.parametrize("org", ["org_1", {"id": 5}, {"id": "org_1", "rol": ["admin"]},
                                 {"id": "org_1", "per": {"a": 1}}, {"id": "org_1", "slg": "a\r\nb"},
                                 {"id": "org_1", "per": "read", "fpm": "x"}])
async def test_malformed_organization_claims_are_refused(org: Any) -> None:
    with pytest.raises(ClaimsError) as excinfo:
        await sent(adapter(org_permissions=True), token({"o": org, "fea": "o:dashboard"}))
    assert excinfo.value.code == "jwt-invalid-claims" and excinfo.value.status == 401


def test_the_header_policy_drops_client_org_variables() -> None:
    client = [(b"x-hasura-org-id", b"org_evil"), (b"x-hasura-org-role", b"admin"),
              (b"x-hasura-org-permissions", b"{org:all}"), (b"content-type", b"application/json")]
    assert RequestHeaderFilter(HasuraAdapter.header_policy).apply(client) == [(b"content-type", b"application/json")]


# -- org_roles ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mapping", "rol"), [({"admin": "org_admin"}, "org:admin"),
                                             ({"admin": "org_admin"}, "admin"),
                                             ({"org:admin": "org_admin"}, "admin"),
                                             ({"org:admin": "org_admin"}, "org:admin")])
async def test_a_mapped_org_role_becomes_the_default_role(mapping: dict[str, str], rol: str) -> None:
    headers = await sent(org_roles_adapter(org_roles=mapping), token({"o": {**ORG, "rol": rol}}))
    assert headers["x-hasura-role"] == "org_admin"
    assert headers["x-hasura-org-role"] == "admin"


async def test_a_mapped_member_may_still_choose_another_allowed_role() -> None:
    assert (await sent(org_roles_adapter(), token({"o": ORG}), role="editor"))["x-hasura-role"] == "editor"


@pytest.mark.parametrize("claims", [{"o": MEMBER}, {}])
async def test_a_reserved_role_is_refused_to_everyone_else(claims: dict[str, Any]) -> None:
    a = org_roles_adapter()
    assert (await sent(a, token(claims)))["x-hasura-role"] == "user"
    with pytest.raises(ForbiddenError) as excinfo:
        await sent(a, token(claims), role="org_admin")
    assert excinfo.value.code == "access-denied" and excinfo.value.reason == "role-reserved"
    assert (await sent(a, token(claims), role="editor"))["x-hasura-role"] == "editor"


async def test_namespace_token_role_selection_follows_org_roles() -> None:
    ns = {"x-hasura-default-role": "user", "x-hasura-allowed-roles": ["user", "org_admin"]}
    a = org_roles_adapter()
    assert (await sent(a, token({NS: ns, "o": ORG})))["x-hasura-role"] == "org_admin"
    with pytest.raises(ForbiddenError):
        await sent(a, token({NS: ns, "o": MEMBER}, text="member.tok.en"), role="org_admin")


async def test_a_mapped_role_outside_the_allowed_roles_is_403() -> None:
    ns = {"x-hasura-default-role": "user", "x-hasura-allowed-roles": ["user"]}  # the token narrows them
    with pytest.raises(ForbiddenError) as excinfo:
        await sent(org_roles_adapter(), token({NS: ns, "o": ORG}))
    assert excinfo.value.code == "access-denied" and excinfo.value.reason == "org-role-not-allowed"


async def test_a_reserved_default_role_from_the_token_is_403_for_a_plain_member() -> None:
    ns = {"x-hasura-default-role": "org_admin", "x-hasura-allowed-roles": ["user", "org_admin"]}
    with pytest.raises(ForbiddenError) as excinfo:
        await sent(org_roles_adapter(), token({NS: ns, "o": MEMBER}))
    assert excinfo.value.reason == "role-reserved"


async def test_forward_mode_with_a_namespace_token_applies_role_selection() -> None:
    a = org_roles_adapter(auth_mode="forward", admin_secret=None)
    ns = {"x-hasura-default-role": "user", "x-hasura-allowed-roles": ["user", "org_admin"]}
    headers = await sent(a, token({NS: ns, "o": ORG}))
    assert headers == {"authorization": "Bearer tok.en.value", "x-hasura-role": "org_admin"}
    with pytest.raises(ForbiddenError):
        await sent(a, token({NS: ns, "o": MEMBER}, text="member.tok.en"), role="org_admin")


class RecordingMinter:
    """Stands in for the gateway's signer and keeps the claims it was asked to sign."""

    def __init__(self) -> None:
        self.claims: list[Mapping[str, Any]] = []

    async def token_for(self, *, cache_key: Hashable, audience: str, subject: str, claims: Mapping[str, Any],
                        lifetime_seconds: float, not_after: float | None = None) -> str:
        hash(cache_key)  # must stay usable as a cache key
        self.claims.append(claims)
        return "minted.tok.en"


async def test_mint_mode_carries_the_org_variables_and_the_reserved_roles() -> None:
    minter = RecordingMinter()
    a = org_roles_adapter(auth_mode="mint", admin_secret=None, org_permissions=True)
    a.services = AdapterServices(minter=minter)

    admin = await sent(a, token({"o": ORG}, text="admin.tok.en"))
    member = await sent(a, token({"o": MEMBER}, text="member.tok.en"))

    assert admin == {"authorization": "Bearer minted.tok.en", "x-hasura-role": "org_admin"}
    assert member["x-hasura-role"] == "user"
    admin_claims, member_claims = (claims[NS] for claims in minter.claims)
    assert admin_claims["x-hasura-default-role"] == "org_admin"
    assert admin_claims["x-hasura-allowed-roles"] == ["user", "editor", "org_admin"]
    assert admin_claims["x-hasura-org-id"] == "org_1" and admin_claims["x-hasura-org-role"] == "admin"
    assert admin_claims["x-hasura-org-permissions"] == "{org:read,org:write}"
    assert member_claims["x-hasura-default-role"] == "user"
    assert member_claims["x-hasura-allowed-roles"] == ["user", "editor"]
    assert member_claims["x-hasura-org-role"] == "member"


def test_identities_with_organizations_are_cached_per_token() -> None:
    a = org_roles_adapter()
    t = token({"o": ORG})
    first = a.identity(t)
    assert a.identity(t) is first
    assert a.identity(token({"o": ORG}, text="other.tok.en")) == first


def test_policy_leaves_identities_without_organizations_untouched() -> None:
    identity = HasuraIdentity("user", ("user",), (("x-hasura-user-id", "user_1"),))
    assert OrgPolicy().apply(identity, {"sub": "user_1"}) is identity


# -- settings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "message"), [
    ({"org_roles": {"admin": "org_admin"}}, "org_roles maps 'admin' to 'org_admin', which is not in allowed_roles"),
    ({"allowed_roles": ["user", "org_admin"], "org_roles": {"admin": "user"}}, "default_role 'user' is mapped"),
    ({"allowed_roles": ["user", "a", "b"], "org_roles": {"admin": "a", "org:admin": "b"}}, "twice"),
    ({"allowed_roles": ["user", "a"], "org_roles": {"org:": "a"}}, "non-empty"),
    ({"org_claims": False, "org_permissions": True}, "org_permissions needs org_claims"),
])
def test_contradicting_org_settings_are_one_line_errors(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        HasuraSettings.model_validate({"url": "http://hasura:8080", **fields})
    errors = excinfo.value.errors()
    assert len(errors) == 1 and message in errors[0]["msg"] and "\n" not in errors[0]["msg"]


def test_org_roles_accepts_json_text_from_nested_variables() -> None:
    settings = HasuraSettings.model_validate({"url": "http://hasura:8080", "allowed_roles": "user,org_admin",
                                              "org_roles": '{"org:admin": "org_admin"}'})
    assert settings.org_roles == {"org:admin": "org_admin"}


async def test_claims_the_backend_does_not_use_are_not_read() -> None:
    broken_per = {"id": "org_1", "rol": "admin", "per": {"not": "a list"}}
    assert (await sent(adapter(), token({"o": broken_per})))["x-hasura-org-id"] == "org_1"
    assert "x-hasura-org-id" not in await sent(adapter(org_claims=False), token({"o": "not an object"}))
