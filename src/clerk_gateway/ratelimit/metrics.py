"""The rate limiter's counters, in the gateway's registry. The only label is ``kind`` (``user``,
``auth-failures``): a closed set, never a subject, an address or a token."""

from __future__ import annotations

from prometheus_client import Counter

from clerk_gateway.observability.metrics import REGISTRY

__all__ = ["RATE_LIMITED", "RATE_LIMIT_STORE_ERRORS"]

RATE_LIMITED = Counter(
    "gateway_rate_limited_total", "Requests refused with 429, by the limit that refused them",
    ["kind"], registry=REGISTRY,
)
RATE_LIMIT_STORE_ERRORS = Counter(
    "gateway_rate_limit_store_errors_total",
    "Rate-limit checks let through without a decision because the store (Redis) failed (fail-open)",
    ["kind"], registry=REGISTRY,
)
