"""Fauna on its FQL v10 wire protocol, so that the official drivers use the gateway as their endpoint.

A driver configured with ``endpoint="https://gateway/<name>"`` appends ``/query/1``, ``/stream/1``
and ``/feed/1`` itself and sends its secret as ``Authorization: Bearer``; with the gateway that
secret is the user's Clerk token. Nothing else of the protocol changes, so Fauna's own headers
(``X-Format``, ``X-Typecheck``, ``X-Last-Txn-Ts``, ``Traceparent``, …) and every answer, errors
included, pass through untouched. What the gateway adds:

* identity: the verified token goes on as the Bearer secret (``forward``; Fauna checks it against
  its access provider), or Clerk's Fauna-template token for the session (``exchange``);
* an optional ``aud`` check before anything is sent, so that a token meant for another database
  is a clear 401 from the gateway instead of Fauna's opaque one;
* an audit tag: exactly one ``clerk_user=<sub>`` in ``X-Query-Tags``, which the client cannot forge;
* its own refusals in Fauna's error shape, so that the drivers raise their usual error classes;
* streams end when the token expires, with an in-band ``error`` event the drivers understand.

Fauna accepts JWTs signed with RSA keys only (RS256/384/512); Clerk's instance keys are RSA.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

import orjson
from pydantic import field_validator, model_validator

from clerk_gateway.auth.model import TokenKind, VerifiedToken
from clerk_gateway.errors import AuthenticationError, GatewayError, MethodNotAllowedError, NotFoundError
from clerk_gateway.settings.complex_values import split_list

from .base import EXCHANGER, Adapter, BackendSettings, Header, HeaderPolicy, IncomingRequest, Route, http_url

AuthMode = Literal["forward", "exchange"]

USER_TAG = b"clerk_user"
_TAGS_HEADER = b"x-query-tags"
#: Fauna's rule for a tag value (fauna/faunadb ``QueryLogTags``): ASCII letters, digits and ``_``,
#: at most 80 of them. A subject outside it is not tagged (see :func:`merge_query_tags`).
_TAG_VALUE = re.compile(rb"[A-Za-z0-9_]{1,80}")

#: Fauna's protocol error codes by status, which the drivers turn into their error classes
#: (``fauna.errors``: ``unauthorized`` → AuthenticationError, ``forbidden`` with 403 →
#: AuthorizationError, ``limit_exceeded`` → ThrottlingError, which they retry; 5xx by status).
_FAUNA_CODES: dict[int, str] = {
    400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 408: "invalid_request", 413: "request_size_exceeded",
    429: "limit_exceeded", 431: "request_size_exceeded", 500: "internal_error",
    502: "bad_gateway", 503: "service_unavailable", 504: "gateway_timeout",
}
_JSON = b"application/json;charset=utf-8"

#: How a stream ends when its token expires: Fauna's terminal ``error`` event. The Python driver
#: raises ``AuthenticationError`` for it (code ``unauthorized``), so the application fetches a
#: fresh token and reopens the stream from the last cursor.
EXPIRED_EVENT = orjson.dumps({
    "type": "error",
    "error": {"code": "unauthorized",
              "message": "the token expired; open the stream again with a fresh token and the last cursor"},
    "stats": {"read_ops": 0, "storage_bytes_read": 0, "compute_ops": 0, "processing_time_ms": 0,
              "rate_limits_hit": []},
}) + b"\r\n"


class FaunaSettings(BackendSettings):
    adapter: str = "fauna"
    url: str = "https://db.fauna.com"
    auth_mode: AuthMode = "forward"
    template: str | None = None  # exchange: the Clerk JWT template's name
    audience: str | None = None  # forward: the aud the token must carry, checked before Fauna is called
    query_tags: bool = True

    _lists = field_validator("token_kinds", mode="before")(split_list)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value, "http://fauna:8443")

    @model_validator(mode="after")
    def _consistent(self) -> FaunaSettings:
        if self.auth_mode == "exchange" and not self.template:
            raise ValueError("auth_mode 'exchange' needs template (the name of the Clerk JWT template)")
        if self.auth_mode == "exchange" and self.audience is not None:
            raise ValueError("audience applies to auth_mode 'forward'; in 'exchange' the Clerk template sets aud")
        return self


class FaunaAdapter(Adapter):
    settings_model: ClassVar[type[BackendSettings]] = FaunaSettings
    # The client's tags are re-sent by the adapter, merged with the audit tag (one header, never two).
    header_policy: ClassVar[HeaderPolicy] = HeaderPolicy(blocked=frozenset({_TAGS_HEADER}))
    paths: ClassVar[tuple[str, ...]] = ("/query/1", "/stream/1", "/feed/1")
    root_paths: ClassVar[frozenset[str]] = frozenset(paths)

    def __init__(self, name: str, settings: BackendSettings) -> None:
        super().__init__(name, settings)
        assert isinstance(settings, FaunaSettings)
        self.fauna: FaunaSettings = settings
        if settings.token_kinds is None and settings.auth_mode == "forward":
            self.accepted_kinds = frozenset(TokenKind)  # Fauna verifies what it gets; templates carry aud
        self._routes = {path: Route(upstream_url=settings.url + path, graphql=False) for path in self.paths}
        # A stream may be idle for minutes (no read timeout) and must not outlive its token.
        self._routes["/stream/1"] = Route(upstream_url=settings.url + "/stream/1", graphql=False,
                                          streaming=True, ends_at_token_expiry=True)
        self._audience = settings.audience

    def services_needed(self) -> frozenset[str]:
        return frozenset({EXCHANGER}) if self.fauna.auth_mode == "exchange" else frozenset()

    def match(self, method: str, path: str) -> Route:
        route = self._routes.get(path)
        if route is None:
            raise NotFoundError()
        if method != "POST":
            raise MethodNotAllowedError(["POST"])
        return route

    async def identity_headers(
        self, token: VerifiedToken, request: IncomingRequest, route: Route
    ) -> list[Header]:
        if self._audience is not None:
            check_audience(token.claims.get("aud"), self._audience)
        secret = token.token if self.fauna.auth_mode == "forward" else await self._exchanged(token)
        headers: list[Header] = [(b"authorization", b"Bearer " + secret.encode())]
        client_tags = [value for name, value in request.headers if name == _TAGS_HEADER]
        if self.fauna.query_tags:
            tags = merge_query_tags(client_tags, token.subject)
            if tags:
                headers.append((_TAGS_HEADER, tags))
        else:
            headers.extend((_TAGS_HEADER, value) for value in client_tags)
        return headers

    async def _exchanged(self, token: VerifiedToken) -> str:
        """The session's Fauna-template token from Clerk (``exchange``), which Fauna verifies itself."""
        exchanger = self.services.exchanger
        if exchanger is None:  # the runtime builds one for every exchange backend; reaching this is a bug
            raise GatewayError("internal-error", "exchange mode has no Clerk Backend API client")
        if token.session_id is None:
            raise AuthenticationError("token-kind-not-accepted", "exchange mode needs a session token (with sid)")
        assert self.fauna.template is not None  # validated with the settings
        return await exchanger.token_for(token.session_id, self.fauna.template)

    def render_error(self, error: GatewayError, route: Route | None) -> tuple[int, list[Header], bytes]:
        """Fauna's protocol error shape, ``{"error":{"code","message"}}`` (plus the gateway's
        ``reason``, which the drivers ignore), with the gateway's status and headers
        (``WWW-Authenticate``, ``Allow``, ``Retry-After``): the drivers then raise the same error
        classes as for Fauna's own refusals, e.g. ``AuthenticationError`` on a 401."""
        status, headers, _ = super().render_error(error, None)
        headers = [(name, _JSON if name == b"content-type" else value) for name, value in headers]
        code = _FAUNA_CODES.get(status) or ("internal_error" if status >= 500 else "invalid_request")
        body = orjson.dumps({"error": {"code": code, "message": error.message, "reason": error.reason}})
        return status, headers, body

    def stream_expired_ending(self, route: Route, last_chunk: bytes) -> bytes | None:
        """Fauna's terminal ``error`` event when the stream stands between two events (each event
        is one line); in the middle of one, cut instead: a garbled event would be worse."""
        if last_chunk and not last_chunk.endswith(b"\n"):
            return None
        return EXPIRED_EVENT

    def probe_url(self) -> str | None:
        return self.fauna.url + "/ping"  # the core's unauthenticated liveness endpoint


