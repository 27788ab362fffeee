"""Make the benchmark's RSA key pair and its Clerk-shaped session tokens.

Every target in the benchmark (the gateway and both peers) verifies the *same* RS256 tokens with
the *same* PEM public key, so the comparison is about the proxies, not about what they were given.
The tokens imitate Clerk session tokens v2 (REFERENCE §1.1/§1.2): header ``alg``/``kid``/``typ``;
claims ``iss``, ``sub``, ``sid``, ``jti``, ``iat``, ``nbf``, ``exp``, ``v=2``, ``fva``; no ``azp``
(Clerk omits it when the minting request had no ``Origin``). ``exp`` is two hours out so that a
long memory run never meets an expired token.

The JWS is built here with ``cryptography`` directly: signing 1000 tokens through python-jose would
re-parse the PEM for every token, and independent signing code is a fairer test of the verifiers.

    python bench/make_tokens.py --out bench/.work/tokens --count 1000
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

DEFAULT_ISSUER = "https://clerk.bench.local"
DEFAULT_KID = "ins_bench0000000000000000000"
DEFAULT_LIFETIME_S = 2 * 60 * 60


@dataclass(frozen=True)
class TokenSet:
    """Where the generated material lives; bench.py hands these paths to every target."""

    private_key: Path
    public_key: Path
    tokens: Path
    count: int
    issuer: str
    expires_at: int

    def public_pem(self) -> str:
        return self.public_key.read_text()

    def first_token(self) -> str:
        with self.tokens.open() as handle:
            return handle.readline().strip()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(value: dict[str, Any]) -> str:
    return _b64url(json.dumps(value, separators=(",", ":"), sort_keys=False).encode())


def sign_rs256(private_key: rsa.RSAPrivateKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A compact JWS with RSASSA-PKCS1-v1_5 / SHA-256, i.e. what Clerk's RS256 session tokens are."""
    signing_input = f"{_segment(header)}.{_segment(claims)}".encode("ascii")
    signature = private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode('ascii')}.{_b64url(signature)}"


def session_claims(index: int, issuer: str, now: int, lifetime: int) -> dict[str, Any]:
    """The claims of user number ``index``: distinct ``sub``/``sid``/``jti`` per user."""
    return {
        "exp": now + lifetime,
        "fva": [0, -1],
        "iat": now,
        "iss": issuer,
        "jti": uuid.uuid4().hex[:20],
        "nbf": now - 10,
        "sid": f"sess_{index}",
        "sub": f"user_{index}",
        "v": 2,
    }


def refusal_kit(tokens: TokenSet) -> Any:
    """The tokens of the keep-alive check (``tests/support/refusal_mix.py``): the run's users, one
    of them as the hot user, an expired token and one signed by a stranger under the run's kid."""
    from tests.support.refusal_mix import TokenKit

    key = serialization.load_pem_private_key(tokens.private_key.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    header = {"alg": "RS256", "kid": DEFAULT_KID, "typ": "JWT"}
    now = int(time.time())
    users = tokens.tokens.read_text().split()
    return TokenKit(users=users[1:], hot_user=users[0],
                    expired=sign_rs256(key, header, session_claims(0, tokens.issuer, now - 600, 60)),
                    bad_signature=sign_rs256(stranger, header, session_claims(0, tokens.issuer, now, 600)))


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def generate(out_dir: Path, *, count: int = 1000, issuer: str = DEFAULT_ISSUER,
             lifetime: int = DEFAULT_LIFETIME_S, kid: str = DEFAULT_KID) -> TokenSet:
    """Create a fresh RSA-2048 key pair and ``count`` tokens (one per line) under ``out_dir``.

    A new key every run: nothing from an earlier run (or another machine) can be accepted by mistake.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    out_dir.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_path = out_dir / "private.pem"
    public_path = out_dir / "public.pem"
    tokens_path = out_dir / "tokens.txt"
    _write_private(private_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    public_path.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    now = int(time.time())
    header = {"alg": "RS256", "kid": kid, "typ": "JWT"}
    lines = [sign_rs256(key, header, session_claims(i, issuer, now, lifetime)) for i in range(count)]
    tokens_path.write_text("\n".join(lines) + "\n")
    return TokenSet(private_path, public_path, tokens_path, count, issuer, now + lifetime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / ".work" / "tokens")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--issuer", default=DEFAULT_ISSUER)
    parser.add_argument("--lifetime", type=int, default=DEFAULT_LIFETIME_S, help="seconds until exp")
    args = parser.parse_args(argv)
    tokens = generate(args.out, count=args.count, issuer=args.issuer, lifetime=args.lifetime)
    print(f"wrote {tokens.count} tokens to {tokens.tokens} (public key {tokens.public_key})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
