"""Assembles the webhook endpoint from the settings: the verifier, the delivery log, the user
store, the revocation hub and its listeners (the sockets and caches of this process)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from clerk_gateway.adapters.base import Adapter

from .deliveries import DeliveryLog, MemoryDeliveryLog, RedisDeliveryLog
from .endpoint import ClerkWebhookEndpoint
from .events import ClerkEventHandler
from .revocation import Revocation, RevocationHub, RevokedSessions
from .store import UserStore
from .stores import build_user_store
from .verification import WebhookVerifier

if TYPE_CHECKING:
    from clerk_gateway.auth.token_cache import VerifiedTokenCache
    from clerk_gateway.proxy.ws_sessions import SocketRegistry
    from clerk_gateway.settings import Settings
    from clerk_gateway.shared_redis import SharedRedis

#: What a revoked socket is closed with (PRODUCT.md): the client library reconnects and
#: authenticates again, which a signed-out user cannot.
SESSION_ENDED = (4403, "session ended")


@dataclass
class Webhooks:
    endpoint: ClerkWebhookEndpoint
    revocations: RevocationHub
    store: UserStore | None

    async def start(self) -> None:
        await self.revocations.start()

    async def aclose(self) -> None:
        await self.revocations.aclose()
        if self.store is not None:
            await self.store.aclose()


def build_webhooks(settings: Settings, adapters: Mapping[str, Adapter], http: httpx.AsyncClient, *,
                   sockets: SocketRegistry, token_cache: VerifiedTokenCache | None, services: Any,
                   redis: SharedRedis | None) -> Webhooks:
    """``redis``: the process's ``GATEWAY_REDIS_URL`` clients (owned and closed by the runtime)."""
    secrets = settings.clerk.webhook_signing_secrets
    deliveries: DeliveryLog
    if redis is not None:
        deliveries = RedisDeliveryLog(redis.commands)
        hub = RevocationHub(RevokedSessions(), redis=redis.commands, subscriber=redis.subscriber)
    else:
        deliveries = MemoryDeliveryLog()
        hub = RevocationHub(RevokedSessions())
    exchanger = getattr(services, "exchanger", None)

    def end_locally(revocation: Revocation) -> None:
        code, reason = SESSION_ENDED
        if revocation.session_id is not None:
            sockets.close_session(revocation.session_id, code, reason)
            if exchanger is not None:
                exchanger.forget_session(revocation.session_id)
        if revocation.subject is not None:
            sockets.close_subject(revocation.subject, code, reason)
        if token_cache is not None:
            token_cache.forget(session_id=revocation.session_id, subject=revocation.subject)

    hub.on_revoke(end_locally)
    sync = settings.user_sync
    store = build_user_store(sync, adapters, http) if sync is not None else None
    handler = ClerkEventHandler(sync=sync, store=store, revocations=hub)
    endpoint = ClerkWebhookEndpoint(WebhookVerifier(secrets), deliveries, handler,
                                    max_body_bytes=settings.gateway.webhook_max_body_bytes)
    return Webhooks(endpoint, hub, store)
