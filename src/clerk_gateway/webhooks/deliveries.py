"""Which deliveries were already applied, by ``svix-id`` (the same on every retry of a message).

Remembered :data:`REMEMBER_SECONDS` (28 h): Svix's last retry comes about 27 h 35 min after the
first attempt. This is an optimisation, not the guarantee: a manual replay can come later, two
replicas can receive the same message at once, and Redis can be away. The writes themselves are
idempotent and version-guarded (:mod:`.store`), so applying a message twice is harmless; the log
only spares the backend the repeat. A lookup that fails therefore counts as "not seen", and a
failure to remember is logged, never turned into an error for a write that succeeded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("clerk_gateway.webhooks")

REMEMBER_SECONDS = 28 * 3600
KEY_PREFIX = "clerk-gateway:webhook:"


class DeliveryLog(Protocol):
    async def seen(self, message_id: str) -> bool: ...

    async def remember(self, message_id: str) -> None: ...


class MemoryDeliveryLog:
    """Per process: what one replica applied (enough with a single replica)."""

    def __init__(self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[str, float] = OrderedDict()
        self._max = max_entries
        self._clock = clock

    async def seen(self, message_id: str) -> bool:
        until = self._entries.get(message_id)
        if until is None:
            return False
        if until <= self._clock():
            del self._entries[message_id]
            return False
        return True

    async def remember(self, message_id: str) -> None:
        self._entries[message_id] = self._clock() + REMEMBER_SECONDS
        self._entries.move_to_end(message_id)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


class RedisDeliveryLog:
    """Shared by every replica (``GATEWAY_REDIS_URL``): a key per message id, expiring by itself."""

    def __init__(self, redis: Redis, *, timeout: float = 1.0) -> None:
        self._redis = redis
        self._timeout = timeout

    async def seen(self, message_id: str) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                return bool(await self._redis.exists(KEY_PREFIX + message_id))
        except Exception as exc:
            log.warning("webhook delivery log unavailable; applying the delivery again (writes are idempotent)",
                        extra={"error": type(exc).__name__})
            return False

    async def remember(self, message_id: str) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.set(KEY_PREFIX + message_id, b"1", ex=REMEMBER_SECONDS)
        except Exception as exc:
            log.warning("webhook delivery log unavailable; a retry of this delivery will be applied again",
                        extra={"error": type(exc).__name__})
