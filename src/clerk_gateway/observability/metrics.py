"""Prometheus metrics. Labels are closed sets (backend names, statuses, reasons, outcomes):
never a token, a subject or a secret.

With several worker processes (``GATEWAY_WORKERS`` > 1) each worker counts for itself, but a
scrape reaches one worker at a time, so the pool (:mod:`clerk_gateway.supervisor`) gives its
workers ``PROMETHEUS_MULTIPROC_DIR``: prometheus-client then keeps every value in a file there,
and :func:`exposition`, whichever worker answers, reports the whole process — counters summed, and
each gauge in the mode its meaning calls for (the ``multiprocess_mode`` below; ignored with one
process). The one scrape-time gauge, the key set's age, is derived from a timestamp then.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

REGISTRY = CollectorRegistry(auto_describe=True)

#: True in a pool's worker: values live in files shared by every worker (read once, at import,
#: as prometheus-client itself does).
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

REQUESTS = Counter(
    "gateway_requests_total", "Proxied requests by backend and response status",
    ["backend", "status"], registry=REGISTRY,
)
AUTH_FAILURES = Counter(
    "gateway_auth_failures_total", "Refused requests by machine-readable reason",
    ["reason"], registry=REGISTRY,
)
JWKS_FETCHES = Counter(
    "gateway_jwks_fetches_total", "JWKS fetches by key source and outcome",
    ["source", "outcome"], registry=REGISTRY,
)
JWKS_KEYS = Gauge(
    "gateway_jwks_keys", "Usable verification keys currently cached", ["source"], registry=REGISTRY,
    multiprocess_mode="livemin",  # the worker with the fewest keys is the one that refuses tokens
)
JWKS_AGE = Gauge(
    "gateway_jwks_age_seconds", "Seconds since the key set was last fetched successfully",
    ["source"], registry=REGISTRY,
)
UPSTREAM_LATENCY = Histogram(
    "gateway_upstream_latency_seconds", "Time from sending upstream to the response headers",
    ["backend"], registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TOKEN_CACHE_LOOKUPS = Counter(
    "gateway_verified_token_cache_lookups_total", "Verified-token cache lookups by result",
    ["result"], registry=REGISTRY,
)
TOKEN_CACHE_SIZE = Gauge(
    "gateway_verified_token_cache_entries", "Tokens currently held in the verified-token cache",
    registry=REGISTRY, multiprocess_mode="livesum",
)
TOKEN_EXCHANGES = Counter(
    "gateway_token_exchanges_total",
    "exchange mode: template tokens by outcome (hit, joined, fetched, rejected, error)",
    ["outcome"], registry=REGISTRY,
)
WEBSOCKETS_OPEN = Gauge(
    "gateway_websockets_open", "WebSocket subscription sockets open in this process", registry=REGISTRY,
    multiprocess_mode="livesum",
)
WEBHOOK_EVENTS = Counter(
    "gateway_webhook_events_total",
    "Clerk webhook deliveries by event type (known types, else 'other') and outcome",
    ["type", "outcome"], registry=REGISTRY,
)
DOCUMENTS = Counter(
    "gateway_documents_total",
    "GraphQL documents by backend and outcome (trusted documents and APQ: manifest-id, manifest-text, apq-hit, "
    "apq-miss, apq-registered, unknown-text, refused-not-in-manifest, …)",
    ["backend", "outcome"], registry=REGISTRY,
)
JWKS_LAST_SUCCESS = Gauge(
    "gateway_jwks_last_success_timestamp_seconds", "Unix time of the last successful fetch of the key set",
    ["source"], registry=REGISTRY, multiprocess_mode="livemin",  # the stalest worker's
)


def exposition() -> bytes:
    """The ``/metrics`` body: this process's registry, or every worker's files in a pool."""
    if not MULTIPROCESS:
        return generate_latest(REGISTRY)
    from prometheus_client.multiprocess import MultiProcessCollector

    families = list(MultiProcessCollector(None).collect())  # type: ignore[no-untyped-call]
    ages = GaugeMetricFamily("gateway_jwks_age_seconds", "Seconds since the key set was last fetched successfully",
                             labels=["source"])
    now = time.time()
    for family in families:
        if family.name == "gateway_jwks_last_success_timestamp_seconds":
            for sample in family.samples:
                ages.add_metric([sample.labels["source"]], max(now - sample.value, 0.0))
    families.append(ages)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collected(families))
    return generate_latest(registry)


class _Collected:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families
