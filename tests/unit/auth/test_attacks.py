"""Every row of the attack table (REFERENCE.md §5.4) against the verifier, with the reason it must give.

The cases come from the shared catalogue (:mod:`tests.support.attacks`), which the end-to-end
suite runs through the real gateway too. Each key set is loaded by the real key loader
(:mod:`clerk_gateway.auth.jwk`): two RSA keys and an EC key, plus, for the key-set rows, keys the
loader must refuse. The tests below the catalogue run add what only the verifier can show (the
token kind, that no key work happened, the ``jti`` of a malleated signature…).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from clerk_gateway.auth.model import TokenKind, VerifiedToken
from clerk_gateway.auth.verifier import TokenVerifier, VerifierPolicy
from clerk_gateway.errors import AuthenticationError, ForbiddenError, GatewayError
from tests.support.attacks import (
    AUTHORIZED_PARTY,
    CASES,
    DEFAULT_SUBJECT,
    NEEDS_AUDIENCE,
    NEEDS_AUTHORIZED_PARTIES,
    Accepted,
    AttackCase,
    AttackContext,
    Rejected,
    case,
    mirror_ecdsa,
)
from tests.support.tokens import KeySetProvider, SigningKey

ISSUER = "https://clerk.example.com"
NOW = 1_750_000_000.0
SKEW = 5.0
POLICY = VerifierPolicy(issuer=ISSUER, clock_skew_seconds=SKEW)
CONTEXT = AttackContext(issuer=ISSUER, now=NOW, skew=SKEW)

K1, K2, K3 = CONTEXT.keys.k1, CONTEXT.keys.k2, CONTEXT.keys.k3
P = CONTEXT.claims()


def provider(document: dict[str, object] | None = None) -> KeySetProvider:
    return KeySetProvider(document if document is not None else CONTEXT.default_key_set())


def verifier(policy: VerifierPolicy = POLICY, keys: KeySetProvider | None = None) -> TokenVerifier:
    return TokenVerifier(keys or provider(), policy, clock=lambda: NOW)


def policy_for(attack: AttackCase) -> VerifierPolicy:
    policy = POLICY
    if NEEDS_AUDIENCE in attack.needs:
        policy = replace(policy, audiences=frozenset({CONTEXT.audience}))
    if NEEDS_AUTHORIZED_PARTIES in attack.needs:
        policy = replace(policy, authorized_parties=frozenset({AUTHORIZED_PARTY}))
    return policy


async def rejected(token: str, reason: str | set[str] | frozenset[str], *, policy: VerifierPolicy = POLICY,
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


# -- the catalogue: rows 1-26 and the "Also reject" line -----------------------------------------


@pytest.mark.parametrize("attack", CASES, ids=lambda attack: attack.id)
async def test_attack(attack: AttackCase) -> None:
    keys = provider(attack.document(CONTEXT))
    for skipped in attack.skipped_at_load:
        assert skipped in keys.skipped, keys.skipped
    token = attack.build(CONTEXT)
    expected = attack.expected_from_verifier
    if isinstance(expected, Rejected):
        error = AuthenticationError if expected.status == 401 else ForbiddenError
        await rejected(token, expected.reasons, policy=policy_for(attack), keys=keys, error=error)
    else:
        assert isinstance(expected, Accepted)
        verified = await accepted(token, policy=policy_for(attack), keys=keys)
        assert verified.kind is expected.kind
        assert verified.subject == DEFAULT_SUBJECT


def test_the_catalogue_covers_every_row() -> None:
    assert {attack.row for attack in CASES} == {*range(1, 27), None}
    accepted_rows = {attack.row for attack in CASES if isinstance(attack.outcome, Accepted)}
    assert accepted_rows == {7, 9, 21, 23, 25}


# -- what only the verifier can show -------------------------------------------------------------


async def test_row11_template_token_is_classified_as_template() -> None:
    # The verifier names the kind; a backend that accepts session tokens only refuses it (proxy).
    verified = await accepted(case("row11-template-token").build(CONTEXT))
    assert verified.kind is TokenKind.TEMPLATE
    assert verified.session_id is None


async def test_row13_huge_payload_is_refused_before_any_key_work() -> None:
    keys = provider()
    await rejected(case("row13-huge-payload").build(CONTEXT), "token-too-large", keys=keys)
    assert keys.lookups == []


async def test_row21_ecdsa_malleability_keeps_the_jti() -> None:
    token = K3.sign(P)
    mirrored = mirror_ecdsa(token)
    assert mirrored != token
    verified = await accepted(mirrored)
    assert verified.claims["jti"] == P["jti"]  # same jti: identify tokens by jti, never by the token hash


async def test_row23_float_exp_is_kept_as_is() -> None:
    verified = await accepted(case("row23-exp-float").build(CONTEXT))
    assert verified.expires_at == NOW + 30.5


@pytest.mark.parametrize("key", [K1, K2, K3], ids=lambda key: key.kid)
async def test_baseline_every_key_of_the_set_verifies(key: SigningKey) -> None:
    assert (await accepted(key.sign(P))).subject == P["sub"]
