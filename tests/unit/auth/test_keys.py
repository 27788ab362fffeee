"""The JWKS cache and the other key providers, against a mocked JWKS URL and an injected clock.

No test waits for real time: the clock is a counter the test moves, fetches are driven through
``refresh()``/``key_for()``, and the background refresher sleeps through a gate the test opens.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import respx

from clerk_gateway.auth.jwk import UnusableKeyError
from clerk_gateway.auth.keys import (
    FallbackKeyProvider,
    JwksCache,
    KeySetStatus,
    StaticKeyProvider,
    build_key_provider,
)
from clerk_gateway.errors import AuthenticationError, ServiceUnavailableError
from clerk_gateway.observability.metrics import REGISTRY
from clerk_gateway.settings.clerk import ClerkConfig
from tests.support.clock import ManualClock
from tests.support.tokens import SigningKey, b64url, jwks

URL = "https://clerk.example.test/.well-known/jwks.json"
BAPI_URL = "https://api.clerk.example.test/v1/jwks"
SECRET = "sk_test_" + "s3cr3t" * 6

KEY_A = SigningKey.rsa("ins_a")
KEY_B = SigningKey.rsa("ins_b")
KEY_EC = SigningKey.ec("ins_ec")


class GatedSleep:
    """The background refresher's sleep: records the delay, waits for the test, then moves the clock."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.delays: list[float] = []
        self._gate: asyncio.Queue[None] = asyncio.Queue()

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        wake_at = self.clock.now + delay
        await self._gate.get()
        self.clock.now = max(self.clock.now, wake_at)

    def release(self) -> None:
        self._gate.put_nowait(None)


async def until(condition: Callable[[], bool], *, steps: int = 500) -> None:
    """Let the event loop run until ``condition`` holds (bounded; no real waiting beyond a few ms)."""
    for _ in range(steps):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


def source_name() -> str:
    """A fresh metric label per test so counters do not leak between tests."""
    return f"test-{uuid.uuid4().hex[:8]}"


def metric(name: str, **labels: str) -> float | None:
    value = REGISTRY.get_sample_value(name, labels)
    return None if value is None else float(value)


def jwks_response(*keys: SigningKey, max_age: int | None = 100, **kwargs: Any) -> httpx.Response:
    headers = {"cache-control": f"public, max-age={max_age}"} if max_age is not None else {}
    return httpx.Response(200, json=jwks(*keys), headers=headers, **kwargs)


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def make_cache(client: httpx.AsyncClient, clock: ManualClock) -> AsyncIterator[Callable[..., JwksCache]]:
    made: list[JwksCache] = []

    def factory(**kwargs: Any) -> JwksCache:
        kwargs.setdefault("source", source_name())
        kwargs.setdefault("clock", clock)
        cache = JwksCache(kwargs.pop("url", URL), client, **kwargs)
        made.append(cache)
        return cache

    yield factory
    for cache in made:
        await cache.aclose()


# -- single flight and first fetch -----------------------------------------------------------------


async def test_concurrent_requests_on_a_cold_cache_share_one_fetch(mock: respx.MockRouter,
                                                                  make_cache: Callable[..., JwksCache]) -> None:
    route = mock.get(URL).mock(return_value=jwks_response(KEY_A, KEY_B))
    cache = make_cache()
    keys = await asyncio.gather(*(cache.key_for("ins_a" if i % 2 else "ins_b") for i in range(20)))
    assert route.call_count == 1
    assert {key.kid for key in keys} == {"ins_a", "ins_b"}
    assert all(key.algorithm == "RS256" for key in keys)


async def test_concurrent_refresh_calls_share_one_fetch(mock: respx.MockRouter,
                                                       make_cache: Callable[..., JwksCache]) -> None:
    route = mock.get(URL).mock(return_value=jwks_response(KEY_A))
    cache = make_cache()
    await asyncio.gather(*(cache.refresh() for _ in range(10)))
    assert route.call_count == 1
    assert cache.status().key_count == 1


