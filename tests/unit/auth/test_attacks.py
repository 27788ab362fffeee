"""Every row of the attack table (REFERENCE.md §5.4) against the verifier, with the reason it must give.

The key set is loaded by the real key loader (:mod:`clerk_gateway.auth.jwk`) from a JWKS holding two
RSA keys and an EC key (plus, for some rows, keys the loader must refuse). Hostile tokens are signed
with real keys wherever the row allows, so a rejection is due to the check under test and not to a
broken signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from clerk_gateway.auth.model import TokenKind, VerifiedToken
from clerk_gateway.auth.verifier import CATEGORY_SESSION, CATEGORY_TEMPLATE, TokenVerifier, VerifierPolicy
from clerk_gateway.errors import AuthenticationError, ForbiddenError, GatewayError
from tests.support.tokens import KeySetProvider, SigningKey, b64url, clerk_claims, jwks

ISSUER = "https://clerk.example.com"
AUDIENCE = "https://db.fauna.com/db/ywx8"
NOW = 1_750_000_000.0
SKEW = 5.0
POLICY = VerifierPolicy(issuer=ISSUER, clock_skew_seconds=SKEW)

K1 = SigningKey.rsa("k1")
K2 = SigningKey.rsa("k2")
K3 = SigningKey.ec("k3")
ATTACKER = SigningKey.rsa("attacker")
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def provider(*extra_keys: dict[str, Any]) -> KeySetProvider:
    document = jwks(K1, K2, K3)
    document["keys"].extend(extra_keys)
    return KeySetProvider(document)


def verifier(policy: VerifierPolicy = POLICY, keys: KeySetProvider | None = None) -> TokenVerifier:
    return TokenVerifier(keys or provider(), policy, clock=lambda: NOW)


def claims(**extra: Any) -> dict[str, Any]:
    return clerk_claims(issuer=ISSUER, now=NOW, **extra)


P = claims()
P_JSON = json.dumps(P)


async def rejected(token: str, reason: str | set[str], *, policy: VerifierPolicy = POLICY,
                   keys: KeySetProvider | None = None, error: type[GatewayError] = AuthenticationError) -> None:
    with pytest.raises(GatewayError) as caught:
        await verifier(policy, keys).verify(token)
    assert type(caught.value) is error, caught.value
    expected = {reason} if isinstance(reason, str) else reason
    assert caught.value.reason in expected, caught.value.reason
    assert "eyJ" not in caught.value.message


async def accepted(token: str, *, policy: VerifierPolicy = POLICY,
                   keys: KeySetProvider | None = None) -> VerifiedToken:
    return await verifier(policy, keys).verify(token)


def raw(header: dict[str, Any] | str, payload: dict[str, Any] | str = P_JSON, signature: bytes = b"") -> str:
    header_text = header if isinstance(header, str) else json.dumps(header)
    payload_text = payload if isinstance(payload, str) else json.dumps(payload)
    return f"{b64url(header_text.encode())}.{b64url(payload_text.encode())}.{b64url(signature)}"


def hs256(header: dict[str, Any], secret: bytes, payload: dict[str, Any] = P) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


# -- 1: alg none ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_row01_alg_none(alg: str) -> None:
    await rejected(raw({"alg": alg, "kid": "k1"}), "unsupported-algorithm")
    # keeping a real RS256 signature does not help
    real_signature = K1.sign(P).split(".")[2]
    unsigned = raw({"alg": alg, "kid": "k1"}).rstrip(".")
    await rejected(f"{unsigned}.{real_signature}", "unsupported-algorithm")


# -- 2: HMAC keyed with the RSA public key -------------------------------------------------------


def _public_encodings() -> dict[str, bytes]:
    public = serialization.load_pem_public_key(K1.public_pem().encode())
    n = K1.public_jwk()["n"]
    return {
        "pem": K1.public_pem().encode(),
        "der": public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        "jwks": json.dumps(jwks(K1)).encode(),
        "openssh": public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH),
        "raw-n": base64.urlsafe_b64decode(n + "=" * (-len(n) % 4)),
    }


@pytest.mark.parametrize("encoding", ["pem", "der", "jwks", "openssh", "raw-n"])
@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
async def test_row02_hmac_with_the_public_key(encoding: str, alg: str) -> None:
    await rejected(hs256({"alg": alg, "kid": "k1"}, _public_encodings()[encoding]), "unsupported-algorithm")


# -- 3, 4: keys named by the token ---------------------------------------------------------------


async def test_row03_embedded_jwk() -> None:
    token = ATTACKER.sign(P, header={"kid": "k1", "jwk": ATTACKER.public_jwk()})
    await rejected(token, "forbidden-header")


@pytest.mark.parametrize(("member", "value"), [
    ("jku", "https://attacker.example/jwks.json"),
    ("x5u", "https://attacker.example/cert.pem"),
    ("x5c", ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]),
    ("x5t", "dGh1bWJwcmludA"),
    ("x5t#S256", "dGh1bWJwcmludA"),
])
async def test_row04_key_urls_and_certificates(member: str, value: Any) -> None:
    await rejected(ATTACKER.sign(P, header={"kid": "k1", member: value}), "forbidden-header")
    await rejected(K1.sign(P, header={member: value}), "forbidden-header")  # even signed by the real key


# -- 5: hostile kid ------------------------------------------------------------------------------


@pytest.mark.parametrize(("kid", "reason"), [
    ("../../dev/null", "unknown-kid"),
    ("' OR '1'='1", "unknown-kid"),
    ("k1\u0000", "malformed-token"),
    ("", "malformed-token"),
    (0, "malformed-token"),
    (None, "malformed-token"),
    (["k1"], "malformed-token"),
    ({}, "malformed-token"),
])
@pytest.mark.parametrize("signer", [ATTACKER, K1], ids=["attacker-key", "real-key"])
async def test_row05_hostile_kid(kid: Any, reason: str, signer: SigningKey) -> None:
    token = signer.sign_raw(json.dumps({"alg": "RS256", "kid": kid}), P_JSON)
    await rejected(token, reason)


# -- 6: no kid with several keys -----------------------------------------------------------------


async def test_row06_no_kid_in_a_multi_key_set() -> None:
    await rejected(K2.sign(P, header={"kid": None}), "missing-kid")


# -- 7: time -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "reason"), [
    ({"exp": NOW - SKEW - 60, "iat": NOW - 200, "nbf": NOW - 200}, "token-expired"),
    ({"nbf": NOW + SKEW + 60, "exp": NOW + 200}, "token-not-active-yet"),
    ({"iat": NOW + 3600, "exp": NOW + 3700}, "token-iat-in-the-future"),
])
async def test_row07_time_rejected(extra: dict[str, Any], reason: str) -> None:
    await rejected(K1.sign(claims(**extra)), reason)


@pytest.mark.parametrize("extra", [{"exp": NOW - SKEW / 2}, {"nbf": NOW + SKEW / 2}])
async def test_row07_time_within_leeway(extra: dict[str, Any]) -> None:
    await accepted(K1.sign(claims(**extra)))


# -- 8: iss --------------------------------------------------------------------------------------


@pytest.mark.parametrize("iss", ["https://other.clerk.accounts.dev", None, ISSUER + "/"])
async def test_row08_issuer(iss: str | None) -> None:
    await rejected(K1.sign(claims(iss=iss) if iss else claims(iss=None)), "issuer-mismatch")


# -- 9: aud (when an audience is required) -------------------------------------------------------

AUD_POLICY = replace(POLICY, audiences=frozenset({AUDIENCE}))


@pytest.mark.parametrize("aud", ["https://db.fauna.com/db/other", None, 5])
async def test_row09_audience_rejected(aud: Any) -> None:
    token_claims = claims()
    if aud is not None:
        token_claims["aud"] = aud
    await rejected(K1.sign(token_claims), "audience-mismatch", policy=AUD_POLICY)


async def test_row09_audience_list_containing_it() -> None:
    await accepted(K1.sign(claims(aud=["https://example.com", AUDIENCE])), policy=AUD_POLICY)


# -- 10: azp -------------------------------------------------------------------------------------

AZP_POLICY = replace(POLICY, authorized_parties=frozenset({"https://app.example.com"}))


async def test_row10_azp_not_authorized() -> None:
    await rejected(K1.sign(claims(azp="https://evil.example")), "azp-not-authorized", policy=AZP_POLICY,
                   error=ForbiddenError)


async def test_row10_azp_missing() -> None:
    await rejected(K1.sign(claims()), "azp-missing", policy=AZP_POLICY, error=ForbiddenError)


# -- 11: template token as a session token -------------------------------------------------------


async def test_row11_template_token_is_classified_as_template() -> None:
    # The verifier names the kind; a backend that accepts session tokens only refuses it (proxy).
    verified = await accepted(K1.sign(claims(sid=None), header={"cat": CATEGORY_TEMPLATE}))
    assert verified.kind is TokenKind.TEMPLATE
    assert verified.session_id is None


async def test_row11_session_category_without_sid() -> None:
    await rejected(K1.sign(claims(sid=None), header={"cat": CATEGORY_SESSION}), "token-category-mismatch")


# -- 12: pending session -------------------------------------------------------------------------


async def test_row12_pending_session() -> None:
    await rejected(K1.sign(claims(sts="pending")), "session-pending", error=ForbiddenError)


# -- 13: huge tokens -----------------------------------------------------------------------------


async def test_row13_huge_header_field() -> None:
    await rejected(K1.sign(P, header={"x": "a" * 1_000_000}), "token-too-large")


async def test_row13_huge_payload() -> None:
    keys = provider()
    await rejected(K1.sign(claims(pad="a" * 5_000_000)), "token-too-large", keys=keys)
    assert keys.lookups == []  # refused before any key work


# -- 14: bad base64 ------------------------------------------------------------------------------

GOOD = K1.sign(P)


def _flip_last(segment: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return segment[:-1] + alphabet[alphabet.index(segment[-1]) ^ 1]


@pytest.mark.parametrize("token", [
    GOOD + "=",
    GOOD.replace(".", "==.", 1),
    GOOD.replace("-", "+").replace("_", "/") if ("-" in GOOD or "_" in GOOD) else GOOD[:-2] + "+/",
    GOOD[:20] + " " + GOOD[20:],
    GOOD[:20] + "#" + GOOD[20:],
    GOOD + "\n",
    ".".join([*GOOD.split(".")[:2], _flip_last(GOOD.split(".")[2])]),
    ".".join(GOOD.split(".")[:2]),
    GOOD + ".",
    "",
    GOOD.replace(".", ""),
], ids=["padding", "header-padding", "plus-slash", "space", "hash", "newline", "non-canonical", "2-segments",
        "4-segments", "0-segments", "1-segment"])
async def test_row14_bad_base64(token: str) -> None:
    await rejected(token, "malformed-token")


# -- 15: duplicate members -----------------------------------------------------------------------


@pytest.mark.parametrize(("header", "payload"), [
    ('{"alg":"RS256","kid":"k1","alg":"RS256"}', P_JSON),
    ('{"alg":"RS256","kid":"k1"}', P_JSON[:-1] + ', "sub": "user_admin"}'),
    ('{"alg":"RS256","kid":"k1"}', P_JSON[:-1] + ', "iss": "https://evil.example"}'),
], ids=["alg-twice", "sub-twice", "iss-twice"])
async def test_row15_duplicate_members(header: str, payload: str) -> None:
    await rejected(K1.sign_raw(header, payload), "malformed-token")


# -- 16, 17: crit and b64 ------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [{"crit": ["x-unknown"], "x-unknown": 1}, {"crit": "x"}, {"crit": []}])
async def test_row16_crit(extra: dict[str, Any]) -> None:
    await rejected(K1.sign(P, header=extra), "forbidden-header")


async def test_row17_unencoded_payload() -> None:
    header = b64url(json.dumps({"alg": "RS256", "kid": "k1", "b64": False, "crit": ["b64"]}).encode())
    signing_input = f"{header}.{P_JSON}"
    token = f"{signing_input}.{b64url(K1.signature_for(signing_input.encode()))}"
    # the raw payload's dots (in URLs) even change the segment count: refused either way, before any key work
    await rejected(token, {"forbidden-header", "malformed-token", "encrypted-token-not-accepted"})
    await rejected(K1.sign(P, header={"b64": False, "crit": ["b64"]}), "forbidden-header")
    await rejected(K1.sign(P, header={"b64": False}), "forbidden-header")


# -- 18, 19: nesting and encryption --------------------------------------------------------------


async def test_row18_nested_jwt() -> None:
    inner = K1.sign(P)
    await rejected(K1.sign_raw(json.dumps({"alg": "RS256", "kid": "k1", "cty": "JWT"}), json.dumps(inner)),
                   "forbidden-header")


async def test_row19_jwe() -> None:
    header = b64url(json.dumps({"alg": "RSA-OAEP", "enc": "A256GCM", "kid": "k1"}).encode())
    await rejected(f"{header}.{b64url(b'k' * 256)}.{b64url(b'iv')}.{b64url(b'ct')}.{b64url(b'tag')}",
                   "encrypted-token-not-accepted")


# -- 20, 21: ECDSA signature values --------------------------------------------------------------


def _with_ec_signature(signature: bytes) -> str:
    head, payload, _ = K3.sign(P).split(".")
    return f"{head}.{payload}.{b64url(signature)}"


def _rs(token: str) -> tuple[int, int]:
    signature = base64.urlsafe_b64decode(token.split(".")[2] + "==")
    return int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")


@pytest.mark.parametrize("signature", [
    bytes(64),
    P256_ORDER.to_bytes(32, "big") * 2,
    encode_dss_signature(*_rs(K3.sign(P))),  # DER instead of raw r||s
    (1).to_bytes(32, "big") * 2,
    (P256_ORDER - 1).to_bytes(32, "big") + bytes(32),
], ids=["zero", "r=s=n", "der", "one", "n-1,0"])
async def test_row20_ecdsa_special_values(signature: bytes) -> None:
    await rejected(_with_ec_signature(signature), "invalid-signature")


async def test_row21_ecdsa_malleability_is_valid() -> None:
    token = K3.sign(P)
    r, s = _rs(token)
    mirrored = _with_ec_signature(r.to_bytes(32, "big") + (P256_ORDER - s).to_bytes(32, "big"))
    assert mirrored != token
    verified = await accepted(mirrored)
    assert verified.claims["jti"] == P["jti"]  # same jti: identify tokens by jti, never by the token hash


# -- 22: small RSA key ---------------------------------------------------------------------------


async def test_row22_small_rsa_key_is_refused_at_load() -> None:
    small = SigningKey.rsa("small", 1024)
    keys = provider(small.public_jwk())
    assert ("small", "rsa-too-small") in keys.skipped
    await rejected(small.sign(P), "unknown-kid", keys=keys)


# -- 23: exp of the wrong type -------------------------------------------------------------------


@pytest.mark.parametrize("exp", ["1999999999", 10**30, True, None, [], {}])
async def test_row23_exp_wrong_type(exp: Any) -> None:
    await rejected(K1.sign(P | {"exp": exp}), "invalid-claims")


@pytest.mark.parametrize("literal", ["1e400", "NaN", "Infinity", "-1e400"])
async def test_row23_exp_not_finite(literal: str) -> None:
    payload = P_JSON.replace(f'"exp": {P["exp"]}', f'"exp": {literal}')
    assert literal in payload
    await rejected(K1.sign_raw(json.dumps({"alg": "RS256", "kid": "k1"}), payload), "malformed-token")


async def test_row23_float_exp_is_legal() -> None:
    verified = await accepted(K1.sign(P | {"exp": NOW + 30.5}))
    assert verified.expires_at == NOW + 30.5


# -- 24: algorithm versus key --------------------------------------------------------------------


async def test_row24_key_published_for_another_rsa_algorithm() -> None:
    jwk = K1.public_jwk() | {"kid": "k384", "alg": "RS384"}
    keys = provider(jwk)
    await rejected(K1.sign(P, header={"kid": "k384"}), "algorithm-mismatch", keys=keys)


async def test_row24_key_published_for_encryption() -> None:
    keys = provider(K1.public_jwk() | {"kid": "kenc", "use": "enc"})
    assert ("kenc", "not-for-signatures") in keys.skipped
    await rejected(K1.sign(P, header={"kid": "kenc"}), "unknown-kid", keys=keys)


async def test_row24_pss_key_with_a_pkcs1_signature() -> None:
    keys = provider(K1.public_jwk() | {"kid": "kps", "alg": "PS512"})
    await rejected(K1.sign(P, header={"kid": "kps"}), "unknown-kid", keys=keys)


async def test_row24_ec_key_with_an_rsa_token() -> None:
    await rejected(K1.sign(P, header={"kid": "k3"}), "algorithm-mismatch")


# -- 25: mixed key set ---------------------------------------------------------------------------


async def test_row25_mixed_key_set_accepts_a_valid_token() -> None:
    keys = KeySetProvider(jwks(K3, K1))  # EC first, then RSA
    assert (await accepted(K1.sign(P), keys=keys)).subject == P["sub"]
    assert (await accepted(K3.sign(P), keys=keys)).subject == P["sub"]


# -- 26: weak HMAC secrets -----------------------------------------------------------------------


@pytest.mark.parametrize("secret", [b"", b"x"])
async def test_row26_weak_hmac_secret(secret: bytes) -> None:
    oct_key = {"kty": "oct", "kid": "hmac", "alg": "HS256", "use": "sig", "k": b64url(secret)}
    keys = provider(oct_key)
    assert ("hmac", "symmetric-key") in keys.skipped
    await rejected(hs256({"alg": "HS256", "kid": "hmac"}, secret), "unsupported-algorithm", keys=keys)


# -- also reject ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", [["RS256"], "rs256", "Rs256", "RS256 ", ["RS256", "HS256"]])
async def test_also_alg_list_or_wrong_case(alg: Any) -> None:
    await rejected(K1.sign(P, header={"alg": alg}), "unsupported-algorithm")


async def test_also_header_or_payload_as_array() -> None:
    await rejected(K1.sign_raw('["RS256"]', P_JSON), "malformed-token")
    await rejected(K1.sign_raw(json.dumps({"alg": "RS256", "kid": "k1"}), json.dumps([P])), "malformed-token")


async def test_also_non_utf8_payload() -> None:
    header = json.dumps({"alg": "RS256", "kid": "k1"}).encode()
    await rejected(K1.sign_raw(header, P_JSON.encode().replace(b"user_2abc", b"user_\xff\xfe")), "malformed-token")


@pytest.mark.parametrize("typ", ["JWS", "jwt+x", "dpop+jwt", "", 1])
async def test_also_typ_outside_the_allowed_set(typ: Any) -> None:
    await rejected(K1.sign(P, header={"typ": typ}), "forbidden-header")


async def test_baseline_every_key_of_the_set_verifies() -> None:
    for key in (K1, K2, K3):
        assert (await accepted(key.sign(P))).subject == P["sub"]
