"""Turning published key material (JWK, JWKS, PEM) into :class:`VerificationKey` objects.

This is the load-time half of the verification policy (REFERENCE.md §5.3 step 4): everything that
can be decided about a key *before* any token arrives is decided here, once, so the verifier can
trust that every key it is handed is public, meant for signatures, strong enough and bound to the
single algorithm it may verify.

python-jose ignores ``alg``, ``use`` and ``key_ops`` in a JWK and raises bare ``ValueError``s on
malformed material, so the checks are made with ``cryptography`` first and ``jose.jwk.construct``
only ever sees a sanitised public JWK together with the algorithm the *key* implies.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwk as jose_jwk

from clerk_gateway.auth.model import VerificationKey

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "JwksDocumentError",
    "LoadedKeySet",
    "UnusableKeyError",
    "load_jwk",
    "load_jwks",
    "load_pem",
]

SUPPORTED_ALGORITHMS: frozenset[str] = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"})

MIN_RSA_BITS = 2048
# The largest modulus we are prepared to spend CPU on: bigger keys make every verification slow
# and no issuer publishes them.
MAX_RSA_BITS = 8192

_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512"})
# JWK crv -> (curve, the only algorithm it verifies, coordinate length in bytes)
_CURVES: dict[str, tuple[ec.EllipticCurve, str, int]] = {
    "P-256": (ec.SECP256R1(), "ES256", 32),
    "P-384": (ec.SECP384R1(), "ES384", 48),
    "P-521": (ec.SECP521R1(), "ES512", 66),
}
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_B64URL = re.compile(r"[A-Za-z0-9_-]+")

# Small primes for the ROCA fingerprint (CVE-2017-15361): moduli made by the vulnerable Infineon
# library are congruent to a power of 65537 modulo every one of them.
_ROCA_PRIMES = (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
                97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167)


def _powers_of_65537(prime: int) -> frozenset[int]:
    powers, value = set(), 1
    while value not in powers:
        powers.add(value)
        value = value * 65537 % prime
    return frozenset(powers)


_ROCA_SUBGROUPS = tuple((prime, _powers_of_65537(prime)) for prime in _ROCA_PRIMES)


class UnusableKeyError(ValueError):
    """A key that the policy refuses; ``reason`` is machine-readable and safe to log (no key material)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class JwksDocumentError(ValueError):
    """The whole key set document is refused (not a JWKS, or too many keys)."""


@dataclass(frozen=True)
class LoadedKeySet:
    """The usable keys of one JWKS document by ``kid``, and what was skipped as ``(kid, reason)``."""

    keys: dict[str | None, VerificationKey] = field(default_factory=dict)
    skipped: list[tuple[str | None, str]] = field(default_factory=list)


# -- helpers -------------------------------------------------------------------------------------


