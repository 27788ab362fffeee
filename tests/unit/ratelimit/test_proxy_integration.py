"""The guard plugged into the real proxy: 429s in the backend's error shape, nothing sent upstream."""

from __future__ import annotations

from typing import Any

import httpx
import respx

from clerk_gateway.adapters.hasura import HasuraAdapter, HasuraSettings
from clerk_gateway.proxy.http import BackendProxy
from clerk_gateway.proxy.upstream import HttpxUpstream
from clerk_gateway.ratelimit import MemoryBucketStore, Rate, RateLimitGuard
from tests.support.stubs import GOOD_TOKEN, StubVerifier

UPSTREAM = "http://hasura.test"
GOOD = GOOD_TOKEN


def make_app(guard: RateLimitGuard) -> tuple[Any, StubVerifier]:
    adapter = HasuraAdapter("hasura", HasuraSettings.model_validate(
        {"url": UPSTREAM, "auth_mode": "admin_secret", "admin_secret": "s3cret", "timeout_seconds": 1}))
    verifier = StubVerifier()
    proxy = BackendProxy(adapter, HttpxUpstream(), verifier,  # type: ignore[arg-type]
                         cookie_names=("__session",), max_body_bytes=1024, guards=[guard])

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await proxy.handle(scope, receive, send, scope["path"].removeprefix("/hasura"))

    return app, verifier


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("203.0.113.50", 4000)),
                             base_url="http://gw")


@respx.mock
async def test_user_over_budget_gets_graphql_429_and_upstream_is_not_called() -> None:
    route = respx.post(f"{UPSTREAM}/v1/graphql").mock(return_value=httpx.Response(200, json={"data": {}}))
    app, _ = make_app(RateLimitGuard(MemoryBucketStore(Rate(0.01, 2)), None))
    async with client(app) as c:
        statuses = [(await c.post("/hasura/v1/graphql", json={"query": "{a}"},
                                  headers={"authorization": f"Bearer {GOOD}"})) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    refused = statuses[2]
    assert refused.headers["retry-after"] == "100"
    assert refused.json()["errors"][0]["extensions"] == {"code": "rate-limited", "reason": "rate-limited-user"}
    assert refused.headers["x-request-id"]
    assert route.call_count == 2


@respx.mock
async def test_an_address_with_too_many_bad_tokens_gets_429s_but_its_good_tokens_still_pass() -> None:
    respx.post(f"{UPSTREAM}/v1/graphql").mock(return_value=httpx.Response(200, json={"data": {}}))
    app, verifier = make_app(RateLimitGuard(None, MemoryBucketStore(Rate(0.01, 3)), trust_peer_address=True))
    async with client(app) as c:
        bad = [(await c.post("/hasura/v1/graphql", content=b"{}", headers={"authorization": "Bearer forged"}))
               for _ in range(4)]
        good = await c.post("/hasura/v1/graphql", content=b"{}", headers={"authorization": f"Bearer {GOOD}"})
        no_token = await c.post("/hasura/v1/graphql", content=b"{}")
        bad_again = await c.post("/hasura/v1/graphql", content=b"{}", headers={"authorization": "Bearer forged"})
    assert [r.status_code for r in bad] == [401, 401, 401, 429]
    assert bad[3].json()["errors"][0]["extensions"]["reason"] == "rate-limited-auth-failures"
    assert bad[3].headers["retry-after"]
    assert good.status_code == 200  # a token that verifies is never refused by the address's budget
    assert no_token.status_code == 401 and bad_again.status_code == 429
    assert verifier.calls == 6  # every token was looked at: nothing is refused before verification
