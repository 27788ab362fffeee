"""The gateway's own signing keys (``mint`` mode): loaded from PEM files, created when missing.

Every worker and every restart must sign with the *same* key, or a backend that cached the
gateway's JWKS would refuse tokens signed by a key it has never seen. So the key lives in a file
(``GATEWAY_SIGNING_KEY_FILE``, on a volume): when the file is missing it is created there, with
mode 0600, atomically — written to a temporary file and hard-linked into place, so that two
workers starting at once end up with one key and neither ever reads a half-written file — and an
existing file is never rewritten.

Rotation (``GATEWAY_SIGNING_KEY_FILES``): the first key signs, every key is published. Adding a
new key *behind* the current one publishes it first; once backends' cached JWKS hold it, moving it
to the front makes it sign; later the old key is dropped. No request fails on the way
(docs/backends.md, "Rotating the mint key").

Keys: RSA of at least 2048 bits (RS256) or Ed25519 (EdDSA). A new key is RSA 2048, which every
JWT consumer (Hasura, Nhost) accepts; an Ed25519 PEM made with ``openssl genpkey -algorithm
ed25519`` is used as it is. The ``kid`` is the key's RFC 7638 thumbprint, so it is the same in
every process without being stored anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

__all__ = ["SigningKey", "SigningKeyError", "load_or_create_key", "load_signing_keys"]

MIN_RSA_BITS = 2048


class SigningKeyError(ValueError):
    """A key file that cannot be used; the message names the file, never the key."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One private key with what publishing and signing need, computed once."""

    private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    alg: str
    kid: str
    public_jwk: dict[str, Any]
    path: str

    @classmethod
    def from_private(cls, private: Any, path: str) -> SigningKey:
        if isinstance(private, rsa.RSAPrivateKey):
            if private.key_size < MIN_RSA_BITS:
                raise SigningKeyError(f"{path}: RSA keys must have at least {MIN_RSA_BITS} bits")
            numbers = private.public_key().public_numbers()
            members = {"e": _int_b64(numbers.e), "kty": "RSA", "n": _int_b64(numbers.n)}
            alg = "RS256"
        elif isinstance(private, ed25519.Ed25519PrivateKey):
            raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            members = {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}
            alg = "EdDSA"
        else:
            raise SigningKeyError(f"{path}: only RSA (2048 bits or more) and Ed25519 keys can sign")
        canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
        kid = _b64url(hashlib.sha256(canonical).digest())  # RFC 7638: required members, sorted
        jwk = {**members, "alg": alg, "kid": kid, "use": "sig"}
        return cls(private, alg, kid, jwk, path)

    def sign(self, signing_input: bytes) -> bytes:
        if isinstance(self.private, rsa.RSAPrivateKey):
            return self.private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return self.private.sign(signing_input)


def _generate_pem() -> bytes:
    private = rsa.generate_private_key(public_exponent=65537, key_size=MIN_RSA_BITS)
    return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())


def _create(path: Path) -> None:
    """Write a new key to ``path`` unless a file appears there first (another worker won)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".signing-key-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(_generate_pem())
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)  # atomic, and fails if the file exists: never overwrites
        except FileExistsError:
            pass
    finally:
        os.unlink(temporary)


def load_or_create_key(path: str) -> SigningKey:
    """The key in ``path``, created there first when the file does not exist."""
    file = Path(path)
    try:
        if not file.exists():
            _create(file)
        data = file.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"{path}: cannot read or create the signing key ({exc.strerror})") from None
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise SigningKeyError(f"{path}: not an unencrypted PEM private key") from None
    return SigningKey.from_private(private, path)


def load_signing_keys(paths: list[str]) -> list[SigningKey]:
    """Every key, in order (the first signs); duplicates of one key are published once."""
    keys: list[SigningKey] = []
    for path in paths:
        key = load_or_create_key(path)
        if all(existing.kid != key.kid for existing in keys):
            keys.append(key)
    if not keys:
        raise SigningKeyError("no signing key file is configured")
    return keys
