"""The request guard that applies GraphQL document limits on GraphQL routes.

It reads what the client asked for — a JSON object (``{"query", "operationName", "variables",
"extensions"}``), a JSON array of them (a batch), or the ``query`` parameter of a GET — and refuses
with a GraphQL-shaped error before anything reaches the backend.

What it lets through unexamined is only what cannot carry a document the backend would run: an
empty body, JSON that is not an object or array, an object without a ``query`` string (the
backend answers those), and documents that do not parse (the backend owns syntax errors and
answers them in its own words, which the GraphQL-over-HTTP audit checks). A non-empty body that is
not JSON at all is refused with 400, whatever its content type: Hasura reads every body as JSON,
so forwarding a body the gateway could not read would let its document skip every limit.

Refusals follow the GraphQL-over-HTTP status rules: a client whose first choice is
``application/graphql-response+json`` gets **400** in that media type; everybody else
(``application/json``, ``*/*``, no ``Accept``) gets **200** with ``{"errors": [...]}``, which is
how GraphQL clients expect validation failures to look. A body that is not JSON is 400 for both.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import orjson

from clerk_gateway.errors import GatewayError
from clerk_gateway.proxy.guards import RequestContext, RequestGuard
from clerk_gateway.settings.graphql_limits import GraphQLLimitSettings

from .limits import DocumentAnalyser, DocumentLimits, Violation

__all__ = ["GRAPHQL_RESPONSE_JSON", "GraphQLLimitsGuard", "GraphQLRequestRefused", "prefers_graphql_response"]

GRAPHQL_RESPONSE_JSON = b"application/graphql-response+json; charset=utf-8"
_GRAPHQL_RESPONSE = "application/graphql-response+json"
_JSON_LIKE = frozenset({"application/json", "application/*", "*/*"})
_BOM = b"\xef\xbb\xbf"


class GraphQLRequestRefused(GatewayError):
    """A GraphQL request the gateway will not forward; status and media type follow ``Accept``.

    ``content_type`` is the media type the body must be sent with when it is not the GraphQL
    shape's default ``application/json``; the renderer honours it where set.
    """

    code = "validation-failed"
    title = "GraphQL request refused"
    content_type: bytes | None = None

    def __init__(self, reason: str, message: str, *, graphql_response: bool,
                 code: str = "validation-failed", status: int | None = None) -> None:
        super().__init__(reason, message)
        self.code = code
        self.status = status if status is not None else 400 if graphql_response else 200
        self.content_type = GRAPHQL_RESPONSE_JSON if graphql_response else None


class _Unreadable(Exception):
    """The body is not JSON."""


def prefers_graphql_response(accept: bytes | None) -> bool:
    """Whether the client's first choice among the types the gateway can answer with is
    ``application/graphql-response+json`` (by ``q``, then by order; ``q=0`` excludes a type)."""
    if not accept:
        return False
    best_q = 0.0
    best = ""
    for item in accept.decode("latin-1").split(","):
        media, *params = (part.strip() for part in item.split(";"))
        media = media.lower()
        if media != _GRAPHQL_RESPONSE and media not in _JSON_LIKE:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > best_q:
            best_q, best = quality, media
    return best == _GRAPHQL_RESPONSE


def _load_json(body: bytes) -> object:
    """orjson first (fast); the standard library where orjson is stricter than a backend may be
    (integers beyond 64 bits, UTF-16 bodies, ``NaN``). Raises :class:`_Unreadable`."""
    body = body.removeprefix(_BOM)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise _Unreadable() from None


def _queries_from_json(body: bytes) -> tuple[int, list[str]]:
    """``(batch size, query strings)`` of a JSON body; raises :class:`_Unreadable`."""
    payload = _load_json(body)
    if isinstance(payload, dict):
        query = payload.get("query")
        return (1, [query]) if isinstance(query, str) else (1, [])
    if isinstance(payload, list):
        return len(payload), [item["query"] for item in payload
                              if isinstance(item, dict) and isinstance(item.get("query"), str)]
    return 0, []


def _queries_from_query_string(query_string: bytes) -> list[str]:
    if not query_string:
        return []
    # Every ``query`` value is checked: which one a backend runs when there are several is its business.
    return parse_qs(query_string.decode("latin-1"), keep_blank_values=True).get("query", [])


def _accept(context: RequestContext) -> bytes:
    return b",".join(value for key, value in context.headers if key == b"accept")


class GraphQLLimitsGuard(RequestGuard):
    """Refuses GraphQL requests that break the configured limits (see ``GraphQLLimitSettings``)."""

    def __init__(self, settings: GraphQLLimitSettings) -> None:
        self.enabled = settings.limits_enabled
        self.max_batch = settings.max_batch
        self.allow_introspection = settings.allow_introspection
        self.introspection_roles = frozenset(role.encode() for role in settings.introspection_roles)
        self.analyser = DocumentAnalyser(
            DocumentLimits(max_depth=settings.max_depth, max_aliases=settings.max_aliases,
                           max_root_fields=settings.max_root_fields, max_tokens=settings.max_tokens,
                           max_operations=settings.max_operations, max_query_length=settings.max_query_length),
            cache_size=settings.cache_size,
        )

    async def after_auth(self, context: RequestContext) -> None:
        if not self.enabled or not context.route.graphql:
            return
        try:
            batch, queries = self._queries(context)
        except _Unreadable:
            raise self._refusal(context, Violation("graphql-invalid-json", "the request body is not valid JSON"),
                                code="invalid-json", status=400) from None
        if self.max_batch and batch > self.max_batch:
            raise self._refusal(context, Violation(
                "graphql-batch-limit", f"the batch holds {batch} operations; the limit is {self.max_batch}"),
                code="bad-request")
        if not queries:
            return
        length = self.analyser.limits.max_query_length
        if length and sum(len(query) for query in queries) > length:
            raise self._refusal(context, Violation(
                "graphql-length-limit", f"the query text is longer than the limit of {length} characters"))
        introspection_allowed = self.may_introspect(context.header(b"x-hasura-role"))
        for index, query in enumerate(queries):
            violation = self.analyser.check(query, introspection_allowed=introspection_allowed)
            if violation is not None:
                if batch > 1:
                    violation = Violation(violation.reason, f"batch entry {index}: {violation.message}")
                raise self._refusal(context, violation)

    def _queries(self, context: RequestContext) -> tuple[int, list[str]]:
        if context.method == "GET":
            # ``query_string`` is read when the proxy's RequestContext carries it.
            raw = getattr(context, "query_string", b"")
            return 1, _queries_from_query_string(raw) if isinstance(raw, bytes) else []
        if not context.body:
            return 0, []
        return _queries_from_json(context.body)

    def may_introspect(self, role: bytes | None) -> bool:
        """Whether a request for ``role`` (its ``x-hasura-role`` value, if any) may use ``__schema``/``__type``."""
        if self.allow_introspection:
            return True
        return role is not None and role in self.introspection_roles

    def check_query(self, query: str, *, role: bytes | None) -> Violation | None:
        """The first limit one document breaks, for callers outside HTTP (a WebSocket ``subscribe``)."""
        if not self.enabled:
            return None
        return self.analyser.check(query, introspection_allowed=self.may_introspect(role))

    @staticmethod
    def _refusal(context: RequestContext, violation: Violation, *, code: str = "validation-failed",
                 status: int | None = None) -> GraphQLRequestRefused:
        return GraphQLRequestRefused(violation.reason, violation.message, code=code, status=status,
                                     graphql_response=prefers_graphql_response(_accept(context)))
