"""Where Automatic Persisted Queries live: a bounded LRU per process, and Redis when
``GATEWAY_REDIS_URL`` is set so that a document registered on one replica hits on every other.

APQ is a cache, not an allow-list: any client may register any document whose hash matches. So a
Redis failure only means a miss (the client sends the text again), never a refusal.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("clerk_gateway.documents")

#: How long Redis keeps a registered document; clients re-register on a miss anyway.
REDIS_TTL_SECONDS = 7 * 24 * 3600


class ApqStore:
    def __init__(self, *, max_entries: int, redis: Redis | None = None, key_prefix: str = "clerk-gateway:apq:",
                 timeout: float = 0.5) -> None:
        self._local: OrderedDict[str, str] = OrderedDict()
        self._max = max_entries
        self._redis = redis
        self._prefix = key_prefix
        self._timeout = timeout

    async def get(self, digest: str) -> str | None:
        text = self._local.get(digest)
        if text is not None:
            self._local.move_to_end(digest)
            return text
        if self._redis is None:
            return None
        try:
            async with asyncio.timeout(self._timeout):
                raw = await self._redis.get(self._prefix + digest)
        except Exception as exc:
            log.warning("APQ store unavailable; treating the hash as unknown", extra={"error": type(exc).__name__})
            return None
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        self._remember(digest, text)
        return text

    async def put(self, digest: str, text: str) -> None:
        self._remember(digest, text)
        if self._redis is None:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.set(self._prefix + digest, text.encode(), ex=REDIS_TTL_SECONDS)
        except Exception as exc:
            log.warning("APQ store unavailable; the document is known to this process only",
                        extra={"error": type(exc).__name__})

    def _remember(self, digest: str, text: str) -> None:
        self._local[digest] = text
        self._local.move_to_end(digest)
        while len(self._local) > self._max:
            self._local.popitem(last=False)
