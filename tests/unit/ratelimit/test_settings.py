"""GATEWAY_RATE_LIMIT_* parsing, the cross-field checks, and what the builder makes of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from clerk_gateway.ratelimit import (
    FAILURE_LIMIT_OFF_HINT,
    MemoryBucketStore,
    RateLimitGuard,
    build_rate_limit_guard,
    describe_rate_limits,
    failure_limit_off_hint,
)
from clerk_gateway.ratelimit.redis_store import RedisBucketStore, redis_location
from clerk_gateway.settings.problems import Problems
from clerk_gateway.settings.ratelimit import RateLimitSettings, check_rate_limit


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no developer .env
    import os

    for name in list(os.environ):
        if name.startswith("GATEWAY_RATE_LIMIT_"):
            monkeypatch.delenv(name)


def test_defaults_are_on_and_generous() -> None:
    settings = RateLimitSettings()
    assert settings.enabled and settings.backend == "memory"
    assert settings.per_user_rate == 20 and settings.per_user_burst == 200
    assert settings.auth_failures_rate == 1 and settings.auth_failures_burst == 100
    assert not settings.trust_peer_address and settings.client_ip_header is None
    guard = build_rate_limit_guard(settings)
    assert isinstance(guard, RateLimitGuard)
    # The per-address failure limit needs an address it can trust, so by default it is off.
    assert isinstance(guard.users, MemoryBucketStore) and guard.failures is None
    assert failure_limit_off_hint(settings) == FAILURE_LIMIT_OFF_HINT
    assert "GATEWAY_RATE_LIMIT_CLIENT_IP_HEADER" in FAILURE_LIMIT_OFF_HINT
    assert "GATEWAY_RATE_LIMIT_TRUST_PEER_ADDRESS" in FAILURE_LIMIT_OFF_HINT


@pytest.mark.parametrize("trusted", [{"client_ip_header": "x-forwarded-for"}, {"trust_peer_address": True}])
def test_the_failure_limit_runs_once_the_address_can_be_trusted(trusted: dict[str, object]) -> None:
    settings = RateLimitSettings(**trusted)  # type: ignore[arg-type]
    guard = build_rate_limit_guard(settings)
    assert guard is not None and isinstance(guard.failures, MemoryBucketStore)
    assert failure_limit_off_hint(settings) is None
    assert "keyed on" in describe_rate_limits(settings)


def test_a_failure_limit_turned_off_on_purpose_gives_no_hint() -> None:
    assert failure_limit_off_hint(RateLimitSettings(auth_failures_rate=0)) is None
    assert failure_limit_off_hint(RateLimitSettings(enabled=False)) is None


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_RATE_LIMIT_PER_USER_RATE", "5.5")
    monkeypatch.setenv("GATEWAY_RATE_LIMIT_PER_USER_BURST", "11")
    monkeypatch.setenv("GATEWAY_RATE_LIMIT_BACKEND", "REDIS")
    monkeypatch.setenv("GATEWAY_RATE_LIMIT_REDIS_URL", "redis://:hunter2@cache:6380/1")
    monkeypatch.setenv("GATEWAY_RATE_LIMIT_CLIENT_IP_HEADER", "X-Forwarded-For")
    settings = RateLimitSettings()
    assert settings.per_user_rate == 5.5 and settings.per_user_burst == 11
    assert settings.backend == "redis" and settings.client_ip_header == "x-forwarded-for"
    assert "hunter2" not in repr(settings)


def test_disabled_or_all_zero_rates_build_no_guard() -> None:
    assert build_rate_limit_guard(RateLimitSettings(enabled=False)) is None
    assert build_rate_limit_guard(RateLimitSettings(per_user_rate=0, auth_failures_rate=0)) is None
    assert build_rate_limit_guard(RateLimitSettings(per_user_rate=0)) is None  # no trusted address
    guard = build_rate_limit_guard(RateLimitSettings(per_user_rate=0, trust_peer_address=True))
    assert guard is not None and guard.users is None and guard.failures is not None


async def test_redis_backend_builds_stores_without_connecting() -> None:
    guard = build_rate_limit_guard(RateLimitSettings(backend="redis", redis_url="redis://127.0.0.1:1/0",
                                                     redis_key_prefix="gw:", client_ip_header="x-real-ip"))
    assert guard is not None
    assert isinstance(guard.users, RedisBucketStore) and isinstance(guard.failures, RedisBucketStore)
    assert guard.users.connection is guard.failures.connection
    assert guard.users.key_for("user_1") == "gw:user:user_1"
    assert guard.failures.key_for("192.0.2.1") == "gw:auth-failures:192.0.2.1"
    await guard.aclose()


@pytest.mark.parametrize(("values", "expected"), [
    ({"backend": "redis"}, "required"),
    ({"backend": "redis", "redis_url": "http://cache:6379"}, "redis://"),
])
def test_redis_backend_problems(values: dict[str, str], expected: str) -> None:
    problems = Problems()
    check_rate_limit(RateLimitSettings(**values), problems)  # type: ignore[arg-type]
    assert [variable for variable, _ in problems.items] == ["GATEWAY_RATE_LIMIT_REDIS_URL"]
    assert expected in problems.items[0][1]


def test_no_problem_for_memory_or_a_good_url() -> None:
    problems = Problems()
    check_rate_limit(RateLimitSettings(), problems)
    check_rate_limit(RateLimitSettings(backend="redis", redis_url="rediss://cache:6380/0"), problems)  # type: ignore[arg-type]
    assert problems.items == []


@pytest.mark.parametrize("values", [{"per_user_rate": -1}, {"per_user_burst": 0}, {"backend": "memcached"},
                                    {"client_ip_header": "x forwarded"}, {"redis_timeout_seconds": 0}])
def test_invalid_values_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RateLimitSettings(**values)  # type: ignore[arg-type]


def test_redis_location_never_shows_the_password() -> None:
    assert redis_location("redis://:hunter2@cache:6380/1") == "cache:6380"
    assert redis_location("redis://cache") == "cache:6379"
    assert redis_location("unix:///run/redis.sock") == "/run/redis.sock"
