"""``GATEWAY_REDIS_URL``: the one Redis the replicas share, opened once per process.

The webhook delivery log, the session revocations and the APQ stores all use the same two
clients: one for commands (every caller bounds its own wait with ``asyncio.timeout``) and one that
holds the revocation channel open, so it has no read timeout ("no message yet" is not a failure).
The rate limiter keeps its own client (``ratelimit.redis_store``): it may point at a separate
Redis (``GATEWAY_RATE_LIMIT_REDIS_URL``) and fails open on its own, much shorter, timeout.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis


@dataclass
class SharedRedis:
    commands: Redis
    subscriber: Redis

    @classmethod
    def connect(cls, url: str) -> SharedRedis:
        from redis.asyncio import Redis

        return cls(
            commands=Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=0),
            subscriber=Redis.from_url(url, socket_timeout=None, socket_connect_timeout=2.0, health_check_interval=15))

    async def aclose(self) -> None:
        for client in (self.commands, self.subscriber):
            with contextlib.suppress(Exception):
                await client.aclose()
