"""Rate limiting: token buckets per verified user and per address for failed authentications.

:func:`build_rate_limit_guard` turns the settings into the :class:`RateLimitGuard` that every
backend proxy runs (``None`` when rate limiting is off). A rate of 0 turns that one limit off.
"""

from __future__ import annotations

from clerk_gateway.settings.ratelimit import RateLimitSettings

from .buckets import ALLOWED, BucketStore, Decision, MemoryBucketStore, Rate
from .errors import RateLimitedError
from .guard import RateLimitGuard, client_address

__all__ = ["ALLOWED", "BucketStore", "Decision", "MemoryBucketStore", "Rate", "RateLimitGuard",
           "RateLimitedError", "build_rate_limit_guard", "client_address"]


def build_rate_limit_guard(settings: RateLimitSettings) -> RateLimitGuard | None:
    """The guard for these settings; the Redis client is created here but connects lazily."""
    if not settings.enabled:
        return None
    user_rate = Rate(settings.per_user_rate, settings.per_user_burst) if settings.per_user_rate > 0 else None
    failure_rate = (Rate(settings.auth_failures_rate, settings.auth_failures_burst)
                    if settings.auth_failures_rate > 0 else None)
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
    return RateLimitGuard(users, failures, client_ip_header=settings.client_ip_header)