async def test_start_fetches_in_the_background_and_reports_status(
        mock: respx.MockRouter, make_cache: Callable[..., JwksCache], clock: ManualClock) -> None:
    mock.get(URL).mock(return_value=jwks_response(KEY_A, KEY_EC))
    source = source_name()
    cache = make_cache(source=source, sleep=GatedSleep(clock))
    await cache.start()
    assert cache.status() == KeySetStatus(source, False, False, 0, None, None)  # start() does not wait
    await until(lambda: cache.status().loaded)
    clock.advance(7)
    assert cache.status() == KeySetStatus(source, True, False, 2, 7.0, None)
    assert metric("gateway_jwks_fetches_total", source=source, outcome="ok") == 1
    assert metric("gateway_jwks_keys", source=source) == 2
    assert metric("gateway_jwks_age_seconds", source=source) == 7.0
    assert (await cache.key_for("ins_ec")).algorithm == "ES256"


async def test_a_request_during_the_first_fetch_waits_for_it(
        mock: respx.MockRouter, make_cache: Callable[..., JwksCache], clock: ManualClock) -> None:
    release = asyncio.Event()
    started: list[httpx.Request] = []

    async def slow(request: httpx.Request) -> httpx.Response:
        started.append(request)
        await release.wait()
        return jwks_response(KEY_A)

    route = mock.get(URL).mock(side_effect=slow)
    cache = make_cache(sleep=GatedSleep(clock))
    await cache.start()
    waiting = asyncio.create_task(cache.key_for("ins_a"))
    await until(lambda: len(started) == 1)
    assert not waiting.done()
    release.set()
    assert (await waiting).kid == "ins_a"
    assert route.call_count == 1


async def test_the_wait_for_the_first_fetch_is_bounded(mock: respx.MockRouter,
                                                      make_cache: Callable[..., JwksCache]) -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    mock.get(URL).mock(side_effect=hang)
    cache = make_cache(fetch_timeout_seconds=0.01)
    with pytest.raises(ServiceUnavailableError) as excinfo:
        await cache.key_for("ins_a")
    assert excinfo.value.reason == "keys-unavailable"
    await until(lambda: cache.status().last_error is not None)
    assert cache.status().last_error == "timed out"


# -- lifetime and background refresh ---------------------------------------------------------------


async def test_background_refresh_runs_at_80_percent_of_the_lifetime(
        mock: respx.MockRouter, make_cache: Callable[..., JwksCache], clock: ManualClock) -> None:
    route = mock.get(URL).mock(return_value=jwks_response(KEY_A, max_age=100))
    sleep = GatedSleep(clock)
    cache = make_cache(sleep=sleep)
    await cache.start()
    await until(lambda: len(sleep.delays) == 1)
    assert sleep.delays == [80.0]
    assert route.call_count == 1
    await cache.key_for("ins_a")  # served from the cache, no fetch
    assert route.call_count == 1

    route.mock(return_value=jwks_response(KEY_A, KEY_B, max_age=200))
    sleep.release()  # the clock moves to the refresh point: fetch before the keys expire
    await until(lambda: len(sleep.delays) == 2)
    assert route.call_count == 2
    assert sleep.delays[1] == 160.0
    assert cache.status().key_count == 2
    assert not cache.status().stale


async def test_a_refresh_made_meanwhile_postpones_the_background_one(
        mock: respx.MockRouter, make_cache: Callable[..., JwksCache], clock: ManualClock) -> None:
    route = mock.get(URL).mock(return_value=jwks_response(KEY_A, max_age=100))
    sleep = GatedSleep(clock)
    cache = make_cache(sleep=sleep)
    await cache.start()
    await until(lambda: len(sleep.delays) == 1)
    clock.advance(30)
    await cache.refresh()  # e.g. an unknown kid forced a fetch 30 s after the first one
    assert route.call_count == 2
    sleep.release()
    await until(lambda: len(sleep.delays) == 2)
    assert route.call_count == 2  # woken at +80 s, 50 s after the last fetch: not due, sleep the rest
    assert sleep.delays[1] == pytest.approx(30.0)


@pytest.mark.parametrize(("headers", "refresh_after"), [
    ({}, 240.0),  # nothing said: 5 minutes
    ({"cache-control": "no-store"}, 24.0),  # clamped to the 30 s minimum
    ({"cache-control": "max-age=5"}, 24.0),
    ({"cache-control": "max-age=999999"}, 69120.0),  # clamped to a day
    ({"cache-control": "max-age=bogus"}, 240.0),  # corrupt: the default
])
async def test_lifetime_comes_from_the_response_headers(
        mock: respx.MockRouter, make_cache: Callable[..., JwksCache], clock: ManualClock,
        headers: dict[str, str], refresh_after: float) -> None:
    mock.get(URL).mock(return_value=httpx.Response(200, json=jwks(KEY_A), headers=headers))
    sleep = GatedSleep(clock)
    cache = make_cache(sleep=sleep)
    await cache.start()
    await until(lambda: len(sleep.delays) == 1)
    assert sleep.delays == [refresh_after]