def check_audience(aud: object, expected: str) -> None:
    """Refuse a token whose ``aud`` is not ``expected`` nor a list containing it (JWT's rule)."""
    if aud is None:
        raise AuthenticationError("audience-missing", "the token has no 'aud' claim; this backend requires one")
    if aud == expected or (isinstance(aud, list) and expected in aud):
        return
    raise AuthenticationError("audience-mismatch", "the token's 'aud' does not name this backend's database")


def merge_query_tags(client_values: list[bytes], subject: str) -> bytes:
    """The ``X-Query-Tags`` value to send: the client's tags in their order, less any
    ``clerk_user`` (whatever its case, so the audit tag cannot be forged or shadowed), then exactly
    one ``clerk_user=<sub>``. Fauna's format is ``key=value`` pairs separated by commas, without
    spaces; the client's other tags are kept as sent, and Fauna judges them. A subject that Fauna
    would refuse as a tag value gets no tag: a rewritten value could name another user."""
    kept: list[bytes] = []
    for value in client_values:
        for entry in value.split(b","):
            entry = entry.strip()
            if entry and entry.partition(b"=")[0].strip().lower() != USER_TAG:
                kept.append(entry)
    sub = subject.encode("utf-8", "replace")
    if _TAG_VALUE.fullmatch(sub):
        kept.append(USER_TAG + b"=" + sub)
    return b",".join(kept)
