"""The strict verifier: a Clerk token in, a :class:`VerifiedToken` or a :class:`GatewayError` out.

python-jose only ever sees a token that already passed our own parser (:mod:`.jws_parsing`), a
key bound to one algorithm by the key loader, and ``algorithms=[that algorithm]``. Everything
Clerk-specific that python-jose does not know (``iat`` in the future, ``azp``, ``sts``, ``cat``
versus ``sid``) is checked here, in the order of REFERENCE.md §5.3 and §1.9: structure, key,
signature, and only then claims — so an unsigned token cannot probe the claim rules.

Each step is one small function shared by :meth:`TokenVerifier.verify` (stop at the first
failure) and :meth:`TokenVerifier.explain` (record every step for ``clerk-gateway inspect``), so
the explanation can never drift from what the gateway actually enforces.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from jose import jws as jose_jws

from clerk_gateway.auth.jws_parsing import DEFAULT_MAX_TOKEN_BYTES, ParsedJws, ParsedJwt, parse_jwt
from clerk_gateway.auth.model import KeyProvider, TokenKind, VerificationKey, VerifiedToken
from clerk_gateway.errors import AuthenticationError, ForbiddenError, GatewayError, ServiceUnavailableError

if TYPE_CHECKING:
    from clerk_gateway.auth.token_cache import VerifiedTokenCache
    from clerk_gateway.observability.tracing import Tracing
    from clerk_gateway.settings.clerk import ClerkConfig

__all__ = [
    "CATEGORY_IGNORE",
    "CATEGORY_SESSION",
    "CATEGORY_TEMPLATE",
    "Check",
    "TokenVerifier",
    "VerifierPolicy",
    "check_algorithm",
    "check_signature",
    "token_kind",
    "verify_signature",
]

log = logging.getLogger(__name__)

#: Clerk's header ``cat`` values (REFERENCE.md §1.2).
CATEGORY_SESSION = "cl_B7d4PD111AAA"
CATEGORY_TEMPLATE = "cl_B7d4PD222AAA"
CATEGORY_IGNORE = "cl_I7d4PD111III"

#: NumericDate values must be exactly representable as JSON numbers in every consumer.
_MAX_NUMERIC_DATE = 2**53


@dataclass(frozen=True, slots=True)
class Check:
    """One step of ``clerk-gateway inspect``: its name, whether it passed, and why."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class VerifierPolicy:
    """What a token must satisfy beyond its signature; built once from the settings."""

    issuer: str
    authorized_parties: frozenset[str] = frozenset()
    clock_skew_seconds: float = 5.0
    reject_pending: bool = True
    max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES
    max_lifetime_seconds: float | None = None
    #: When non-empty, ``aud`` must be (or contain) one of these. Clerk session tokens carry no
    #: ``aud``, so the Clerk policy leaves it empty and ``aud`` is not looked at.
    audiences: frozenset[str] = frozenset()

    @classmethod
    def from_clerk(cls, clerk: ClerkConfig) -> VerifierPolicy:
        return cls(
            issuer=clerk.issuer,
            authorized_parties=frozenset(clerk.authorized_parties),
            clock_skew_seconds=clerk.clock_skew_seconds,
            reject_pending=clerk.reject_pending,
        )


# -- signature stage (also the seam the Wycheproof tests use) -----------------------------------


def check_algorithm(parsed: ParsedJws, key: VerificationKey) -> str:
    """The algorithm comes from the key; the header may only agree with it."""
    if parsed.algorithm != key.algorithm:
        raise AuthenticationError("algorithm-mismatch",
                                  "the token algorithm does not match the algorithm of its key")
    return f"{parsed.algorithm} matches the key"


def check_signature(parsed: ParsedJws, key: VerificationKey) -> str:
    try:
        jose_jws.verify(parsed.token, key.key, algorithms=[key.algorithm])
    except Exception:  # JOSEError, ValueError, TypeError, OverflowError, cryptography's own errors
        raise AuthenticationError("invalid-signature", "the token signature is not valid") from None
    return f"valid {key.algorithm} signature"


def verify_signature(parsed: ParsedJws, key: VerificationKey) -> None:
    """Algorithm agreement plus the signature itself: everything that needs the key."""
    check_algorithm(parsed, key)
    check_signature(parsed, key)


# -- claim stage ----------------------------------------------------------------------------------


def _invalid(message: str) -> AuthenticationError:
    return AuthenticationError("invalid-claims", message)


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    if name not in claims:
        return None
    value = claims[name]
    # bool is an int in Python; NaN and infinities fail the range comparison.
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < _MAX_NUMERIC_DATE:
        raise _invalid(f"the '{name}' claim is not a valid timestamp")
    return value


def _expiry(claims: Mapping[str, Any]) -> float:
    exp = _numeric_date(claims, "exp")
    if exp is None:
        raise _invalid("the token has no 'exp' claim")
    return exp


