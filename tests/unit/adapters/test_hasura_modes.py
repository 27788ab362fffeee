"""The Hasura adapter in ``mint`` and ``exchange`` modes, with the collaborators faked at the seam."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import pytest

from clerk_gateway.adapters.base import EXCHANGER, MINTER, AdapterServices
from clerk_gateway.adapters.hasura import HasuraAdapter, HasuraSettings
from clerk_gateway.auth.model import TokenKind
from clerk_gateway.errors import AuthenticationError, ForbiddenError
from tests.unit.adapters.test_hasura import NS, sent, token


class FakeMinter:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def token_for(self, *, cache_key: Hashable, audience: str, subject: str, claims: Mapping[str, Any],
                        lifetime_seconds: float, not_after: float | None = None) -> str:
        self.calls.append({"cache_key": cache_key, "audience": audience, "subject": subject, "claims": claims,
                           "lifetime_seconds": lifetime_seconds, "not_after": not_after})
        return f"minted-for-{subject}"


class FakeExchanger:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def token_for(self, session_id: str, template: str) -> str:
        self.calls.append((session_id, template))
        return f"template-{template}-{session_id}"

    def forget_session(self, session_id: str) -> None:
        self.calls.append((session_id, "<forgotten>"))


def adapter(mode: str, **fields: Any) -> HasuraAdapter:
    values: dict[str, Any] = {"url": "http://hasura:8080", "auth_mode": mode, "allowed_roles": ["user", "editor"]}
    values.update(fields)
    return HasuraAdapter("hasura", HasuraSettings.model_validate(values))


async def test_mint_sends_the_minted_token_and_the_selected_role() -> None:
    a = adapter("mint", token_lifetime_seconds=30)
    minter = FakeMinter()
    a.services = AdapterServices(minter=minter)
    assert a.services_needed() == {MINTER}
    headers = await sent(a, token(), (b"x-hasura-role", b"editor"))
    assert headers == {"authorization": "Bearer minted-for-user_1", "x-hasura-role": "editor"}
    (call,) = minter.calls
    assert call["audience"] == "hasura" and call["lifetime_seconds"] == 30 and call["not_after"] == 2_000_000_000
    minted = dict(call["claims"][NS])
    assert {k: minted.pop(k) for k in ("x-hasura-default-role", "x-hasura-allowed-roles", "x-hasura-user-id")} == {
        "x-hasura-default-role": "user", "x-hasura-allowed-roles": ["user", "editor"], "x-hasura-user-id": "user_1"}
    assert all(name.startswith("x-hasura-org-") for name in minted)  # the token's organization, nothing else
    assert "x-hasura-admin-secret" not in headers


async def test_mint_uses_the_configured_audience_and_refuses_roles_outside_the_allowed_ones() -> None:
    a = adapter("mint", audience="my-hasura")
    minter = FakeMinter()
    a.services = AdapterServices(minter=minter)
    await sent(a, token())
    assert minter.calls[0]["audience"] == "my-hasura"
    with pytest.raises(ForbiddenError):
        await sent(a, token(), (b"x-hasura-role", b"admin"))
    assert len(minter.calls) == 1  # nothing minted for a refused request


async def test_exchange_forwards_the_session_template_token() -> None:
    a = adapter("exchange", template="hasura")
    exchanger = FakeExchanger()
    a.services = AdapterServices(exchanger=exchanger)
    assert a.services_needed() == {EXCHANGER}
    assert a.accepted_kinds == {TokenKind.SESSION}  # a template token has no session to exchange
    headers = await sent(a, token(), (b"x-hasura-role", b"editor"))
    assert headers == {"authorization": "Bearer template-hasura-sess_1", "x-hasura-role": "editor"}
    assert exchanger.calls == [("sess_1", "hasura")]


async def test_exchange_without_a_session_is_refused() -> None:
    a = adapter("exchange", template="hasura")
    a.services = AdapterServices(exchanger=FakeExchanger())
    with pytest.raises(AuthenticationError):
        await sent(a, token({"sid": None}))


def test_forward_and_admin_secret_need_no_services() -> None:
    assert adapter("forward").services_needed() == frozenset()
    assert adapter("admin_secret", admin_secret="s").services_needed() == frozenset()


async def test_a_reserved_role_passed_on_unchecked_is_still_refused_for_a_plain_member() -> None:
    """forward without the namespace and exchange pass x-hasura-role on for the backend to check;
    a role org_roles reserves is refused by the gateway first unless the org role maps to it."""
    for a in (adapter("forward", allowed_roles=["user", "org_admin"], org_roles={"admin": "org_admin"}),
              adapter("exchange", template="hasura", allowed_roles=["user", "org_admin"],
                      org_roles={"admin": "org_admin"})):
        a.services = AdapterServices(exchanger=FakeExchanger())
        member = token({"o": {"id": "org_1", "rol": "org:member"}})
        with pytest.raises(ForbiddenError) as caught:
            await sent(a, member, (b"x-hasura-role", b"org_admin"))
        assert caught.value.reason == "role-reserved"
        admin = token({"o": {"id": "org_1", "rol": "org:admin"}})
        assert (await sent(a, admin, (b"x-hasura-role", b"org_admin")))["x-hasura-role"] == "org_admin"


async def test_connection_init_carries_exactly_the_modes_identity() -> None:
    payload = {"headers": {"Authorization": "Bearer client-token", "x-hasura-role": "editor",
                           "x-hasura-admin-secret": "forged", "x-hasura-user-id": "someone_else"},
               "lazy": True}
    a = adapter("admin_secret", admin_secret="s3cret")
    assert await a.connection_init(token({"o": None}), payload) == {"headers": {
        "x-hasura-admin-secret": "s3cret", "x-hasura-role": "editor", "x-hasura-user-id": "user_1"}}
    forward = adapter("forward")
    assert await forward.connection_init(token(), payload) == {"headers": {
        "authorization": "Bearer tok.en.value", "x-hasura-role": "editor"}}
    minting = adapter("mint")
    minting.services = AdapterServices(minter=FakeMinter())
    assert await minting.connection_init(token(), {}) == {"headers": {
        "authorization": "Bearer minted-for-user_1", "x-hasura-role": "user"}}
    with pytest.raises(ForbiddenError):
        await a.connection_init(token(), {"headers": {"x-hasura-role": "admin"}})


def test_websocket_urls_and_which_modes_expire_upstream() -> None:
    assert adapter("forward").websocket_url("/v1/graphql") == "ws://hasura:8080/v1/graphql"
    assert adapter("forward", url="https://h.example").websocket_url("/v1/graphql") == "wss://h.example/v1/graphql"
    assert adapter("forward").websocket_url("/v1/metadata") is None
    assert adapter("forward").socket_identity_expires() and adapter("exchange", template="t").socket_identity_expires()
    assert not adapter("mint").socket_identity_expires()


async def test_a_renewed_exchange_socket_gets_a_freshly_exchanged_token() -> None:
    """The cached template token is as old as the socket's first one; the renewed upstream
    connection must carry one that outlives it, so the cache entry is dropped first."""
    a = adapter("exchange", template="hasura")
    exchanger = FakeExchanger()
    a.services = AdapterServices(exchanger=exchanger)
    await a.renewed_connection_init(token(), {})
    assert exchanger.calls == [("sess_1", "<forgotten>"), ("sess_1", "hasura")]
    plain = adapter("forward")
    assert await plain.renewed_connection_init(token(), {}) == await plain.connection_init(token(), {})
