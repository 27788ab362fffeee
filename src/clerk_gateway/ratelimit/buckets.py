"""Token buckets: the arithmetic, the store interface and the in-memory store.

A bucket holds up to ``burst`` tokens and refills at ``per_second`` tokens per second; a request
takes one. The state is two numbers (tokens, time of the last write) and the refill is computed
lazily on access, so an idle bucket costs nothing and needs no timer. The same arithmetic runs in
Redis (see :mod:`clerk_gateway.ratelimit.redis_store`) so that both stores decide alike.

A ``cost`` of 0 is a *check*: is at least one token there? It consumes nothing and, in either
store, creates no state for a key that has none — that is how the auth-failure limit asks "is
this address over its budget?" on every request without remembering every address it sees.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["ALLOWED", "BucketStore", "Decision", "MemoryBucketStore", "Rate", "settle"]


@dataclass(frozen=True, slots=True)
class Rate:
    """``per_second`` tokens are added each second, up to ``burst`` (the bucket's size)."""

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not (self.per_second > 0 and math.isfinite(self.per_second)):
            raise ValueError("per_second must be a positive number")
        if self.burst < 1:
            raise ValueError("burst must be at least 1")

    @property
    def full_after(self) -> float:
        """Seconds an empty bucket needs to fill up again: past that, forgetting it loses nothing."""
        return self.burst / self.per_second


@dataclass(frozen=True, slots=True)
class Decision:
    """``retry_after`` is how many seconds until one token is back (0 when allowed)."""

    allowed: bool
    retry_after: float = 0.0

    @property
    def retry_after_header(self) -> int:
        """The ``Retry-After`` value: whole seconds, rounded up, at least 1."""
        return max(1, math.ceil(self.retry_after))


ALLOWED = Decision(True, 0.0)  # shared: an allowed request allocates no decision


def settle(tokens: float, elapsed: float, rate: Rate, cost: int) -> tuple[Decision, float]:
    """Refill a bucket that held ``tokens`` ``elapsed`` seconds ago, then try to take ``cost``.

    Returns the decision and the tokens left. A request needs one whole token to pass; ``cost`` is
    what it then takes (1, or 0 for a check). A refused request takes nothing, so a client that
    keeps hammering an empty bucket is refused until the bucket refills at the normal rate.
    """
    if elapsed > 0:
        tokens = min(float(rate.burst), tokens + elapsed * rate.per_second)
    if tokens >= 1.0:
        return ALLOWED, tokens - cost
    return Decision(False, (1.0 - tokens) / rate.per_second), tokens


class BucketStore(Protocol):
    """Where one limit keeps its buckets; ``key`` names the bucket (a subject, an address)."""

    rate: Rate

    async def take(self, key: str, cost: int = 1) -> Decision:
        """Refill, then take ``cost`` tokens when at least one is there."""
        ...

    async def aclose(self) -> None:
        """Release connections (the Redis store); a no-op for memory."""
        ...


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated


class MemoryBucketStore:
    """Buckets of one process, bounded to ``max_keys``; every operation is O(1).

    The buckets sit in an ``OrderedDict`` in least-recently-used order. Each call drops up to two
    buckets from the cold end when they have been idle long enough to be full again (forgetting
    them changes no decision), and when the store is at ``max_keys`` the coldest bucket goes
    regardless, so memory stays bounded under a flood of distinct keys. No lock is needed: the
    store is used from one event loop and never awaits between reading and writing a bucket.
    """

    def __init__(self, rate: Rate, *, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.rate = rate
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets

    async def take(self, key: str, cost: int = 1) -> Decision:
        return self.take_now(key, cost)

    def take_now(self, key: str, cost: int = 1) -> Decision:
        """The synchronous core of :meth:`take`."""
        now = self._clock()
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            self._sweep(now)
            if cost <= 0:
                return ALLOWED  # an unknown key has a full bucket; a check creates nothing
            if len(buckets) >= self.max_keys:
                buckets.popitem(last=False)
            decision, left = settle(float(self.rate.burst), 0.0, self.rate, cost)
            buckets[key] = _Bucket(left, now)
            return decision
        buckets.move_to_end(key)
        decision, left = settle(bucket.tokens, now - bucket.updated, self.rate, cost)
        if cost > 0:
            bucket.tokens, bucket.updated = left, now
        self._sweep(now)
        return decision

    def _sweep(self, now: float) -> None:
        buckets = self._buckets
        full_after = self.rate.full_after
        for _ in range(2):
            if not buckets:
                return
            key, bucket = next(iter(buckets.items()))
            if now - bucket.updated < full_after:
                return
            del buckets[key]

    async def aclose(self) -> None:
        self._buckets.clear()
