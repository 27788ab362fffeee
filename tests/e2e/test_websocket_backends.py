"""Subscriptions on Nhost (its WebSocket is its GraphQL URL) and in mint mode: the socket code is
the same for every backend and mode, the identity in connection_init is each mode's own."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from jose import jwt
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from tests.e2e.conftest import Mint
from tests.support.gateway_process import GatewayProcess, gateway_env
from tests.support.jwks_server import JwksServer
from tests.support.ws_upstream import GraphQLWebSocketUpstream

TRANSPORT = Subprotocol("graphql-transport-ws")


@pytest.fixture(scope="module")
def ws_upstream() -> Iterator[GraphQLWebSocketUpstream]:
    server = GraphQLWebSocketUpstream()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def gateway(jwks_server: JwksServer, ws_upstream: GraphQLWebSocketUpstream,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    graphql = ws_upstream.http_url + "/v1/graphql"
    backends = {
        "nhost": {"adapter": "nhost", "url": graphql, "auth_mode": "admin_secret", "admin_secret": "nhost-secret"},
        "minted": {"adapter": "hasura", "url": ws_upstream.http_url, "auth_mode": "mint"},
    }
    key: Path = tmp_path_factory.mktemp("mint") / "key.pem"
    env = gateway_env(jwks_server.url, backends, GATEWAY_SIGNING_KEY_FILE=key, GATEWAY_RATE_LIMIT_ENABLED="false")
    with GatewayProcess(env) as process:
        yield process


async def _subscribe(gateway: GatewayProcess, path: str, token: str, role: str | None = None) -> dict[str, object]:
    headers: dict[str, str] = {"Authorization": f"Bearer {token}"}
    if role is not None:
        headers["x-hasura-role"] = role
    async with connect(gateway.url.replace("http", "ws", 1) + path, subprotocols=[TRANSPORT]) as client:
        await client.send(json.dumps({"type": "connection_init", "payload": {"headers": headers}}))
        ack = json.loads(await asyncio.wait_for(client.recv(), 5))
        await client.send(json.dumps({"id": "s1", "type": "subscribe", "payload": {"query": "subscription { a }"}}))
        return dict(ack)


async def test_nhost_sockets_go_to_its_graphql_url_with_the_admin_identity(
        gateway: GatewayProcess, ws_upstream: GraphQLWebSocketUpstream, mint: Mint) -> None:
    ws_upstream.reset()
    ack = await _subscribe(gateway, "/nhost/v1/graphql", mint(sub="user_nws"), role="me")
    assert ack["type"] == "connection_ack"
    (connection,) = await ws_upstream.wait_for_connections(1)
    assert connection.path == "/v1/graphql" and connection.subprotocol == "graphql-transport-ws"
    init = connection.init_headers
    assert init == {"x-hasura-admin-secret": "nhost-secret", "x-hasura-role": "me", "x-hasura-user-id": "user_nws"}


async def test_mint_sockets_carry_a_minted_token(gateway: GatewayProcess, ws_upstream: GraphQLWebSocketUpstream,
                                                 mint: Mint) -> None:
    ws_upstream.reset()
    clerk_token = mint(sub="user_mws")
    await _subscribe(gateway, "/minted/v1/graphql", clerk_token)
    (connection,) = await ws_upstream.wait_for_connections(1)
    minted = connection.bearer_token
    assert minted is not None and minted != clerk_token
    claims = jwt.get_unverified_claims(minted)
    assert claims["sub"] == "user_mws" and claims["aud"] == "minted" and claims["iss"] == "clerk-gateway"
    assert "x-hasura-admin-secret" not in connection.init_headers


async def test_socket_refusals_and_open_sockets_are_in_the_metrics(gateway: GatewayProcess, mint: Mint) -> None:
    def sample(text: str, name: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name) and not line.startswith("#"))

    with gateway.client() as http:
        before = sample(http.get("/metrics").text, "gateway_auth_failures_total")
    async with connect(gateway.url.replace("http", "ws", 1) + "/nhost/v1/graphql", subprotocols=[TRANSPORT]) as bad:
        await bad.send(json.dumps({"type": "connection_init", "payload": {"authToken": "not-a-jwt"}}))
        await asyncio.wait_for(bad.wait_closed(), 5)
        assert bad.close_code == 4403
    async with connect(gateway.url.replace("http", "ws", 1) + "/nhost/v1/graphql", subprotocols=[TRANSPORT]) as good:
        await good.send(json.dumps({"type": "connection_init", "payload": {"authToken": mint()}}))
        await asyncio.wait_for(good.recv(), 5)
        with gateway.client() as http:
            text = http.get("/metrics").text
        assert sample(text, "gateway_websockets_open") >= 1
        assert sample(text, "gateway_auth_failures_total") >= before + 1
        assert "not-a-jwt" not in text
