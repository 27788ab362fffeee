"""Row 9 of the attack table (``aud``) end to end, on the backend that requires an audience: Fauna.

The other rows run through a Hasura backend in ``test_attacks_e2e.py``; no Hasura setting requires
an ``aud``, so row 9 is proven here against a Fauna backend with ``audience`` set — refused in
Fauna's error shape before anything reaches Fauna, or, for a list containing the audience,
forwarded with the verified token.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support.attacks import (
    AUTHORIZED_PARTY,
    CASES,
    NEEDS_AUDIENCE,
    Accepted,
    AttackCase,
    AttackContext,
    attack_keys,
)
from tests.support.fauna_server import FaunaServer
from tests.support.gateway_process import ISSUER, GatewayProcess, gateway_env
from tests.support.jwks_server import JwksServer

AUDIENCE_CASES = [case for case in CASES if NEEDS_AUDIENCE in case.needs]
#: The Fauna adapter names a missing aud apart from a wrong one; both are the row's refusal.
AUDIENCE_REASONS = {"audience-mismatch", "audience-missing"}


@pytest.fixture(scope="module")
def fauna() -> Iterator[FaunaServer]:
    with FaunaServer() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(fauna: FaunaServer) -> Iterator[GatewayProcess]:
    keys = attack_keys()
    ctx = AttackContext(issuer=ISSUER, now=time.time(), skew=30.0, azp=AUTHORIZED_PARTY)
    with JwksServer(keys.k1, keys.k2, keys.k3) as jwks:
        env = gateway_env(jwks.url, {"fauna": {"url": fauna.url, "audience": ctx.audience}},
                          CLERK_CLOCK_SKEW_SECONDS=30, GATEWAY_RATE_LIMIT_ENABLED="false")
        with GatewayProcess(env) as process:
            yield process


def test_row_9_has_cases() -> None:
    assert len(AUDIENCE_CASES) == 4


@pytest.mark.parametrize("attack", AUDIENCE_CASES, ids=lambda attack: attack.id)
def test_audience_attack_through_a_fauna_backend(attack: AttackCase, gateway: GatewayProcess,
                                                 fauna: FaunaServer) -> None:
    fauna.reset()
    ctx = AttackContext(issuer=ISSUER, now=time.time(), skew=30.0, azp=AUTHORIZED_PARTY)
    token = attack.build(ctx)
    with gateway.client() as client:
        response = client.post("/fauna/query/1", json={"query": {"fql": ["1"]}},
                               headers={"Authorization": f"Bearer {token}"})
    if isinstance(attack.outcome, Accepted):
        assert response.status_code == 200, response.text
        (sent,) = fauna.requests_to("/query/1")
        assert sent.header("authorization") == f"Bearer {token}"
        return
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == "unauthorized" and error["reason"] in AUDIENCE_REASONS
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert token not in response.text
    assert fauna.requests_to("/query/1") == []
