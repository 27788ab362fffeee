"""The Redis rate-limit store against a real ``redis-server`` on 127.0.0.1.

Two :class:`RedisConnection` objects stand for two gateway replicas: they must share one limit.
When Redis stops, the store must fail open (allow, count, log once) and recover when it returns.
``scripts/test-tools/redis.sh`` installs ``redis-server``; without it these tests are skipped
locally and fail under CI.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import pytest

from clerk_gateway.adapters.base import Route
from clerk_gateway.errors import AuthenticationError
from clerk_gateway.observability.metrics import REGISTRY
from clerk_gateway.proxy.guards import RequestContext
from clerk_gateway.ratelimit import Rate, RateLimitedError, RateLimitGuard
from clerk_gateway.ratelimit.redis_store import RedisBucketStore, RedisConnection, connect_redis
from tests.support.ports import LOCALHOST, free_port
from tests.support.redis_server import RedisServer, running_redis

PREFIX = "e2e:rl:"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture
def running(redis_server: RedisServer) -> RedisServer:
    """The server, (re)started and emptied for this test."""
    if redis_server._process is None:
        redis_server.start()
    with redis_server.client() as admin:
        admin.flushall()
    return redis_server


def replica(url: str, *, retry_interval: float = 1.0) -> RedisConnection:
    return RedisConnection(connect_redis(url, timeout=0.5), timeout=0.5, retry_interval=retry_interval,
                           location="test")


@pytest.fixture
async def replicas(running: RedisServer) -> AsyncIterator[tuple[RedisConnection, RedisConnection]]:
    a, b = replica(running.url), replica(running.url)
    try:
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()


def store_errors(kind: str) -> float:
    return REGISTRY.get_sample_value("gateway_rate_limit_store_errors_total", {"kind": kind}) or 0.0


async def test_two_replicas_share_one_limit(replicas: tuple[RedisConnection, RedisConnection]) -> None:
    rate = Rate(per_second=0.01, burst=5)
    stores = [RedisBucketStore(conn, rate, kind="user", prefix=PREFIX) for conn in replicas]
    decisions = [await stores[i % 2].take("user_shared") for i in range(8)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3
    refused = decisions[-1]
    assert 90 <= refused.retry_after <= 100  # one token at 0.01/s
    assert refused.retry_after_header <= 100
    other = await stores[1].take("user_other")
    assert other.allowed


async def test_concurrent_takes_never_exceed_the_burst(replicas: tuple[RedisConnection, RedisConnection]) -> None:
    rate = Rate(per_second=0.001, burst=10)
    stores = [RedisBucketStore(conn, rate, kind="user", prefix=PREFIX) for conn in replicas]
    decisions = await asyncio.gather(*(stores[i % 2].take("user_race") for i in range(40)))
    assert sum(d.allowed for d in decisions) == 10


async def test_refill_uses_redis_time(replicas: tuple[RedisConnection, RedisConnection]) -> None:
    store = RedisBucketStore(replicas[0], Rate(per_second=20, burst=1), kind="user", prefix=PREFIX)
    assert (await store.take("user_refill")).allowed
    refused = await store.take("user_refill")
    assert not refused.allowed and 0 < refused.retry_after <= 0.05
    await asyncio.sleep(0.08)  # 1.6 tokens' worth at 20/s
    assert (await store.take("user_refill")).allowed


async def test_keys_have_the_prefix_and_a_ttl_and_a_check_creates_none(
        running: RedisServer, replicas: tuple[RedisConnection, RedisConnection]) -> None:
    failures = RedisBucketStore(replicas[0], Rate(per_second=1, burst=3), kind="auth-failures", prefix=PREFIX)
    assert (await failures.take("192.0.2.10", 0)).allowed
    with running.client() as admin:
        assert admin.keys("*") == []
        await failures.take("192.0.2.10", 1)
        assert admin.keys("*") == [b"e2e:rl:auth-failures:192.0.2.10"]
        ttl = admin.pttl("e2e:rl:auth-failures:192.0.2.10")
        assert 0 < ttl <= 2000  # one token to refill at 1/s, plus a second of slack


async def test_failure_budget_is_shared_by_guards_on_two_replicas(
        replicas: tuple[RedisConnection, RedisConnection]) -> None:
    rate = Rate(per_second=0.01, burst=2)
    guards = [RateLimitGuard(None, RedisBucketStore(conn, rate, kind="auth-failures", prefix=PREFIX),
                             trust_peer_address=True) for conn in replicas]
    bad = AuthenticationError("invalid-signature", "the token's signature is not valid")

    def ctx() -> RequestContext:
        return RequestContext("hasura", "POST", Route("http://up"), [], "198.51.100.77")

    assert await guards[0].on_refused(ctx(), bad) is None
    assert await guards[1].on_refused(ctx(), bad) is None
    error = await guards[0].on_refused(ctx(), bad)  # the budget the other replica spent counts here
    assert isinstance(error, RateLimitedError) and error.reason == "rate-limited-auth-failures"
    assert isinstance(await guards[1].on_refused(ctx(), bad), RateLimitedError)


async def test_script_is_reloaded_after_a_flush(running: RedisServer,
                                                replicas: tuple[RedisConnection, RedisConnection]) -> None:
    store = RedisBucketStore(replicas[0], Rate(per_second=0.01, burst=2), kind="user", prefix=PREFIX)
    assert (await store.take("user_flush")).allowed
    with running.client() as admin:
        admin.script_flush()
    assert (await store.take("user_flush")).allowed  # NOSCRIPT → SCRIPT LOAD → EVALSHA
    assert not (await store.take("user_flush")).allowed
    assert not replicas[0].failing


async def test_fails_open_while_redis_is_down_and_recovers(
        running: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    conn = replica(running.url, retry_interval=0.2)
    store = RedisBucketStore(conn, Rate(per_second=0.001, burst=1), kind="user", prefix=PREFIX)
    try:
        assert (await store.take("user_down")).allowed
        assert not (await store.take("user_down")).allowed
        running.stop()
        before = store_errors("user")
        with caplog.at_level(logging.INFO, logger="clerk_gateway.ratelimit"):
            decisions = [await store.take("user_down") for _ in range(5)]
            assert all(d.allowed for d in decisions)  # fail-open
            assert conn.failing
            assert store_errors("user") == before + 5
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1 and "fail-open" in warnings[0].getMessage()
            assert "redis://" not in caplog.text

            running.start()  # an empty Redis again, on the same port
            await asyncio.sleep(0.25)  # past the retry interval
            assert (await store.take("user_down")).allowed
            assert not conn.failing
            assert not (await store.take("user_down")).allowed  # limiting again
            assert any("available again" in r.getMessage() for r in caplog.records)
    finally:
        await conn.aclose()


async def test_unreachable_redis_from_the_start_fails_open_quickly() -> None:
    conn = replica(f"redis://{LOCALHOST}:{free_port()}/0", retry_interval=30)
    store = RedisBucketStore(conn, Rate(per_second=1, burst=1), kind="auth-failures", prefix=PREFIX)
    try:
        before = store_errors("auth-failures")
        for _ in range(3):
            assert (await store.take("192.0.2.1")).allowed
        assert store_errors("auth-failures") == before + 3
    finally:
        await conn.aclose()
