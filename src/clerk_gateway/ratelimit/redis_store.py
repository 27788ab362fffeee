"""A token-bucket store in Redis, so that every gateway replica shares one limit per key.

One Lua script does the whole decision atomically on the server — read the bucket, refill it
from the elapsed time, take a token, write it back with a TTL — so two replicas racing on one key
can never both take the last token. Time is Redis's own clock (``TIME``), so the replicas' clocks
need not agree. redis-py sends the script by SHA (``EVALSHA``) and loads it once, again only if
the server answers ``NOSCRIPT`` (after a restart or a ``SCRIPT FLUSH``). Each bucket is a small
hash that expires once it would be full again, so idle keys vanish by themselves.

When Redis cannot answer in time the store *fails open*: the request is allowed, a counter goes
up, and one log line says so (and one more when Redis is back). A rate limit protects capacity;
turning a Redis outage into a gateway outage would defeat that purpose. After a failure the store
stops asking Redis for ``retry_interval`` seconds, so an outage costs each request nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .buckets import ALLOWED, Decision, Rate
from .metrics import RATE_LIMIT_STORE_ERRORS

__all__ = ["BUCKET_SCRIPT", "RedisBucketStore", "RedisConnection", "connect_redis", "redis_location"]

log = logging.getLogger("clerk_gateway.ratelimit")

# KEYS[1]: the bucket. ARGV: rate (tokens per second), burst, cost (0 = check only).
# Returns {allowed (0|1), milliseconds until one token is back}. Fields: t = tokens, u = last
# write in milliseconds of server time. A check (cost 0) never writes, so it creates no key.
BUCKET_SCRIPT = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 't', 'u')
local tokens = tonumber(state[1])
local updated = tonumber(state[2])
if tokens == nil or updated == nil then
  if cost <= 0 then return {1, 0} end
  tokens = burst
  updated = now
end
local elapsed = now - updated
if elapsed > 0 then
  tokens = math.min(burst, tokens + elapsed * rate / 1000)
end
if tokens < 1 then
  return {0, math.ceil((1 - tokens) * 1000 / rate)}
end
if cost > 0 then
  tokens = tokens - cost
  redis.call('HSET', KEYS[1], 't', string.format('%.6f', tokens), 'u', string.format('%d', now))
  redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
end
return {1, 0}
"""


def connect_redis(url: str, *, timeout: float) -> Redis:
    """A client that fails fast: short socket timeouts and no retries (the store fails open)."""
    return Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                          retry=Retry(NoBackoff(), 0), health_check_interval=0)


def redis_location(url: str) -> str:
    """``host:port`` of a Redis URL for log lines: never the password the URL may carry."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return parts.path or "unix socket"
        return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
    except ValueError:
        return "redis"


class RedisConnection:
    """One client and one registered script shared by every limit, plus the fail-open state."""

    def __init__(self, client: Redis, *, timeout: float = 0.25, retry_interval: float = 1.0,
                 location: str = "redis", clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.timeout = timeout
        self.retry_interval = retry_interval
        self.location = location
        self._clock = clock
        self._script = client.register_script(BUCKET_SCRIPT)
        self._down_until: float | None = None
        self._closed = False

    @property
    def failing(self) -> bool:
        """True while the last attempt failed (requests are let through without a decision)."""
        return self._down_until is not None

    async def evaluate(self, kind: str, key: str, rate: Rate, cost: int) -> Decision:
        down_until = self._down_until
        if down_until is not None and self._clock() < down_until:
            RATE_LIMIT_STORE_ERRORS.labels(kind).inc()
            return ALLOWED
        try:
            async with asyncio.timeout(self.timeout):
                result: Any = await self._script(keys=[key], args=[repr(rate.per_second), rate.burst, cost])
            allowed, wait_ms = int(result[0]), int(result[1])
        except (RedisError, OSError, TimeoutError, ValueError, TypeError, IndexError) as exc:
            RATE_LIMIT_STORE_ERRORS.labels(kind).inc()
            if self._down_until is None:
                log.warning("rate-limit store unavailable; allowing requests without a limit (fail-open)",
                            extra={"store": self.location, "kind": kind, "error": type(exc).__name__})
            self._down_until = self._clock() + self.retry_interval
            return ALLOWED
        if self._down_until is not None:
            self._down_until = None
            log.info("rate-limit store available again", extra={"store": self.location})
        if allowed:
            return ALLOWED
        return Decision(False, wait_ms / 1000.0)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self.client.aclose()


class RedisBucketStore:
    """One limit's buckets in Redis, under ``<prefix><kind>:<key>``.

    Keys name a subject or an address, never a token. Several stores share one
    :class:`RedisConnection`; closing any of them closes it (idempotently).
    """

    def __init__(self, connection: RedisConnection, rate: Rate, *, kind: str, prefix: str) -> None:
        self.connection = connection
        self.rate = rate
        self.kind = kind
        self._prefix = f"{prefix}{kind}:"

    def key_for(self, key: str) -> str:
        return self._prefix + key

    async def take(self, key: str, cost: int = 1) -> Decision:
        return await self.connection.evaluate(self.kind, self._prefix + key, self.rate, cost)

    async def aclose(self) -> None:
        await self.connection.aclose()
