"""Token-bucket arithmetic and the in-memory store, driven by an injected clock."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clerk_gateway.ratelimit.buckets import ALLOWED, Decision, MemoryBucketStore, Rate, settle
from tests.support.clock import ManualClock


def test_rate_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Rate(0, 10)
    with pytest.raises(ValueError):
        Rate(-1, 10)
    with pytest.raises(ValueError):
        Rate(float("inf"), 10)
    with pytest.raises(ValueError):
        Rate(1, 0)
    assert Rate(2, 10).full_after == 5


def test_settle_refills_up_to_burst_and_takes_one() -> None:
    rate = Rate(per_second=2, burst=5)
    decision, left = settle(0.0, 1.0, rate, 1)  # 0 + 2 tokens → take one
    assert decision is ALLOWED and left == pytest.approx(1.0)
    decision, left = settle(4.0, 100.0, rate, 1)  # capped at burst before taking
    assert decision.allowed and left == pytest.approx(4.0)


def test_settle_refuses_without_a_whole_token_and_says_when() -> None:
    rate = Rate(per_second=4, burst=5)
    decision, left = settle(0.25, 0.0, rate, 1)
    assert not decision.allowed
    assert decision.retry_after == pytest.approx(0.75 / 4)
    assert left == pytest.approx(0.25)  # a refusal takes nothing


def test_settle_check_consumes_nothing() -> None:
    decision, left = settle(3.0, 0.0, Rate(1, 5), 0)
    assert decision.allowed and left == 3.0


def test_retry_after_header_is_whole_seconds_at_least_one() -> None:
    assert Decision(False, 0.01).retry_after_header == 1
    assert Decision(False, 1.0).retry_after_header == 1
    assert Decision(False, 1.2).retry_after_header == 2
    assert Decision(False, 59.9).retry_after_header == 60


async def test_burst_then_refusal_then_refill() -> None:
    clock = ManualClock()
    store = MemoryBucketStore(Rate(per_second=1, burst=3), clock=clock)
    results = [(await store.take("user_1")).allowed for _ in range(4)]
    assert results == [True, True, True, False]

    refused = await store.take("user_1")
    assert not refused.allowed and refused.retry_after == pytest.approx(1.0)

    clock.advance(0.5)
    assert not (await store.take("user_1")).allowed
    clock.advance(0.5)
    assert (await store.take("user_1")).allowed
    assert not (await store.take("user_1")).allowed


async def test_keys_have_separate_buckets() -> None:
    store = MemoryBucketStore(Rate(per_second=1, burst=1), clock=ManualClock())
    assert (await store.take("a")).allowed
    assert not (await store.take("a")).allowed
    assert (await store.take("b")).allowed


async def test_a_check_neither_consumes_nor_creates() -> None:
    clock = ManualClock()
    store = MemoryBucketStore(Rate(per_second=1, burst=2), clock=clock)
    assert (await store.take("10.0.0.1", 0)).allowed
    assert "10.0.0.1" not in store and len(store) == 0

    await store.take("10.0.0.1")
    await store.take("10.0.0.1")
    check = await store.take("10.0.0.1", 0)
    assert not check.allowed and check.retry_after == pytest.approx(1.0)
    clock.advance(1.0)
    assert (await store.take("10.0.0.1", 0)).allowed
    assert (await store.take("10.0.0.1", 0)).allowed  # checking twice took nothing
    assert (await store.take("10.0.0.1")).allowed
    assert not (await store.take("10.0.0.1", 0)).allowed


async def test_store_is_bounded_and_evicts_the_least_recently_used() -> None:
    clock = ManualClock()
    store = MemoryBucketStore(Rate(per_second=0.001, burst=1), max_keys=3, clock=clock)
    for key in ("a", "b", "c"):
        assert (await store.take(key)).allowed
    assert not (await store.take("a")).allowed  # "a" is now the most recently used
    assert (await store.take("d")).allowed  # evicts "b", the coldest
    assert len(store) == 3
    assert "b" not in store and "a" in store and "c" in store and "d" in store
    assert not (await store.take("a")).allowed  # the state of a kept bucket is intact


async def test_idle_buckets_that_refilled_are_dropped() -> None:
    clock = ManualClock()
    store = MemoryBucketStore(Rate(per_second=10, burst=10), clock=clock)
    await store.take("idle-1")
    await store.take("idle-2")
    clock.advance(1.0)  # both are full again: forgetting them changes nothing
    await store.take("busy")
    assert "idle-1" not in store and "idle-2" not in store and "busy" in store


async def test_idle_buckets_still_refilling_are_kept() -> None:
    clock = ManualClock()
    store = MemoryBucketStore(Rate(per_second=1, burst=10), clock=clock)
    await store.take("recent")
    clock.advance(2.0)
    await store.take("other")
    assert "recent" in store


def test_max_keys_must_be_positive() -> None:
    with pytest.raises(ValueError):
        MemoryBucketStore(Rate(1, 1), max_keys=0)


@settings(max_examples=200, deadline=None)
@given(
    per_second=st.floats(min_value=0.1, max_value=50),
    burst=st.integers(min_value=1, max_value=20),
    gaps=st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=80),
)
def test_never_more_than_burst_plus_refill(per_second: float, burst: int, gaps: list[float]) -> None:
    clock = ManualClock(0.0)
    store = MemoryBucketStore(Rate(per_second, burst), clock=clock)
    allowed = 0
    for gap in gaps:
        clock.advance(gap)
        decision = store.take_now("k")
        if decision.allowed:
            allowed += 1
        else:
            assert decision.retry_after > 0
    assert allowed <= burst + math.floor(clock.now * per_second + 1e-9)
    assert allowed >= min(len(gaps), burst)  # the first `burst` requests always pass
