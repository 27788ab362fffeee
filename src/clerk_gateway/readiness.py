"""``/readyz`` and ``check``: are keys loaded and is every backend reachable?"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx

from clerk_gateway.adapters.base import Adapter


@dataclass(frozen=True, slots=True)
class BackendHealth:
    name: str
    reachable: bool
    detail: str


async def probe_backend(client: httpx.AsyncClient, adapter: Adapter, timeout: float = 2.0) -> BackendHealth:
    url = adapter.probe_url()
    if url is None:
        return BackendHealth(adapter.name, True, "no probe")
    try:
        response = await client.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return BackendHealth(adapter.name, False, f"unreachable ({type(exc).__name__})")
    if response.status_code >= 500:
        return BackendHealth(adapter.name, False, f"probe answered {response.status_code}")
    return BackendHealth(adapter.name, True, f"probe answered {response.status_code}")


class ReadinessProbe:
    """Caches backend probes briefly so a tight readiness poll does not hammer the backends."""

    def __init__(self, client: httpx.AsyncClient, adapters: dict[str, Adapter], keys: Any,
                 ttl_seconds: float = 2.0) -> None:
        self._client = client
        self._adapters = adapters
        self._keys = keys
        self._ttl = ttl_seconds
        self._cached: tuple[float, list[BackendHealth]] | None = None

    async def backends(self) -> list[BackendHealth]:
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < self._ttl:
            return self._cached[1]
        results = list(await asyncio.gather(*(probe_backend(self._client, a) for a in self._adapters.values())))
        self._cached = (now, results)
        return results

    async def report(self) -> tuple[bool, dict[str, Any]]:
        keys = self._keys.status()
        statuses = keys if isinstance(keys, list) else [keys]
        keys_ready = any(status.loaded and status.key_count > 0 for status in statuses)
        backends = await self.backends()
        ready = keys_ready and all(backend.reachable for backend in backends)
        body: dict[str, Any] = {
            "ready": ready,
            "keys": [
                {"source": s.source, "loaded": s.loaded, "stale": s.stale, "keys": s.key_count,
                 "age_seconds": None if s.age_seconds is None else round(s.age_seconds, 1),
                 "last_error": s.last_error}
                for s in statuses
            ],
            "backends": {b.name: {"reachable": b.reachable, "detail": b.detail} for b in backends},
        }
        if not keys_ready:
            body["reason"] = "verification keys not loaded"
        elif not ready:
            body["reason"] = "backend unreachable"
        return ready, body