# -- unknown kid, cool-down, rotation --------------------------------------------------------------


async def test_rotation_is_picked_up_by_the_first_request_with_the_new_kid(
        mock: respx.MockRouter, make_cache: Callable[..., JwksCache], clock: ManualClock) -> None:
    route = mock.get(URL).mock(return_value=jwks_response(KEY_A))
    cache = make_cache(cooldown_seconds=60, sleep=GatedSleep(clock))
    await cache.start()
    await until(lambda: cache.status().loaded)
    route.mock(return_value=jwks_response(KEY_A, KEY_B))  # Clerk rotated a second after we started
    clock.advance(1)
    assert (await cache.key_for("ins_b")).kid == "ins_b"  # the start-up fetch started no cool-down
    assert route.call_count == 2


async def test_a_flood_of_unknown_kids_costs_one_fetch_per_cooldown(
        mock: respx.MockRouter, make_cache: Callable[..., JwksCache], clock: ManualClock) -> None:
    route = mock.get(URL).mock(return_value=jwks_response(KEY_A))
    cache = make_cache(cooldown_seconds=10)
    await cache.refresh()
    assert route.call_count == 1

    async def attempt(kid: str) -> str:
        try:
            await cache.key_for(kid)
        except AuthenticationError as exc:
            return str(exc.reason)
        return "accepted"

    reasons = await asyncio.gather(*(attempt(f"random-{i}") for i in range(50)))
    assert set(reasons) == {"unknown-kid"}
    assert route.call_count == 2
    for i in range(50):  # sequential ones during the cool-down are refused at once
        assert await attempt(f"later-{i}") == "unknown-kid"
    assert route.call_count == 2
    assert (await cache.key_for("ins_a")).kid == "ins_a"  # known keys keep working

    clock.advance(9.9)
    assert await attempt("still-cooling") == "unknown-kid"
    assert route.call_count == 2
    clock.advance(0.2)
    assert await attempt("after-cooldown") == "unknown-kid"
    assert route.call_count == 3
    assert await attempt("cooling-again") == "unknown-kid"
    assert route.call_count == 3


async def test_a_rotation_during_the_cooldown_waits_for_it_to_end(
        mock: respx.MockRouter, make_cache: Callable[..., JwksCache], clock: ManualClock) -> None:
    route = mock.get(URL).mock(return_value=jwks_response(KEY_A))
    cache = make_cache(cooldown_seconds=10)
    await cache.refresh()
    with pytest.raises(AuthenticationError):
        await cache.key_for("junk")
    route.mock(return_value=jwks_response(KEY_A, KEY_B))
    with pytest.raises(AuthenticationError):
        await cache.key_for("ins_b")
    clock.advance(10)
    assert (await cache.key_for("ins_b")).kid == "ins_b"


async def test_cooldown_zero_refetches_on_every_unknown_kid(mock: respx.MockRouter,
                                                            make_cache: Callable[..., JwksCache]) -> None:
    route = mock.get(URL).mock(return_value=jwks_response(KEY_A))
    cache = make_cache(cooldown_seconds=0)
    await cache.refresh()
    for i in range(3):
        with pytest.raises(AuthenticationError):
            await cache.key_for(f"unknown-{i}")
    assert route.call_count == 4


async def test_a_token_without_kid_does_not_match_a_keyed_set(mock: respx.MockRouter,
                                                             make_cache: Callable[..., JwksCache]) -> None:
    mock.get(URL).mock(return_value=jwks_response(KEY_A))
    cache = make_cache()
    await cache.refresh()
    with pytest.raises(AuthenticationError) as excinfo:
        await cache.key_for(None)
    assert excinfo.value.reason == "unknown-kid"


@pytest.mark.parametrize("kid", [["ins_a"], {"kid": "ins_a"}, 0])
async def test_a_kid_that_is_not_a_string_is_unknown_without_a_fetch(
        mock: respx.MockRouter, make_cache: Callable[..., JwksCache], kid: Any) -> None:
    route = mock.get(URL).mock(return_value=jwks_response(KEY_A))
    cache = make_cache(cooldown_seconds=0)
    await cache.refresh()
    with pytest.raises(AuthenticationError) as excinfo:
        await cache.key_for(kid)
    assert excinfo.value.reason == "unknown-kid"
    assert route.call_count == 1


