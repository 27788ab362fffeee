"""Every identity mode on every backend that has it, through one running gateway.

The Hasura modes have modules of their own (test_proxy_identity, test_mint_mode, test_exchange_mode);
this one proves the same modes on Nhost (forward, mint, exchange; admin_secret is in
test_nhost_and_orgs) and Fauna's exchange mode (forward is in test_fauna), each against the double
that checks what that mode must send: a recording upstream, an upstream that verifies the minted
token against the gateway's JWKS, the fake Clerk Backend API and the Fauna wire-format server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from jose import jwt

from tests.e2e.conftest import Mint, bearer
from tests.support.clerk_api import FakeClerkApi, Session, hasura_template
from tests.support.fauna_server import FaunaServer
from tests.support.gateway_process import ISSUER, GatewayProcess, gateway_env
from tests.support.jwks_server import JwksServer
from tests.support.jwt_upstream import NAMESPACE, JwtVerifyingUpstream
from tests.support.tokens import SigningKey
from tests.support.upstream import RecordingUpstream

SECRET = "sk_test_" + "modesAcrossBackends" * 2
FAUNA_AUD = "https://db.fauna.com/db/ys1modes"
QUERY = {"query": "{ viewer { id } }"}


def fauna_template(session: Session) -> dict[str, object]:
    return {"aud": FAUNA_AUD, "sub": session.user_id}


@pytest.fixture(scope="module")
def clerk_api(signing_key: SigningKey) -> Iterator[FakeClerkApi]:
    with FakeClerkApi(signing_key, secret_key=SECRET, issuer=ISSUER) as server:
        server.set_template("nhost", hasura_template)
        server.set_template("fauna", fauna_template)
        yield server


@pytest.fixture(scope="module")
def minted_upstream() -> Iterator[JwtVerifyingUpstream]:
    with JwtVerifyingUpstream(issuer="clerk-gateway", audience="nhost-mint") as server:
        yield server


@pytest.fixture(scope="module")
def fauna() -> Iterator[FaunaServer]:
    with FaunaServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_fauna(fauna: FaunaServer) -> None:
    fauna.reset()


@pytest.fixture(scope="module")
def gateway(jwks_server: JwksServer, upstream: RecordingUpstream, minted_upstream: JwtVerifyingUpstream,
            clerk_api: FakeClerkApi, fauna: FaunaServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    graphql = upstream.url + "/v1/graphql"  # Nhost's url is the GraphQL endpoint itself
    backends = {
        "nhost-fwd": {"adapter": "nhost", "url": graphql, "auth_mode": "forward"},
        "nhost-mint": {"adapter": "nhost", "url": minted_upstream.base_url + "/v1/graphql", "auth_mode": "mint"},
        "nhost-exch": {"adapter": "nhost", "url": graphql, "auth_mode": "exchange", "template": "nhost"},
        "fauna-exch": {"adapter": "fauna", "url": fauna.url, "auth_mode": "exchange", "template": "fauna"},
    }
    key_file: Path = tmp_path_factory.mktemp("mint") / "key.pem"
    env = gateway_env(jwks_server.url, backends, CLERK_SECRET_KEY=SECRET, CLERK_API_URL=clerk_api.url,
                      GATEWAY_SIGNING_KEY_FILE=key_file)
    with GatewayProcess(env) as process:
        minted_upstream.jwks_url = process.url + "/.well-known/jwks.json"
        yield process


def session(clerk_api: FakeClerkApi, user: str) -> str:
    session_id = f"sess_{uuid.uuid4().hex[:20]}"
    clerk_api.add_session(session_id, user)
    return session_id


def test_nhost_forward_sends_the_verified_template_token(client: httpx.Client, upstream: RecordingUpstream,
                                                         mint: Mint) -> None:
    token = mint(sid=None, **{NAMESPACE: {"x-hasura-default-role": "user", "x-hasura-allowed-roles": ["me", "user"],
                                         "x-hasura-user-id": "user_fwd"}})
    response = client.post("/nhost-fwd/v1/graphql", json=QUERY, headers={**bearer(token), "x-hasura-role": "me"})
    assert response.status_code == 200, response.text
    (sent,) = upstream.requests
    assert sent.path == "/v1/graphql"
    assert sent.header("authorization") == f"Bearer {token}" and sent.header("x-hasura-role") == "me"
    assert not sent.has_header("x-hasura-admin-secret")


def test_nhost_mint_is_verified_against_the_gateways_jwks_with_nhosts_roles(
        client: httpx.Client, minted_upstream: JwtVerifyingUpstream, mint: Mint) -> None:
    response = client.post("/nhost-mint/v1/graphql", json=QUERY, headers={**bearer(mint(sub="user_nm")),
                                                                          "x-hasura-role": "me"})
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"viewer": {"role": "me"}}}
    claims = minted_upstream.last_claims
    assert claims is not None and claims["aud"] == "nhost-mint" and claims["sub"] == "user_nm"
    assert claims[NAMESPACE]["x-hasura-allowed-roles"] == ["me", "user"]
    assert claims[NAMESPACE]["x-hasura-default-role"] == "user"


def test_nhost_exchange_forwards_clerks_template_token(client: httpx.Client, upstream: RecordingUpstream,
                                                       clerk_api: FakeClerkApi, mint: Mint) -> None:
    sid = session(clerk_api, "user_nx")
    response = client.post("/nhost-exch/v1/graphql", json=QUERY, headers=bearer(mint(sub="user_nx", sid=sid)))
    assert response.status_code == 200, response.text
    (sent,) = upstream.requests
    forwarded = sent.header("authorization")
    assert forwarded is not None and forwarded.removeprefix("Bearer ") in clerk_api.issued
    assert [call.session_id for call in clerk_api.token_calls] == [sid]


def test_fauna_exchange_sends_clerks_fauna_template_token(client: httpx.Client, fauna: FaunaServer,
                                                          clerk_api: FakeClerkApi, mint: Mint) -> None:
    sid = session(clerk_api, "user_fx")
    response = client.post("/fauna-exch/query/1", json={"query": {"fql": ["Product.all()"]}},
                           headers=bearer(mint(sub="user_fx", sid=sid)))
    assert response.status_code == 200, response.text
    (sent,) = fauna.requests_to("/query/1")
    forwarded = (sent.header("authorization") or "").removeprefix("Bearer ")
    assert forwarded in clerk_api.issued
    assert jwt.get_unverified_claims(forwarded)["aud"] == FAUNA_AUD
    assert sent.header("x-query-tags") == "clerk_user=user_fx"


def test_an_ended_session_is_refused_on_every_exchange_backend(client: httpx.Client, upstream: RecordingUpstream,
                                                               fauna: FaunaServer, clerk_api: FakeClerkApi,
                                                               mint: Mint) -> None:
    sid = session(clerk_api, "user_gone")
    clerk_api.end_session(sid)
    token = mint(sub="user_gone", sid=sid)
    nhost = client.post("/nhost-exch/v1/graphql", json=QUERY, headers=bearer(token))
    fauna_answer = client.post("/fauna-exch/query/1", json={"query": {"fql": ["1"]}}, headers=bearer(token))
    assert nhost.status_code == 401 and "www-authenticate" in nhost.headers
    assert nhost.json()["errors"][0]["extensions"]["code"] == "invalid-jwt"
    assert fauna_answer.status_code == 401 and fauna_answer.json()["error"]["code"] == "unauthorized"
    assert upstream.requests == [] and fauna.requests_to("/query/1") == []
