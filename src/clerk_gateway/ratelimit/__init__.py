"""Rate limiting: token buckets per verified user and per address for failed authentications.

:func:`build_rate_limit_guard` turns the settings into the :class:`RateLimitGuard` that every
backend proxy runs (``None`` when rate limiting is off). A rate of 0 turns that one limit off.
"""

from __future__ import annotations

from clerk_gateway.settings.ratelimit import RateLimitSettings

from .buckets import ALLOWED, BucketStore, Decision, MemoryBucketStore, Rate
from .errors import RateLimitedError
from .guard import RateLimitGuard, client_address

__all__ = ["ALLOWED", "FAILURE_LIMIT_OFF_HINT", "BucketStore", "Decision", "MemoryBucketStore", "Rate",
           "RateLimitGuard", "RateLimitedError", "build_rate_limit_guard", "client_address", "describe_rate_limits",
           "failure_limit_off_hint"]


#: What ``serve`` logs and ``check`` prints when the per-address failure limit is off for want of
#: an address it can trust.
FAILURE_LIMIT_OFF_HINT = (
    "the per-address limit on failed authentications is off: behind a load balancer every client "
    "shares its address, so the gateway needs to be told where the client's address is. Turn it on "
    "with GATEWAY_RATE_LIMIT_CLIENT_IP_HEADER=x-forwarded-for (the header your proxy appends), or "
    "GATEWAY_RATE_LIMIT_TRUST_PEER_ADDRESS=true when clients connect to the gateway directly")


def failure_limit_off_hint(settings: RateLimitSettings) -> str | None:
    """:data:`FAILURE_LIMIT_OFF_HINT` when the failure limit would run but has no trusted address;
    ``None`` when it runs, or was turned off on purpose (disabled, rate 0)."""
    if not settings.enabled or settings.auth_failures_rate <= 0:
        return None
    if settings.client_ip_header or settings.trust_peer_address:
        return None
    return FAILURE_LIMIT_OFF_HINT


def describe_rate_limits(settings: RateLimitSettings) -> str:
    """One line for ``check`` and the start-up log: which limits run, keyed on what."""
    if not settings.enabled:
        return "off (GATEWAY_RATE_LIMIT_ENABLED=false)"
    parts = []
    if settings.per_user_rate > 0:
        parts.append(f"per user {settings.per_user_rate:g}/s, burst {settings.per_user_burst}")
    else:
        parts.append("per user off")
    hint = failure_limit_off_hint(settings)
    if hint is not None:
        parts.append(hint)
    elif settings.auth_failures_rate <= 0:
        parts.append("per-address failure limit off (GATEWAY_RATE_LIMIT_AUTH_FAILURES_RATE=0)")
    else:
        where = (f"the last entry of {settings.client_ip_header}" if settings.client_ip_header
                 else "the connection's peer address")
        parts.append(f"failed authentications per address {settings.auth_failures_rate:g}/s, burst "
                     f"{settings.auth_failures_burst}, keyed on {where}")
    return f"{'; '.join(parts)} ({settings.backend})"


def build_rate_limit_guard(settings: RateLimitSettings) -> RateLimitGuard | None:
    """The guard for these settings; the Redis client is created here but connects lazily.

    The failure limit is built only when it has an address it can trust (:func:`failure_limit_off_hint`).
    """
    if not settings.enabled:
        return None
    user_rate = Rate(settings.per_user_rate, settings.per_user_burst) if settings.per_user_rate > 0 else None
    trusted = bool(settings.client_ip_header) or settings.trust_peer_address
    failure_rate = (Rate(settings.auth_failures_rate, settings.auth_failures_burst)
                    if settings.auth_failures_rate > 0 and trusted else None)
    if user_rate is None and failure_rate is None:
        return None
    users: BucketStore | None = None
    failures: BucketStore | None = None
    if settings.backend == "redis":
        from .redis_store import RedisBucketStore, RedisConnection, connect_redis, redis_location

        if settings.redis_url is None:
            raise ValueError("GATEWAY_RATE_LIMIT_REDIS_URL is required with the redis backend")
        url = settings.redis_url.get_secret_value()
        timeout = settings.redis_timeout_seconds
        connection = RedisConnection(connect_redis(url, timeout=timeout), timeout=timeout,
                                     location=redis_location(url))
        prefix = settings.redis_key_prefix
        if user_rate is not None:
            users = RedisBucketStore(connection, user_rate, kind="user", prefix=prefix)
        if failure_rate is not None:
            failures = RedisBucketStore(connection, failure_rate, kind="auth-failures", prefix=prefix)
    else:
        if user_rate is not None:
            users = MemoryBucketStore(user_rate, max_keys=settings.memory_max_keys)
        if failure_rate is not None:
            failures = MemoryBucketStore(failure_rate, max_keys=settings.memory_max_keys)
    return RateLimitGuard(users, failures, client_ip_header=settings.client_ip_header,
                          trust_peer_address=settings.trust_peer_address)