def _optional_string(claims: Mapping[str, Any], name: str, *, non_empty: bool = False) -> None:
    if name in claims:
        value = claims[name]
        if not isinstance(value, str) or (non_empty and not value):
            raise _invalid(f"the '{name}' claim is not a{' non-empty' if non_empty else ''} string")


def check_claim_types(claims: Mapping[str, Any]) -> str:
    _expiry(claims)
    _numeric_date(claims, "nbf")
    _numeric_date(claims, "iat")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise _invalid("the token has no subject ('sub')")
    _optional_string(claims, "iss")
    _optional_string(claims, "sid", non_empty=True)
    _optional_string(claims, "azp")
    _optional_string(claims, "sts")
    return "exp, nbf, iat, sub, iss, sid, azp and sts are well-formed"


def token_kind(header: Mapping[str, Any], claims: Mapping[str, Any]) -> TokenKind:
    """Session or JWT-template token, from the header ``cat`` and the presence of ``sid``."""
    has_sid = "sid" in claims
    if "cat" not in header:
        return TokenKind.SESSION if has_sid else TokenKind.TEMPLATE
    cat = header["cat"]
    if cat == CATEGORY_IGNORE:
        return TokenKind.SESSION if has_sid else TokenKind.TEMPLATE
    if cat == CATEGORY_SESSION:
        if not has_sid:
            raise AuthenticationError("token-category-mismatch",
                                      "the token claims to be a session token but carries no session id")
        return TokenKind.SESSION
    if cat == CATEGORY_TEMPLATE:
        return TokenKind.TEMPLATE
    raise AuthenticationError("token-category-unknown", "the token category ('cat') is not accepted")


class ClaimRules:
    """The policy's claim checks, each usable on its own (for ``explain``) or in sequence."""

    def __init__(self, policy: VerifierPolicy) -> None:
        self.policy = policy
        checks: list[tuple[str, Callable[[ParsedJwt, float], str]]] = [
            ("claim types", lambda parsed, _now: check_claim_types(parsed.claims)),
            ("validity period", self.check_times),
            ("issuer", self.check_issuer),
        ]
        if policy.audiences:
            checks.append(("audience", self.check_audience))
        checks += [
            ("authorized party", self.check_authorized_party),
            ("session status", self.check_session_status),
            ("token kind", self.check_kind),
        ]
        self.checks = tuple(checks)

    def check_times(self, parsed: ParsedJwt, now: float) -> str:
        claims, skew = parsed.claims, self.policy.clock_skew_seconds
        exp = _expiry(claims)
        if exp <= now - skew:
            raise AuthenticationError("token-expired", "the token has expired")
        nbf = _numeric_date(claims, "nbf")
        if nbf is not None and nbf > now + skew:
            raise AuthenticationError("token-not-active-yet", "the token is not valid yet ('nbf')")
        iat = _numeric_date(claims, "iat")
        if iat is not None and iat > now + skew:
            raise AuthenticationError("token-iat-in-the-future", "the token was issued in the future ('iat')")
        limit = self.policy.max_lifetime_seconds
        if limit is not None and exp - (now if iat is None else iat) > limit:
            raise AuthenticationError("token-lifetime-too-long",
                                      f"the token lifetime exceeds {limit:g} seconds")
        return f"valid for another {exp - now:.0f} s (clock skew allowed: {skew:g} s)"

    def check_issuer(self, parsed: ParsedJwt, _now: float) -> str:
        iss = parsed.claims.get("iss")
        if iss is None:
            raise AuthenticationError("issuer-mismatch", "the token has no issuer ('iss')")
        if iss != self.policy.issuer:
            raise AuthenticationError("issuer-mismatch", "the token was issued by another issuer")
        return f"'{iss}' is the expected issuer"

    def check_audience(self, parsed: ParsedJwt, _now: float) -> str:
        aud = parsed.claims.get("aud")
        values = aud if isinstance(aud, list) else [aud]
        if not any(isinstance(value, str) and value in self.policy.audiences for value in values):
            raise AuthenticationError("audience-mismatch", "the token is not meant for this audience ('aud')")
        return "an accepted audience"

    def check_authorized_party(self, parsed: ParsedJwt, _now: float) -> str:
        parties = self.policy.authorized_parties
        if not parties:
            return "not checked (no authorized parties configured)"
        azp = parsed.claims.get("azp")
        if azp is None:
            raise ForbiddenError("azp-missing", "the token names no authorized party ('azp')")
        if not isinstance(azp, str) or azp not in parties:  # a non-string azp is never an allowed origin
            raise ForbiddenError("azp-not-authorized", "the token's authorized party ('azp') is not allowed")
        return f"'{azp}' is authorized"

    def check_session_status(self, parsed: ParsedJwt, _now: float) -> str:
        if self.policy.reject_pending and parsed.claims.get("sts") == "pending":
            raise ForbiddenError("session-pending", "the session is pending (sts) and may not be used yet")
        return "not pending" if self.policy.reject_pending else "not checked (pending sessions allowed)"

    def check_kind(self, parsed: ParsedJwt, _now: float) -> str:
        return f"{token_kind(parsed.header, parsed.claims).value} token"


