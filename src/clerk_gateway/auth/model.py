"""Value types shared by the key cache, the verifier and the adapters.

They live apart from the code that produces them so that adapters can depend on what a verified
token *is* without importing how it was verified.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class TokenKind(StrEnum):
    """Clerk's token classes that a backend may accept (see the contract's "Token kinds")."""

    SESSION = "session"
    TEMPLATE = "template"


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One public key that passed the load-time policy, bound to the single algorithm it verifies.

    ``key`` is a python-jose key object built with ``jose.jwk.construct(jwk, algorithm)`` so the
    algorithm comes from the key, never from the token.
    """

    kid: str | None
    algorithm: str
    key: Any = field(repr=False)
    source: str = "jwks"


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A token that passed every check, with what the adapters need to build an identity."""

    token: str = field(repr=False)
    header: Mapping[str, Any] = field(repr=False)
    claims: Mapping[str, Any] = field(repr=False)
    kind: TokenKind
    subject: str
    expires_at: float
    session_id: str | None = None


class KeyProvider(Protocol):
    """What the verifier needs from a key source (the JWKS cache or a static PEM key)."""

    async def key_for(self, kid: str | None) -> VerificationKey:
        """Return the key for ``kid``.

        Raises :class:`clerk_gateway.errors.AuthenticationError` (reason ``unknown-kid``) when no
        usable key has that id, and :class:`clerk_gateway.errors.ServiceUnavailableError` (reason
        ``keys-unavailable``) when no key set was ever loaded.
        """
        ...
