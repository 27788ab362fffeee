"""Fixtures for the end-to-end suite: the doubles and the helpers that mint tokens.

Scopes keep the suite fast: one recording upstream for the whole session (reset before each
test), one JWKS server per module (modules rotate and break it), and each module starts the
gateway(s) it needs with module scope through :func:`start_gateway`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support.gateway_process import ISSUER, GatewayProcess
from tests.support.jwks_server import JwksServer
from tests.support.tokens import SigningKey, clerk_claims
from tests.support.upstream import RecordingUpstream

Mint = Callable[..., str]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    """The key the JWKS server publishes by default (kid ``ins_e2e``)."""
    return SigningKey.rsa("ins_e2e")


@pytest.fixture(scope="session")
def upstream() -> Iterator[RecordingUpstream]:
    with RecordingUpstream() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream: RecordingUpstream) -> None:
    upstream.reset()


@pytest.fixture(scope="module")
def jwks_server(signing_key: SigningKey) -> Iterator[JwksServer]:
    with JwksServer(signing_key) as server:
        yield server


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    """A client of the module's ``gateway`` fixture (each module starts the gateway it needs)."""
    with gateway.client() as client:
        yield client


def make_token(key: SigningKey, *, header: dict[str, Any] | None = None, **claims: Any) -> str:
    """A Clerk session token from ``key``; ``claims`` go to :func:`clerk_claims` (issuer defaulted)."""
    claims.setdefault("issuer", ISSUER)
    return key.sign(clerk_claims(**claims), header=header)


@pytest.fixture(scope="session")
def mint(signing_key: SigningKey) -> Mint:
    """``mint(sub="user_x", key=other_key, header={...}, **claims)`` → a signed token (fresh ``jti``)."""

    def _mint(*, key: SigningKey | None = None, header: dict[str, Any] | None = None, **claims: Any) -> str:
        return make_token(key or signing_key, header=header, **claims)

    return _mint


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def graphql_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert a GraphQL-shaped gateway error and return its single error object."""
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    body = response.json()
    assert set(body) == {"errors"}, body
    assert isinstance(body["errors"], list) and len(body["errors"]) == 1, body
    error = body["errors"][0]
    assert isinstance(error["message"], str) and error["message"], body
    assert isinstance(error["extensions"]["code"], str) and error["extensions"]["code"], body
    if code is not None:
        assert error["extensions"]["code"] == code, body
    return dict(error)
