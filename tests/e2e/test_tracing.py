"""Traces end to end: the real gateway exports OTLP/HTTP to a real receiver on 127.0.0.1.

One trace per request, parented on the client's ``traceparent``: the server span, the token
verification (cache miss, then hit), the key fetch an unknown ``kid`` causes, the adapter and the
upstream call, whose span is the parent the upstream receives. Nothing secret is in any attribute.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Mint, bearer
from tests.support.gateway_process import ADMIN_SECRET, GatewayProcess, gateway_env, hasura_backend
from tests.support.jwks_server import JwksServer
from tests.support.otlp_collector import OtlpCollector, ReceivedSpan
from tests.support.tokens import SigningKey
from tests.support.upstream import RecordingUpstream

GRAPHQL = "/hasura/v1/graphql"
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"


@pytest.fixture(scope="module")
def collector() -> Iterator[OtlpCollector]:
    with OtlpCollector() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(jwks_server: JwksServer, upstream: RecordingUpstream, collector: OtlpCollector) -> Iterator[GatewayProcess]:
    env = gateway_env(jwks_server.url, {"hasura": hasura_backend(upstream.url)},
                      OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint, OTEL_BSP_SCHEDULE_DELAY=50,
                      OTEL_SERVICE_NAME="gateway-under-test")
    with GatewayProcess(env) as process:
        yield process


def _one_trace(collector: OtlpCollector, trace_id: str, names: set[str]) -> dict[str, ReceivedSpan]:
    """The spans of ``trace_id`` by name, once every one of ``names`` has arrived."""
    for name in names:
        collector.wait_for(name)
    spans = [span for span in collector.spans if span.trace_id == trace_id]
    by_name = {span.name: span for span in spans}
    assert names <= set(by_name), f"missing spans: {names - set(by_name)}; got {[s.name for s in spans]}"
    return by_name


def test_a_request_is_one_trace_under_the_clients_traceparent(gateway: GatewayProcess, jwks_server: JwksServer,
                                                            upstream: RecordingUpstream, collector: OtlpCollector,
                                                            mint: Mint) -> None:
    rotated = SigningKey.rsa("ins_rotated")
    jwks_server.add_key(rotated)  # the gateway has not seen this kid: the request itself fetches the keys
    token = mint(key=rotated, sub="user_traced", sid="sess_secret_session", org_id="org_hidden")
    collector.clear()
    with gateway.client() as client:
        first = client.post(GRAPHQL, json={"query": "{ a }"}, headers={**bearer(token), "traceparent": TRACEPARENT,
                                                                        "tracestate": "vendor=abc"})
        assert first.status_code == 200, first.text
        sent = upstream.last()
        upstream.reset()
        again = client.post(GRAPHQL, json={"query": "{ a }"}, headers={**bearer(token), "traceparent": TRACEPARENT})
        assert again.status_code == 200

    spans = _one_trace(collector, CLIENT_TRACE, {"POST /hasura", "clerk_gateway.verify_token",
                                                 "clerk_gateway.fetch_keys", "clerk_gateway.adapter", "POST"})
    collector.wait_for("POST /hasura", count=2)  # both requests' server spans (the exporter batches them)
    collector.wait_for("clerk_gateway.verify_token", count=2)
    server = [span for span in collector.spans if span.trace_id == CLIENT_TRACE and span.name == "POST /hasura"]
    assert len(server) == 2
    first_server = next(span for span in server if any(
        s.parent_span_id == span.span_id and s.name == "clerk_gateway.verify_token"
        and s.attributes["clerk_gateway.token.cache"] == "miss" for s in collector.spans))
    assert first_server.kind == "SERVER" and first_server.parent_span_id == CLIENT_SPAN
    assert first_server.attributes["http.response.status_code"] == 200
    assert first_server.attributes["enduser.id"] == "user_traced"
    assert first_server.attributes["clerk_gateway.backend"] == "hasura"
    assert first_server.resource["service.name"] == "gateway-under-test"

    children = {s.name: s for s in collector.spans if s.parent_span_id == first_server.span_id}
    assert set(children) == {"clerk_gateway.verify_token", "clerk_gateway.adapter", "POST"}
    verify = children["clerk_gateway.verify_token"]
    assert verify.attributes["clerk_gateway.token.kind"] == "session"
    fetch = spans["clerk_gateway.fetch_keys"]
    assert fetch.parent_span_id == verify.span_id and fetch.kind == "CLIENT"
    assert fetch.attributes["url.full"] == jwks_server.url
    adapter = children["clerk_gateway.adapter"]
    assert adapter.attributes["clerk_gateway.auth_mode"] == "admin_secret"
    upstream_span = children["POST"]
    assert upstream_span.kind == "CLIENT" and upstream_span.attributes["http.response.status_code"] == 200
    assert upstream_span.attributes["url.full"] == f"{upstream.url}/v1/graphql"

    # the upstream is a child of the gateway's client span, in the client's trace; tracestate follows
    assert sent.header("traceparent") == f"00-{CLIENT_TRACE}-{upstream_span.span_id}-01"
    assert sent.header("tracestate") == "vendor=abc"
    assert len(sent.header_values("traceparent")) == 1

    second_server = next(span for span in server if span is not first_server)
    hit = [s for s in collector.spans if s.parent_span_id == second_server.span_id
           and s.name == "clerk_gateway.verify_token"]
    assert len(hit) == 1 and hit[0].attributes["clerk_gateway.token.cache"] == "hit"

    for span in collector.spans:
        for value in span.all_values():
            for secret in (token, ADMIN_SECRET, "sess_secret_session", "org_hidden", token.split(".")[2]):
                assert secret not in value, f"{span.name} carries a secret in {value!r}"
    assert all(ctype == "application/x-protobuf" for ctype in collector.content_types)


def test_a_refusal_is_traced_with_its_reason_and_never_reaches_upstream(gateway: GatewayProcess,
                                                                       upstream: RecordingUpstream,
                                                                       collector: OtlpCollector, mint: Mint) -> None:
    collector.clear()
    expired = mint(lifetime=-120)
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    with gateway.client() as client:
        response = client.post(GRAPHQL, json={"query": "{ a }"},
                               headers={**bearer(expired), "traceparent": f"00-{trace_id}-b7ad6b7169203331-01"})
    assert response.status_code == 401
    assert upstream.requests == []
    spans = _one_trace(collector, trace_id, {"POST /hasura", "clerk_gateway.verify_token"})
    server = spans["POST /hasura"]
    assert server.attributes["http.response.status_code"] == 401
    assert server.attributes["clerk_gateway.refusal"] == "token-expired"
    assert server.status == "UNSET"  # a 4xx is the client's error, not the server's
    verify = spans["clerk_gateway.verify_token"]
    assert verify.status == "ERROR" and verify.attributes["clerk_gateway.refusal"] == "token-expired"
    assert "POST" not in spans and "clerk_gateway.adapter" not in spans


def test_without_a_traceparent_the_gateway_starts_a_trace_and_the_upstream_joins_it(
        gateway: GatewayProcess, upstream: RecordingUpstream, collector: OtlpCollector, mint: Mint) -> None:
    collector.clear()
    with gateway.client() as client:
        response = client.post(GRAPHQL, json={"query": "{ a }"}, headers=bearer(mint(sub="user_root")))
    assert response.status_code == 200
    traceparent = upstream.last().header("traceparent")
    assert traceparent is not None
    match = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-0[13]", traceparent)  # 02: a random trace id
    assert match is not None, traceparent
    server = collector.wait_for("POST /hasura")
    ours = [span for span in server if span.trace_id == match.group(1)]
    assert len(ours) == 1 and ours[0].parent_span_id == ""


def test_tracing_is_off_by_default_and_the_clients_traceparent_passes_through(
        jwks_server: JwksServer, upstream: RecordingUpstream, collector: OtlpCollector, mint: Mint) -> None:
    collector.clear()
    env = gateway_env(jwks_server.url, {"hasura": hasura_backend(upstream.url)})
    with GatewayProcess(env) as process, process.client() as client:
        response = client.post(GRAPHQL, json={"query": "{ a }"}, headers={**bearer(mint()), "traceparent": TRACEPARENT})
        assert response.status_code == 200
    assert upstream.last().header("traceparent") == TRACEPARENT
    assert collector.spans == []


def test_a_bad_otel_setting_stops_start_up_with_one_line(jwks_server: JwksServer, upstream: RecordingUpstream) -> None:
    env = gateway_env(jwks_server.url, {"hasura": hasura_backend(upstream.url)},
                      OTEL_TRACES_EXPORTER="otlp", OTEL_EXPORTER_OTLP_PROTOCOL="grpc")
    process = GatewayProcess(env)
    with pytest.raises(AssertionError) as failure:
        process.start()
    assert "OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' is not supported" in str(failure.value)
    assert "Traceback" not in str(failure.value)


def test_a_websocket_start_is_one_trace_and_the_upstream_upgrade_joins_it(
        jwks_server: JwksServer, collector: OtlpCollector, mint: Mint) -> None:
    import asyncio
    import json

    from websockets.asyncio.client import connect
    from websockets.typing import Subprotocol

    from tests.support.ws_upstream import TRANSPORT, GraphQLWebSocketUpstream

    trace_id = "1bf92f3577b34da6a3ce929d0e0e4737"
    token = mint(sub="user_socket", sid="sess_socket_secret")

    async def open_socket(url: str) -> dict[str, object]:
        async with connect(url, subprotocols=[Subprotocol(TRANSPORT)], proxy=None, open_timeout=5,
                           additional_headers={"traceparent": f"00-{trace_id}-{CLIENT_SPAN}-01"}) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"headers": bearer(token)}}))
            ack: dict[str, object] = json.loads(await asyncio.wait_for(ws.recv(), 5))
            return ack

    collector.clear()
    with GraphQLWebSocketUpstream() as ws_upstream:
        env = gateway_env(jwks_server.url, {"hasura": hasura_backend(ws_upstream.http_url)},
                          OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint, OTEL_BSP_SCHEDULE_DELAY=50)
        with GatewayProcess(env) as gateway:
            ack = asyncio.run(open_socket(gateway.url.replace("http://", "ws://") + GRAPHQL))
            assert ack["type"] == "connection_ack"
            upgrade = ws_upstream.connections[0]
            spans = _one_trace(collector, trace_id, {"WebSocket /hasura", "clerk_gateway.verify_token",
                                                     "clerk_gateway.adapter", "WebSocket connect"})
    server = spans["WebSocket /hasura"]
    assert server.kind == "SERVER" and server.parent_span_id == CLIENT_SPAN
    assert server.attributes["enduser.id"] == "user_socket"
    connect_span = spans["WebSocket connect"]
    assert connect_span.kind == "CLIENT" and connect_span.parent_span_id == server.span_id
    assert connect_span.attributes["url.full"] == f"{ws_upstream.url}/v1/graphql"
    assert spans["clerk_gateway.verify_token"].parent_span_id == server.span_id
    assert upgrade.header("traceparent") == f"00-{trace_id}-{connect_span.span_id}-01"
    for span in collector.spans:
        for value in span.all_values():
            assert token not in value and "sess_socket_secret" not in value and ADMIN_SECRET not in value


def test_a_request_sampled_out_by_its_client_records_nothing_but_still_propagates(
        gateway: GatewayProcess, upstream: RecordingUpstream, collector: OtlpCollector, mint: Mint) -> None:
    collector.clear()
    trace_id = "5bf92f3577b34da6a3ce929d0e0e4738"
    with gateway.client() as client:
        response = client.post(GRAPHQL, json={"query": "{ a }"},
                               headers={**bearer(mint()), "traceparent": f"00-{trace_id}-{CLIENT_SPAN}-00",
                                        "tracestate": "vendor=xyz"})
        assert response.status_code == 200
        refused = client.post(GRAPHQL, json={"query": "{ a }"},
                              headers={"traceparent": f"00-{trace_id}-{CLIENT_SPAN}-00"})
        assert refused.status_code == 401  # the plain path still refuses as usual
    sent = upstream.last()
    match = re.fullmatch(rf"00-{trace_id}-([0-9a-f]{{16}})-00", sent.header("traceparent") or "")
    assert match is not None and match.group(1) != CLIENT_SPAN, sent.header("traceparent")
    assert sent.header("tracestate") == "vendor=xyz" and len(sent.header_values("traceparent")) == 1
    time.sleep(0.5)  # the exporter's batch delay is 50 ms: anything recorded would have arrived
    assert [span for span in collector.spans if span.trace_id == trace_id] == []
