"""Renders gateway errors in the contract's two shapes.

GraphQL paths get Hasura's body (``{"errors":[{"message","extensions":{"code"}}]}``) so clients
treat gateway and Hasura errors alike, but with a real HTTP status so they can refresh tokens at
the HTTP layer; every other path gets ``application/problem+json``.
"""

from __future__ import annotations

import time
from email.utils import formatdate

import orjson

from clerk_gateway.errors import AuthenticationError, GatewayError

Header = tuple[bytes, bytes]


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")


_date_cache: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """The ``Date`` of the gateway's own answers (the server adds none, so proxied answers keep
    the upstream's); formatted at most once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True).encode())
    return _date_cache[1]


def error_headers(error: GatewayError, content_type: bytes) -> list[Header]:
    headers: list[Header] = [(b"content-type", content_type), (b"date", http_date())]
    if not any(name.lower() == "cache-control" for name in error.headers):
        headers.insert(1, (b"cache-control", b"no-store"))
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
        content_type = error.content_type or b"application/json; charset=utf-8"
        return error.status, error_headers(error, content_type), graphql_body(error)
    return error.status, error_headers(error, b"application/problem+json"), problem_body(error)
