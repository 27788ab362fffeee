"""The JWKS cache: keys fetched over HTTP and kept so that requests almost never wait on Clerk.

* one fetch at start-up (in the background: the gateway starts even when Clerk is unreachable),
  then background refreshes at 80 % of the lifetime the response announces (``Cache-Control`` /
  ``Expires``, clamped; 5 minutes when it says nothing);
* concurrent callers share one in-flight fetch (single flight);
* an unknown ``kid`` costs at most one refetch per cool-down, so a real rotation is picked up by the
  first token carrying the new ``kid`` while a flood of made-up ``kid``s cannot become a flood of
  fetches;
* when Clerk is unreachable or answers garbage, the last good keys keep serving for
  ``max_stale_seconds`` past their expiry (stale-if-error), then they are dropped.

It knows fetching and lifetimes, nothing about claims (that is the verifier's job).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import httpx

from clerk_gateway.auth.cache_lifetime import clamp_lifetime, lifetime_from_headers
from clerk_gateway.auth.jwk import JwksDocumentError, load_jwks
from clerk_gateway.auth.model import KeyProvider, VerificationKey
from clerk_gateway.errors import AuthenticationError, ServiceUnavailableError
from clerk_gateway.observability.metrics import JWKS_AGE, JWKS_FETCHES, JWKS_KEYS, JWKS_LAST_SUCCESS, MULTIPROCESS

if TYPE_CHECKING:
    from clerk_gateway.observability.tracing import Tracing

__all__ = ["JwksCache", "KeySetStatus", "ManagedKeyProvider"]

log = logging.getLogger("clerk_gateway.keys")

DEFAULT_LIFETIME_SECONDS = 300.0
REFRESH_FRACTION = 0.8
BACKOFF_INITIAL_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
MAX_KEYS = 32


@dataclass(frozen=True)
class KeySetStatus:
    """One key source as ``/readyz`` and ``check`` show it. Never holds key material."""

    source: str
    loaded: bool
    stale: bool
    key_count: int
    age_seconds: float | None
    last_error: str | None


class ManagedKeyProvider(KeyProvider, Protocol):
    """A key provider with a life cycle and a status.

    ``status()`` returns one :class:`KeySetStatus` for a single source and a list (one entry per
    source, in the order they are tried) for a composite; ``/readyz`` renders either.
    """

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    def status(self) -> KeySetStatus | list[KeySetStatus]: ...


class _FetchFailed(Exception):
    """A fetch that produced no key set; ``outcome`` is the metric label, the message is loggable."""

    def __init__(self, outcome: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


def _unknown_kid() -> AuthenticationError:
    return AuthenticationError("unknown-kid", "the token's key id is not among the issuer's usable keys")


def _keys_unavailable() -> ServiceUnavailableError:
    return ServiceUnavailableError("keys-unavailable", "verification keys are not available yet; retry shortly",
                                   headers={"retry-after": "5"})


class JwksCache:
    """A JWKS fetched with the shared httpx client, cached and refreshed in the background.

    ``clock`` drives every lifetime, cool-down and staleness decision; ``sleep`` is what the
    background refresher waits with. Both are injectable so tests control time without sleeping.
    """

    def __init__(self, url: str, client: httpx.AsyncClient, *, source: str = "jwks",
                 headers: Mapping[str, str] | None = None, cooldown_seconds: float = 10.0,
                 max_stale_seconds: float = 86400.0, max_document_bytes: int = 256 * 1024,
                 fetch_timeout_seconds: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 max_keys: int = MAX_KEYS, tracing: Tracing | None = None) -> None:
        self._url = url
        self._tracing = tracing
        self._client = client
        self._source = source
        self._headers = {"accept": "application/json", **dict(headers or {})}
        self._cooldown = cooldown_seconds
        self._max_stale = max_stale_seconds
        self._max_bytes = max_document_bytes
        self._fetch_timeout = fetch_timeout_seconds
        self._clock = clock
        self._sleep = sleep
        self._max_keys = max_keys

        self._keys: dict[str | None, VerificationKey] | None = None  # None: no usable key set
        self._fetched_at = 0.0
        self._expires_at = 0.0
        self._refresh_at = 0.0
        self._last_error: str | None = None
        self._last_ok = False
        self._attempts = 0
        self._last_forced_fetch: float | None = None
        self._last_skipped: list[tuple[str | None, str]] = []
        self._inflight: asyncio.Task[bool] | None = None
        self._runner: asyncio.Task[None] | None = None

        JWKS_KEYS.labels(source).set(0)
        ref = weakref.ref(self)
        if not MULTIPROCESS:  # a pool derives the age from JWKS_LAST_SUCCESS across its workers
            JWKS_AGE.labels(source).set_function(lambda: _age_of(ref))

    def __repr__(self) -> str:  # never show the headers: they may carry the secret key
        return f"JwksCache(source={self._source!r}, url={self._url!r})"

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the first fetch and the background refresher; never raises, never waits."""
        if self._runner is not None and not self._runner.done():
            return
        first = self._shared_fetch()
        self._runner = asyncio.create_task(self._run(first), name=f"jwks-refresh-{self._source}")

    async def aclose(self) -> None:
        for task in (self._runner, self._inflight):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._runner = None
        self._inflight = None

    # -- KeyProvider -----------------------------------------------------------------------------

    async def key_for(self, kid: str | None) -> VerificationKey:
        if kid is not None and not isinstance(kid, str):  # a hostile header ("kid": ["k1"]) is no id
            raise _unknown_kid()
        keys = self._current_keys()
        if keys is not None:
            key = keys.get(kid)
            if key is not None:
                return key
        task = self._inflight if self._inflight is not None and not self._inflight.done() else None
        if task is None:
            if self._cooling_down():
                raise _unknown_kid() if keys is not None else _keys_unavailable()
            if self._attempts > 0:  # the very first fetch is the start-up fetch: it costs no cool-down
                self._last_forced_fetch = self._clock()
            task = self._shared_fetch()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), timeout=self._fetch_timeout)
        keys = self._current_keys()
        if keys is None:
            raise _keys_unavailable()
        key = keys.get(kid)
        if key is None:
            raise _unknown_kid()
        return key

    async def refresh(self) -> None:
        """Fetch now, or join the fetch already in flight. Never raises on fetch failure."""
        await asyncio.shield(self._shared_fetch())

    def status(self) -> KeySetStatus:
        now = self._clock()
        keys = self._current_keys(now)
        return KeySetStatus(
            source=self._source,
            loaded=keys is not None,
            stale=keys is not None and now >= self._expires_at,
            key_count=0 if keys is None else len(keys),
            age_seconds=None if keys is None else max(0.0, now - self._fetched_at),
            last_error=self._last_error,
        )

    def age_seconds(self) -> float | None:
        """Seconds since the last successful fetch, ``None`` before it; a pure read (metrics use it)."""
        return None if self._keys is None else max(0.0, self._clock() - self._fetched_at)

    # -- state -----------------------------------------------------------------------------------

    def _current_keys(self, now: float | None = None) -> dict[str | None, VerificationKey] | None:
        """The usable key set, after dropping one that stayed stale longer than allowed."""
        if self._keys is None:
            return None
        if (self._clock() if now is None else now) > self._expires_at + self._max_stale:
            log.warning("dropping the %s key set: stale for longer than %.0f s", self._source, self._max_stale)
            self._keys = None
            JWKS_KEYS.labels(self._source).set(0)
        return self._keys

    def _cooling_down(self) -> bool:
        if self._cooldown <= 0 or self._last_forced_fetch is None:
            return False
        return self._clock() - self._last_forced_fetch < self._cooldown

    def _shared_fetch(self) -> asyncio.Task[bool]:
        if self._inflight is None or self._inflight.done():
            self._attempts += 1
            self._inflight = asyncio.create_task(self._fetch_and_store(), name=f"jwks-fetch-{self._source}")
        return self._inflight

    # -- fetching --------------------------------------------------------------------------------

    async def _fetch_and_store(self) -> bool:
        if self._tracing is None:
            return await self._fetch_and_store_now()
        with self._tracing.key_fetch_span(self._source, self._url) as span:
            stored = await self._fetch_and_store_now()
            if not stored:
                self._tracing.failed(span, self._last_error or "error")
            return stored

    async def _fetch_and_store_now(self) -> bool:
        try:
            async with asyncio.timeout(self._fetch_timeout):
                document, headers = await self._fetch_document()
            loaded = load_jwks(document, source=self._source, max_keys=self._max_keys)
        except _FetchFailed as exc:
            return self._failed(exc.outcome, str(exc))
        except JwksDocumentError as exc:
            return self._failed("invalid", f"invalid key set ({exc})")
        except TimeoutError:
            return self._failed("error", "timed out")
        except httpx.HTTPError as exc:
            return self._failed("error", f"unreachable ({type(exc).__name__})")
        except Exception as exc:  # a background fetch must never die on an unexpected error
            log.exception("unexpected error while fetching the %s key set", self._source)
            return self._failed("error", f"unexpected error ({type(exc).__name__})")

        now = self._clock()
        lifetime = clamp_lifetime(lifetime_from_headers(headers, time.time()),
                                  default=DEFAULT_LIFETIME_SECONDS)
        self._keys = loaded.keys
        self._fetched_at = now
        self._expires_at = now + lifetime
        self._refresh_at = now + lifetime * REFRESH_FRACTION
        self._last_error = None
        self._last_ok = True
        JWKS_FETCHES.labels(self._source, "ok").inc()
        JWKS_KEYS.labels(self._source).set(len(loaded.keys))
        JWKS_LAST_SUCCESS.labels(self._source).set(time.time())
        if loaded.skipped != self._last_skipped:
            for kid, reason in loaded.skipped:
                log.warning("skipped a key of the %s key set: kid=%s reason=%s",
                            self._source, _printable(kid), reason)
            self._last_skipped = list(loaded.skipped)
        if not loaded.keys:
            log.warning("the %s key set holds no usable key: every token will be refused", self._source)
        return True

    async def _fetch_document(self) -> tuple[object, httpx.Headers]:
        async with self._client.stream("GET", self._url, headers=self._headers,
                                       timeout=self._fetch_timeout) as response:
            if response.status_code != 200:
                raise _FetchFailed("error", f"answered HTTP {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self._max_bytes:
                raise _FetchFailed("invalid", f"document larger than {self._max_bytes} bytes")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self._max_bytes:
                    raise _FetchFailed("invalid", f"document larger than {self._max_bytes} bytes")
            headers = response.headers
        try:
            document: object = json.loads(bytes(body))
        except (ValueError, RecursionError) as exc:
            raise _FetchFailed("invalid", "answered something that is not JSON") from exc
        return document, headers

    def _failed(self, outcome: str, message: str) -> bool:
        self._last_error = message
        self._last_ok = False
        JWKS_FETCHES.labels(self._source, outcome).inc()
        log.warning("fetching the %s key set failed: %s%s", self._source, message,
                    "; serving the last good keys" if self._keys is not None else "")
        return False

    # -- background refresher --------------------------------------------------------------------

    def _due(self) -> bool:
        return self._keys is None or not self._last_ok or self._clock() >= self._refresh_at

    def _refresh_delay(self) -> float:
        return max(0.0, self._refresh_at - self._clock())

    @staticmethod
    def _backoff_delay(failures: int) -> float:
        """Exponential backoff with jitter: 0.5 s doubling to 30 s, each scaled by 50 to 100 %."""
        ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_INITIAL_SECONDS * 2.0 ** min(failures - 1, 16))
        return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not cryptography

    async def _run(self, first: asyncio.Task[bool]) -> None:
        """Sleep until the refresh point (or the next backoff step), fetch if still due, repeat."""
        failures = 0 if await asyncio.shield(first) else 1
        while True:
            await self._sleep(self._refresh_delay() if failures == 0 else self._backoff_delay(failures))
            if not self._due():  # someone else fetched meanwhile
                failures = 0
            elif await asyncio.shield(self._shared_fetch()):
                failures = 0
            else:
                failures += 1

def _age_of(ref: weakref.ref[JwksCache]) -> float:
    """Scrape-time age of a cache's key set (NaN when it has none); reads state, never changes it."""
    cache = ref()
    age = None if cache is None else cache.age_seconds()
    return float("nan") if age is None else age


def _printable(kid: str | None) -> str:
    """A ``kid`` fit for a log line: bounded, one line, quoted."""
    if kid is None:
        return "-"
    return repr(kid[:64])


