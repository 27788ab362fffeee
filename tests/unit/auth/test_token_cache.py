"""The verified-token cache: bounded, LRU, and never serving a token past its own expiry."""

from __future__ import annotations

import pytest

from clerk_gateway.auth.model import TokenKind, VerifiedToken
from clerk_gateway.auth.token_cache import VerifiedTokenCache
from clerk_gateway.observability.metrics import REGISTRY

NOW = 1_700_000_000.0


def entry(name: str, expires_at: float = NOW + 60) -> VerifiedToken:
    return VerifiedToken(token=name, header={}, claims={"sub": "u"}, kind=TokenKind.SESSION, subject="u",
                         expires_at=expires_at)


def lookups(result: str) -> float:
    value = REGISTRY.get_sample_value("gateway_verified_token_cache_lookups_total", {"result": result})
    return value or 0.0


def test_hit_and_miss() -> None:
    cache = VerifiedTokenCache(10)
    hits, misses = lookups("hit"), lookups("miss")
    assert cache.get("a", NOW) is None
    verified = entry("a")
    cache.put("a", verified, now=NOW)
    assert cache.get("a", NOW + 1) is verified
    assert len(cache) == 1
    assert lookups("hit") == hits + 1
    assert lookups("miss") == misses + 1
    assert REGISTRY.get_sample_value("gateway_verified_token_cache_entries") == 1


def test_keyed_by_the_exact_string() -> None:
    cache = VerifiedTokenCache(10)
    cache.put("a.b.c", entry("a.b.c"), now=NOW)
    assert cache.get("a.b.c ", NOW) is None
    assert cache.get("a.b.C", NOW) is None


def test_entry_dies_at_exp() -> None:
    cache = VerifiedTokenCache(10)
    cache.put("a", entry("a", expires_at=NOW + 10), now=NOW)
    assert cache.get("a", NOW + 9.99) is not None
    assert cache.get("a", NOW + 10) is None
    assert len(cache) == 0


def test_leeway_extends_to_exp_plus_leeway() -> None:
    cache = VerifiedTokenCache(10, leeway_seconds=5)
    cache.put("a", entry("a", expires_at=NOW + 10), now=NOW)
    assert cache.get("a", NOW + 14) is not None
    assert cache.get("a", NOW + 15) is None


def test_maximum_age() -> None:
    cache = VerifiedTokenCache(10, max_age_seconds=30)
    cache.put("a", entry("a", expires_at=NOW + 3600), now=NOW)
    assert cache.get("a", NOW + 29) is not None
    assert cache.get("a", NOW + 30) is None


def test_already_expired_tokens_are_not_stored() -> None:
    cache = VerifiedTokenCache(10)
    cache.put("a", entry("a", expires_at=NOW - 1), now=NOW)
    cache.put("b", entry("b", expires_at=NOW), now=NOW)
    assert len(cache) == 0


def test_bounded_with_lru_eviction() -> None:
    cache = VerifiedTokenCache(3)
    for name in "abc":
        cache.put(name, entry(name), now=NOW)
    assert cache.get("a", NOW) is not None  # a is now the most recently used
    cache.put("d", entry("d"), now=NOW)
    assert len(cache) == 3
    assert cache.get("b", NOW) is None
    assert all(cache.get(name, NOW) is not None for name in "acd")


def test_put_refreshes_an_existing_entry() -> None:
    cache = VerifiedTokenCache(2)
    cache.put("a", entry("a"), now=NOW)
    cache.put("b", entry("b"), now=NOW)
    cache.put("a", entry("a"), now=NOW)
    cache.put("c", entry("c"), now=NOW)
    assert cache.get("b", NOW) is None
    assert cache.get("a", NOW) is not None


def test_zero_size_disables_caching() -> None:
    cache = VerifiedTokenCache(0)
    cache.put("a", entry("a"), now=NOW)
    assert len(cache) == 0
    assert cache.get("a", NOW) is None


def test_negative_size_is_refused() -> None:
    with pytest.raises(ValueError):
        VerifiedTokenCache(-1)


def test_clear() -> None:
    cache = VerifiedTokenCache(3)
    cache.put("a", entry("a"), now=NOW)
    cache.clear()
    assert len(cache) == 0


def test_put_without_now_uses_the_wall_clock() -> None:
    import time

    cache = VerifiedTokenCache(3)
    cache.put("a", entry("a", expires_at=time.time() + 60))
    assert cache.get("a", time.time()) is not None