def _b64_int(value: object, member: str) -> tuple[int, int]:
    """Decode a base64url JWK member to ``(integer, byte length)``; strict alphabet, padding tolerated."""
    if not isinstance(value, str):
        raise UnusableKeyError("invalid-key", f"JWK member '{member}' must be a base64url string")
    text = value.rstrip("=")
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise UnusableKeyError("invalid-key", f"JWK member '{member}' is not valid base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise UnusableKeyError("invalid-key", f"JWK member '{member}' is not valid base64url") from exc
    return int.from_bytes(raw, "big"), len(raw)


def _is_roca_modulus(modulus: int) -> bool:
    return all(modulus % prime in subgroup for prime, subgroup in _ROCA_SUBGROUPS)


def _check_usage(jwk: Mapping[str, Any]) -> None:
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise UnusableKeyError("not-for-signatures", "key is published for a use other than signatures")
    if "key_ops" in jwk:
        ops = jwk["key_ops"]
        if not isinstance(ops, list) or not all(isinstance(op, str) for op in ops):
            raise UnusableKeyError("invalid-key", "JWK member 'key_ops' must be a list of strings")
        if "verify" not in ops:
            raise UnusableKeyError("not-for-signatures", "key_ops does not allow 'verify'")


def _declared_alg(jwk: Mapping[str, Any]) -> str | None:
    alg = jwk.get("alg")
    if alg is None:
        return None
    if not isinstance(alg, str):
        raise UnusableKeyError("invalid-key", "JWK member 'alg' must be a string")
    if alg not in SUPPORTED_ALGORITHMS:
        raise UnusableKeyError("unsupported-algorithm", f"key algorithm '{alg}' is not supported")
    return alg


def _rsa_key(jwk: Mapping[str, Any]) -> tuple[dict[str, str], str]:
    declared = _declared_alg(jwk)
    if declared is not None and declared not in _RSA_ALGORITHMS:
        raise UnusableKeyError("alg-mismatch", f"key algorithm '{declared}' does not fit an RSA key")
    modulus, _ = _b64_int(jwk.get("n"), "n")
    exponent, _ = _b64_int(jwk.get("e"), "e")
    bits = modulus.bit_length()
    if bits < MIN_RSA_BITS:
        raise UnusableKeyError("rsa-too-small", f"RSA modulus of {bits} bits is below {MIN_RSA_BITS}")
    if bits > MAX_RSA_BITS:
        raise UnusableKeyError("rsa-too-large", f"RSA modulus of {bits} bits is above {MAX_RSA_BITS}")
    if exponent < 3 or exponent % 2 == 0 or exponent >= modulus:
        raise UnusableKeyError("invalid-key", "RSA public exponent must be odd and at least 3")
    if modulus % 2 == 0:
        raise UnusableKeyError("invalid-key", "RSA modulus must be odd")
    if _is_roca_modulus(modulus):
        raise UnusableKeyError("rsa-roca", "RSA key has the ROCA fingerprint (CVE-2017-15361)")
    rsa.RSAPublicNumbers(exponent, modulus).public_key()  # cryptography's own sanity checks
    return {"kty": "RSA", "n": jwk["n"], "e": jwk["e"]}, declared or "RS256"


def _ec_key(jwk: Mapping[str, Any]) -> tuple[dict[str, str], str]:
    declared = _declared_alg(jwk)
    crv = jwk.get("crv")
    if not isinstance(crv, str) or crv not in _CURVES:
        raise UnusableKeyError("unsupported-key-type", "EC key on an unsupported curve")
    curve, algorithm, size = _CURVES[crv]
    if declared is not None and declared != algorithm:
        raise UnusableKeyError("alg-mismatch", f"key algorithm '{declared}' does not fit curve {crv}")
    x, x_len = _b64_int(jwk.get("x"), "x")
    y, y_len = _b64_int(jwk.get("y"), "y")
    if x_len != size or y_len != size:
        raise UnusableKeyError("invalid-key", f"EC coordinates must be {size} bytes on {crv}")
    try:
        ec.EllipticCurvePublicNumbers(x, y, curve).public_key()  # rejects points off the curve
    except ValueError as exc:
        raise UnusableKeyError("invalid-key", f"EC point is not on curve {crv}") from exc
    return {"kty": "EC", "crv": crv, "x": jwk["x"], "y": jwk["y"]}, algorithm


def _kid_of(jwk: Mapping[str, Any]) -> str | None:
    kid = jwk.get("kid")
    return kid if isinstance(kid, str) else None


# -- public API ----------------------------------------------------------------------------------


def load_jwk(jwk: Mapping[str, Any], *, source: str) -> VerificationKey:
    """Apply the load policy to one JWK and bind it to the one algorithm it implies.

    Raises :class:`UnusableKeyError`; no exception from python-jose or cryptography escapes.
    """
    if not isinstance(jwk, Mapping):
        raise UnusableKeyError("invalid-key", "a JWK must be a JSON object")
    kty = jwk.get("kty")
    if kty == "oct":
        raise UnusableKeyError("symmetric-key", "symmetric keys are never accepted from a key set")
    if kty not in ("RSA", "EC"):
        raise UnusableKeyError("unsupported-key-type", "key type is not supported (RSA and EC only)")
    if _PRIVATE_MEMBERS.intersection(jwk):
        raise UnusableKeyError("private-key-material", "a public key set must not hold private key material")
    _check_usage(jwk)
    try:
        public, algorithm = _rsa_key(jwk) if kty == "RSA" else _ec_key(jwk)
        key = jose_jwk.construct(public, algorithm)
    except UnusableKeyError:
        raise
    except Exception as exc:  # jose raises JWKError or bare ValueError/TypeError on bad material
        raise UnusableKeyError("invalid-key", f"key material is invalid ({type(exc).__name__})") from exc
    return VerificationKey(kid=_kid_of(jwk), algorithm=algorithm, key=key, source=source)


def load_jwks(document: object, *, source: str, max_keys: int = 32) -> LoadedKeySet:
    """Load every usable key of a JWKS document; unusable keys are reported, not fatal.

    Keys need a string ``kid`` unless the set holds exactly one key; a ``kid`` published twice is
    ambiguous, so neither copy is used.
    """
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise JwksDocumentError("not a JWKS document (an object with a 'keys' list)")
    entries: list[Any] = document["keys"]
    if len(entries) > max_keys:
        raise JwksDocumentError(f"key set holds {len(entries)} keys, more than the limit of {max_keys}")

    skipped: list[tuple[str | None, str]] = []
    kid_counts: dict[str, int] = {}
    for entry in entries:
        if isinstance(entry, Mapping) and isinstance(entry.get("kid"), str):
            kid_counts[entry["kid"]] = kid_counts.get(entry["kid"], 0) + 1

    keys: dict[str | None, VerificationKey] = {}
    for entry in entries:
        if not isinstance(entry, Mapping):
            skipped.append((None, "invalid-key"))
            continue
        raw_kid = entry.get("kid")
        kid: str | None
        if isinstance(raw_kid, str) and raw_kid:
            kid = raw_kid
        elif raw_kid is None and len(entries) == 1:
            kid = None
        else:
            skipped.append((None, "missing-kid" if raw_kid is None else "invalid-kid"))
            continue
        if kid is not None and kid_counts[kid] > 1:
            skipped.append((kid, "duplicate-kid"))
            continue
        try:
            keys[kid] = load_jwk(entry, source=source)
        except UnusableKeyError as exc:
            skipped.append((kid, exc.reason))
    return LoadedKeySet(keys=keys, skipped=skipped)


def load_pem(pem: str, *, source: str = "pem") -> VerificationKey:
    """Load a ``-----BEGIN PUBLIC KEY-----`` PEM (RSA ≥ 2048, EC P-256/384/521) under the JWK policy.

    The key is turned into its public JWK and goes through :func:`load_jwk`, so a PEM key and a
    published key can never be judged by two different rule sets.
    """
    if not isinstance(pem, str) or "-----BEGIN PUBLIC KEY-----" not in pem:
        raise UnusableKeyError("invalid-key", "not a PEM public key (-----BEGIN PUBLIC KEY-----)")
    try:
        public = serialization.load_pem_public_key(pem.strip().encode("ascii"))
    except Exception as exc:  # ValueError, UnsupportedAlgorithm, UnicodeEncodeError…
        raise UnusableKeyError("invalid-key", f"PEM public key cannot be parsed ({type(exc).__name__})") from exc
    if isinstance(public, rsa.RSAPublicKey):
        numbers = public.public_numbers()
        jwk: dict[str, Any] = {"kty": "RSA", "n": _int_b64(numbers.n), "e": _int_b64(numbers.e)}
    elif isinstance(public, ec.EllipticCurvePublicKey):
        crv = next((name for name, (curve, _, _) in _CURVES.items() if curve.name == public.curve.name), None)
        if crv is None:
            raise UnusableKeyError("unsupported-key-type", "EC key on an unsupported curve")
        size = _CURVES[crv][2]
        point = public.public_numbers()
        jwk = {"kty": "EC", "crv": crv, "x": _int_b64(point.x, size), "y": _int_b64(point.y, size)}
    else:
        raise UnusableKeyError("unsupported-key-type", "key type is not supported (RSA and EC only)")
    return load_jwk(jwk, source=source)  # the JWK carries no kid: a PEM key matches by itself


def _int_b64(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return base64.urlsafe_b64encode(value.to_bytes(size, "big")).rstrip(b"=").decode("ascii")

