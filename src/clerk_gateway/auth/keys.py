"""Where verification keys come from: a cached JWKS (:mod:`.jwks_cache`), a static PEM key, or a
JWKS with the Backend API's JWKS as a fallback, chosen from the settings by :func:`build_key_provider`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from clerk_gateway.auth.jwk import UnusableKeyError, load_pem
from clerk_gateway.auth.jwks_cache import (
    JwksCache,
    KeySetStatus,
    ManagedKeyProvider,
)
from clerk_gateway.auth.model import VerificationKey
from clerk_gateway.errors import AuthenticationError, ServiceUnavailableError
from clerk_gateway.observability.metrics import JWKS_KEYS
from clerk_gateway.settings.clerk import ClerkConfig

if TYPE_CHECKING:
    from clerk_gateway.observability.tracing import Tracing

__all__ = [
    "FallbackKeyProvider",
    "JwksCache",
    "KeySetStatus",
    "ManagedKeyProvider",
    "StaticKeyProvider",
    "build_key_provider",
]

class StaticKeyProvider:
    """``CLERK_JWT_KEY``: one PEM public key, used for every token whatever its ``kid``; never fetches."""

    def __init__(self, pem: str, *, source: str = "pem") -> None:
        try:
            self._key = load_pem(pem, source=source)
        except UnusableKeyError as exc:
            raise UnusableKeyError(exc.reason, f"CLERK_JWT_KEY is not usable: {exc}") from exc
        self._source = source
        JWKS_KEYS.labels(source).set(1)

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def key_for(self, kid: str | None) -> VerificationKey:
        return self._key

    def status(self) -> KeySetStatus:
        return KeySetStatus(source=self._source, loaded=True, stale=False, key_count=1,
                            age_seconds=None, last_error=None)


class FallbackKeyProvider:
    """The Frontend API JWKS first, the Backend API JWKS when it does not know the ``kid`` or is down.

    Both hold the same instance's keys; the second source (authenticated with the secret key and not
    rate-limited) keeps the gateway verifying when the first is unreachable or lags a rotation.
    ``status()`` is a list: primary then secondary.
    """

    def __init__(self, primary: ManagedKeyProvider, secondary: ManagedKeyProvider) -> None:
        self._primary = primary
        self._secondary = secondary

    async def start(self) -> None:
        await self._primary.start()
        await self._secondary.start()

    async def aclose(self) -> None:
        await self._primary.aclose()
        await self._secondary.aclose()

    async def key_for(self, kid: str | None) -> VerificationKey:
        try:
            return await self._primary.key_for(kid)
        except (AuthenticationError, ServiceUnavailableError) as first:
            try:
                return await self._secondary.key_for(kid)
            except ServiceUnavailableError:
                raise first from None  # unknown-kid from a loaded primary beats "unavailable"

    def status(self) -> list[KeySetStatus]:
        statuses: list[KeySetStatus] = []
        for provider in (self._primary, self._secondary):
            status = provider.status()
            statuses.extend(status if isinstance(status, list) else [status])
        return statuses


def build_key_provider(clerk: ClerkConfig, client: httpx.AsyncClient, *,
                       tracing: Tracing | None = None) -> ManagedKeyProvider:
    """The key provider the settings call for: the PEM key, else the JWKS (with the Backend API fallback).

    Raises :class:`UnusableKeyError` for an unusable ``CLERK_JWT_KEY`` and ``ValueError`` when the
    configuration names no key source (settings validation prevents both).
    """
    if clerk.jwt_key_pem:
        return StaticKeyProvider(clerk.jwt_key_pem)
    frontend: JwksCache | None = None
    backend: JwksCache | None = None
    if clerk.jwks_url:
        frontend = JwksCache(clerk.jwks_url, client, source="jwks",
                             cooldown_seconds=clerk.jwks_cooldown_seconds,
                             max_stale_seconds=clerk.jwks_max_stale_seconds, tracing=tracing)
    if clerk.backend_api_jwks_url and clerk.secret_key:
        backend = JwksCache(clerk.backend_api_jwks_url, client, source="backend-api",
                            headers={"authorization": f"Bearer {clerk.secret_key}"},
                            cooldown_seconds=clerk.jwks_cooldown_seconds,
                            max_stale_seconds=clerk.jwks_max_stale_seconds, tracing=tracing)
    if frontend is not None and backend is not None:
        return FallbackKeyProvider(frontend, backend)
    if frontend is not None:
        return frontend
    if backend is not None:
        return backend
    raise ValueError("no key source configured: set CLERK_JWT_KEY, a JWKS URL or CLERK_SECRET_KEY")
