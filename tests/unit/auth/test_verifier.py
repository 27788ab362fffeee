"""The strict verifier: every step and every rejection reason, plus the explanation for ``inspect``."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clerk_gateway.auth.model import TokenKind, VerificationKey, VerifiedToken
from clerk_gateway.auth.token_cache import VerifiedTokenCache
from clerk_gateway.auth.verifier import (
    CATEGORY_IGNORE,
    CATEGORY_SESSION,
    CATEGORY_TEMPLATE,
    Check,
    TokenVerifier,
    VerifierPolicy,
)
from clerk_gateway.errors import (
    AuthenticationError,
    ForbiddenError,
    GatewayError,
    ServiceUnavailableError,
)
from clerk_gateway.settings.clerk import ClerkConfig
from tests.support.tokens import KeySetProvider, SigningKey, b64url, clerk_claims

ISSUER = "https://clerk.example.com"
NOW = 1_700_000_000.0
RSA = SigningKey.rsa()
RSA_OTHER = SigningKey.rsa("ins_other")
EC = SigningKey.ec()
POLICY = VerifierPolicy(issuer=ISSUER)


def verifier(policy: VerifierPolicy = POLICY, *keys: SigningKey, cache: VerifiedTokenCache | None = None,
             now: float = NOW) -> TokenVerifier:
    return TokenVerifier(KeySetProvider.of(*(keys or (RSA, EC))), policy, cache=cache, clock=lambda: now)


def claims(**extra: Any) -> dict[str, Any]:
    return clerk_claims(issuer=ISSUER, now=NOW, **extra)


async def reject(token: str, policy: VerifierPolicy = POLICY, *keys: SigningKey,
                 error: type[GatewayError] = AuthenticationError, now: float = NOW) -> str:
    with pytest.raises(error) as caught:
        await verifier(policy, *keys, now=now).verify(token)
    assert type(caught.value) is error
    assert token not in caught.value.message
    assert "eyJ" not in caught.value.message
    return caught.value.reason


# -- accepted tokens -----------------------------------------------------------------------------


async def test_session_token() -> None:
    token = RSA.sign(claims(azp="https://app.example.com"))
    verified = await verifier().verify(token)
    assert isinstance(verified, VerifiedToken)
    assert verified.token == token
    assert verified.kind is TokenKind.SESSION
    assert verified.subject == "user_2abc"
    assert verified.session_id == "sess_2abc"
    assert verified.expires_at == NOW + 60
    assert verified.header == {"alg": "RS256", "kid": "ins_test", "typ": "JWT"}
    assert verified.claims["azp"] == "https://app.example.com"
    assert token not in repr(verified)


async def test_template_token_without_sid() -> None:
    verified = await verifier().verify(RSA.sign(claims(sid=None, v=None)))
    assert verified.kind is TokenKind.TEMPLATE
    assert verified.session_id is None


@pytest.mark.parametrize("key", [
    SigningKey.rsa("ins_384", alg="RS384"),
    SigningKey.rsa("ins_512", alg="RS512"),
    SigningKey.rsa("ins_3072", 3072),
    SigningKey.ec("ec256", "P-256"),
    SigningKey.ec("ec384", "P-384"),
    SigningKey.ec("ec521", "P-521"),
], ids=lambda key: key.alg)
async def test_every_supported_algorithm(key: SigningKey) -> None:
    verified = await verifier(POLICY, key, RSA).verify(key.sign(claims()))
    assert verified.subject == "user_2abc"


async def test_float_times_are_legal() -> None:
    verified = await verifier().verify(RSA.sign(claims(exp=NOW + 30.5, iat=NOW - 0.25, nbf=NOW - 10.5)))
    assert verified.expires_at == NOW + 30.5


async def test_no_nbf_no_iat() -> None:
    await verifier().verify(RSA.sign(claims(nbf=None, iat=None)))


async def test_kidless_token_with_a_single_kidless_key() -> None:
    key = SigningKey.rsa("single")
    jwk = key.public_jwk()
    del jwk["kid"]
    provider = KeySetProvider({"keys": [jwk]})
    verified = await TokenVerifier(provider, POLICY, clock=lambda: NOW).verify(
        key.sign(claims(), header={"kid": None}))
    assert verified.subject == "user_2abc"


async def test_unknown_header_members_are_ignored() -> None:
    await verifier().verify(RSA.sign(claims(), header={"oiat": 1, "x-custom": {"a": 1}}))


# -- key and signature ---------------------------------------------------------------------------


async def test_unknown_kid() -> None:
    assert await reject(RSA.sign(claims(), header={"kid": "ins_nope"})) == "unknown-kid"


async def test_missing_kid_with_several_keys() -> None:
    assert await reject(RSA.sign(claims(), header={"kid": None})) == "missing-kid"


async def test_algorithm_must_match_the_key() -> None:
    rs384 = SigningKey.rsa("ins_test", alg="RS384")  # same key material, published as RS384
    assert await reject(RSA.sign(claims()), POLICY, rs384) == "algorithm-mismatch"
    # EC key, token claims RS256
    assert await reject(RSA.sign(claims(), header={"kid": "ins_ec"})) == "algorithm-mismatch"


async def test_tampered_payload() -> None:
    head, _, signature = RSA.sign(claims()).split(".")
    forged = b64url(json.dumps(claims(sub="user_admin")).encode())
    assert await reject(f"{head}.{forged}.{signature}") == "invalid-signature"


async def test_signature_by_another_key_under_the_same_kid() -> None:
    impostor = SigningKey(RSA_OTHER._private, kid="ins_test", alg="RS256")
    assert await reject(impostor.sign(claims())) == "invalid-signature"


@pytest.mark.parametrize("signature", [b"", b"\x00" * 256, b"\x00" * 64, b"\x01"])
async def test_bad_signature_bytes(signature: bytes) -> None:
    head, payload, _ = RSA.sign(claims()).split(".")
    assert await reject(f"{head}.{payload}.{b64url(signature)}") == "invalid-signature"
    head, payload, _ = EC.sign(claims()).split(".")
    assert await reject(f"{head}.{payload}.{b64url(signature)}") == "invalid-signature"


async def test_key_provider_unavailable_passes_through() -> None:
    class Down:
        async def key_for(self, kid: str | None) -> VerificationKey:
            raise ServiceUnavailableError("keys-unavailable", "no keys yet")

    with pytest.raises(ServiceUnavailableError) as caught:
        await TokenVerifier(Down(), POLICY, clock=lambda: NOW).verify(RSA.sign(claims()))
    assert caught.value.reason == "keys-unavailable"


async def test_key_provider_bug_becomes_unavailable() -> None:
    class Broken:
        async def key_for(self, kid: str | None) -> VerificationKey:
            raise RuntimeError("boom")

    with pytest.raises(ServiceUnavailableError):
        await TokenVerifier(Broken(), POLICY, clock=lambda: NOW).verify(RSA.sign(claims()))


async def test_broken_key_object_is_an_invalid_signature() -> None:
    class Odd:
        async def key_for(self, kid: str | None) -> VerificationKey:
            return VerificationKey(kid=kid, algorithm="RS256", key=object())

    with pytest.raises(AuthenticationError) as caught:
        await TokenVerifier(Odd(), POLICY, clock=lambda: NOW).verify(RSA.sign(claims()))
    assert caught.value.reason == "invalid-signature"


async def test_structure_is_checked_before_the_key_lookup() -> None:
    provider = KeySetProvider.of(RSA)
    with pytest.raises(AuthenticationError):
        await TokenVerifier(provider, POLICY, clock=lambda: NOW).verify(RSA.sign(claims(), header={"alg": "HS256"}))
    assert provider.lookups == []


async def test_signature_is_checked_before_claims() -> None:
    head, _, signature = RSA.sign(claims()).split(".")
    expired = b64url(json.dumps(claims(exp=1)).encode())
    assert await reject(f"{head}.{expired}.{signature}") == "invalid-signature"


# -- claim types ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", ["1999999999", True, False, None, [], {}, -1, 2**53, 10**30, "1.7e9"])
async def test_time_claim_types(name: str, value: object) -> None:
    assert await reject(RSA.sign(claims(**{name: value}) | {name: value})) == "invalid-claims"


async def test_exp_is_required() -> None:
    assert await reject(RSA.sign(claims(exp=None))) == "invalid-claims"


@pytest.mark.parametrize("extra", [
    {"sub": ""}, {"sub": 5}, {"sub": ["user"]}, {"sub": None},
    {"iss": 5}, {"iss": [ISSUER]},
    {"sid": ""}, {"sid": 5}, {"sid": None},
    {"azp": 5}, {"sts": 1},
])
async def test_claim_value_types(extra: dict[str, Any]) -> None:
    token_claims = claims()
    token_claims.update(extra)
    assert await reject(RSA.sign(token_claims)) == "invalid-claims"


async def test_missing_sub() -> None:
    assert await reject(RSA.sign(claims(sub=None) | {"sub": None})) == "invalid-claims"
    token_claims = claims()
    del token_claims["sub"]
    assert await reject(RSA.sign(token_claims)) == "invalid-claims"


# -- times ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "reason"), [
    ({"exp": NOW - 5}, "token-expired"),              # exp <= now - skew
    ({"exp": NOW - 65, "iat": NOW - 125, "nbf": NOW - 125}, "token-expired"),
    ({"nbf": NOW + 5.5}, "token-not-active-yet"),
    ({"nbf": NOW + 65}, "token-not-active-yet"),
    ({"iat": NOW + 5.5}, "token-iat-in-the-future"),
    ({"iat": NOW + 3600, "exp": NOW + 3660}, "token-iat-in-the-future"),
])
async def test_time_rejections(extra: dict[str, Any], reason: str) -> None:
    assert await reject(RSA.sign(claims(**extra))) == reason


@pytest.mark.parametrize("extra", [
    {"exp": NOW - 4.5}, {"exp": NOW - 2.5}, {"nbf": NOW + 5}, {"nbf": NOW + 2.5}, {"iat": NOW + 5},
])
async def test_within_the_skew(extra: dict[str, Any]) -> None:
    await verifier().verify(RSA.sign(claims(**extra)))


async def test_zero_skew() -> None:
    strict = replace(POLICY, clock_skew_seconds=0)
    assert await reject(RSA.sign(claims(exp=NOW)), strict) == "token-expired"
    assert await reject(RSA.sign(claims(nbf=NOW + 1)), strict) == "token-not-active-yet"
    await verifier(strict).verify(RSA.sign(claims(exp=NOW + 1, nbf=NOW)))


async def test_maximum_lifetime() -> None:
    bounded = replace(POLICY, max_lifetime_seconds=300)
    assert await reject(RSA.sign(claims(lifetime=301)), bounded) == "token-lifetime-too-long"
    await verifier(bounded).verify(RSA.sign(claims(lifetime=300)))
    # without iat the remaining lifetime counts
    assert await reject(RSA.sign(claims(iat=None, exp=NOW + 400)), bounded) == "token-lifetime-too-long"
    await verifier(bounded).verify(RSA.sign(claims(iat=None, exp=NOW + 200)))


# -- issuer, audience, azp, sts ------------------------------------------------------------------


@pytest.mark.parametrize("iss", ["https://evil.example.com", ISSUER + "/", "http://clerk.example.com",
                                 "https://CLERK.example.com", ""])
async def test_issuer_mismatch(iss: str) -> None:
    assert await reject(RSA.sign(claims(iss=iss))) == "issuer-mismatch"


async def test_issuer_missing() -> None:
    assert await reject(RSA.sign(claims(iss=None))) == "issuer-mismatch"


async def test_trailing_slash_in_the_configured_issuer_matters() -> None:
    slashed = replace(POLICY, issuer=ISSUER + "/")
    assert await reject(RSA.sign(claims()), slashed) == "issuer-mismatch"


async def test_audience_when_configured() -> None:
    policy = replace(POLICY, audiences=frozenset({"https://db.fauna.com/db/abc"}))
    for aud in (None, "other", 5, [], ["other"]):
        assert await reject(RSA.sign(claims(aud=aud) | {"aud": aud}), policy) == "audience-mismatch"
    await verifier(policy).verify(RSA.sign(claims(aud="https://db.fauna.com/db/abc")))
    await verifier(policy).verify(RSA.sign(claims(aud=["x", "https://db.fauna.com/db/abc"])))


async def test_audience_ignored_when_not_configured() -> None:
    await verifier().verify(RSA.sign(claims(aud="anything")))


PARTIES = replace(POLICY, authorized_parties=frozenset({"https://app.example.com", "http://localhost:3000"}))


async def test_azp_missing_with_authorized_parties() -> None:
    assert await reject(RSA.sign(claims()), PARTIES, error=ForbiddenError) == "azp-missing"


@pytest.mark.parametrize("azp", ["https://evil.example", "https://app.example.com/", "https://APP.example.com"])
async def test_azp_not_authorized(azp: str) -> None:
    assert await reject(RSA.sign(claims(azp=azp)), PARTIES, error=ForbiddenError) == "azp-not-authorized"


async def test_azp_authorized() -> None:
    await verifier(PARTIES).verify(RSA.sign(claims(azp="http://localhost:3000")))


async def test_azp_not_checked_without_authorized_parties() -> None:
    await verifier().verify(RSA.sign(claims(azp="https://evil.example")))


async def test_pending_session() -> None:
    assert await reject(RSA.sign(claims(sts="pending")), error=ForbiddenError) == "session-pending"
    await verifier(replace(POLICY, reject_pending=False)).verify(RSA.sign(claims(sts="pending")))
    await verifier().verify(RSA.sign(claims(sts="active")))


# -- token kind ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("cat", "sid", "kind"), [
    (CATEGORY_SESSION, "sess_1", TokenKind.SESSION),
    (CATEGORY_TEMPLATE, None, TokenKind.TEMPLATE),
    (CATEGORY_TEMPLATE, "sess_1", TokenKind.TEMPLATE),
    (CATEGORY_IGNORE, "sess_1", TokenKind.SESSION),
    (CATEGORY_IGNORE, None, TokenKind.TEMPLATE),
])
async def test_categories(cat: str, sid: str | None, kind: TokenKind) -> None:
    verified = await verifier().verify(RSA.sign(claims(sid=sid), header={"cat": cat}))
    assert verified.kind is kind


async def test_session_category_without_sid() -> None:
    token = RSA.sign(claims(sid=None), header={"cat": CATEGORY_SESSION})
    assert await reject(token) == "token-category-mismatch"


@pytest.mark.parametrize("cat", ["cl_B7d4PD333AAA", "session", "", 1, ["cl_B7d4PD111AAA"], True])
async def test_unknown_category(cat: object) -> None:
    assert await reject(RSA.sign(claims(), header={"cat": cat})) == "token-category-unknown"


async def test_null_category_is_not_absent() -> None:
    token = RSA.sign_raw(json.dumps({"alg": "RS256", "kid": "ins_test", "cat": None}), json.dumps(claims()))
    assert await reject(token) == "token-category-unknown"


# -- policy from settings ------------------------------------------------------------------------


def test_policy_from_clerk() -> None:
    config = ClerkConfig(
        issuer=ISSUER, jwks_url=ISSUER + "/.well-known/jwks.json", backend_api_jwks_url=None, secret_key=None,
        api_url="https://api.clerk.com", jwt_key_pem=None, authorized_parties=frozenset({"https://a.example"}),
        clock_skew_seconds=7, reject_pending=False, jwks_cooldown_seconds=10, jwks_max_stale_seconds=60,
        session_cookie_names=("__session",),
    )
    policy = VerifierPolicy.from_clerk(config)
    assert policy == VerifierPolicy(issuer=ISSUER, authorized_parties=frozenset({"https://a.example"}),
                                    clock_skew_seconds=7, reject_pending=False)


# -- cache ---------------------------------------------------------------------------------------


async def test_cache_hit_skips_the_key_lookup() -> None:
    provider = KeySetProvider.of(RSA)
    cache = VerifiedTokenCache(10)
    tokens = TokenVerifier(provider, POLICY, cache=cache, clock=lambda: NOW)
    token = RSA.sign(claims())
    first = await tokens.verify(token)
    second = await tokens.verify(token)
    assert second is first
    assert provider.lookups == ["ins_test"]
    assert len(cache) == 1


async def test_rejections_are_not_cached() -> None:
    cache = VerifiedTokenCache(10)
    tokens = verifier(PARTIES, cache=cache)
    token = RSA.sign(claims())
    for _ in range(2):
        with pytest.raises(ForbiddenError):
            await tokens.verify(token)
    assert len(cache) == 0


async def test_cached_token_does_not_outlive_exp() -> None:
    now = [NOW]
    provider = KeySetProvider.of(RSA)
    cache = VerifiedTokenCache(10)
    tokens = TokenVerifier(provider, POLICY, cache=cache, clock=lambda: now[0])
    token = RSA.sign(claims(lifetime=60))
    await tokens.verify(token)
    now[0] = NOW + 62  # past exp, inside the skew: verified again (not served from the cache)
    await tokens.verify(token)
    assert provider.lookups == ["ins_test", "ins_test"]
    now[0] = NOW + 65
    with pytest.raises(AuthenticationError) as caught:
        await tokens.verify(token)
    assert caught.value.reason == "token-expired"


# -- explain -------------------------------------------------------------------------------------


async def test_explain_accepted_token() -> None:
    checks = await verifier(PARTIES).explain(RSA.sign(claims(azp="https://app.example.com")))
    assert all(isinstance(check, Check) and check.passed for check in checks), checks
    assert [check.name for check in checks] == [
        "token format", "signing key", "algorithm", "signature", "claim types", "validity period", "issuer",
        "authorized party", "session status", "token kind"]
    assert checks[-1].detail == "session token"


async def test_explain_malformed_token_stops_at_the_format() -> None:
    checks = await verifier().explain("not a token")
    assert checks == [Check("token format", False, checks[0].detail)]
    assert "three" in checks[0].detail


async def test_explain_reports_every_failing_claim() -> None:
    head, _, signature = RSA.sign(claims()).split(".")
    payload = b64url(json.dumps(claims(exp=NOW - 100, iss="https://evil.example", sts="pending")).encode())
    checks = {check.name: check for check in await verifier().explain(f"{head}.{payload}.{signature}")}
    assert checks["signing key"].passed
    assert not checks["signature"].passed
    assert not checks["validity period"].passed
    assert not checks["issuer"].passed
    assert not checks["session status"].passed
    assert checks["token kind"].passed


async def test_explain_unknown_kid() -> None:
    checks = {check.name: check for check in await verifier().explain(
        RSA.sign(claims(), header={"kid": "nope"}))}
    assert not checks["signing key"].passed
    assert checks["signature"].detail == "not checked: no signing key"
    assert checks["issuer"].passed


async def test_explain_ignores_the_cache() -> None:
    cache = VerifiedTokenCache(10)
    tokens = verifier(cache=cache)
    token = RSA.sign(claims())
    await tokens.verify(token)
    checks = await tokens.explain(token)
    assert all(check.passed for check in checks)


# -- properties ----------------------------------------------------------------------------------

PROPERTY_VERIFIER = verifier()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400) | st.from_regex(r"[A-Za-z0-9_\-]{0,60}(\.[A-Za-z0-9_\-=+/ ]{0,60}){0,5}",
                                             fullmatch=True))
async def test_any_text_is_verified_or_refused_cleanly(text: str) -> None:
    try:
        result = await PROPERTY_VERIFIER.verify(text)
    except GatewayError as exc:
        assert exc.reason
    else:
        assert isinstance(result, VerifiedToken)
    checks = await PROPERTY_VERIFIER.explain(text)
    assert checks and all(isinstance(check, Check) for check in checks)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
_names = st.sampled_from(["alg", "kid", "typ", "cat", "crit", "exp", "nbf", "iat", "iss", "sub", "sid", "azp",
                          "sts", "aud", "x"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=st.dictionaries(_names, _json, max_size=4), extra=st.dictionaries(_names, _json, max_size=5))
async def test_any_signed_content_is_verified_or_refused_cleanly(header: dict[str, Any],
                                                                 extra: dict[str, Any]) -> None:
    token = RSA.sign(claims() | extra, header=header)
    try:
        result = await PROPERTY_VERIFIER.verify(token)
    except GatewayError as exc:
        assert exc.reason
        assert token not in exc.message
    else:
        assert isinstance(result, VerifiedToken)


async def test_explain_survives_a_list_valued_azp_with_authorized_parties() -> None:
    """explain() walks every check even after the claim types failed; a list azp must not crash it."""
    checks = await verifier(PARTIES).explain(RSA.sign(claims(azp=["http://localhost:3000"])))
    assert any(not check.passed for check in checks)
