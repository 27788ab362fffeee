"""Resolves what a GraphQL request asks to run, per the backend's ``documents`` mode, and cleans it.

Runs after authentication and before the GraphQL limits, so the limits judge the text that will
really run (a manifest document included). Whatever the mode, Hasura and Nhost receive
``{"query", "operationName", "variables"}`` only: ``extensions``, ``documentId`` and ``doc_id`` never
go upstream (Hasura CE answers ``PersistedQueryNotSupported`` to a persisted-query extension, and
older versions refuse any ``extensions``). A body that carries none of those keys is passed on as
it came, without being parsed, in ``off`` and ``apq`` modes: that is the hot path's common case.

Refusals use the words clients already know: Apollo's ``PersistedQueryNotFound`` (a **200**, with
the ``Cache-Control`` Apollo Client retries on) and ``provided sha does not match query`` for APQ,
and Hasura's allow-list ``query is not allowed`` (code ``validation-failed``) for ``enforce``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from clerk_gateway.errors import GatewayError
from clerk_gateway.observability.metrics import DOCUMENTS

from .apq_store import ApqStore
from .manifests import Manifests, normalise_id
from .settings import DocumentsSettings

log = logging.getLogger("clerk_gateway.documents")

Header = tuple[bytes, bytes]
_MARKERS = (b'"extensions"', b'"documentId"', b'"doc_id"')
_GET_MARKERS = (b"extensions=", b"documentId=", b"doc_id=")
_KEPT = ("query", "operationName", "variables")


class DocumentRefused(GatewayError):
    """Rendered in the GraphQL error shape on GraphQL routes (the proxy's renderer)."""

    title = "GraphQL document refused"

    def __init__(self, reason: str, message: str, *, code: str, status: int,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(reason, message, headers=headers)
        self.code = code
        self.status = status


def _not_found() -> DocumentRefused:
    return DocumentRefused("persisted-query-not-found", "PersistedQueryNotFound", code="PERSISTED_QUERY_NOT_FOUND",
                           status=200, headers={"Cache-Control": "private, no-cache, must-revalidate"})


def _not_allowed(reason: str) -> DocumentRefused:
    return DocumentRefused(reason, "query is not allowed", code="validation-failed", status=400)


class DocumentResolver:
    """One backend's resolver: its mode, its manifests (log/enforce) and its APQ store (apq)."""

    def __init__(self, backend: str, settings: DocumentsSettings, *, manifests: Manifests | None = None,
                 apq: ApqStore | None = None) -> None:
        self.backend = backend
        self.mode = settings.mode
        self.require_id = settings.require_id
        self.bypass_roles = frozenset(role.encode() for role in settings.bypass_roles)
        self.manifests = manifests or Manifests()
        self.apq = apq
        self.max_apq_bytes = settings.apq_max_document_bytes
        self._parse_all = self.mode in ("log", "enforce")
        self._counters: dict[str, Any] = {}

    # -- the HTTP forms ------------------------------------------------------------------------------

    async def resolve_body(self, body: bytes, headers: Sequence[Header]) -> bytes:
        """The POST body to forward (``body`` itself when nothing had to change)."""
        if not self._parse_all and not any(marker in body for marker in _MARKERS):
            return body
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body  # the GraphQL limits refuse a body that is not JSON; nothing to resolve here
        if isinstance(payload, dict):
            return orjson.dumps(await self.resolve_operation(payload, headers))
        if isinstance(payload, list):
            return orjson.dumps([await self.resolve_operation(item, headers) if isinstance(item, dict) else item
                                 for item in payload])
        return body

    async def resolve_query_string(self, query_string: bytes, headers: Sequence[Header]) -> bytes:
        """A GET's query string: ``?extensions=<JSON>`` / ``?documentId=`` resolved, the rest dropped."""
        if not self._parse_all and not any(marker in query_string for marker in _GET_MARKERS):
            return query_string
        params = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
        operation: dict[str, Any] = {name: params[name] for name in ("query", "operationName", "documentId", "doc_id")
                                     if name in params}
        for name in ("extensions", "variables"):
            if name in params:
                try:
                    operation[name] = orjson.loads(params[name])
                except orjson.JSONDecodeError:
                    operation[name] = params[name]  # variables stay text for the backend; extensions are refused
        resolved = await self.resolve_operation(operation, headers)
        out = {}
        for name, value in resolved.items():
            if value is None:
                continue
            out[name] = value if isinstance(value, str) else orjson.dumps(value).decode()
        return urlencode(out).encode("latin-1")

    # -- one operation ---------------------------------------------------------------------------------

    async def resolve_operation(self, operation: dict[str, Any], headers: Sequence[Header]) -> dict[str, Any]:
        """The clean ``{query, operationName, variables}`` to run; raises :class:`DocumentRefused`."""
        extensions = operation.get("extensions")
        if extensions is not None and not isinstance(extensions, dict):
            # what a GraphQL server answers to it; dropping it silently would hide the client's bug
            raise DocumentRefused("invalid-extensions", "the 'extensions' parameter must be an object",
                                  code="bad-request", status=400)
        query = operation.get("query")
        text = query if isinstance(query, str) and query else None
        if self.mode == "apq":
            text = await self._apq(operation, text)
        elif self._parse_all:
            text = self._trusted(operation, text, headers)
        clean = {name: operation[name] for name in _KEPT if name in operation}
        if text is not None:
            clean["query"] = text
        return clean

    async def _apq(self, operation: dict[str, Any], text: str | None) -> str | None:
        extensions = operation.get("extensions")
        persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
        if not isinstance(persisted, dict):
            return text
        digest = persisted.get("sha256Hash")
        if persisted.get("version") != 1 or not isinstance(digest, str) or not digest:
            raise DocumentRefused("persisted-query-not-supported", "PersistedQueryNotSupported",
                                  code="PERSISTED_QUERY_NOT_SUPPORTED", status=400)
        digest = normalise_id(digest)
        assert self.apq is not None
        if text is None:
            stored = await self.apq.get(digest)
            if stored is None:
                self._count("apq-miss")
                raise _not_found()
            self._count("apq-hit")
            return stored
        if hashlib.sha256(text.encode()).hexdigest() != digest:
            self._count("apq-hash-mismatch")
            raise DocumentRefused("persisted-query-hash-mismatch", "provided sha does not match query",
                                  code="PERSISTED_QUERY_HASH_MISMATCH", status=400)
        if len(text) <= self.max_apq_bytes:
            await self.apq.put(digest, text)
        self._count("apq-registered")
        return text

    def _trusted(self, operation: dict[str, Any], text: str | None, headers: Sequence[Header]) -> str | None:
        document_id = _document_id(operation)
        bypass = bool(self.bypass_roles) and _last(headers, b"x-hasura-role") in self.bypass_roles
        if document_id is not None:
            known = self.manifests.by_id.get(document_id)
            if known is not None:
                self._count("manifest-id")
                return known.body  # the manifest's text: whatever was sent beside the id is ignored
            if text is not None and (bypass or self.mode == "log"):
                self._count("bypass" if bypass else "unknown-id")
                self._report(operation, text, headers, "unknown-document-id")
                return text
            self._count("refused-unknown-id")
            raise _not_allowed("unknown-document-id")
        if text is None:
            return None  # nothing to run: the backend answers that request itself
        if bypass:
            self._count("bypass")
            return text
        if text in self.manifests.by_body:
            if self.require_id and self.mode == "enforce":
                self._count("refused-id-required")
                raise _not_allowed("document-id-required")
            self._count("manifest-text")
            return text
        if self.mode == "enforce":
            self._count("refused-not-in-manifest")
            raise _not_allowed("document-not-in-manifest")
        self._count("unknown-text")
        self._report(operation, text, headers, "document-not-in-manifest")
        return text

    def _report(self, operation: dict[str, Any], text: str, headers: Sequence[Header], reason: str) -> None:
        """``log`` mode's point: name what would be refused, so that ``enforce`` can be switched on with
        confidence. The operation's name, a hash of its text and the client's name; never variables."""
        name = operation.get("operationName")
        client = _last(headers, b"apollographql-client-name")
        log.warning("document not in the manifests", extra={
            "backend": self.backend, "reason": reason,
            "operation_name": name[:100] if isinstance(name, str) else None,
            "document_sha256": hashlib.sha256(text.encode()).hexdigest(),
            "client_name": client.decode("latin-1")[:100] if client else None})

    def _count(self, outcome: str) -> None:
        counter = self._counters.get(outcome)
        if counter is None:
            counter = self._counters[outcome] = DOCUMENTS.labels(self.backend, outcome)
        counter.inc()


def _document_id(operation: dict[str, Any]) -> str | None:
    extensions = operation.get("extensions")
    if isinstance(extensions, dict):
        persisted = extensions.get("persistedQuery")
        if isinstance(persisted, dict) and isinstance(persisted.get("sha256Hash"), str) and persisted["sha256Hash"]:
            return normalise_id(persisted["sha256Hash"])
    for name in ("documentId", "doc_id"):
        value = operation.get(name)
        if isinstance(value, str) and value.strip():
            return normalise_id(value)
    return None


def _last(headers: Sequence[Header], name: bytes) -> bytes | None:
    found = None
    for key, value in headers:
        if key == name:
            found = value
    return found
