"""The traced proxy in-process, with the SDK's in-memory exporter and respx for the upstream."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from clerk_gateway.adapters.hasura import HasuraAdapter, HasuraSettings
from clerk_gateway.observability.tracing import Tracing
from clerk_gateway.proxy.http import TracedBackendProxy
from clerk_gateway.proxy.upstream import HttpxUpstream
from clerk_gateway.settings.tracing import TracingConfig
from tests.support.stubs import GOOD_TOKEN, StubVerifier

UPSTREAM = "http://user:pw@hasura.test:8080"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exporter: InMemorySpanExporter) -> Tracing:
    return Tracing.from_config(TracingConfig(exporters=()), exporters=[exporter])


def _app(tracing: Tracing) -> Any:
    adapter = HasuraAdapter("hasura", HasuraSettings.model_validate(
        {"url": UPSTREAM, "auth_mode": "admin_secret", "admin_secret": "s3cret", "timeout_seconds": 1}))
    proxy = TracedBackendProxy(adapter, HttpxUpstream(), StubVerifier(),  # type: ignore[arg-type]
                               cookie_names=("__session",), max_body_bytes=1024, tracing=tracing)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await proxy.handle(scope, receive, send, scope["path"].removeprefix("/hasura"))

    return app


async def _post(app: Any, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        return await client.post("/hasura/v1/graphql?secret=x", json={"query": "{ a }"}, headers=headers)


@respx.mock
async def test_spans_nest_and_the_upstream_gets_the_client_span_as_parent(tracing: Tracing,
                                                                         exporter: InMemorySpanExporter) -> None:
    route = respx.post("http://hasura.test:8080/v1/graphql").mock(return_value=httpx.Response(200, json={}))
    response = await _post(_app(tracing), authorization=f"Bearer {GOOD_TOKEN}",
                           traceparent="00-11111111111111111111111111111111-2222222222222222-01")
    assert response.status_code == 200
    await tracing.shutdown()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"POST /hasura", "clerk_gateway.adapter", "POST"}  # the stub verifier has no span
    server, adapter, upstream = spans["POST /hasura"], spans["clerk_gateway.adapter"], spans["POST"]
    assert server.kind is SpanKind.SERVER and server.parent is not None
    assert server.parent.span_id == 0x2222222222222222 and server.parent.is_remote
    assert adapter.parent is not None and adapter.parent.span_id == server.context.span_id
    assert upstream.parent is not None and upstream.parent.span_id == server.context.span_id
    assert upstream.attributes is not None and upstream.attributes["url.full"] == "http://hasura.test:8080/v1/graphql"
    sent = route.calls.last.request.headers.get_list("traceparent")
    assert sent == [f"00-{'1' * 32}-{upstream.context.span_id:016x}-01"]
    assert server.attributes is not None and server.attributes["url.path"] == "/hasura/v1/graphql"


@respx.mock
async def test_a_dead_upstream_is_an_error_span_and_a_502(tracing: Tracing, exporter: InMemorySpanExporter) -> None:
    respx.post("http://hasura.test:8080/v1/graphql").mock(side_effect=httpx.ConnectError("refused"))
    response = await _post(_app(tracing), authorization=f"Bearer {GOOD_TOKEN}")
    assert response.status_code == 502
    await tracing.shutdown()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert spans["POST"].status.status_code is StatusCode.ERROR
    assert spans["POST"].attributes is not None
    assert spans["POST"].attributes["clerk_gateway.refusal"] == "upstream-unavailable"
    server = spans["POST /hasura"]
    assert server.status.status_code is StatusCode.ERROR
    assert server.attributes is not None and server.attributes["http.response.status_code"] == 502