# -- the verifier ---------------------------------------------------------------------------------


class TokenVerifier:
    """Verifies tokens against a key provider and a policy, with an optional verified-token cache."""

    def __init__(self, keys: KeyProvider, policy: VerifierPolicy, *, cache: VerifiedTokenCache | None = None,
                 clock: Callable[[], float] = time.time, tracing: Tracing | None = None,
                 revocations: RevocationCheck | None = None) -> None:
        self._keys = keys
        self._tracing = tracing
        #: Sessions ended since their tokens were issued (Clerk webhooks); checked on every token.
        self.revocations = revocations
        self.policy = policy
        self._cache = cache
        self._clock = clock
        self._rules = ClaimRules(policy)

    async def verify(self, token: str) -> VerifiedToken:
        """Return the verified token or raise a :class:`GatewayError` (never anything else)."""
        now = self._clock()
        cache = self._cache
        if cache is not None:
            hit = cache.get(token, now)
            if hit is not None:
                if self._tracing is not None:
                    self._tracing.cached_verification(hit)
                if self.revocations is not None and self.revocations.is_revoked(hit):
                    raise _session_revoked()
                return hit
        if self._tracing is not None:
            verified = await self._tracing.verification(self._verify_fresh(token, now), cache_on=cache is not None)
        else:
            verified = await self._verify_fresh(token, now)
        if self.revocations is not None and self.revocations.is_revoked(verified):
            raise _session_revoked()
        return verified

    async def _verify_fresh(self, token: str, now: float) -> VerifiedToken:
        parsed = self._parse(token)
        key = await self._key_for(parsed.jws)
        verify_signature(parsed.jws, key)
        for _name, check in self._rules.checks:
            check(parsed, now)
        claims = parsed.claims
        verified = VerifiedToken(
            token=token,
            header=parsed.header,
            claims=claims,
            kind=token_kind(parsed.header, claims),
            subject=claims["sub"],
            expires_at=claims["exp"],
            session_id=claims.get("sid"),
        )
        if self._cache is not None:
            self._cache.put(token, verified, now=now)
        return verified

    async def explain(self, token: str) -> list[Check]:
        """Walk the same steps as :meth:`verify`, recording each; never consults the cache."""
        now = self._clock()
        try:
            parsed = self._parse(token)
        except GatewayError as exc:
            return [Check("token format", False, exc.message)]
        checks = [Check("token format", True,
                        f"signed JWT, alg {parsed.jws.algorithm}, kid {parsed.jws.kid or '(none)'}")]
        key: VerificationKey | None = None
        try:
            key = await self._key_for(parsed.jws)
        except GatewayError as exc:
            checks.append(Check("signing key", False, exc.message))
        else:
            checks.append(Check("signing key", True, f"{key.algorithm} key from {key.source}"))
        for name, key_step in (("algorithm", check_algorithm), ("signature", check_signature)):
            if key is None:
                checks.append(Check(name, False, "not checked: no signing key"))
            else:
                checks.append(_record(name, partial(key_step, parsed.jws, key)))
        checks.extend(_record(name, partial(claim_step, parsed, now)) for name, claim_step in self._rules.checks)
        return checks

    def _parse(self, token: str) -> ParsedJwt:
        return parse_jwt(token, max_token_bytes=self.policy.max_token_bytes)

    async def _key_for(self, parsed: ParsedJws) -> VerificationKey:
        try:
            return await self._keys.key_for(parsed.kid)
        except AuthenticationError as exc:
            if parsed.kid is None and exc.reason == "unknown-kid":
                raise AuthenticationError("missing-kid", "the token names no key id ('kid') and the issuer "
                                          "publishes more than one key") from None
            raise
        except GatewayError:
            raise
        except Exception:  # a key provider bug must not turn into an unhandled 500 with a traceback
            log.exception("key provider failed")
            raise ServiceUnavailableError("keys-unavailable", "verification keys are unavailable") from None


class RevocationCheck(Protocol):
    def is_revoked(self, token: VerifiedToken) -> bool: ...


def _session_revoked() -> AuthenticationError:
    return AuthenticationError("session-revoked", "the session of this token has ended (signed out or revoked)")


def _record(name: str, run: Callable[[], str]) -> Check:
    try:
        return Check(name, True, run())
    except GatewayError as exc:
        return Check(name, False, exc.message)