async def test_a_single_key_without_kid_matches_a_token_without_kid(
        mock: respx.MockRouter, make_cache: Callable[..., JwksCache]) -> None:
    jwk = KEY_A.public_jwk()
    del jwk["kid"]
    mock.get(URL).mock(return_value=httpx.Response(200, json={"keys": [jwk]}))
    cache = make_cache()
    assert (await cache.key_for(None)).algorithm == "RS256"


async def test_a_set_without_usable_keys_is_loaded_and_refuses_every_kid(
        mock: respx.MockRouter, make_cache: Callable[..., JwksCache]) -> None:
    mock.get(URL).mock(return_value=httpx.Response(200, json={"keys": []}))
    cache = make_cache()
    with pytest.raises(AuthenticationError) as excinfo:
        await cache.key_for("ins_a")
    assert excinfo.value.reason == "unknown-kid"
    status = cache.status()
    assert (status.loaded, status.key_count, status.last_error) == (True, 0, None)


# -- outages ---------------------------------------------------------------------------------------


async def test_outage_keeps_the_last_good_keys_then_drops_them_after_max_stale(
        mock: respx.MockRouter, make_cache: Callable[..., JwksCache], clock: ManualClock) -> None:
    route = mock.get(URL).mock(return_value=jwks_response(KEY_A, max_age=100))
    source = source_name()
    cache = make_cache(source=source, max_stale_seconds=1000, cooldown_seconds=10)
    await cache.refresh()

    route.mock(return_value=httpx.Response(503, text="upstream down"))
    clock.advance(150)  # expired 50 s ago; the refresh fails
    await cache.refresh()
    assert (await cache.key_for("ins_a")).kid == "ins_a"
    status = cache.status()
    assert (status.loaded, status.stale, status.key_count) == (True, True, 1)
    assert status.last_error == "answered HTTP 503"
    assert metric("gateway_jwks_fetches_total", source=source, outcome="error") == 1

    route.mock(side_effect=httpx.ConnectError("refused"))
    clock.advance(949)  # 999 s past expiry: still within max stale
    await cache.refresh()
    assert (await cache.key_for("ins_a")).kid == "ins_a"
    assert cache.status().last_error == "unreachable (ConnectError)"

    clock.advance(2)  # 1001 s past expiry: dropped
    status = cache.status()
    assert (status.loaded, status.key_count, status.age_seconds) == (False, 0, None)
    assert metric("gateway_jwks_keys", source=source) == 0
    with pytest.raises(ServiceUnavailableError) as excinfo:
        await cache.key_for("ins_a")
    assert excinfo.value.reason == "keys-unavailable"
    assert excinfo.value.status == 503


async def test_recovery_after_an_outage_clears_the_error(
        mock: respx.MockRouter, make_cache: Callable[..., JwksCache], clock: ManualClock) -> None:
    route = mock.get(URL).mock(return_value=jwks_response(KEY_A, max_age=100))
    cache = make_cache()
    await cache.refresh()
    route.mock(return_value=httpx.Response(500))
    clock.advance(120)
    await cache.refresh()
    assert cache.status().stale
    route.mock(return_value=jwks_response(KEY_A, KEY_B, max_age=100))
    await cache.refresh()
    status = cache.status()
    assert (status.stale, status.last_error, status.key_count, status.age_seconds) == (False, None, 2, 0.0)


@pytest.mark.parametrize(("response", "outcome", "error"), [
    (httpx.Response(200, text="<html>maintenance</html>"), "invalid", "answered something that is not JSON"),
    (httpx.Response(200, json={"error": "nope"}), "invalid", "invalid key set"),
    (httpx.Response(200, json=[1, 2]), "invalid", "invalid key set"),
    (httpx.Response(404, json=jwks(KEY_B)), "error", "answered HTTP 404"),
    (httpx.Response(302, headers={"location": "https://evil.example/jwks"}), "error", "answered HTTP 302"),
])
async def test_garbage_keeps_the_old_keys(mock: respx.MockRouter, make_cache: Callable[..., JwksCache],
                                          response: httpx.Response, outcome: str, error: str) -> None:
    route = mock.get(URL).mock(return_value=jwks_response(KEY_A))
    source = source_name()
    cache = make_cache(source=source)
    await cache.refresh()
    route.mock(return_value=response)
    await cache.refresh()
    assert (await cache.key_for("ins_a")).kid == "ins_a"
    assert (cache.status().last_error or "").startswith(error)
    assert cache.status().key_count == 1
    assert metric("gateway_jwks_fetches_total", source=source, outcome=outcome) == 1


