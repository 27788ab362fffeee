"""build_user_store: which store, which endpoint and which secret each backend's settings give."""

from __future__ import annotations

from typing import Any
from unittest.mock import Mock

import httpx
import pytest
from pydantic import SecretStr

from clerk_gateway.adapters.base import Adapter
from clerk_gateway.adapters.fauna import FaunaAdapter, FaunaSettings
from clerk_gateway.adapters.hasura import HasuraAdapter, HasuraSettings
from clerk_gateway.adapters.nhost import NhostAdapter, NhostSettings
from clerk_gateway.settings.user_sync import UserSyncSettings
from clerk_gateway.webhooks.fauna_store import FaunaUserStore
from clerk_gateway.webhooks.hasura_store import HasuraUserStore
from clerk_gateway.webhooks.stores import build_user_store


def adapters() -> dict[str, Adapter]:
    return {
        "hasura": HasuraAdapter("hasura", HasuraSettings(url="http://hasura:8080", admin_secret=SecretStr("hs"))),
        "bare": HasuraAdapter("bare", HasuraSettings(url="http://hasura:8080")),
        "nhost": NhostAdapter("nhost", NhostSettings(subdomain="myapp", region="eu-central-1",
                                                     admin_secret=SecretStr("ns"))),
        "fauna": FaunaAdapter("fauna", FaunaSettings(url="http://fauna:8443")),
    }


def sync(backend: str, **settings: Any) -> UserSyncSettings:
    return UserSyncSettings(backend=backend, **settings)


async def test_hasura_uses_its_graphql_endpoint_and_admin_secret(http: httpx.AsyncClient) -> None:
    store = build_user_store(sync("hasura"), adapters(), http)
    assert isinstance(store, HasuraUserStore)
    assert (store._url, store._secret) == ("http://hasura:8080/v1/graphql", "hs")


async def test_the_sync_secret_overrides_the_admin_secret(http: httpx.AsyncClient) -> None:
    store = build_user_store(sync("hasura", secret="override"), adapters(), http)
    assert isinstance(store, HasuraUserStore) and store._secret == "override"
    bare = build_user_store(sync("bare", secret="only-this"), adapters(), http)
    assert isinstance(bare, HasuraUserStore) and bare._secret == "only-this"


async def test_nhost_uses_the_nhost_graphql_endpoint(http: httpx.AsyncClient) -> None:
    store = build_user_store(sync("nhost"), adapters(), http)
    assert isinstance(store, HasuraUserStore)
    assert (store._url, store._secret) == ("https://myapp.graphql.eu-central-1.nhost.run/v1", "ns")


async def test_fauna_uses_query_1_and_the_sync_secret(http: httpx.AsyncClient) -> None:
    store = build_user_store(sync("fauna", secret="fn-key"), adapters(), http)
    assert isinstance(store, FaunaUserStore)
    assert (store._url, store._secret) == ("http://fauna:8443/query/1", "fn-key")


@pytest.mark.parametrize(("settings", "message"), [
    ({"backend": "missing"}, "not one of GATEWAY_BACKENDS"),
    ({"backend": "bare"}, "no admin_secret"),
    ({"backend": "fauna"}, "a Fauna key"),
])
async def test_refusals(http: httpx.AsyncClient, settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_user_store(UserSyncSettings(**settings), adapters(), http)


async def test_other_adapters_are_refused(http: httpx.AsyncClient) -> None:
    other = Mock(spec=Adapter)  # an adapter of another kind (a third-party REST backend, say)
    with pytest.raises(ValueError, match="cannot write to"):
        build_user_store(sync("other"), {"other": other}, http)


async def test_aclose_leaves_the_shared_client_open(http: httpx.AsyncClient) -> None:
    for name, secret in (("hasura", None), ("fauna", "fn-key")):
        store = build_user_store(sync(name, secret=secret), adapters(), http)
        await store.aclose()
    assert not http.is_closed
