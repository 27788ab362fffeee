"""CORS, decided by the gateway alone, in front of every route (raw ASGI).

* Origins are matched exactly against ``GATEWAY_CORS_ORIGINS`` (``*`` and ``null`` are refused:
  credentials are allowed, so a wildcard would hand every site the user's session).
* A preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered here and never reaches
  a backend: ``204`` for a listed origin with the allowed methods (GET, POST, OPTIONS), the
  requested headers that are on the allow-list below, and ``Access-Control-Max-Age``; ``403``
  without any CORS header for any other origin. A requested header or method that is not allowed
  is simply left out, so the browser names it in its console error.
* Every other response to a listed origin — the backend's, and the gateway's own 401/403/429/502,
  which a browser can only read with these headers — gets ``Access-Control-Allow-Origin`` (the
  origin), ``Access-Control-Allow-Credentials: true``, ``Access-Control-Expose-Headers`` and
  ``Vary: Origin``.
* ``Access-Control-*`` headers from a backend are always removed from responses to cross-origin
  requests: Hasura, for one, answers every origin by default, which would otherwise override the
  gateway's list.
* A request without ``Origin`` (servers, mobile apps, same-origin GETs — the hot path) costs one
  scan of its header list and passes through untouched.

Allowed request headers (besides the CORS-safelisted ones): ``Authorization``, ``Content-Type``,
``X-Request-ID``, ``x-hasura-role``; GraphQL clients' ``apollographql-client-name``,
``apollographql-client-version``, ``apollo-require-preflight``, ``x-apollo-operation-name``;
tracing's ``traceparent``, ``tracestate``, ``baggage``, ``sentry-trace``; the Fauna drivers'
``x-format``, ``x-typecheck``, ``x-query-timeout-ms``, ``x-linearized``, ``x-max-contention-retries``,
``x-query-tags``, ``x-last-txn-ts``, ``x-driver``, ``x-driver-env``, ``x-performance-hints``; and
``Accept``, ``Accept-Language``, ``Content-Language``. Other ``x-hasura-*`` headers are not allowed:
the gateway drops them anyway, and a client sending them is mistaken.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from clerk_gateway.errors import ForbiddenError
from clerk_gateway.proxy.responses import render_error

__all__ = ["ALLOWED_METHODS", "DEFAULT_ALLOW_HEADERS", "EXPOSE_HEADERS", "CorsMiddleware", "normalize_origin"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Header = tuple[bytes, bytes]

ALLOWED_METHODS = ("GET", "POST", "OPTIONS")
EXPOSE_HEADERS = ("X-Request-ID", "WWW-Authenticate", "Retry-After")
DEFAULT_ALLOW_HEADERS = (
    "authorization", "content-type", "x-request-id", "x-hasura-role",
    "apollographql-client-name", "apollographql-client-version", "apollo-require-preflight",
    "x-apollo-operation-name",
    "traceparent", "tracestate", "baggage", "sentry-trace",
    "x-format", "x-typecheck", "x-query-timeout-ms", "x-linearized", "x-max-contention-retries",
    "x-query-tags", "x-last-txn-ts", "x-driver", "x-driver-env", "x-performance-hints",
    "accept", "accept-language", "content-language",
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PREFLIGHT_VARY = b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


def normalize_origin(text: str) -> str:
    """``scheme://host[:port]`` in the form browsers send it (lower case, no default port, no
    trailing slash); raises ``ValueError`` for anything else, ``*`` and ``null`` included."""
    value = text.strip().rstrip("/")
    if value in ("*", "null"):
        raise ValueError(f"'{value}' is not allowed as a CORS origin: list the exact origins")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"'{text}' is not an origin such as https://app.example.com") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query \
            or parts.fragment or parts.username is not None or parts.password is not None:
        raise ValueError(f"'{text}' is not an origin such as https://app.example.com")
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}:{port}"
    return f"{parts.scheme}://{host}"


def _header(headers: Iterable[Header], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


class CorsMiddleware:
    """Wraps the gateway's ASGI app; see the module docstring for the rules."""

    def __init__(self, app: ASGIApp, origins: Sequence[str], *,
                 allow_headers: Iterable[str] = DEFAULT_ALLOW_HEADERS,
                 extra_allow_headers: Iterable[str] = (), max_age: int = 600) -> None:
        if max_age < 0:
            raise ValueError("max_age must not be negative")
        self.app = app
        self.origins = frozenset(normalize_origin(origin).encode("ascii") for origin in origins)
        self.allow_headers = frozenset(name.strip().lower().encode("latin-1")
                                       for name in (*allow_headers, *extra_allow_headers) if name.strip())
        self._allow_methods = ", ".join(ALLOWED_METHODS).encode()
        self._expose = ", ".join(EXPOSE_HEADERS).encode()
        self._max_age = str(max_age).encode()
        status, headers, body = render_error(
            ForbiddenError("cors-origin-not-allowed", "this origin is not allowed to call the gateway"),
            graphql=False)
        headers.append((b"content-length", str(len(body)).encode()))
        headers.append((b"vary", _PREFLIGHT_VARY))
        self._refusal = (status, headers, body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[Header] = scope["headers"]
        origin = _header(headers, b"origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        allowed = origin in self.origins
        if scope["method"] == "OPTIONS":
            requested_method = _header(headers, b"access-control-request-method")
            if requested_method is not None:
                await self._preflight(send, origin if allowed else None, headers)
                return
        await self.app(scope, receive, self._decorate(send, origin if allowed else None))

    async def _preflight(self, send: Send, origin: bytes | None, headers: list[Header]) -> None:
        if origin is None:
            status, refusal_headers, body = self._refusal
            await send({"type": "http.response.start", "status": status, "headers": list(refusal_headers)})
            await send({"type": "http.response.body", "body": body})
            return
        answer: list[Header] = [
            (b"access-control-allow-origin", origin),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-allow-methods", self._allow_methods),
            (b"access-control-max-age", self._max_age),
            (b"vary", _PREFLIGHT_VARY),
            (b"cache-control", b"no-store"),
        ]
        requested = _header(headers, b"access-control-request-headers")
        if requested:
            names = [name for name in (part.strip().lower() for part in requested.split(b","))
                     if name in self.allow_headers]
            if names:
                answer.append((b"access-control-allow-headers", b", ".join(dict.fromkeys(names))))
        await send({"type": "http.response.start", "status": 204, "headers": answer})
        await send({"type": "http.response.body", "body": b""})

    def _decorate(self, send: Send, origin: bytes | None) -> Send:
        """``send`` that rewrites the response head: backend CORS headers out, the gateway's in."""
        expose = self._expose

        async def decorated(message: Message) -> None:
            if message["type"] == "http.response.start":
                out: list[Header] = []
                vary_origin = False
                for name, value in message.get("headers", ()):
                    lower = name.lower()
                    if lower.startswith(b"access-control-"):
                        continue
                    if lower == b"vary" and (b"origin" in value.lower() or value.strip() == b"*"):
                        vary_origin = True
                    out.append((name, value))
                if not vary_origin:
                    out.append((b"vary", b"Origin"))
                if origin is not None:
                    out.append((b"access-control-allow-origin", origin))
                    out.append((b"access-control-allow-credentials", b"true"))
                    out.append((b"access-control-expose-headers", expose))
                message = {**message, "headers": out}
            await send(message)

        return decorated
