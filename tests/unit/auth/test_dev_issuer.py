"""The development issuer: its tokens verify through the real verifier against its own JWKS."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwt

from clerk_gateway.auth.dev_issuer import DevelopmentIssuer
from clerk_gateway.auth.jwk import load_pem
from clerk_gateway.auth.model import TokenKind
from clerk_gateway.auth.verifier import CATEGORY_SESSION, CATEGORY_TEMPLATE, TokenVerifier, VerifierPolicy
from tests.support.tokens import KeySetProvider

ISSUER = "http://127.0.0.1:8000/dev-issuer"


@pytest.fixture(scope="module")
def issuer() -> DevelopmentIssuer:
    return DevelopmentIssuer.load_or_create(None)


def verifier(issuer: DevelopmentIssuer, **policy: object) -> TokenVerifier:
    return TokenVerifier(KeySetProvider(issuer.jwks()), VerifierPolicy(issuer=issuer.issuer, **policy))  # type: ignore[arg-type]


def test_defaults(issuer: DevelopmentIssuer) -> None:
    assert issuer.issuer == ISSUER
    assert issuer.kid.startswith("dev_")
    (key,) = issuer.jwks()["keys"]
    assert key["kid"] == issuer.kid
    assert key["alg"] == "RS256"
    assert key["use"] == "sig"
    assert key["kty"] == "RSA"
    assert "d" not in key
    assert issuer.public_pem().startswith("-----BEGIN PUBLIC KEY-----")
    assert load_pem(issuer.public_pem()).algorithm == "RS256"


async def test_session_token_verifies(issuer: DevelopmentIssuer) -> None:
    token = issuer.mint("user_42", lifetime=120, azp="http://localhost:3000")
    header = jwt.get_unverified_header(token)
    assert header["cat"] == CATEGORY_SESSION
    assert header["kid"] == issuer.kid
    verified = await verifier(issuer, authorized_parties=frozenset({"http://localhost:3000"})).verify(token)
    assert verified.kind is TokenKind.SESSION
    assert verified.subject == "user_42"
    assert verified.session_id is not None and verified.session_id.startswith("sess_")
    assert verified.claims["v"] == 2
    assert verified.claims["exp"] - verified.claims["iat"] == 120


async def test_template_token_verifies(issuer: DevelopmentIssuer) -> None:
    token = issuer.mint(session=False, extra_claims={"https://hasura.io/jwt/claims": {"x-hasura-default-role": "user"}})
    assert jwt.get_unverified_header(token)["cat"] == CATEGORY_TEMPLATE
    verified = await verifier(issuer).verify(token)
    assert verified.kind is TokenKind.TEMPLATE
    assert verified.subject == "user_demo"
    assert "sid" not in verified.claims
    assert verified.claims["https://hasura.io/jwt/claims"] == {"x-hasura-default-role": "user"}


async def test_tokens_of_another_issuer_are_refused(issuer: DevelopmentIssuer) -> None:
    other = DevelopmentIssuer.load_or_create(None, issuer="http://elsewhere")
    assert other.kid != issuer.kid
    from clerk_gateway.errors import AuthenticationError

    with pytest.raises(AuthenticationError) as caught:
        await verifier(issuer).verify(other.mint())
    assert caught.value.reason == "unknown-kid"


async def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dev-key.pem"
    first = DevelopmentIssuer.load_or_create(path, issuer="http://x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    content = path.read_bytes()
    second = DevelopmentIssuer.load_or_create(path, issuer="http://x")
    assert path.read_bytes() == content
    assert second.kid == first.kid
    assert second.jwks() == first.jwks()
    await verifier(second).verify(first.mint())


def test_existing_file_is_never_rewritten(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "key.pem"
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    path.write_bytes(pem)
    issuer = DevelopmentIssuer.load_or_create(path)
    assert path.read_bytes() == pem
    assert issuer.public_pem() == key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def test_refuses_weak_or_non_rsa_keys(tmp_path: Path) -> None:
    small = tmp_path / "small.pem"
    small.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(ValueError):
        DevelopmentIssuer.load_or_create(small)
    curve = tmp_path / "ec.pem"
    curve.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(ValueError):
        DevelopmentIssuer.load_or_create(curve)
