"""Builds the :class:`~.store.UserStore` that ``GATEWAY_USER_SYNC`` names (webhooks and backfill
share it, so both write through the same guarded upsert)."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from clerk_gateway.adapters.base import Adapter
from clerk_gateway.adapters.fauna import FaunaAdapter
from clerk_gateway.adapters.hasura import HasuraAdapter
from clerk_gateway.settings.user_sync import UserSyncSettings

from .fauna_store import FaunaUserStore
from .hasura_store import HasuraUserStore
from .store import UserStore

#: The Hasura GraphQL path; Nhost's adapter maps it onto its own GraphQL endpoint.
GRAPHQL_PATH = "/v1/graphql"


def build_user_store(sync: UserSyncSettings, adapters: Mapping[str, Adapter], http: httpx.AsyncClient) -> UserStore:
    """The store for ``sync.backend`` (the settings loader checked it exists and can take writes).

    The adapter decides where the writes go (its own URL logic, so an Nhost ``subdomain`` / ``region`` works the
    same), ``GATEWAY_USER_SYNC.secret`` decides with what: it overrides the Hasura / Nhost ``admin_secret`` and is
    the only Fauna key (a backend's clients bring their own). The checks below repeat the loader's, so that a
    caller that skipped it gets a clear error here rather than an unauthenticated write."""
    adapter = adapters.get(sync.backend)
    if adapter is None:
        raise ValueError(f"GATEWAY_USER_SYNC backend '{sync.backend}' is not one of GATEWAY_BACKENDS")
    override = sync.secret.get_secret_value() if sync.secret is not None else None
    if isinstance(adapter, HasuraAdapter):  # Nhost's adapter is one too
        admin = adapter.hasura.admin_secret
        secret = override or (admin.get_secret_value() if admin is not None else None)
        if not secret:
            raise ValueError(f"GATEWAY_USER_SYNC needs secret: the backend '{sync.backend}' has no admin_secret")
        return HasuraUserStore(adapter.upstream_url(GRAPHQL_PATH), secret, sync, http)
    if isinstance(adapter, FaunaAdapter):
        if not override:
            raise ValueError(f"GATEWAY_USER_SYNC needs secret: a Fauna key for the backend '{sync.backend}'")
        return FaunaUserStore(adapter.fauna.url + "/query/1", override, sync, http)
    raise ValueError(f"GATEWAY_USER_SYNC backend '{sync.backend}' uses an adapter the sync cannot write to "
                     f"({type(adapter).__name__}); it writes to hasura, nhost or fauna backends")


__all__ = ["build_user_store"]
