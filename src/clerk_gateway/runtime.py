"""Everything a running gateway holds, built once from settings and closed on shutdown.

Kept apart from the ASGI layer so that ``serve``, ``demo``, ``check`` and the tests assemble the
same objects the same way.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

import httpx

from clerk_gateway.adapters.base import EXCHANGER, MINTER, Adapter, AdapterServices
from clerk_gateway.adapters.registry import create_adapter
from clerk_gateway.auth.keys import build_key_provider
from clerk_gateway.auth.token_cache import VerifiedTokenCache
from clerk_gateway.auth.verifier import TokenVerifier, VerifierPolicy
from clerk_gateway.edge.cors import normalize_origin
from clerk_gateway.graphql import GraphQLLimitsGuard
from clerk_gateway.proxy.guards import RequestGuard
from clerk_gateway.proxy.http import BackendProxy, TracedBackendProxy
from clerk_gateway.proxy.upstream import UpstreamClient, create_upstream_client
from clerk_gateway.proxy.websocket import WebSocketLimits, WebSocketProxy
from clerk_gateway.proxy.ws_sessions import SocketRegistry
from clerk_gateway.ratelimit import (
    RateLimitGuard,
    build_rate_limit_guard,
    describe_rate_limits,
    failure_limit_off_hint,
)
from clerk_gateway.settings import Settings

log = logging.getLogger("clerk_gateway.runtime")


def _origin_check(origins: Sequence[str]) -> Callable[[str], bool]:
    """Whether a WebSocket upgrade's ``Origin`` is one of ours (CORS origins or authorized parties),
    compared in the form browsers send (:func:`normalize_origin`)."""
    allowed = set()
    for origin in origins:
        with contextlib.suppress(ValueError):
            allowed.add(normalize_origin(origin))

    def check(origin: str) -> bool:
        try:
            return normalize_origin(origin) in allowed
        except ValueError:
            return False

    return check


def _subscription_check(guard: GraphQLLimitsGuard) -> Callable[[str, bytes | None], str | None]:
    """The GraphQL limits of HTTP, for subscription documents on a WebSocket (the message, or None)."""

    def check(query: str, role: bytes | None) -> str | None:
        violation = guard.check_query(query, role=role)
        return violation.message if violation is not None else None

    return check


def _shared_redis(settings: Settings) -> Any:
    """The ``GATEWAY_REDIS_URL`` clients, opened once, when something shares state through them:
    the webhooks (delivery ids, revocations) or a backend's APQ store."""
    url = settings.gateway.redis_url.get_secret_value() if settings.gateway.redis_url else None
    uses_apq = any(getattr(getattr(backend, "documents", None), "mode", "off") == "apq"
                   for backend in settings.backends.values())
    if not url or not (uses_apq or settings.clerk.webhook_signing_secrets):
        return None
    from clerk_gateway.shared_redis import SharedRedis

    return SharedRedis.connect(url)


def _document_resolver(name: str, adapter: Adapter, settings: Settings, graphql_guard: GraphQLLimitsGuard | None,
                       shared: Any) -> Any:
    """A GraphQL backend's resolver (every mode cleans what goes upstream); None for the others."""
    documents = getattr(adapter.settings, "documents", None)
    if documents is None:
        return None
    from clerk_gateway.documents.apq_store import ApqStore
    from clerk_gateway.documents.resolver import DocumentResolver

    manifests = settings.manifests.get(name)
    if manifests is not None and graphql_guard is not None:
        for operation in manifests.by_id.values():
            violation = graphql_guard.check_query(operation.body, role=None)
            if violation is not None:
                log.warning("a manifest document breaks the GraphQL limits and will be refused", extra={
                    "backend": name, "operation_name": operation.name, "document_id": operation.id[:64],
                    "reason": violation.reason})
    apq = None
    if documents.mode == "apq":
        apq = ApqStore(max_entries=documents.apq_cache_size, redis=shared.commands if shared is not None else None,
                       key_prefix=f"clerk-gateway:apq:{name}:")
    return DocumentResolver(name, documents, manifests=manifests, apq=apq)


def build_adapter_services(needed: Set[str], settings: Settings, http: httpx.AsyncClient) -> AdapterServices:
    """The ``mint`` signer and the ``exchange`` client, each built only when an adapter says it
    needs it (:meth:`Adapter.services_needed`; the settings loader already refused a mint backend
    without a signing key file and an exchange backend without ``CLERK_SECRET_KEY``)."""
    minter = exchanger = None
    if MINTER in needed:
        from clerk_gateway.auth.minting import build_minter

        minter = build_minter(settings.gateway)
    if EXCHANGER in needed:
        from clerk_gateway.auth.exchange import ClerkTokenExchange

        assert settings.clerk.secret_key is not None
        exchanger = ClerkTokenExchange(http, settings.clerk.secret_key, api_url=settings.clerk.api_url)
    return AdapterServices(minter=minter, exchanger=exchanger)


