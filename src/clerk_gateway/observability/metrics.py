"""Prometheus metrics. Labels are closed sets (backend names, statuses, reasons, outcomes):
never a token, a subject or a secret."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

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
    registry=REGISTRY,
)
TOKEN_EXCHANGES = Counter(
    "gateway_token_exchanges_total",
    "exchange mode: template tokens by outcome (hit, joined, fetched, rejected, error)",
    ["outcome"], registry=REGISTRY,
)
WEBSOCKETS_OPEN = Gauge(
    "gateway_websockets_open", "WebSocket subscription sockets open in this process", registry=REGISTRY,
)
