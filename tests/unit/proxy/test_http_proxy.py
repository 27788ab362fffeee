"""The proxy in-process: respx stands in for the upstream, a stub for the verifier."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from clerk_gateway.adapters.hasura import HasuraAdapter, HasuraSettings
from clerk_gateway.auth.model import TokenKind
from clerk_gateway.proxy.http import BackendProxy
from clerk_gateway.proxy.upstream import HttpxUpstream
from tests.support.stubs import GOOD_TOKEN, StubVerifier

UPSTREAM = "http://hasura.test"
GOOD = GOOD_TOKEN


def make_app(verifier: StubVerifier | None = None, **fields: Any) -> tuple[Any, StubVerifier]:
    values: dict[str, Any] = {"url": UPSTREAM, "auth_mode": "admin_secret", "admin_secret": "s3cret",
                              "timeout_seconds": 1}
    values.update(fields)
    adapter = HasuraAdapter("hasura", HasuraSettings.model_validate(values))
    stub = verifier or StubVerifier()
    proxy = BackendProxy(adapter, HttpxUpstream(), stub,  # type: ignore[arg-type]
                         cookie_names=("__session",), max_body_bytes=64)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        path: str = scope["path"]
        await proxy.handle(scope, receive, send, path.removeprefix("/hasura"))

    return app, stub


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


@respx.mock
async def test_forwards_with_identity_and_returns_upstream_answer() -> None:
    route = respx.post(f"{UPSTREAM}/v1/graphql").mock(
        return_value=httpx.Response(200, json={"data": {"ok": True}}, headers={"x-upstream": "1"}))
    app, _ = make_app()
    async with client(app) as c:
        response = await c.post("/hasura/v1/graphql?op=1", json={"query": "{ ok }"},
                                headers={"authorization": f"Bearer {GOOD}", "x-request-id": "req-1",
                                         "x-hasura-user-id": "intruder", "cookie": "a=b"})
    assert response.status_code == 200 and response.json() == {"data": {"ok": True}}
    assert response.headers["x-request-id"] == "req-1" and response.headers["x-upstream"] == "1"
    sent = route.calls.last.request
    assert sent.url.query == b"op=1"
    assert sent.headers["x-hasura-user-id"] == "user_1"
    assert sent.headers["x-hasura-role"] == "user"
    assert sent.headers["x-hasura-admin-secret"] == "s3cret"
    assert sent.headers["x-request-id"] == "req-1"
    assert "authorization" not in sent.headers and "cookie" not in sent.headers
    assert sent.content == b'{"query":"{ ok }"}'


@respx.mock
async def test_cookie_token_is_used_when_no_bearer() -> None:
    route = respx.post(f"{UPSTREAM}/v1/graphql").mock(return_value=httpx.Response(200, json={}))
    app, _ = make_app()
    async with client(app) as c:
        response = await c.post("/hasura/v1/graphql", content=b"{}", headers={"cookie": f"__session={GOOD}"})
    assert response.status_code == 200 and route.called


@respx.mock
@pytest.mark.parametrize(("headers", "status", "code"), [
    ({}, 401, "invalid-headers"),
    ({"authorization": "Bearer bad.token.x"}, 401, "invalid-jwt"),
    ({"authorization": f"Bearer {GOOD}", "x-hasura-role": "admin"}, 403, "access-denied"),
])
async def test_refusals_never_reach_upstream(headers: dict[str, str], status: int, code: str) -> None:
    route = respx.post(f"{UPSTREAM}/v1/graphql").mock(return_value=httpx.Response(200))
    app, _ = make_app()
    async with client(app) as c:
        response = await c.post("/hasura/v1/graphql", content=b"{}", headers=headers)
    assert response.status_code == status
    assert response.json()["errors"][0]["extensions"]["code"] == code
    assert not route.called
    assert "bad.token.x" not in response.text
    assert ("www-authenticate" in response.headers) == (status == 401)


@respx.mock
async def test_template_token_refused_where_only_session_tokens_are_accepted() -> None:
    route = respx.post(f"{UPSTREAM}/v1/graphql").mock(return_value=httpx.Response(200))
    app, _ = make_app(StubVerifier(TokenKind.TEMPLATE))
    async with client(app) as c:
        response = await c.post("/hasura/v1/graphql", content=b"{}", headers={"authorization": f"Bearer {GOOD}"})
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["reason"] == "token-kind-not-accepted"
    assert not route.called


@respx.mock
async def test_not_found_before_authentication() -> None:
    app, stub = make_app()
    async with client(app) as c:
        response = await c.post("/hasura/v1/metadata", content=b"{}")
    assert response.status_code == 404 and stub.calls == 0
    assert response.headers["content-type"] == "application/problem+json"


@respx.mock
@pytest.mark.parametrize("chunked", [False, True])
async def test_body_over_limit_is_413_and_never_sent(chunked: bool) -> None:
    route = respx.post(f"{UPSTREAM}/v1/graphql").mock(return_value=httpx.Response(200))
    app, _ = make_app()

    async def body() -> Any:
        yield b"x" * 40
        yield b"x" * 40

    async with client(app) as c:
        content: Any = body() if chunked else b"x" * 80
        response = await c.post("/hasura/v1/graphql", content=content,
                                headers={"authorization": f"Bearer {GOOD}"})
    assert response.status_code == 413 and not route.called


@respx.mock
@pytest.mark.parametrize(("effect", "status", "code"), [
    (httpx.ConnectError("refused"), 502, "bad-gateway"),
    (httpx.ReadTimeout("slow"), 504, "gateway-timeout"),
])
async def test_upstream_failures_map_to_502_and_504(effect: Exception, status: int, code: str) -> None:
    respx.post(f"{UPSTREAM}/v1/graphql").mock(side_effect=effect)
    app, _ = make_app()
    async with client(app) as c:
        response = await c.post("/hasura/v1/graphql", content=b"{}", headers={"authorization": f"Bearer {GOOD}"})
    assert response.status_code == status
    assert response.json()["errors"][0]["extensions"]["code"] == code


@respx.mock
async def test_compressed_body_passes_untouched() -> None:
    import gzip

    packed = gzip.compress(b'{"data":{"big":"' + b"y" * 1000 + b'"}}')
    respx.post(f"{UPSTREAM}/v1/graphql").mock(return_value=httpx.Response(
        200, content=packed, headers={"content-encoding": "gzip", "content-type": "application/json"}))
    app, _ = make_app()
    async with client(app) as c:
        async with c.stream("POST", "/hasura/v1/graphql", content=b"{}",
                            headers={"authorization": f"Bearer {GOOD}", "accept-encoding": "gzip"}) as response:
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
    assert response.headers["content-encoding"] == "gzip"
    assert raw == packed


@respx.mock
@pytest.mark.parametrize(("headers", "closes"), [
    ({"content-length": "20"}, False),  # small: the server drains it and keeps the connection
    ({"content-length": "70000"}, True),  # too large to drain (and over the 64-byte limit: 413)
    ({"transfer-encoding": "chunked"}, True),
    ({"content-length": "20", "expect": "100-continue"}, True),
])
async def test_a_refusal_before_the_body_is_read_announces_a_close_unless_it_can_be_drained(
        headers: dict[str, str], closes: bool) -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    app, _ = make_app()
    scope = {"type": "http", "method": "POST", "path": "/hasura/v1/graphql", "query_string": b"",
             "headers": [(b"authorization", b"Bearer bad.token.x"),
                         *((name.encode(), value.encode()) for name, value in headers.items())]}
    await app(scope, receive, send)
    assert sent[0]["status"] in (401, 413)
    assert ((b"connection", b"close") in sent[0]["headers"]) is closes


@respx.mock
async def test_a_refusal_after_the_body_was_read_keeps_the_connection() -> None:
    app, _ = make_app()
    async with client(app) as c:
        response = await c.post("/hasura/v1/graphql", content=b"{}",
                                headers={"authorization": f"Bearer {GOOD}", "x-hasura-role": "admin",
                                         "transfer-encoding": "chunked"})
    assert response.status_code == 403
    assert "connection" not in response.headers
