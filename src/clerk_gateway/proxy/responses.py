"""Renders gateway errors in the contract's two shapes.

GraphQL paths get Hasura's body (``{"errors":[{"message","extensions":{"code"}}]}``) so clients
treat gateway and Hasura errors alike, but with a real HTTP status so they can refresh tokens at
the HTTP layer; every other path gets ``application/problem+json``.
"""

from __future__ import annotations

import orjson

from clerk_gateway.errors import AuthenticationError, GatewayError

Header = tuple[bytes, bytes]


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")


def error_headers(error: GatewayError, content_type: bytes) -> list[Header]:
    headers: list[Header] = [(b"content-type", content_type), (b"cache-control", b"no-store")]
    if isinstance(error, AuthenticationError):
        value = f'Bearer error="invalid_token", error_description="{_quote(error.message)}"'
        headers.append((b"www-authenticate", value.encode("latin-1", "replace")))
    headers.extend((name.lower().encode(), value.encode("latin-1", "replace"))
                   for name, value in error.headers.items())
    return headers


def graphql_body(error: GatewayError) -> bytes:
    return orjson.dumps({"errors": [{"message": error.message,
                                     "extensions": {"code": error.code, "reason": error.reason}}]})


def problem_body(error: GatewayError) -> bytes:
    return orjson.dumps({"type": "about:blank", "title": error.title, "status": error.status,
                         "detail": error.message, "code": error.code, "reason": error.reason})


def render_error(error: GatewayError, *, graphql: bool) -> tuple[int, list[Header], bytes]:
    if graphql:
        return error.status, error_headers(error, b"application/json; charset=utf-8"), graphql_body(error)
    return error.status, error_headers(error, b"application/problem+json"), problem_body(error)
