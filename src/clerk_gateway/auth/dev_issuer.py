"""A local stand-in for Clerk's token issuer, for ``clerk-gateway demo`` and ``clerk-gateway token``.

It signs Clerk-shaped tokens (session tokens with ``sid`` and ``cat``, or JWT-template tokens)
with its own RSA key and publishes the matching JWKS, so the whole verified path can run on one
machine with no Clerk account. The key is kept in a PEM file (mode 0600) when a path is given, so
tokens minted by ``clerk-gateway token`` verify against a gateway started later with the same
file; without a path the key lives in memory for one process.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt

from clerk_gateway.auth.verifier import CATEGORY_SESSION, CATEGORY_TEMPLATE

__all__ = ["DEFAULT_DEV_ISSUER", "DevelopmentIssuer"]

DEFAULT_DEV_ISSUER = "http://127.0.0.1:8000/dev-issuer"
_ALGORITHM = "RS256"
_KEY_BITS = 2048


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64_int(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class DevelopmentIssuer:
    """An RSA key, the ``iss`` it signs as, and a ``kid`` derived from the key itself."""

    def __init__(self, private_key: rsa.RSAPrivateKey, issuer: str = DEFAULT_DEV_ISSUER) -> None:
        if private_key.key_size < _KEY_BITS:
            raise ValueError(f"the development key must be RSA with at least {_KEY_BITS} bits")
        self._private = private_key
        self.issuer = issuer
        numbers = private_key.public_key().public_numbers()
        self._public_jwk = {"kty": "RSA", "n": _b64_int(numbers.n), "e": _b64_int(numbers.e)}
        # RFC 7638 thumbprint: the same key file always publishes the same kid.
        canonical = json.dumps({"e": self._public_jwk["e"], "kty": "RSA", "n": self._public_jwk["n"]},
                               separators=(",", ":"), sort_keys=True)
        self.kid = "dev_" + _b64url(hashlib.sha256(canonical.encode("ascii")).digest())[:16]
        self._private_pem = private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @classmethod
    def load_or_create(cls, path: Path | None, issuer: str = DEFAULT_DEV_ISSUER) -> DevelopmentIssuer:
        """Load the key at ``path``, creating it (mode 0600, missing folders too) when absent."""
        if path is None:
            return cls(rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS), issuer)
        if not path.exists():
            _create_key_file(path)
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise ValueError(f"{path} does not hold an RSA private key")
        return cls(loaded, issuer)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{**self._public_jwk, "kid": self.kid, "alg": _ALGORITHM, "use": "sig"}]}

    def public_pem(self) -> str:
        return self._private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    def mint(self, sub: str = "user_demo", *, lifetime: int = 3600, session: bool = True,
             azp: str | None = None, extra_claims: dict[str, Any] | None = None) -> str:
        """A Clerk-shaped token: a session token (``sid``, ``v``, ``cat`` session) or a template token."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "iat": now,
            "nbf": now - 5,
            "exp": now + lifetime,
            "jti": secrets.token_hex(10),
        }
        if session:
            claims.update(sid="sess_dev_" + secrets.token_hex(8), v=2, fva=[0, -1])
        if azp is not None:
            claims["azp"] = azp
        claims.update(extra_claims or {})
        headers = {"kid": self.kid, "cat": CATEGORY_SESSION if session else CATEGORY_TEMPLATE}
        token: str = jwt.encode(claims, self._private_pem.decode("ascii"), algorithm=_ALGORITHM, headers=headers)
        return token


def _create_key_file(path: Path) -> None:
    """Write a new key without ever exposing it with loose permissions or overwriting another's.

    The key goes to a private temporary file first and is then hard-linked into place, which
    fails if another process created the file meanwhile — theirs is kept and loaded instead.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
    finally:
        temporary.unlink(missing_ok=True)
