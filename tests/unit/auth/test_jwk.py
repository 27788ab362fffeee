"""Load-time key policy: what a JWK, a JWKS document or a PEM key must be to verify anything."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clerk_gateway.auth.jwk import (
    SUPPORTED_ALGORITHMS,
    JwksDocumentError,
    UnusableKeyError,
    load_jwk,
    load_jwks,
    load_pem,
)
from tests.support.tokens import SigningKey, b64url
from tests.support.wycheproof import vector_path

WYCHEPROOF_JWK = vector_path("json_web_key_test.json")

RSA = SigningKey.rsa("rsa-a")
EC256 = SigningKey.ec("ec-256", "P-256")
EC384 = SigningKey.ec("ec-384", "P-384")
EC521 = SigningKey.ec("ec-521", "P-521")


def rsa_jwk(**changes: Any) -> dict[str, Any]:
    jwk = RSA.public_jwk()
    jwk.update(changes)
    return {k: v for k, v in jwk.items() if v is not None}


def ec_jwk(key: SigningKey = EC256, **changes: Any) -> dict[str, Any]:
    jwk = key.public_jwk()
    jwk.update(changes)
    return {k: v for k, v in jwk.items() if v is not None}


def reason_of(jwk: Any) -> str:
    with pytest.raises(UnusableKeyError) as excinfo:
        load_jwk(jwk, source="test")
    return str(excinfo.value.reason)


def verifies(key: Any, signer: SigningKey) -> bool:
    message = b"header.payload"
    return bool(key.verify(message, signer.signature_for(message)))


# -- usable keys -----------------------------------------------------------------------------------


def test_rsa_key_is_bound_to_rs256_when_alg_is_absent() -> None:
    loaded = load_jwk(rsa_jwk(alg=None), source="jwks")
    assert (loaded.kid, loaded.algorithm, loaded.source) == ("rsa-a", "RS256", "jwks")
    assert verifies(loaded.key, RSA)


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512"])
def test_rsa_key_takes_its_declared_rs_algorithm(alg: str) -> None:
    loaded = load_jwk(rsa_jwk(alg=alg), source="jwks")
    assert loaded.algorithm == alg
    assert verifies(loaded.key, SigningKey.rsa("rsa-a", alg=alg))


@pytest.mark.parametrize(("key", "alg"), [(EC256, "ES256"), (EC384, "ES384"), (EC521, "ES512")])
def test_ec_key_algorithm_comes_from_the_curve(key: SigningKey, alg: str) -> None:
    assert load_jwk(ec_jwk(key, alg=None), source="jwks").algorithm == alg
    loaded = load_jwk(ec_jwk(key), source="jwks")
    assert loaded.algorithm == alg
    assert verifies(loaded.key, key)


def test_the_pinned_key_refuses_another_signers_signature() -> None:
    loaded = load_jwk(rsa_jwk(), source="jwks")
    assert not verifies(loaded.key, SigningKey.rsa("rsa-other"))


def test_use_sig_and_key_ops_verify_are_accepted() -> None:
    assert load_jwk(rsa_jwk(use="sig", key_ops=["verify"]), source="jwks").algorithm == "RS256"
    assert load_jwk(rsa_jwk(use=None, key_ops=["sign", "verify"]), source="jwks").algorithm == "RS256"


def test_unknown_members_are_ignored() -> None:
    assert load_jwk(rsa_jwk(x5t="abc", ext=True), source="jwks").kid == "rsa-a"


def test_padding_on_key_members_is_tolerated() -> None:
    jwk = rsa_jwk()
    jwk["e"] += "=" * (-len(jwk["e"]) % 4)
    assert load_jwk(jwk, source="jwks").algorithm == "RS256"


def test_supported_algorithms() -> None:
    assert frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"}) == SUPPORTED_ALGORITHMS


# -- refused keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("jwk", "reason"), [
    (rsa_jwk(alg="PS256"), "unsupported-algorithm"),
    (rsa_jwk(alg="HS256"), "unsupported-algorithm"),
    (rsa_jwk(alg="none"), "unsupported-algorithm"),
    (rsa_jwk(alg="rs256"), "unsupported-algorithm"),
    (rsa_jwk(alg="ES256"), "alg-mismatch"),
    (rsa_jwk(alg=["RS256"]), "invalid-key"),
    (ec_jwk(alg="RS384"), "alg-mismatch"),
    (ec_jwk(alg="ES384"), "alg-mismatch"),
    (ec_jwk(EC521, alg="ES521"), "unsupported-algorithm"),
    (ec_jwk(alg="ES224"), "unsupported-algorithm"),
])
def test_alg_outside_the_set_or_contradicting_the_key(jwk: dict[str, Any], reason: str) -> None:
    assert reason_of(jwk) == reason


@pytest.mark.parametrize("jwk", [
    rsa_jwk(use="enc"),
    rsa_jwk(use="SIG"),
    ec_jwk(use="enc"),
    rsa_jwk(key_ops=["encrypt"]),
    rsa_jwk(key_ops=[]),
    rsa_jwk(key_ops=["sign"]),
])
def test_keys_not_meant_for_verifying_signatures(jwk: dict[str, Any]) -> None:
    assert reason_of(jwk) == "not-for-signatures"


def test_malformed_key_ops_is_invalid() -> None:
    assert reason_of(rsa_jwk(key_ops="verify")) == "invalid-key"


def test_small_rsa_key_is_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key().public_numbers()
    assert reason_of({"kty": "RSA", "kid": "small", "n": b64url(small.n.to_bytes(128, "big")), "e": "AQAB"}) \
        == "rsa-too-small"


@pytest.mark.parametrize("exponent", [1, 2, 4, 65536, 0])
def test_rsa_exponent_must_be_odd_and_at_least_three(exponent: int) -> None:
    e = b64url(exponent.to_bytes(max(1, (exponent.bit_length() + 7) // 8), "big"))
    assert reason_of(rsa_jwk(e=e)) == "invalid-key"


def test_rsa_exponent_three_is_accepted() -> None:
    assert load_jwk(rsa_jwk(e="Aw"), source="jwks").algorithm == "RS256"


@pytest.mark.parametrize("changes", [
    {"n": None}, {"e": None}, {"n": 12345}, {"n": "a+b/"}, {"n": "abc$"}, {"n": "A"}, {"n": ""},
])
def test_malformed_rsa_members(changes: dict[str, Any]) -> None:
    assert reason_of(rsa_jwk(**changes)) == "invalid-key"


def test_invalid_ec_point_is_refused() -> None:
    jwk = ec_jwk()
    y = bytearray(jwk["y"].encode())
    y[-2] = ord("A") if y[-2] != ord("A") else ord("B")
    assert reason_of({**jwk, "y": y.decode()}) == "invalid-key"


def test_ec_coordinates_of_the_wrong_length_are_refused() -> None:
    jwk = ec_jwk()
    assert reason_of({**jwk, "x": jwk["x"][:-2]}) == "invalid-key"
    # P-256 coordinates declared as P-384 (Wycheproof JWK 23) cannot pass either way.
    assert reason_of({**jwk, "crv": "P-384"}) == "alg-mismatch"
    assert reason_of({**jwk, "crv": "P-384", "alg": None}) == "invalid-key"


@pytest.mark.parametrize("crv", ["P-192", "secp256k1", "Ed25519", None, 256])
def test_unsupported_curves(crv: Any) -> None:
    assert reason_of(ec_jwk(alg=None, crv=crv)) == "unsupported-key-type"


def test_symmetric_keys_are_never_accepted() -> None:
    assert reason_of({"kty": "oct", "kid": "h", "alg": "HS256", "k": b64url(b"x" * 64)}) == "symmetric-key"
    assert reason_of({"kty": "oct", "kid": "h", "k": ""}) == "symmetric-key"


@pytest.mark.parametrize("jwk", [
    {"kty": "OKP", "crv": "Ed25519", "x": b64url(b"\x01" * 32)},
    {"kty": "RSA-PSS"},
    {"kty": None},
    {"n": "AQAB"},
])
def test_unsupported_key_types(jwk: dict[str, Any]) -> None:
    assert reason_of(jwk) == "unsupported-key-type"


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi", "oth"])
def test_private_key_material_is_refused(member: str) -> None:
    assert reason_of(rsa_jwk(**{member: "AQAB"})) == "private-key-material"


def test_private_ec_key_is_refused() -> None:
    assert reason_of(ec_jwk(d=b64url(b"\x01" * 32))) == "private-key-material"


@pytest.mark.parametrize("jwk", [None, [], "RSA", 5])
def test_not_an_object(jwk: Any) -> None:
    assert reason_of(jwk) == "invalid-key"


def test_roca_fingerprint_is_refused() -> None:
    groups = json.loads(WYCHEPROOF_JWK.read_text())["testGroups"]
    roca = next(key for group in groups for key in (group.get("public") or {}).get("keys", [])
                if key.get("kid") == "kid-rsa-roca-sign")
    assert reason_of(roca) == "rsa-roca"


_JWK_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=12),
    st.sampled_from(["RSA", "EC", "oct", "OKP", "sig", "enc", "P-256", "P-521", "RS256", "ES256", "AQAB", "",
                     "AAAA", "_-_-", "A"]),
    st.lists(st.sampled_from(["verify", "sign"]), max_size=2),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["kty", "kid", "alg", "use", "key_ops", "n", "e", "crv", "x", "y", "d"]),
                       _JWK_VALUES, max_size=8),
       st.sampled_from([rsa_jwk(), ec_jwk(), {}]))
def test_no_exception_other_than_unusable_key_escapes(overrides: dict[str, Any], base: dict[str, Any]) -> None:
    try:
        loaded = load_jwk({**base, **overrides}, source="fuzz")
    except UnusableKeyError as exc:
        assert exc.reason
    else:
        assert loaded.algorithm in SUPPORTED_ALGORITHMS


# -- key sets --------------------------------------------------------------------------------------


@pytest.mark.parametrize("document", [None, [], "keys", {"keys": None}, {"keys": {}}, {"key": []}, {}])
def test_a_document_that_is_not_a_jwks(document: Any) -> None:
    with pytest.raises(JwksDocumentError):
        load_jwks(document, source="jwks")


def test_too_many_keys_refuses_the_document() -> None:
    keys = [rsa_jwk(kid=f"k{i}") for i in range(5)]
    assert len(load_jwks({"keys": keys}, source="jwks", max_keys=5).keys) == 5
    with pytest.raises(JwksDocumentError):
        load_jwks({"keys": [*keys, rsa_jwk(kid="k6")]}, source="jwks", max_keys=5)


def test_mixed_key_set_loads_both() -> None:
    loaded = load_jwks({"keys": [ec_jwk(), rsa_jwk()]}, source="jwks")
    assert {kid: key.algorithm for kid, key in loaded.keys.items()} == {"ec-256": "ES256", "rsa-a": "RS256"}
    assert loaded.skipped == []
    assert all(key.source == "jwks" for key in loaded.keys.values())


def test_empty_set_is_a_valid_document() -> None:
    loaded = load_jwks({"keys": []}, source="jwks")
    assert loaded.keys == {} and loaded.skipped == []


def test_unusable_keys_are_skipped_with_their_reason() -> None:
    document = {"keys": [
        rsa_jwk(),
        ec_jwk(kid="enc", use="enc"),
        {"kty": "oct", "kid": "hmac", "k": b64url(b"k" * 32)},
        rsa_jwk(kid="priv", d="AQAB"),
        "not an object",
    ]}
    loaded = load_jwks(document, source="jwks")
    assert list(loaded.keys) == ["rsa-a"]
    assert loaded.skipped == [
        ("enc", "not-for-signatures"), ("hmac", "symmetric-key"), ("priv", "private-key-material"),
        (None, "invalid-key"),
    ]


def test_duplicate_kid_skips_every_copy() -> None:
    loaded = load_jwks({"keys": [rsa_jwk(kid="dup"), ec_jwk(kid="dup"), ec_jwk(EC384)]}, source="jwks")
    assert list(loaded.keys) == ["ec-384"]
    assert loaded.skipped == [("dup", "duplicate-kid"), ("dup", "duplicate-kid")]


def test_kid_is_required_when_the_set_has_several_keys() -> None:
    loaded = load_jwks({"keys": [rsa_jwk(kid=None), ec_jwk(), ec_jwk(EC384, kid=7), ec_jwk(EC521, kid="")]},
                       source="jwks")
    assert list(loaded.keys) == ["ec-256"]
    assert loaded.skipped == [(None, "missing-kid"), (None, "invalid-kid"), (None, "invalid-kid")]


def test_a_single_key_may_go_without_kid() -> None:
    loaded = load_jwks({"keys": [rsa_jwk(kid=None)]}, source="jwks")
    assert list(loaded.keys) == [None]
    assert loaded.keys[None].kid is None


# Wycheproof JWK vectors whose key set must not give the token's kid a usable key (REFERENCE.md §5.5).
_WYCHEPROOF_REFUSED = {1, 4, 6, 7, 8, 9, 10, 11, 12, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26}


def _wycheproof_jwk_cases() -> list[tuple[int, Any, str | None]]:
    cases: list[tuple[int, Any, str | None]] = []
    for group in json.loads(WYCHEPROOF_JWK.read_text())["testGroups"]:
        keys = group.get("public") or group.get("private")
        for test in group["tests"]:
            header_b64 = test["jws"].split(".")[0]
            header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
            cases.append((test["tcId"], keys, header.get("kid")))
    return cases


@pytest.mark.parametrize(("tc_id", "keys", "kid"), _wycheproof_jwk_cases(), ids=lambda v: str(v)[:12])
def test_wycheproof_jwk_vectors(tc_id: int, keys: Any, kid: str | None) -> None:
    loaded = load_jwks(keys if "keys" in keys else {"keys": [keys]}, source="wycheproof")
    if tc_id in _WYCHEPROOF_REFUSED:
        assert kid not in loaded.keys
    elif tc_id == 5:  # a sound RSA key
        assert loaded.keys[kid].algorithm == "RS256"
    else:  # 2, 3, 13-15: sound HMAC keys, but symmetric keys are refused from a key set by policy
        assert kid not in loaded.keys
        assert all(reason == "symmetric-key" for _, reason in loaded.skipped)


# -- PEM -------------------------------------------------------------------------------------------


def test_rsa_pem_loads_without_kid() -> None:
    loaded = load_pem(RSA.public_pem())
    assert (loaded.kid, loaded.algorithm, loaded.source) == (None, "RS256", "pem")
    assert verifies(loaded.key, RSA)


@pytest.mark.parametrize(("key", "alg"), [(EC256, "ES256"), (EC384, "ES384"), (EC521, "ES512")])
def test_ec_pem_loads(key: SigningKey, alg: str) -> None:
    loaded = load_pem(key.public_pem(), source="CLERK_JWT_KEY")
    assert (loaded.algorithm, loaded.source) == (alg, "CLERK_JWT_KEY")
    assert verifies(loaded.key, key)


def test_pem_with_escaped_layout_and_whitespace() -> None:
    assert load_pem("\n  " + RSA.public_pem() + "\n\n").algorithm == "RS256"


def _pem_of(public: Any) -> str:
    return str(public.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode())


def test_small_rsa_pem_is_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    with pytest.raises(UnusableKeyError) as excinfo:
        load_pem(_pem_of(small))
    assert excinfo.value.reason == "rsa-too-small"


@pytest.mark.parametrize("public", [
    ed25519.Ed25519PrivateKey.generate().public_key(),
    ec.generate_private_key(ec.SECP256K1()).public_key(),
])
def test_unsupported_pem_key_types(public: Any) -> None:
    with pytest.raises(UnusableKeyError) as excinfo:
        load_pem(_pem_of(public))
    assert excinfo.value.reason == "unsupported-key-type"


@pytest.mark.parametrize("pem", [
    RSA.private_pem(),
    "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----",
    "-----BEGIN PUBLIC KEY-----\n" + "é" * 10 + "\n-----END PUBLIC KEY-----",
    "",
])
def test_garbage_pem_is_refused(pem: str) -> None:
    with pytest.raises(UnusableKeyError) as excinfo:
        load_pem(pem)
    assert excinfo.value.reason == "invalid-key"


def test_error_messages_carry_no_key_material() -> None:
    jwk = rsa_jwk(d="c2VjcmV0LXByaXZhdGUtZXhwb25lbnQ")
    with pytest.raises(UnusableKeyError) as excinfo:
        load_jwk(jwk, source="jwks")
    assert jwk["d"] not in str(excinfo.value) and jwk["n"][:20] not in str(excinfo.value)
