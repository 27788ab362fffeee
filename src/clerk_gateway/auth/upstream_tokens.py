"""The two ways the gateway obtains a token for the upstream on a user's behalf.

* ``mint``: the gateway signs a short-lived JWT with its own key (:mod:`clerk_gateway.auth.minting`),
  carrying the claims the adapter derived from the verified Clerk token. The backend trusts the
  gateway's JWKS (``/.well-known/jwks.json``), not a shared secret.
* ``exchange``: the gateway asks Clerk's Backend API for the session's JWT-template token
  (:mod:`clerk_gateway.auth.exchange`), so the backend sees a token Clerk itself signed.

Both hold state (a signing key, a cache of tokens per identity or session) that every backend
shares, so the runtime builds them once and hands them to the adapters as
:class:`~clerk_gateway.adapters.base.AdapterServices`; an adapter never signs, reads key files or
calls Clerk itself. These protocols are the seam: tests hand adapters small fakes.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, Protocol

__all__ = ["TokenExchanger", "TokenMinter"]


class TokenMinter(Protocol):
    """Signs tokens with the gateway's own key (``mint`` mode)."""

    async def token_for(self, *, cache_key: Hashable, audience: str, subject: str, claims: Mapping[str, Any],
                        lifetime_seconds: float, not_after: float | None = None) -> str:
        """A signed JWT with ``iss``, ``aud``, ``sub``, ``iat``, ``exp`` and ``claims``.

        ``cache_key`` stands for (audience, subject, claims) — the caller has a cheap hashable
        form of them (its identity object), which spares serialising the claims on every request;
        the same key gets the same cached token until shortly before it expires. ``not_after``
        (the verified Clerk token's ``exp``) caps the minted token's life, so a minted token never
        outlives the Clerk token it was derived from.
        """
        ...


class TokenExchanger(Protocol):
    """Fetches the session's JWT-template token from Clerk's Backend API (``exchange`` mode)."""

    async def token_for(self, session_id: str, template: str) -> str:
        """The template token for ``session_id``, cached per (session, template) until shortly
        before it expires; concurrent misses share one call to Clerk.

        Raises :class:`~clerk_gateway.errors.AuthenticationError` (401 ``invalid-jwt``) when Clerk
        does not know the session or it has ended, and
        :class:`~clerk_gateway.errors.UpstreamUnavailableError` (502) when Clerk is unreachable or
        failing; nothing reaches the backend in either case.
        """
        ...

    def forget_session(self, session_id: str) -> None:
        """Drop the session's cached tokens, so the next call asks Clerk again: a renewed socket
        needs a token that outlives the one its old upstream connection carried, and a session
        revoked elsewhere (a webhook) must not be served from the cache."""
        ...
