"""OpenTelemetry spans for the request path, built only when tracing is on.

Off is the default, and off means the request path never calls into OpenTelemetry: every traced
step is guarded by ``tracing is not None`` on an object this module builds, instead of going
through the API's no-op tracer, which still costs a context switch and a span object per step.
The SDK is imported here only, and this module only when tracing is on.

What the spans carry is chosen so that nothing secret can leak: the backend's name and mode, the
token's kind, the cache outcome, refusal reasons (the same words the client's error body has),
status codes, and the upstream URL without its query. The user id (``enduser.id``) is the only
claim value that goes into an attribute; never a token, a key, a header value or another claim.

The client's W3C ``traceparent`` becomes the parent of the gateway's server span, and the upstream
receives the gateway's own context in its place (``tracestate`` follows it). With tracing off, the
client's ``traceparent`` passes through untouched, like any other end-to-end header.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import NonRecordingSpan, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from clerk_gateway import __version__
from clerk_gateway.errors import GatewayError

if TYPE_CHECKING:
    from clerk_gateway.adapters.base import Adapter
    from clerk_gateway.auth.model import VerifiedToken
    from clerk_gateway.settings.tracing import TracingConfig

Header = tuple[bytes, bytes]

#: Attribute names of the gateway's own (semantic conventions name the rest).
BACKEND = "clerk_gateway.backend"
CACHE_OUTCOME = "clerk_gateway.token.cache"
CREDENTIAL_KIND = "clerk_gateway.token.kind"
REFUSAL = "clerk_gateway.refusal"
KEY_SOURCE = "clerk_gateway.keys.source"

_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})
_VERIFY = "clerk_gateway.verify_token"
#: Upstream URLs (without their query) whose span attributes are kept: a backend has a few routes.
_MAX_CACHED_URLS = 256


class _AsgiHeaders(Getter[Sequence[Header]]):
    """Reads the propagation headers straight from the ASGI header list (lower-case names)."""

    def get(self, carrier: Sequence[Header], key: str) -> list[str] | None:
        wanted = key.encode("latin-1")
        values = [value.decode("latin-1") for name, value in carrier if name == wanted]
        return values or None

    def keys(self, carrier: Sequence[Header]) -> list[str]:
        return [name.decode("latin-1") for name, _ in carrier]


_GETTER = _AsgiHeaders()


class Tracing:
    """The tracer, the W3C propagator and the span shapes the gateway uses."""

    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider
        self.tracer = provider.get_tracer("clerk_gateway", __version__)
        self._propagator = TraceContextTextMapPropagator()
        self._upstream_attributes: dict[str, dict[str, Any]] = {}
        self._adapter_attributes: dict[str, dict[str, Any]] = {}
        # With a parent-based sampler (the default) or always_off, a span whose parent was not
        # sampled is never recorded either, so a sampled-out request skips creating its leaves.
        sampler = provider.sampler
        self._leaves_follow_parent = isinstance(sampler, ParentBased) or sampler is ALWAYS_OFF

    @classmethod
    def from_config(cls, config: TracingConfig, *, exporters: Sequence[SpanExporter] = ()) -> Tracing:
        """A provider with the configured exporters (or the given ones, for tests). The SDK reads the
        sampler, the resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``), the batch
        processor's and the exporter's variables from the environment itself."""
        resource = Resource.create({"service.version": __version__})
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": "clerk-gateway"}))  # the environment named none
        provider = TracerProvider(resource=resource)
        chosen = list(exporters) or [_exporter(name) for name in config.exporters]
        for exporter in chosen:
            provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider)

    async def shutdown(self) -> None:
        """Flush what is queued; the SDK joins its export thread, so it runs off the event loop."""
        await asyncio.to_thread(self._provider.shutdown)

    # -- spans -----------------------------------------------------------------------------------
    # Spans are started and ended by hand rather than through ``start_as_current_span``: its
    # generator-based context managers cost more than the span itself. Only two spans become the
    # current context — the request's, and a verification that misses the cache (it may fetch keys,
    # whose span must be its child); the others are leaves and never need to be current.

    def begin_request(self, method: str, path: str, headers: Sequence[Header], backend: str, *,
                      name: str | None = None) -> tuple[Span, object]:
        """The request's server span, a child of the client's ``traceparent`` when it sent a valid
        one, made the current context; hand both to :meth:`end_request`."""
        parent = self._propagator.extract(headers, getter=_GETTER) if _has_trace_header(headers) else None
        span = self.tracer.start_span(name or f"{method} /{backend}", context=parent, kind=SpanKind.SERVER,
                                      attributes={"http.request.method": method, "url.path": path, BACKEND: backend},
                                      record_exception=False, set_status_on_exception=False)
        return span, otel_context.attach(trace.set_span_in_context(span))

    def records_below(self, span: Span) -> bool:
        """Whether spans under ``span`` may be recorded. Not when it was sampled out and the sampler
        follows the parent: then the request needs no leaves at all, only the upstream's header."""
        return span.is_recording() or not self._leaves_follow_parent

    @staticmethod
    def end_request(span: Span, token: object) -> None:
        otel_context.detach(token)  # type: ignore[arg-type]
        span.end()

    def leaf(self, name: str, *, kind: SpanKind = SpanKind.INTERNAL, attributes: dict[str, Any] | None = None) -> Span:
        """A child of the current span, not made current; the caller ends it. Exceptions are never
        recorded as events (their messages may quote input): :meth:`failed` names the failure."""
        if self._leaves_follow_parent:
            parent = trace.get_current_span()
            if not parent.is_recording():
                return NonRecordingSpan(parent.get_span_context())  # it still propagates the trace
        return self.tracer.start_span(name, kind=kind, attributes=attributes, record_exception=False,
                                      set_status_on_exception=False)

    @staticmethod
    def failed(span: Span, reason: str) -> None:
        span.set_attribute(REFUSAL, reason)
        span.set_status(Status(StatusCode.ERROR, reason))

    @staticmethod
    def refused(error: GatewayError) -> None:
        """The gateway refused the request: the server span says why (a 4xx is not a server error,
        so its status stays unset, as the HTTP conventions ask)."""
        span = trace.get_current_span()
        span.set_attribute(REFUSAL, error.reason)
        span.set_attribute("error.type", error.reason)

    @staticmethod
    def responded(span: Span, status: int) -> None:
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))

    @staticmethod
    def identified(token: VerifiedToken) -> None:
        trace.get_current_span().set_attribute("enduser.id", token.subject)

    def cached_verification(self, token: VerifiedToken) -> None:
        self.leaf(_VERIFY, attributes={CACHE_OUTCOME: "hit", CREDENTIAL_KIND: token.kind.value}).end()

    async def verification(self, work: Awaitable[VerifiedToken], *, cache_on: bool) -> VerifiedToken:
        span = self.leaf(_VERIFY, attributes={CACHE_OUTCOME: "miss" if cache_on else "off"})
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            verified = await work
            span.set_attribute(CREDENTIAL_KIND, verified.kind.value)
            return verified
        except GatewayError as error:
            self.failed(span, error.reason)
            raise
        finally:
            otel_context.detach(token)
            span.end()

    def adapter_span(self, adapter: Adapter) -> Span:
        """The adapter's work for one request or socket (in ``mint`` and ``exchange``, signing or
        exchanging the token), named by the backend, the adapter class and the mode."""
        attributes = self._adapter_attributes.get(adapter.name)
        if attributes is None:
            attributes = self._adapter_attributes[adapter.name] = {
                BACKEND: adapter.name, "clerk_gateway.adapter": type(adapter).__name__,
                "clerk_gateway.auth_mode": str(getattr(adapter.settings, "auth_mode", ""))}
        return self.leaf("clerk_gateway.adapter", attributes=attributes)

    def websocket_connect_span(self, url: str) -> Span:
        return self.leaf("WebSocket connect", kind=SpanKind.CLIENT, attributes=dict(_upstream_attributes(url)))

    def upstream_span(self, method: str, url: str) -> Span:
        base = url.partition("?")[0]
        attributes = self._upstream_attributes.get(base)
        if attributes is None:
            attributes = _upstream_attributes(base)
            if len(self._upstream_attributes) < _MAX_CACHED_URLS:
                self._upstream_attributes[base] = attributes
        return self.leaf(method, kind=SpanKind.CLIENT, attributes={"http.request.method": method, **attributes})

    @contextlib.contextmanager
    def key_fetch_span(self, source: str, url: str) -> Iterator[Span]:
        """A JWKS fetch: a child of the verification that needed it (an unknown ``kid``, the first
        request), or a trace of its own when the background refresher runs it. Rare, so the
        convenient form."""
        with self.tracer.start_as_current_span(
                "clerk_gateway.fetch_keys", kind=SpanKind.CLIENT, record_exception=False,
                set_status_on_exception=False,
                attributes={KEY_SOURCE: source, "url.full": _url_without_secrets(url)}) as span:
            yield span

    @staticmethod
    def trace_headers(span: Span) -> list[tuple[str, str]]:
        """``traceparent`` (and ``tracestate``) naming ``span``, formatted as W3C Trace Context
        level 1 says (what the propagator's ``inject`` writes, without its context lookups)."""
        context = span.get_span_context()
        if not context.is_valid:
            return []
        headers = [("traceparent", f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}")]
        if context.trace_state:
            headers.append(("tracestate", context.trace_state.to_header()))
        return headers

    def with_trace_context(self, headers: list[Header], span: Span) -> list[Header]:
        """``headers`` with the client's trace headers replaced by ``span``'s context."""
        out = [header for header in headers if header[0] not in _TRACE_HEADERS]
        out.extend((name.encode("latin-1"), value.encode("latin-1")) for name, value in self.trace_headers(span))
        return out


def _has_trace_header(headers: Sequence[Header]) -> bool:
    return any(name == b"traceparent" for name, _ in headers)


def _upstream_attributes(base: str) -> dict[str, Any]:
    parts = urlsplit(base)
    attributes: dict[str, Any] = {"server.address": parts.hostname or "", "url.full": _url_without_secrets(base)}
    if parts.port is not None:
        attributes["server.port"] = parts.port
    return attributes


def _url_without_secrets(url: str) -> str:
    """Scheme, host, port and path: never the query or user info, which may carry credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout, compression: the OTEL_EXPORTER_OTLP_* variables


def build_tracing(config: TracingConfig | None) -> Tracing | None:
    return Tracing.from_config(config) if config is not None else None