async def test_unreachable_at_start_then_recovery_in_the_background(
        mock: respx.MockRouter, make_cache: Callable[..., JwksCache], clock: ManualClock) -> None:
    route = mock.get(URL).mock(side_effect=httpx.ConnectError("refused"))
    sleep = GatedSleep(clock)
    cache = make_cache(sleep=sleep, cooldown_seconds=10)
    await cache.start()  # never raises: the gateway starts without keys
    await until(lambda: len(sleep.delays) == 1)
    assert 0.25 <= sleep.delays[0] <= 0.5  # first backoff step, with jitter

    with pytest.raises(ServiceUnavailableError) as excinfo:
        await cache.key_for("ins_a")  # a request may try once itself...
    assert excinfo.value.reason == "keys-unavailable"
    assert route.call_count == 2
    with pytest.raises(ServiceUnavailableError):
        await cache.key_for("ins_a")  # ...but not again during the cool-down
    assert route.call_count == 2
    status = cache.status()
    assert (status.loaded, status.last_error) == (False, "unreachable (ConnectError)")

    sleep.release()  # backoff over: still down, the next step is longer
    await until(lambda: len(sleep.delays) == 2)
    assert route.call_count == 3
    assert 0.5 <= sleep.delays[1] <= 1.0

    route.mock(side_effect=None, return_value=jwks_response(KEY_A, max_age=100))
    sleep.release()
    await until(lambda: len(sleep.delays) == 3)
    assert sleep.delays[2] == pytest.approx(80.0)  # back on the lifetime schedule
    assert (await cache.key_for("ins_a")).kid == "ins_a"
    assert cache.status().last_error is None


async def test_unreachable_at_start_then_recovery_on_request(
        mock: respx.MockRouter, make_cache: Callable[..., JwksCache], clock: ManualClock) -> None:
    route = mock.get(URL).mock(side_effect=httpx.ConnectError("refused"))
    cache = make_cache(cooldown_seconds=10)
    with pytest.raises(ServiceUnavailableError):
        await cache.key_for("ins_a")
    route.mock(side_effect=None, return_value=jwks_response(KEY_A))
    clock.advance(10)
    assert (await cache.key_for("ins_a")).kid == "ins_a"


def test_backoff_doubles_to_thirty_seconds_with_jitter() -> None:
    for failures, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (7, 30.0), (50, 30.0)]:
        delays = [JwksCache._backoff_delay(failures) for _ in range(20)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)


# -- limits ----------------------------------------------------------------------------------------


async def test_a_document_over_the_size_limit_is_refused(mock: respx.MockRouter,
                                                        make_cache: Callable[..., JwksCache]) -> None:
    padded = {**jwks(KEY_A), "padding": "x" * 5000}
    mock.get(URL).mock(return_value=httpx.Response(200, json=padded))
    source = source_name()
    cache = make_cache(source=source, max_document_bytes=4096)
    await cache.refresh()
    assert cache.status().last_error == "document larger than 4096 bytes"
    assert metric("gateway_jwks_fetches_total", source=source, outcome="invalid") == 1


async def test_a_streamed_document_is_cut_off_at_the_limit(clock: ManualClock) -> None:
    sent: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for i in range(1000):
            sent.append(i)
            yield b'{"keys": [' if i == 0 else b" " * 1024

    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=endless()))
    async with httpx.AsyncClient(transport=transport) as http:
        cache = JwksCache(URL, http, source=source_name(), clock=clock, max_document_bytes=8 * 1024)
        await cache.refresh()
        assert cache.status().last_error == "document larger than 8192 bytes"
        assert len(sent) < 20  # stopped reading early


async def test_too_many_keys_is_refused(mock: respx.MockRouter, make_cache: Callable[..., JwksCache]) -> None:
    many = {"keys": [{**KEY_A.public_jwk(), "kid": f"k{i}"} for i in range(33)]}
    mock.get(URL).mock(return_value=httpx.Response(200, json=many))
    cache = make_cache()
    await cache.refresh()
    status = cache.status()
    assert (status.loaded, status.last_error) == (False, "invalid key set (key set holds 33 keys, "
                                                         "more than the limit of 32)")