@dataclass
class Runtime:
    settings: Settings
    http: httpx.AsyncClient
    keys: Any
    verifier: TokenVerifier
    adapters: dict[str, Adapter]
    proxies: dict[str, BackendProxy]
    upstreams: list[UpstreamClient] = field(default_factory=list)
    rate_limit: RateLimitGuard | None = None
    services: AdapterServices = field(default_factory=AdapterServices)
    socket_proxies: dict[str, WebSocketProxy] = field(default_factory=dict)
    websockets: SocketRegistry = field(default_factory=SocketRegistry)
    tracing: Any = None  # observability.tracing.Tracing when on; that module is imported only then
    webhooks: Any = None  # webhooks.setup.Webhooks when CLERK_WEBHOOK_SIGNING_SECRET is set
    closables: list[Any] = field(default_factory=list)  # clients with an ``aclose`` (the shared Redis)

    @classmethod
    def build(cls, settings: Settings, *, http: httpx.AsyncClient | None = None, tracing: Any = None) -> Runtime:
        """``tracing``: a ready :class:`~clerk_gateway.observability.tracing.Tracing` (tests with an
        in-memory exporter); otherwise one is built when the settings turn tracing on."""
        if tracing is None and settings.tracing is not None:
            from clerk_gateway.observability.tracing import build_tracing

            tracing = build_tracing(settings.tracing)
        client = http or httpx.AsyncClient(timeout=httpx.Timeout(5.0), trust_env=False,
                                           headers={"user-agent": "clerk-gateway"})
        keys = build_key_provider(settings.clerk, client, tracing=tracing)
        cache_size = settings.gateway.verified_token_cache_size
        token_cache = VerifiedTokenCache(cache_size) if cache_size else None
        verifier = TokenVerifier(keys, VerifierPolicy.from_clerk(settings.clerk), cache=token_cache, tracing=tracing)
        adapters: dict[str, Adapter] = {}
        proxies: dict[str, BackendProxy] = {}
        upstreams: list[UpstreamClient] = []
        guards: list[RequestGuard] = []
        rate_limit = build_rate_limit_guard(settings.rate_limit)
        if failure_limit_off_hint(settings.rate_limit) is not None:
            log.info("rate limits: %s", describe_rate_limits(settings.rate_limit))
        if rate_limit is not None:
            guards.append(rate_limit)  # first: a throttled client costs no GraphQL parse
        graphql_guard = GraphQLLimitsGuard(settings.graphql) if settings.graphql.limits_enabled else None
        if graphql_guard is not None:
            guards.append(graphql_guard)  # one guard: one parse cache for all backends
        for name, backend in settings.backends.items():
            adapters[name] = create_adapter(name, backend)
        services = build_adapter_services(
            {service for adapter in adapters.values() for service in adapter.services_needed()}, settings, client)
        websockets = SocketRegistry()
        shared = _shared_redis(settings)
        ws_limits = WebSocketLimits(
            init_timeout=settings.gateway.ws_init_timeout_seconds,
            max_message_bytes=settings.gateway.ws_max_message_bytes,
            max_subscriptions=settings.gateway.ws_max_subscriptions,
            clock_skew=settings.clerk.clock_skew_seconds)
        origin_allowed = _origin_check((*settings.gateway.cors_origins, *settings.clerk.authorized_parties))
        check_query = _subscription_check(graphql_guard) if graphql_guard is not None else None
        socket_proxies: dict[str, WebSocketProxy] = {}
        for name, backend in settings.backends.items():
            adapter = adapters[name]
            adapter.services = services
            socket_proxies[name] = WebSocketProxy(
                adapter, verifier, cookie_names=settings.clerk.session_cookie_names, origin_allowed=origin_allowed,
                limits=ws_limits, registry=websockets, check_query=check_query, tracing=tracing)
            upstream = create_upstream_client(settings.gateway.upstream_client, backend.max_connections)
            upstreams.append(upstream)
            resolver = _document_resolver(name, adapter, settings, graphql_guard, shared)
            socket_proxies[name].documents = resolver
            proxy_class = BackendProxy if tracing is None else TracedBackendProxy
            proxies[name] = proxy_class(
                adapter, upstream, verifier,
                cookie_names=settings.clerk.session_cookie_names,
                max_body_bytes=settings.gateway.max_body_bytes,
                access_log=settings.gateway.access_log, guards=guards,
                body_timeout=settings.gateway.client_body_timeout_seconds or None, tracing=tracing,
                documents=resolver,
            )
        webhooks = None
        if settings.clerk.webhook_signing_secrets:
            from clerk_gateway.webhooks.setup import build_webhooks

            webhooks = build_webhooks(settings, adapters, client, sockets=websockets, token_cache=token_cache,
                                      services=services, redis=shared)
            verifier.revocations = webhooks.revocations.revoked
        runtime = cls(settings, client, keys, verifier, adapters, proxies, upstreams, rate_limit, services,
                      socket_proxies, websockets, tracing, webhooks)
        runtime.closables = [shared] if shared is not None else []
        return runtime

    async def start(self) -> None:
        await self.keys.start()
        if self.webhooks is not None:
            await self.webhooks.start()

    async def aclose(self) -> None:
        await self.keys.aclose()
        if self.webhooks is not None:
            await self.webhooks.aclose()
        for service in (self.services.minter, self.services.exchanger):
            close = getattr(service, "aclose", None)
            if close is not None:
                await close()
        for adapter in self.adapters.values():
            await adapter.aclose()
        for upstream in self.upstreams:
            await upstream.aclose()
        if self.rate_limit is not None:
            await self.rate_limit.aclose()
        await self.http.aclose()
        for closable in self.closables:
            with contextlib.suppress(Exception):
                await closable.aclose()
        if self.tracing is not None:
            await self.tracing.shutdown()  # last: the spans of everything closed above are flushed too
