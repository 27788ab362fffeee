"""Test token factory: real keys, real signatures, any header — including hostile ones.

Tests across the suite mint Clerk-shaped tokens here. Signing goes through ``cryptography``
directly rather than python-jose so that a test can sign *anything* (``alg: none`` in the
header, duplicate members, a ``jku``…) and check that the gateway refuses it for the right
reason rather than because the signing library refused to produce it.

Generated keys are cached per (kid, size/curve) at module level: RSA key generation is slow and
tests would otherwise spend most of their time in it.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

__all__ = ["KeySetProvider", "SigningKey", "b64url", "clerk_claims", "jwks"]

_CURVES: dict[str, tuple[ec.EllipticCurve, str, int]] = {
    # curve name -> (curve, JWS alg, coordinate byte length)
    "P-256": (ec.SECP256R1(), "ES256", 32),
    "P-384": (ec.SECP384R1(), "ES384", 48),
    "P-521": (ec.SECP521R1(), "ES512", 66),
}
_HASHES: dict[str, hashes.HashAlgorithm] = {
    "256": hashes.SHA256(),
    "384": hashes.SHA384(),
    "512": hashes.SHA512(),
}
_RSA_CACHE: dict[tuple[str, int], rsa.RSAPrivateKey] = {}
_EC_CACHE: dict[tuple[str, str], ec.EllipticCurvePrivateKey] = {}


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JWS uses it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url(value.to_bytes(size, "big"))


def _compact_json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(value), separators=(",", ":")).encode("utf-8")


class SigningKey:
    """A private key plus the ``kid``/``alg`` it publishes under."""

    def __init__(self, private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, *, kid: str, alg: str,
                 curve: str | None = None) -> None:
        self._private = private_key
        self.kid = kid
        self.alg = alg
        self._curve = curve

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def rsa(cls, kid: str = "ins_test", bits: int = 2048, *, alg: str = "RS256") -> SigningKey:
        """An RSA key (cached per ``(kid, bits)``); ``alg`` picks RS256/RS384/RS512."""
        private = _RSA_CACHE.get((kid, bits))
        if private is None:
            private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
            _RSA_CACHE[(kid, bits)] = private
        return cls(private, kid=kid, alg=alg)

    @classmethod
    def ec(cls, kid: str = "ins_ec", curve: str = "P-256") -> SigningKey:
        """An EC key on ``curve`` (P-256 → ES256, P-384 → ES384, P-521 → ES512), cached per (kid, curve)."""
        curve_obj, alg, _ = _CURVES[curve]
        private = _EC_CACHE.get((kid, curve))
        if private is None:
            private = ec.generate_private_key(curve_obj)
            _EC_CACHE[(kid, curve)] = private
        return cls(private, kid=kid, alg=alg, curve=curve)

    # -- public material ------------------------------------------------------------------------

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK as a JWKS would publish it (``kid``, ``alg``, ``use=sig``)."""
        jwk: dict[str, Any] = {"kid": self.kid, "alg": self.alg, "use": "sig"}
        if isinstance(self._private, rsa.RSAPrivateKey):
            numbers = self._private.public_key().public_numbers()
            jwk.update(kty="RSA", n=_int_b64(numbers.n), e=_int_b64(numbers.e))
        else:
            assert self._curve is not None
            size = _CURVES[self._curve][2]
            point = self._private.public_key().public_numbers()
            jwk.update(kty="EC", crv=self._curve, x=_int_b64(point.x, size), y=_int_b64(point.y, size))
        return jwk

    def public_pem(self) -> str:
        return self._private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    def private_pem(self) -> str:
        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")

    # -- signing --------------------------------------------------------------------------------

    def sign(self, claims: Mapping[str, Any], *, header: Mapping[str, Any] | None = None) -> str:
        """Sign ``claims``; ``header`` entries override/add to the defaults, ``None`` values remove."""
        final: dict[str, Any] = {"alg": self.alg, "kid": self.kid, "typ": "JWT"}
        for name, value in (header or {}).items():
            if value is None:
                final.pop(name, None)
            else:
                final[name] = value
        return self.sign_raw(_compact_json(final), _compact_json(claims))

    def sign_raw(self, header_json: str | bytes, payload_json: str | bytes) -> str:
        """Sign exactly these header/payload bytes (e.g. with duplicate members) with this key's own alg."""
        header_bytes = header_json.encode("utf-8") if isinstance(header_json, str) else header_json
        payload_bytes = payload_json.encode("utf-8") if isinstance(payload_json, str) else payload_json
        signing_input = f"{b64url(header_bytes)}.{b64url(payload_bytes)}"
        return f"{signing_input}.{b64url(self.signature_for(signing_input.encode('ascii')))}"

    def signature_for(self, signing_input: bytes) -> bytes:
        """The raw JWS signature of ``signing_input`` (RSASSA-PKCS1-v1_5, or ECDSA as r‖s)."""
        digest = _HASHES[self.alg[2:]]
        if isinstance(self._private, rsa.RSAPrivateKey):
            return self._private.sign(signing_input, padding.PKCS1v15(), digest)
        assert self._curve is not None
        size = _CURVES[self._curve][2]
        r, s = decode_dss_signature(self._private.sign(signing_input, ec.ECDSA(digest)))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def jwks(*keys: SigningKey) -> dict[str, Any]:
    """A JWKS document publishing the public halves of ``keys``."""
    return {"keys": [key.public_jwk() for key in keys]}


def clerk_claims(
    *,
    issuer: str,
    sub: str = "user_2abc",
    sid: str | None = "sess_2abc",
    azp: str | None = None,
    lifetime: int = 60,
    now: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Claims shaped like a Clerk session token (v2); ``extra`` adds/overrides, ``None`` removes."""
    iat = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": sub,
        "iat": iat,
        "nbf": iat - 10,
        "exp": iat + lifetime,
        "jti": uuid.uuid4().hex[:20],
        "v": 2,
        "fva": [0, -1],
    }
    if sid is not None:
        claims["sid"] = sid
    if azp is not None:
        claims["azp"] = azp
    for name, value in extra.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


class KeySetProvider:
    """A :class:`~clerk_gateway.auth.model.KeyProvider` over a fixed JWKS, loaded by the real key loader.

    Same lookup semantics as the JWKS cache: a key by exact ``kid``; a token without ``kid`` only
    matches the single kid-less key of a one-key set; anything else is ``unknown-kid``.
    """

    def __init__(self, document: Mapping[str, Any], *, source: str = "test") -> None:
        from clerk_gateway.auth.jwk import load_jwks

        loaded = load_jwks(document, source=source)
        self.keys = loaded.keys
        self.skipped = loaded.skipped
        self.lookups: list[str | None] = []

    @classmethod
    def of(cls, *keys: SigningKey) -> KeySetProvider:
        return cls(jwks(*keys))

    async def key_for(self, kid: str | None) -> Any:
        from clerk_gateway.errors import AuthenticationError

        self.lookups.append(kid)
        key = self.keys.get(kid)
        if key is None:
            raise AuthenticationError("unknown-kid", "the token's key id is not among the issuer's usable keys")
        return key