async def test_unusable_keys_are_skipped_and_logged_without_key_material(
        mock: respx.MockRouter, make_cache: Callable[..., JwksCache], caplog: pytest.LogCaptureFixture) -> None:
    small = SigningKey.rsa("small", bits=1024).public_jwk()
    enc = {**KEY_B.public_jwk(), "kid": "enc", "use": "enc"}
    hmac = {"kty": "oct", "kid": "hmac", "k": b64url(b"k" * 32)}
    private = {**KEY_EC.public_jwk(), "kid": "priv", "d": b64url(b"\x05" * 32)}
    dup1, dup2 = {**KEY_A.public_jwk(), "kid": "dup"}, {**KEY_EC.public_jwk(), "kid": "dup"}
    document = {"keys": [KEY_A.public_jwk(), small, enc, hmac, private, dup1, dup2]}
    mock.get(URL).mock(return_value=httpx.Response(200, json=document))
    cache = make_cache()
    with caplog.at_level(logging.WARNING, logger="clerk_gateway.keys"):
        await cache.refresh()
    assert cache.status().key_count == 1
    assert (await cache.key_for("ins_a")).kid == "ins_a"
    for kid in ("small", "enc", "hmac", "priv", "dup"):
        with pytest.raises(AuthenticationError):
            await cache.key_for(kid)

    lines = [record.getMessage() for record in caplog.records if record.name == "clerk_gateway.keys"]
    for kid, reason in [("small", "rsa-too-small"), ("enc", "not-for-signatures"), ("hmac", "symmetric-key"),
                        ("priv", "private-key-material"), ("dup", "duplicate-kid")]:
        assert any(f"kid='{kid}'" in line and f"reason={reason}" in line for line in lines), (kid, lines)
    assert len(lines) == 6
    text = "\n".join(lines)
    for material in (small["n"][:16], hmac["k"], private["d"], enc["n"][:16]):
        assert material not in text

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="clerk_gateway.keys"):
        await cache.refresh()  # the same skipped keys are not logged again on every refresh
    assert not [r for r in caplog.records if "skipped" in r.getMessage()]


# -- static, fallback, building --------------------------------------------------------------------


async def test_static_pem_provider_matches_any_kid() -> None:
    provider = StaticKeyProvider(KEY_A.public_pem())
    await provider.start()
    for kid in (None, "ins_a", "anything"):
        key = await provider.key_for(kid)
        assert (key.algorithm, key.source, key.kid) == ("RS256", "pem", None)
    assert provider.status() == KeySetStatus("pem", True, False, 1, None, None)
    await provider.aclose()


def test_static_provider_refuses_an_unusable_pem() -> None:
    with pytest.raises(UnusableKeyError) as excinfo:
        StaticKeyProvider(SigningKey.rsa("small", bits=1024).public_pem())
    assert excinfo.value.reason == "rsa-too-small"
    assert "CLERK_JWT_KEY" in str(excinfo.value)


def clerk_config(**changes: Any) -> ClerkConfig:
    values: dict[str, Any] = {
        "issuer": "https://clerk.example.test", "jwks_url": URL, "backend_api_jwks_url": None,
        "secret_key": None, "api_url": "https://api.clerk.example.test", "jwt_key_pem": None,
        "authorized_parties": frozenset(), "clock_skew_seconds": 5.0, "reject_pending": True,
        "jwks_cooldown_seconds": 10.0, "jwks_max_stale_seconds": 86400.0, "session_cookie_names": ("__session",),
    }
    values.update(changes)
    return ClerkConfig(**values)


async def test_build_with_a_pem_key_never_fetches(mock: respx.MockRouter, client: httpx.AsyncClient) -> None:
    route = mock.get(URL)
    provider = build_key_provider(clerk_config(jwt_key_pem=KEY_A.public_pem(), jwks_url=None), client)
    assert isinstance(provider, StaticKeyProvider)
    await provider.start()
    assert (await provider.key_for("x")).algorithm == "RS256"
    assert route.call_count == 0


async def test_build_with_a_jwks_url_only(mock: respx.MockRouter, client: httpx.AsyncClient) -> None:
    mock.get(URL).mock(return_value=jwks_response(KEY_A))
    provider = build_key_provider(clerk_config(jwks_cooldown_seconds=0), client)
    assert isinstance(provider, JwksCache)
    try:
        assert (await provider.key_for("ins_a")).source == "jwks"
    finally:
        await provider.aclose()


