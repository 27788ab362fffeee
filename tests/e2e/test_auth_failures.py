"""Every way a token can be wrong ends at the gateway: 401/403 in Hasura's error shape, a
``WWW-Authenticate`` challenge, the token never echoed — and the upstream never called."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.e2e.conftest import Mint, bearer, graphql_error
from tests.support.gateway_process import ISSUER, GatewayProcess, gateway_env, hasura_backend
from tests.support.jwks_server import JwksServer
from tests.support.tokens import SigningKey, b64url, clerk_claims
from tests.support.upstream import RecordingUpstream

APP = "https://app.test.local"
GRAPHQL = "/hasura/v1/graphql"


@pytest.fixture(scope="module")
def gateway(jwks_server: JwksServer, upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    env = gateway_env(jwks_server.url, {"hasura": hasura_backend(upstream.url, expose_rest=True)},
                      CLERK_AUTHORIZED_PARTIES=f"{APP},https://admin.test.local")
    with GatewayProcess(env) as process:
        yield process


def _unsigned(header: dict[str, object], claims: dict[str, object], signature: bytes = b"") -> str:
    encoded = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{encoded}.{b64url(signature)}"


def _hs256_with_public_key(key: SigningKey) -> str:
    """The classic algorithm confusion: HMAC keyed with the published RSA public key."""
    header = {"alg": "HS256", "kid": key.kid, "typ": "JWT"}
    claims = clerk_claims(issuer=ISSUER, azp=APP)
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    mac = hmac.new(key.public_pem().encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def _tampered_payload(mint: Mint) -> str:
    header, _, signature = mint(sub="user_honest", azp=APP).split(".")
    forged = b64url(json.dumps(clerk_claims(issuer=ISSUER, sub="user_admin", azp=APP)).encode())
    return f"{header}.{forged}.{signature}"


BAD_TOKENS: dict[str, Callable[[Mint, SigningKey], str]] = {
    "expired": lambda mint, key: mint(azp=APP, now=time.time() - 600, lifetime=60),
    "not-yet-valid": lambda mint, key: mint(azp=APP, nbf=int(time.time()) + 600),
    "wrong-issuer": lambda mint, key: mint(azp=APP, issuer="https://clerk.evil.example"),
    "bad-signature": lambda mint, key: mint(azp=APP, key=SigningKey.rsa("forger"), header={"kid": key.kid}),
    "tampered-payload": lambda mint, key: _tampered_payload(mint),
    "unknown-kid": lambda mint, key: mint(azp=APP, key=SigningKey.rsa("ins_not_published")),
    "alg-none": lambda mint, key: _unsigned({"alg": "none", "kid": key.kid},
                                            clerk_claims(issuer=ISSUER, azp=APP)),
    "hs256-public-key": lambda mint, key: _hs256_with_public_key(key),
    "template-token": lambda mint, key: mint(azp=APP, sid=None),
    "not-a-jwt": lambda mint, key: "definitely-not-a-jwt",
}


def assert_challenge(response: httpx.Response, token: str | None) -> None:
    challenge = response.headers.get("www-authenticate", "")
    assert challenge.startswith('Bearer error="invalid_token", error_description="'), challenge
    assert challenge.endswith('"'), challenge
    if token:
        seen = response.text + "".join(f"{k}: {v}\n" for k, v in response.headers.items())
        assert token not in seen
        signature = token.rsplit(".", 1)[-1]
        assert len(signature) < 16 or signature not in seen


def test_valid_token_from_an_authorized_party_passes(client: httpx.Client, upstream: RecordingUpstream,
                                                     mint: Mint) -> None:
    response = client.post(GRAPHQL, json={"query": "{ a }"}, headers=bearer(mint(sub="user_ok", azp=APP)))

    assert response.status_code == 200, response.text
    assert upstream.last().header("x-hasura-user-id") == "user_ok"


def test_no_token_is_401_invalid_headers(client: httpx.Client, upstream: RecordingUpstream) -> None:
    response = client.post(GRAPHQL, json={"query": "{ a }"})

    graphql_error(response, 401, "invalid-headers")
    assert_challenge(response, None)
    assert upstream.requests == []


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
@pytest.mark.parametrize("where", ["bearer", "cookie"])
def test_bad_token_is_401_invalid_jwt(client: httpx.Client, upstream: RecordingUpstream, mint: Mint,
                                      signing_key: SigningKey, case: str, where: str) -> None:
    token = BAD_TOKENS[case](mint, signing_key)
    headers = bearer(token) if where == "bearer" else {"Cookie": f"__session={token}"}
    response = client.post(GRAPHQL, json={"query": "{ a }"}, headers=headers)

    graphql_error(response, 401, "invalid-jwt")
    assert_challenge(response, token)
    assert response.headers.get("x-request-id")
    assert upstream.requests == []


@pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "Bearer"], ids=["basic", "bearer-without-token"])
def test_a_non_bearer_authorization_is_not_a_token(client: httpx.Client, upstream: RecordingUpstream,
                                                   value: str) -> None:
    response = client.post(GRAPHQL, json={"query": "{ a }"}, headers={"Authorization": value})

    assert response.status_code == 401, response.text
    assert_challenge(response, None)
    assert upstream.requests == []


@pytest.mark.parametrize("claims", [{"azp": "https://evil.example"}, {"azp": APP, "sts": "pending"}],
                         ids=["unauthorized-party", "pending-session"])
def test_valid_but_forbidden_token_is_403(client: httpx.Client, upstream: RecordingUpstream, mint: Mint,
                                          claims: dict[str, str]) -> None:
    token = mint(**claims)
    response = client.post(GRAPHQL, json={"query": "{ a }"}, headers=bearer(token))

    graphql_error(response, 403, "access-denied")
    assert token not in response.text
    assert upstream.requests == []


def test_refusals_outside_graphql_paths_are_problem_json(client: httpx.Client, upstream: RecordingUpstream,
                                                         mint: Mint) -> None:
    token = mint(azp=APP, issuer="https://clerk.evil.example")
    response = client.get("/hasura/api/rest/users", headers=bearer(token))

    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 401
    assert_challenge(response, token)
    assert upstream.requests == []
