"""Graceful drain end to end: SIGTERM with a slow request and a stream in flight.

On SIGTERM ``/readyz`` turns 503 at once, new answers say ``Connection: close``, WebSockets close
with 1001, what is in flight finishes (nothing is cut before ``GATEWAY_DRAIN_SECONDS``), and then
the process exits 0.
"""

from __future__ import annotations

import signal
import threading
import time

import httpx

from tests.e2e.conftest import Mint, bearer
from tests.support.gateway_process import GatewayProcess, gateway_env, hasura_backend
from tests.support.jwks_server import JwksServer
from tests.support.upstream import RecordingUpstream

GRAPHQL = "/hasura/v1/graphql"


def test_sigterm_drains_what_is_in_flight_then_exits_0(jwks_server: JwksServer, upstream: RecordingUpstream,
                                                       mint: Mint) -> None:
    env = gateway_env(jwks_server.url, {"hasura": hasura_backend(upstream.url, timeout_seconds=30)},
                      GATEWAY_DRAIN_SECONDS=15)
    gateway = GatewayProcess(env).start()
    try:
        slow_gate, stream_gate = upstream.gate("slow"), upstream.gate("stream")
        results: dict[str, httpx.Response | BaseException] = {}

        def call(name: str, headers: dict[str, str]) -> None:
            try:
                with gateway.client(timeout=30) as client:
                    results[name] = client.post(GRAPHQL, json={"query": "{ a }"}, headers={**bearer(mint()), **headers})
            except BaseException as exc:  # the assertion below says what happened
                results[name] = exc

        threads = [threading.Thread(target=call, args=("slow", {"x-test-mode": "hang", "x-test-gate": "slow"})),
                   threading.Thread(target=call, args=("stream", {"x-test-mode": "stream", "x-test-gate": "stream"}))]
        for thread in threads:
            thread.start()
        assert stream_gate.first_sent.wait(10), "the stream never started"
        deadline = time.monotonic() + 10
        while len(upstream.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(upstream.requests) == 2

        assert gateway._process is not None
        gateway._process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with gateway.client() as client:
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["reason"] == "draining"
            assert ready.headers.get("connection") == "close"
        time.sleep(1.0)
        assert gateway.running, "the gateway stopped while requests were still in flight"

        slow_gate.release()
        stream_gate.release()
        for thread in threads:
            thread.join(15)
        for name in ("slow", "stream"):
            response = results[name]
            assert isinstance(response, httpx.Response), f"{name}: {response!r}"
            assert response.status_code == 200, f"{name}: {response.status_code} {response.text[:200]}"
        assert results["stream"].content.endswith(b'"}}')  # type: ignore[union-attr]

        assert gateway._process.wait(timeout=10) == 0
    finally:
        gateway.close()
