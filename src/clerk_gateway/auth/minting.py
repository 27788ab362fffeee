"""``mint`` mode: short-lived tokens signed by the gateway's own key, cached per identity.

The backend (Hasura, Nhost) verifies them against the gateway's ``/.well-known/jwks.json``, so no
shared admin secret travels with every request and no Clerk JWT template is needed. Signing costs
far more than the rest of a request (an RSA signature is about a millisecond), so each identity's
token is signed once and reused until shortly before it expires: at the default 60 s lifetime a
user's requests pay for one signature every ~50 s. The cache is keyed by the adapter's identity
(audience, subject and the derived claims), so a change of role or organization gets a new token
at once, and a minted token never outlives the Clerk token it came from (``not_after``).
"""

from __future__ import annotations

import base64
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import orjson

from clerk_gateway.settings.gateway import GatewaySettings

from .signing_keys import SigningKey, SigningKeyError, load_signing_keys

__all__ = ["JWKS_PATH", "GatewayMinter", "build_minter", "prepare_signing_keys", "signing_key_paths"]

JWKS_PATH = "/.well-known/jwks.json"
_CACHE_SIZE = 10_000


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


class GatewayMinter:
    """Signs with the first key, publishes all of them; see :mod:`clerk_gateway.auth.signing_keys`."""

    def __init__(self, keys: list[SigningKey], *, issuer: str, jwks_max_age: int = 300,
                 clock: Callable[[], float] = time.time, cache_size: int = _CACHE_SIZE) -> None:
        if not keys:
            raise ValueError("at least one signing key is needed")
        self.keys = keys
        self.issuer = issuer
        self._signer = keys[0]
        self._header = _b64url(orjson.dumps({"alg": self._signer.alg, "kid": self._signer.kid, "typ": "JWT"}))
        self._clock = clock
        self._cache: OrderedDict[Hashable, tuple[str, float]] = OrderedDict()
        self._cache_size = cache_size
        self.jwks_body = orjson.dumps({"keys": [key.public_jwk for key in keys]})
        # Backends cache the JWKS for this long: it is also how long to wait between two rotation steps.
        self.jwks_cache_control = f"public, max-age={jwks_max_age}".encode()

    @property
    def signing_kid(self) -> str:
        return self._signer.kid

    async def token_for(self, *, cache_key: Hashable, audience: str, subject: str, claims: Mapping[str, Any],
                        lifetime_seconds: float, not_after: float | None = None) -> str:
        now = self._clock()
        cached = self._cache.get(cache_key)
        if cached is not None and now < cached[1]:
            return cached[0]
        expires = int(now + lifetime_seconds)
        if not_after is not None:
            expires = min(expires, int(not_after))
        token = self.sign({"iss": self.issuer, "aud": audience, "sub": subject, "iat": int(now), "exp": expires,
                           **claims})
        # Reuse until shortly before exp, so the backend never receives a token about to expire.
        margin = min(10.0, (expires - now) * 0.2)
        self._cache[cache_key] = (token, expires - margin)
        self._cache.move_to_end(cache_key)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return token

    def sign(self, payload: Mapping[str, Any]) -> str:
        signing_input = self._header + b"." + _b64url(orjson.dumps(dict(payload)))
        return (signing_input + b"." + _b64url(self._signer.sign(signing_input))).decode("ascii")

    async def aclose(self) -> None:
        self._cache.clear()


def signing_key_paths(gateway: GatewaySettings) -> list[str]:
    """``GATEWAY_SIGNING_KEY_FILES`` when set (the first signs), else ``GATEWAY_SIGNING_KEY_FILE``."""
    if gateway.signing_key_files:
        return list(gateway.signing_key_files)
    return [gateway.signing_key_file] if gateway.signing_key_file else []


def build_minter(gateway: GatewaySettings) -> GatewayMinter:
    """The minter for the configured key files (created when missing); raises :class:`SigningKeyError`."""
    return GatewayMinter(load_signing_keys(signing_key_paths(gateway)), issuer=gateway.issuer,
                       jwks_max_age=gateway.jwks_max_age_seconds)


def prepare_signing_keys(gateway: GatewaySettings) -> str | None:
    """Load (and create) the key files once before ``serve`` starts its workers: a bad file stops
    start-up with one line, and the workers all find the file already there. Returns the problem."""
    try:
        load_signing_keys(signing_key_paths(gateway))
    except SigningKeyError as exc:
        variable = "GATEWAY_SIGNING_KEY_FILES" if gateway.signing_key_files else "GATEWAY_SIGNING_KEY_FILE"
        return f"{variable}: {exc}"
    return None