async def test_backend_api_fallback_sends_the_bearer_secret(
        mock: respx.MockRouter, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    frontend = mock.get(URL).mock(return_value=httpx.Response(503))
    backend = mock.get(BAPI_URL).mock(return_value=jwks_response(KEY_A))
    provider = build_key_provider(clerk_config(backend_api_jwks_url=BAPI_URL, secret_key=SECRET), client)
    assert isinstance(provider, FallbackKeyProvider)
    try:
        with caplog.at_level(logging.DEBUG):
            await provider.start()
            key = await provider.key_for("ins_a")
    finally:
        await provider.aclose()
    assert key.source == "backend-api"
    assert frontend.call_count >= 1
    assert backend.calls.last.request.headers["authorization"] == f"Bearer {SECRET}"
    assert "authorization" not in frontend.calls.last.request.headers
    statuses = provider.status()
    assert [s.source for s in statuses] == ["jwks", "backend-api"]
    assert [s.loaded for s in statuses] == [False, True]
    assert SECRET not in caplog.text
    assert SECRET not in repr(provider._secondary)


async def test_fallback_on_an_unknown_kid(mock: respx.MockRouter, client: httpx.AsyncClient) -> None:
    mock.get(URL).mock(return_value=jwks_response(KEY_A))
    mock.get(BAPI_URL).mock(return_value=jwks_response(KEY_A, KEY_B))
    provider = build_key_provider(clerk_config(backend_api_jwks_url=BAPI_URL, secret_key=SECRET), client)
    try:
        assert (await provider.key_for("ins_a")).source == "jwks"
        assert (await provider.key_for("ins_b")).source == "backend-api"
        with pytest.raises(AuthenticationError) as excinfo:
            await provider.key_for("nobody")
        assert excinfo.value.reason == "unknown-kid"
    finally:
        await provider.aclose()


async def test_fallback_errors(mock: respx.MockRouter, client: httpx.AsyncClient) -> None:
    mock.get(URL).mock(return_value=jwks_response(KEY_A))
    mock.get(BAPI_URL).mock(return_value=httpx.Response(401))
    provider = build_key_provider(clerk_config(backend_api_jwks_url=BAPI_URL, secret_key=SECRET), client)
    try:  # primary knows keys but not this kid, secondary is down: the token is the problem
        with pytest.raises(AuthenticationError) as auth:
            await provider.key_for("nobody")
        assert auth.value.reason == "unknown-kid"
    finally:
        await provider.aclose()

    mock.get(URL).mock(side_effect=httpx.ConnectError("down"))
    provider = build_key_provider(clerk_config(backend_api_jwks_url=BAPI_URL, secret_key=SECRET), client)
    try:  # nobody has keys: the gateway is the problem
        with pytest.raises(ServiceUnavailableError) as unavailable:
            await provider.key_for("ins_a")
        assert unavailable.value.reason == "keys-unavailable"
    finally:
        await provider.aclose()


async def test_build_with_the_backend_api_only(mock: respx.MockRouter, client: httpx.AsyncClient) -> None:
    mock.get(BAPI_URL).mock(return_value=jwks_response(KEY_A))
    provider = build_key_provider(
        clerk_config(jwks_url=None, backend_api_jwks_url=BAPI_URL, secret_key=SECRET), client)
    assert isinstance(provider, JwksCache)
    try:
        assert (await provider.key_for("ins_a")).source == "backend-api"
    finally:
        await provider.aclose()


def test_build_without_any_key_source(client: httpx.AsyncClient) -> None:
    with pytest.raises(ValueError):
        build_key_provider(clerk_config(jwks_url=None), client)


async def test_aclose_stops_the_background_refresher(
        mock: respx.MockRouter, make_cache: Callable[..., JwksCache], clock: ManualClock) -> None:
    mock.get(URL).mock(return_value=jwks_response(KEY_A))
    sleep = GatedSleep(clock)
    cache = make_cache(sleep=sleep)
    await cache.start()
    await cache.start()  # idempotent
    await until(lambda: len(sleep.delays) == 1)
    runner = cache._runner
    assert runner is not None and not runner.done()
    await cache.aclose()
    assert runner.cancelled()
    await cache.aclose()  # twice is fine
