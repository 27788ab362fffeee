"""``check`` and ``inspect``: the operator's questions answered before traffic arrives."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from clerk_gateway.ratelimit import describe_rate_limits, failure_limit_off_hint
from clerk_gateway.readiness import probe_backend
from clerk_gateway.runtime import Runtime
from clerk_gateway.settings import Settings


def _statuses(keys: Any) -> list[Any]:
    status = keys.status()
    return status if isinstance(status, list) else [status]


async def wait_for_keys(runtime: Runtime, timeout: float = 8.0) -> None:
    await runtime.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(s.loaded or s.last_error for s in _statuses(runtime.keys)):
            return
        await asyncio.sleep(0.05)


async def run_check(settings: Settings) -> int:
    runtime = Runtime.build(settings)
    problems = 0
    try:
        await wait_for_keys(runtime)
        print(f"issuer: {settings.clerk.issuer}")
        for status in _statuses(runtime.keys):
            ok = status.loaded and status.key_count > 0
            problems += not ok
            detail = f"{status.key_count} usable key(s)" if status.loaded else f"not loaded: {status.last_error}"
            print(f"[{'ok' if ok else 'FAIL'}] keys ({status.source}): {detail}")
        for adapter in runtime.adapters.values():
            health = await probe_backend(runtime.http, adapter)
            problems += not health.reachable
            print(f"[{'ok' if health.reachable else 'FAIL'}] backend {adapter.name}: {health.detail}")
        print(f"[{'note' if failure_limit_off_hint(settings.rate_limit) else 'ok'}] rate limits: "
              f"{describe_rate_limits(settings.rate_limit)}")
    finally:
        await runtime.aclose()
    print("all checks passed" if problems == 0 else f"{problems} check(s) failed")
    return 0 if problems == 0 else 1


async def run_inspect(settings: Settings, token: str, *, as_json: bool = False) -> int:
    """``inspect`` with complete settings; the logic lives in :mod:`clerk_gateway.inspection`,
    which also covers incomplete settings, so both modes share one decoder and one report."""
    from clerk_gateway.inspection import inspect_with_settings, print_report

    return print_report(await inspect_with_settings(settings, token), as_json=as_json)
