"""Assembles the webhook endpoint from the settings: the verifier, the delivery log, the user
store, the revocation hub and its listeners (the sockets and caches of this process)."""

from __future__ import annotations

import contextlib
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
    from redis.asyncio import Redis

    from clerk_gateway.auth.token_cache import VerifiedTokenCache
    from clerk_gateway.proxy.ws_sessions import SocketRegistry
    from clerk_gateway.settings import Settings

#: What a revoked socket is closed with (PRODUCT.md): the client library reconnects and
#: authenticates again, which a signed-out user cannot.
SESSION_ENDED = (4403, "session ended")


@dataclass
class Webhooks:
    endpoint: ClerkWebhookEndpoint
    revocations: RevocationHub
    store: UserStore | None
    redis: list[Redis]

    async def start(self) -> None:
        await self.revocations.start()

    async def aclose(self) -> None:
        await self.revocations.aclose()
        if self.store is not None:
            await self.store.aclose()
        for client in self.redis:
            with contextlib.suppress(Exception):
                await client.aclose()


def shared_redis(url: str) -> tuple[Redis, Redis]:
    """Two clients of ``GATEWAY_REDIS_URL``: one for commands, which must fail fast, and one that
    holds the revocation channel open (a read timeout there would only mean "no message yet")."""
    from redis.asyncio import Redis

    commands = Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=0)
    subscriber = Redis.from_url(url, socket_timeout=None, socket_connect_timeout=2.0, health_check_interval=15)
    return commands, subscriber


def build_webhooks(settings: Settings, adapters: Mapping[str, Adapter], http: httpx.AsyncClient, *,
                   sockets: SocketRegistry, token_cache: VerifiedTokenCache | None, services: Any) -> Webhooks:
    secrets = settings.clerk.webhook_signing_secrets
    redis_url = settings.gateway.redis_url.get_secret_value() if settings.gateway.redis_url else None
    clients: list[Redis] = []
    deliveries: DeliveryLog
    if redis_url:
        commands, subscriber = shared_redis(redis_url)
        clients = [commands, subscriber]
        deliveries = RedisDeliveryLog(commands)
        hub = RevocationHub(RevokedSessions(), redis=commands, subscriber=subscriber)
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
    return Webhooks(endpoint, hub, store, clients)
