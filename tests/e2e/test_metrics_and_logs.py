"""``/metrics`` exposes the operational counters, and neither the metrics nor the gateway's own
logs ever carry a token, a subject or the admin secret — even at debug level."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.e2e.conftest import Mint, bearer
from tests.support.gateway_process import ADMIN_SECRET, GatewayProcess, gateway_env, hasura_backend
from tests.support.jwks_server import JwksServer
from tests.support.tokens import SigningKey
from tests.support.upstream import RecordingUpstream

GRAPHQL = "/hasura/v1/graphql"
SUBJECT = "user_metrics_subject_9f3"
REASON_LABEL = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


@pytest.fixture(scope="module")
def gateway(jwks_server: JwksServer, upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    env = gateway_env(jwks_server.url, {"hasura": hasura_backend(upstream.url)}, GATEWAY_LOG_LEVEL="debug")
    with GatewayProcess(env) as process:
        yield process


@pytest.fixture(scope="module")
def traffic(gateway: GatewayProcess, mint: Mint) -> list[str]:
    """Accepted, refused and forbidden requests; returns every token that was sent."""
    tokens = [
        mint(sub=SUBJECT),
        mint(sub=SUBJECT, now=time.time() - 600),  # expired
        mint(sub=SUBJECT, key=SigningKey.rsa("ins_metrics_unknown")),  # unknown kid
        mint(sub=SUBJECT, issuer="https://clerk.evil.example"),  # wrong issuer
    ]
    with gateway.client() as client:
        for token in tokens:
            client.post(GRAPHQL, json={"query": "{ a }"}, headers=bearer(token))
        client.post(GRAPHQL, json={"query": "{ a }"}, headers={"Cookie": f"__session={tokens[1]}"})
        client.post(GRAPHQL, json={"query": "{ a }"}, headers={**bearer(tokens[0]), "x-hasura-role": "admin"})
        client.post(GRAPHQL, json={"query": "{ a }"},
                    headers={**bearer(tokens[0]), "x-hasura-admin-secret": ADMIN_SECRET})
        client.post(GRAPHQL, json={"query": "{ a }"})  # no token
    return tokens


@pytest.fixture(scope="module")
def metrics_text(gateway: GatewayProcess, traffic: list[str]) -> str:
    with gateway.client() as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def samples(text: str, name: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples if s.name == name]


def test_request_counter_by_backend_and_status(metrics_text: str) -> None:
    counted = {(s.labels.get("backend"), s.labels.get("status")): s.value
               for s in samples(metrics_text, "gateway_requests_total")}
    assert counted.get(("hasura", "200"), 0) >= 2
    assert counted.get(("hasura", "401"), 0) >= 5
    assert counted.get(("hasura", "403"), 0) >= 1


def test_auth_failures_are_counted_by_reason(metrics_text: str) -> None:
    failures = samples(metrics_text, "gateway_auth_failures_total")
    assert sum(s.value for s in failures) >= 6
    reasons = {s.labels["reason"] for s in failures}
    assert len(reasons) >= 3, reasons  # missing, expired, unknown kid, issuer, role: not one catch-all
    assert all(REASON_LABEL.match(reason) for reason in reasons), reasons


def test_jwks_fetches_and_upstream_latency_are_exposed(metrics_text: str) -> None:
    assert sum(s.value for s in samples(metrics_text, "gateway_jwks_fetches_total")) >= 1
    latency = [s for s in samples(metrics_text, "gateway_upstream_latency_seconds_count")
               if s.labels.get("backend") == "hasura"]
    assert latency and latency[0].value >= 2


def test_metrics_carry_no_token_subject_or_secret(metrics_text: str, traffic: list[str]) -> None:
    assert ADMIN_SECRET not in metrics_text
    assert SUBJECT not in metrics_text
    for token in traffic:
        assert token not in metrics_text
        assert token.rsplit(".", 1)[1] not in metrics_text


def test_logs_carry_no_token_or_secret(gateway: GatewayProcess, traffic: list[str], metrics_text: str) -> None:
    logs = gateway.stderr_text()
    assert logs.strip(), "the gateway logged nothing at debug level"
    assert ADMIN_SECRET not in logs
    for token in traffic:
        assert token not in logs
        _, payload, signature = token.split(".")
        assert payload not in logs, "a token's claims segment reached the logs"
        assert signature not in logs, "a token's signature reached the logs"
