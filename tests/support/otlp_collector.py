"""A real OTLP/HTTP trace receiver on 127.0.0.1, standing in for an OpenTelemetry Collector.

The gateway's own exporter (the SDK's OTLP exporter, configured by ``OTEL_EXPORTER_OTLP_ENDPOINT``)
posts protobuf ``ExportTraceServiceRequest`` bodies to ``/v1/traces``; this double decodes them
with the OpenTelemetry protobuf definitions and keeps every span as a plain :class:`ReceivedSpan`,
so a test asserts on exactly what an operator's collector would receive.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from .ports import BackgroundServer

__all__ = ["OtlpCollector", "ReceivedSpan"]

#: The OTLP enum's names, without their ``SPAN_KIND_`` prefix.
_KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: str
    status: str
    attributes: dict[str, Any]
    resource: dict[str, Any]

    def all_values(self) -> list[str]:
        """Every attribute value, span and resource, as text: what a leak check searches."""
        return [str(value) for value in (*self.attributes.values(), *self.resource.values())]


def _value(value: AnyValue) -> Any:
    field = value.WhichOneof("value")
    if field == "array_value":
        return [_value(item) for item in value.array_value.values]
    if field == "kvlist_value":
        return {item.key: _value(item.value) for item in value.kvlist_value.values}
    return getattr(value, field) if field else None


def _attributes(items: Any) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in items}


class OtlpCollector(BackgroundServer):
    """Receives ``POST /v1/traces`` (protobuf, as the SDK's HTTP exporter sends it)."""

    def __init__(self) -> None:
        super().__init__(self._build_app)
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self._content_types: list[str] = []

    @property
    def endpoint(self) -> str:
        """``OTEL_EXPORTER_OTLP_ENDPOINT`` (the exporter appends ``/v1/traces``)."""
        return self.base_url

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    @property
    def content_types(self) -> list[str]:
        with self._lock:
            return list(self._content_types)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()

    def wait_for(self, name: str, count: int = 1, timeout: float = 10.0) -> list[ReceivedSpan]:
        """Spans named ``name`` once at least ``count`` arrived (the exporter batches them)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [span for span in self.spans if span.name == name]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/traces", self._receive)
        return app

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        received: list[ReceivedSpan] = []
        for resource_spans in message.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(ReceivedSpan(
                        name=span.name, trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(), kind=_KINDS.get(span.kind, str(span.kind)),
                        status=_STATUS.get(span.status.code, str(span.status.code)),
                        attributes=_attributes(span.attributes), resource=resource))
        with self._lock:
            self._spans.extend(received)
            self._content_types.append(request.headers.get("content-type", ""))
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")
