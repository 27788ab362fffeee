"""CorsMiddleware around a stub ASGI app that records whether it was called and answers as told."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import orjson
import pytest

from clerk_gateway.edge.cors import CorsMiddleware, normalize_origin

APP_ORIGIN = "https://app.example.com"


class StubApp:
    """Answers ``status`` with ``headers``; remembers the scopes it saw."""

    def __init__(self, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.status = status
        self.headers = headers if headers is not None else [(b"content-type", b"application/json")]
        self.scopes: list[MutableMapping[str, Any]] = []

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        await send({"type": "http.response.start", "status": self.status, "headers": list(self.headers)})
        await send({"type": "http.response.body", "body": b"{}"})


async def call(app: Any, method: str = "POST", headers: list[tuple[bytes, bytes]] | None = None,
               scope_type: str = "http") -> tuple[int, list[tuple[bytes, bytes]], bytes, list[Any]]:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {"type": scope_type, "method": method, "path": "/hasura/v1/graphql", "headers": headers or []}
    await app(scope, receive, send)
    start = sent[0] if sent else {"status": 0, "headers": []}
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], list(start["headers"]), body, sent


def names(headers: list[tuple[bytes, bytes]]) -> dict[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        out.setdefault(name.lower(), []).append(value)
    return out


def cors(app: Any, **kwargs: Any) -> CorsMiddleware:
    return CorsMiddleware(app, [APP_ORIGIN, "http://localhost:3000"], **kwargs)


def origin(value: str = APP_ORIGIN) -> tuple[bytes, bytes]:
    return (b"origin", value.encode())


async def test_no_origin_passes_through_untouched() -> None:
    upstream_cors = [(b"content-type", b"application/json"), (b"access-control-allow-origin", b"*")]
    stub = StubApp(headers=upstream_cors)
    status, headers, _, _ = await call(cors(stub), headers=[(b"authorization", b"Bearer x")])
    assert status == 200 and headers == upstream_cors  # no Origin: not a CORS request, nothing rewritten
    assert len(stub.scopes) == 1


async def test_preflight_from_a_listed_origin_is_answered_by_the_gateway() -> None:
    stub = StubApp()
    status, headers, body, _ = await call(cors(stub), "OPTIONS", [
        origin(), (b"access-control-request-method", b"POST"),
        (b"access-control-request-headers", b"Authorization, content-type, X-Hasura-Role, x-evil, x-hasura-user-id"),
    ])
    assert stub.scopes == []  # never reaches the backend
    assert status == 204 and body == b""
    h = names(headers)
    assert h[b"access-control-allow-origin"] == [APP_ORIGIN.encode()]
    assert h[b"access-control-allow-credentials"] == [b"true"]
    assert h[b"access-control-allow-methods"] == [b"GET, POST, OPTIONS"]
    assert h[b"access-control-allow-headers"] == [b"authorization, content-type, x-hasura-role"]
    assert h[b"access-control-max-age"] == [b"600"]
    assert b"Origin" in h[b"vary"][0]
    assert b"content-length" not in h


async def test_preflight_without_requested_headers_allows_none() -> None:
    status, headers, _, _ = await call(cors(StubApp(), max_age=60), "OPTIONS",
                                       [origin("http://localhost:3000"), (b"access-control-request-method", b"GET")])
    h = names(headers)
    assert status == 204 and b"access-control-allow-headers" not in h
    assert h[b"access-control-allow-origin"] == [b"http://localhost:3000"]
    assert h[b"access-control-max-age"] == [b"60"]


async def test_extra_allowed_headers() -> None:
    status, headers, _, _ = await call(cors(StubApp(), extra_allow_headers=["X-Tenant"]), "OPTIONS", [
        origin(), (b"access-control-request-method", b"POST"), (b"access-control-request-headers", b"x-tenant")])
    assert status == 204
    assert names(headers)[b"access-control-allow-headers"] == [b"x-tenant"]


@pytest.mark.parametrize("other", ["https://evil.example", "https://app.example.com.evil.example", "null",
                                   "http://app.example.com", "https://APP.example.com"])
async def test_preflight_from_another_origin_is_403_without_cors_headers(other: str) -> None:
    stub = StubApp()
    status, headers, body, _ = await call(cors(stub), "OPTIONS",
                                          [origin(other), (b"access-control-request-method", b"POST")])
    assert stub.scopes == []
    assert status == 403
    assert not any(name.startswith(b"access-control-") for name, _ in headers)
    problem = orjson.loads(body)
    assert problem["status"] == 403 and problem["reason"] == "cors-origin-not-allowed"
    assert names(headers)[b"content-length"] == [str(len(body)).encode()]


async def test_options_without_request_method_is_not_a_preflight() -> None:
    stub = StubApp(status=405)
    status, headers, _, _ = await call(cors(stub), "OPTIONS", [origin()])
    assert len(stub.scopes) == 1 and status == 405
    assert names(headers)[b"access-control-allow-origin"] == [APP_ORIGIN.encode()]


@pytest.mark.parametrize("status", [200, 401, 403, 429, 502])
async def test_actual_request_from_a_listed_origin_gets_cors_headers_on_any_status(status: int) -> None:
    stub = StubApp(status=status, headers=[(b"content-type", b"application/json"),
                                           (b"www-authenticate", b"Bearer")])
    got, headers, _, _ = await call(cors(stub), headers=[origin(), (b"authorization", b"Bearer x")])
    h = names(headers)
    assert got == status
    assert h[b"access-control-allow-origin"] == [APP_ORIGIN.encode()]
    assert h[b"access-control-allow-credentials"] == [b"true"]
    assert h[b"access-control-expose-headers"] == [b"X-Request-ID, WWW-Authenticate, Retry-After"]
    assert h[b"vary"] == [b"Origin"]
    assert h[b"www-authenticate"] == [b"Bearer"]


async def test_backend_cors_headers_are_replaced_by_the_gateways() -> None:
    stub = StubApp(headers=[(b"Access-Control-Allow-Origin", b"*"), (b"access-control-allow-credentials", b"true"),
                            (b"access-control-expose-headers", b"x-secret"), (b"content-type", b"application/json")])
    _, headers, _, _ = await call(cors(stub), headers=[origin()])
    h = names(headers)
    assert h[b"access-control-allow-origin"] == [APP_ORIGIN.encode()]
    assert h[b"access-control-expose-headers"] == [b"X-Request-ID, WWW-Authenticate, Retry-After"]
    assert h[b"access-control-allow-credentials"] == [b"true"]


async def test_backend_cannot_open_cors_to_an_unlisted_origin() -> None:
    stub = StubApp(headers=[(b"access-control-allow-origin", b"https://evil.example"),
                            (b"access-control-allow-credentials", b"true")])
    status, headers, _, _ = await call(cors(stub), headers=[origin("https://evil.example")])
    assert status == 200 and len(stub.scopes) == 1  # the request itself is not blocked: the browser does that
    assert not any(name.lower().startswith(b"access-control-") for name, _ in headers)
    assert names(headers)[b"vary"] == [b"Origin"]


async def test_existing_vary_origin_is_not_repeated() -> None:
    stub = StubApp(headers=[(b"vary", b"Accept-Encoding, Origin")])
    _, headers, _, _ = await call(cors(stub), headers=[origin()])
    assert names(headers)[b"vary"] == [b"Accept-Encoding, Origin"]
    stub = StubApp(headers=[(b"vary", b"Accept-Encoding")])
    _, headers, _, _ = await call(cors(stub), headers=[origin()])
    assert names(headers)[b"vary"] == [b"Accept-Encoding", b"Origin"]


async def test_body_messages_pass_unchanged() -> None:
    _, _, body, sent = await call(cors(StubApp()), headers=[origin()])
    assert body == b"{}" and sent[1] == {"type": "http.response.body", "body": b"{}"}


async def test_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    await call(cors(app), headers=[origin("https://evil.example")], scope_type="websocket")
    await call(cors(app), scope_type="lifespan")
    assert seen == ["websocket", "lifespan"]


async def test_no_origins_configured_refuses_every_preflight_and_strips_backend_cors() -> None:
    stub = StubApp(headers=[(b"access-control-allow-origin", b"*")])
    middleware = CorsMiddleware(stub, [])
    status, _, _, _ = await call(middleware, "OPTIONS", [origin(), (b"access-control-request-method", b"POST")])
    assert status == 403
    status, headers, _, _ = await call(middleware, headers=[origin()])
    assert status == 200 and not any(name.startswith(b"access-control-") for name, _ in headers)


@pytest.mark.parametrize(("given", "expected"), [
    ("https://app.example.com", "https://app.example.com"),
    ("https://App.Example.com/", "https://app.example.com"),
    ("https://app.example.com:443", "https://app.example.com"),
    ("http://localhost:80", "http://localhost"),
    ("http://localhost:3000", "http://localhost:3000"),
    (" http://[::1]:8080 ", "http://[::1]:8080"),
])
def test_normalize_origin(given: str, expected: str) -> None:
    assert normalize_origin(given) == expected


@pytest.mark.parametrize("bad", ["*", "null", "app.example.com", "https://app.example.com/path", "ftp://x.example",
                                 "https://user:pw@app.example.com", "https://app.example.com?x=1", "https://",
                                 "https://app.example.com:99999"])
def test_normalize_origin_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        normalize_origin(bad)


def test_middleware_refuses_a_wildcard() -> None:
    with pytest.raises(ValueError):
        CorsMiddleware(StubApp(), ["*"])
    with pytest.raises(ValueError):
        CorsMiddleware(StubApp(), [APP_ORIGIN], max_age=-1)
