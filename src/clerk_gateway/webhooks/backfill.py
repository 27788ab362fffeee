"""``clerk-gateway backfill``: copies every Clerk user into the backend's users table.

Webhooks only carry changes from the moment the endpoint exists (and Svix gives up after about
28 hours), so an app that adds the sync late, or lost deliveries, needs the users Clerk already has.
This pages through the Backend API's user list and writes each user through the *same* guarded
upsert the webhook handler uses (:func:`~.stores.build_user_store`), which is what makes it safe to
run while webhooks arrive:

* **Order.** ``GET /v1/users`` is listed with ``order_by=+created_at`` (ascending; the ``+`` goes out
  URL-encoded as ``%2B``: a bare ``+`` in a query string means a space). Clerk's default is newest
  first, where every user created during the run is inserted at the front and pushes everyone
  already listed one place further down, under the offset. Ascending, a user created during the
  run is appended at the end and lands on a later page (and arrives by webhook too), and nothing
  already listed moves.
* **Deletions** during the run still move later users one place back. Each page therefore starts
  :func:`page_overlap` users before the end of the previous one, and the users seen twice are
  written once: up to that many deletions between two page fetches cannot make the run miss a user
  (ties in ``created_at``, whose order Clerk does not promise, are covered the same way).
* **Races with webhooks.** A user updated by a webhook after its page was read holds a newer
  ``updated_at`` than the listed copy, so the version guard leaves it alone (counted *unchanged*,
  :attr:`~.store.WriteOutcome.STALE`). That guard needs ``version_column``; without it the listed
  copy can overwrite the newer one, which the command warns about. A user deleted between its page
  fetch and its write stays deleted only with ``delete: soft`` (the tombstone); with hard deletes
  that window (one write's time) can bring the row back, and a later run does not remove it (Clerk
  no longer lists the user): replay that ``user.deleted`` from the Clerk Dashboard.

Rate limits (REFERENCE §8.5: 100 requests / 10 s on development instances, 1000 on production): a
429 waits ``Retry-After`` (seconds or an HTTP date, capped) and asks for the same page again. At
500 users a page the list rarely reaches the limit by itself; the other Backend API callers of the
same instance share it, which is why a 429 is expected and counted, not an error.

Nothing here prints or logs the secret key or any user's values; only counts and reasons.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import re
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

import httpx

from clerk_gateway.settings import Settings
from clerk_gateway.settings.user_sync import UserSyncSettings

from .records import InvalidUserPayload, user_record
from .store import SyncUnavailable, UserStore, WriteOutcome

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "ORDER_BY", "BackfillError", "BackfillSummary", "PeriodicProgress",
           "Progress", "TerminalProgress", "backfill", "page_overlap", "progress_for", "retry_after_seconds",
           "run_backfill"]

#: Clerk's maximum ``limit`` for ``GET /v1/users`` (REFERENCE §8.5): the fewest requests.
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = MAX_PAGE_SIZE
#: Ascending by creation: see the module docstring. httpx encodes the ``+`` as ``%2B``.
ORDER_BY = "+created_at"
#: A 429 without a usable ``Retry-After``: Clerk's limits are per 10 s window.
RETRY_AFTER_DEFAULT_SECONDS = 10.0
#: A ``Retry-After`` is honoured up to this; a far-off date is more likely a clock problem than a plan.
RETRY_AFTER_MAX_SECONDS = 60.0
#: ``Retry-After: 0`` (or a date already past) still waits this long, so a 429 loop cannot spin.
RETRY_AFTER_MIN_SECONDS = 1.0
#: A page answered 429 this many times in a row ends the run: something else is using up the limit.
MAX_RATE_LIMIT_WAITS_PER_PAGE = 30
#: Backoff after a 5xx or transport error: 1, 2, 4 … seconds, at most this.
BACKOFF_MAX_SECONDS = 30.0
#: Users written at the same time: a page of 500 does not wait for 500 round trips one by one, and the
#: backend sees a handful of concurrent writes, not a burst of 500.
DEFAULT_CONCURRENCY = 8
#: This many users failing in a row means the backend is down or refuses every write: stop, rather
#: than spend minutes retrying each of the remaining users.
MAX_FAILURES_IN_A_ROW = 25

Sleep = Callable[[float], Awaitable[object]]


class BackfillError(Exception):
    """The run cannot go on (the secret key refused, Clerk failing after the retries, the backend
    failing every write). The message is one line for the operator; :attr:`summary` is what was done
    up to that point (running again is safe: every write is an idempotent, guarded upsert)."""

    def __init__(self, message: str, summary: BackfillSummary) -> None:
        super().__init__(message)
        self.summary = summary


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "s")


@dataclass(slots=True)
class BackfillSummary:
    """What the run did, counted per user and per request."""

    #: written (created, or the mapped columns updated)
    applied: int = 0
    #: the backend already held this version or a newer one (a webhook was faster), or (soft delete)
    #: the user is marked deleted: nothing written
    unchanged: int = 0
    #: not a user the sync can write (no id, no ``updated_at``): left out, as the webhook would refuse it
    skipped: int = 0
    #: the backend did not take the write, after the retries
    failed: int = 0
    #: pages of users read (200 answers)
    pages: int = 0
    #: 429 answers waited out
    rate_limit_waits: int = 0
    #: distinct users read from Clerk (a user seen again in a page overlap counts once)
    listed: int = 0
    dry_run: bool = False
    #: why users failed (:attr:`~.store.SyncUnavailable.reason`, or an exception's type name) → count
    failure_reasons: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def exit_status(self) -> int:
        """0 when every listed user is in the backend (applied, unchanged or skipped), else 1."""
        return 0 if self.failed == 0 else 1

    def progress_line(self) -> str:
        return (f"backfill: {_plural(self.listed, 'user')}, page {self.pages:,}, "
                f"{_plural(self.rate_limit_waits, 'rate-limit wait')}")

    def line(self) -> str:
        """The one summary line ``backfill`` ends with (standard output, for scripts and logs)."""
        tail = f"({_plural(self.pages, 'page')}, {_plural(self.rate_limit_waits, 'rate-limit wait')})"
        if self.dry_run:
            return (f"backfill (dry run): {_plural(self.listed, 'user')} listed, "
                    f"{self.listed - self.skipped:,} would be written, {self.skipped:,} skipped, "
                    f"nothing written {tail}")
        return (f"backfill: {_plural(self.applied, 'user')} applied, {self.unchanged:,} unchanged, "
                f"{self.skipped:,} skipped, {self.failed:,} failed {tail}")

    def failure_line(self) -> str | None:
        """Why users failed, most frequent first (``None`` when none did)."""
        if not self.failure_reasons:
            return None
        reasons = ", ".join(f"{reason}: {count:,}" for reason, count in self.failure_reasons.most_common())
        return f"backfill: {_plural(self.failed, 'user')} failed ({reasons}); running backfill again retries them"


class Progress(Protocol):
    """Where the run reports itself while it goes (standard error)."""

    def update(self, summary: BackfillSummary, note: str = "") -> None:
        """After each page, and before each rate-limit wait (``note`` says how long)."""
        ...

    def close(self) -> None:
        """The run ended (in any way): leave the output ready for the summary line."""
        ...


class TerminalProgress:
    """One line on a terminal, rewritten in place (``\\r``), padded so a shorter text clears a longer one."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._width = 0

    def update(self, summary: BackfillSummary, note: str = "") -> None:
        text = summary.progress_line() + (f" ({note})" if note else "")
        self._stream.write("\r" + text.ljust(self._width))
        self._stream.flush()
        self._width = max(self._width, len(text))

    def close(self) -> None:
        if self._width:
            self._stream.write("\n")
            self._stream.flush()
            self._width = 0


class PeriodicProgress:
    """Not a terminal (a log, CI): no per-page chatter, one plain line every ``every`` pages."""

    def __init__(self, stream: TextIO, every: int = 20) -> None:
        self._stream = stream
        self._every = every
        self._last_page = 0

    def update(self, summary: BackfillSummary, note: str = "") -> None:
        if summary.pages and summary.pages % self._every == 0 and summary.pages != self._last_page:
            self._last_page = summary.pages
            self._stream.write(summary.progress_line() + "\n")
            self._stream.flush()

    def close(self) -> None:
        return None


def progress_for(stream: TextIO) -> Progress:
    """The progress display that suits ``stream``: an updating line on a terminal, else periodic lines."""
    isatty = getattr(stream, "isatty", None)
    return TerminalProgress(stream) if callable(isatty) and isatty() else PeriodicProgress(stream)


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float:
    """How long a 429 (or 503) asks to wait: ``Retry-After`` as delay-seconds or an HTTP date
    (RFC 9110 §10.2.3), bounded to :data:`RETRY_AFTER_MIN_SECONDS` … :data:`RETRY_AFTER_MAX_SECONDS`;
    :data:`RETRY_AFTER_DEFAULT_SECONDS` when absent or unreadable."""
    text = (value or "").strip()
    seconds: float | None = None
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
    elif text:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None and when.tzinfo is not None:
            seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds is None:
        seconds = RETRY_AFTER_DEFAULT_SECONDS
    return max(RETRY_AFTER_MIN_SECONDS, min(RETRY_AFTER_MAX_SECONDS, seconds))


def page_overlap(page_size: int) -> int:
    """How many users each page re-reads from the end of the previous one (2 %: 10 of 500), so that
    deletions during the run cannot shift a user past the offset unread. Below 50 a page, none."""
    return page_size // 50


def _backoff(attempt: int) -> float:
    return float(min(BACKOFF_MAX_SECONDS, 2 ** (attempt - 1)))


_CODE = re.compile(r"^[a-z0-9_]{1,64}$")


def _clerk_code(response: httpx.Response) -> str:
    """Clerk's error code (``clerk_key_invalid``) as ``", code"`` for a message, if it is a plain word.
    Only the code: the other fields are prose and never need to reach the operator's terminal here."""
    try:
        errors = response.json().get("errors")
        code = errors[0].get("code") if isinstance(errors, list) and errors else None
    except (ValueError, AttributeError, TypeError):
        return ""
    return f", {code}" if isinstance(code, str) and _CODE.match(code) else ""


class _Run:
    """One backfill: the paging loop, the retries and the counts."""

    def __init__(self, store: UserStore | None, sync: UserSyncSettings, *, api_url: str, secret_key: str,
                 client: httpx.AsyncClient, progress: Progress | None, sleep: Sleep, page_size: int,
                 max_retries: int, store_retries: int, concurrency: int, max_failures_in_a_row: int) -> None:
        self.store = store
        self.sync = sync
        self.url = f"{api_url.rstrip('/')}/v1/users"
        self.headers = {"Authorization": f"Bearer {secret_key}", "Accept": "application/json"}
        self.client = client
        self.progress = progress
        self.sleep = sleep
        self.page_size = page_size
        self.max_retries = max_retries
        self.store_retries = store_retries
        self.concurrency = concurrency
        self.max_failures_in_a_row = max_failures_in_a_row
        self.summary = BackfillSummary(dry_run=store is None)
        self.failures_in_a_row = 0

    def __repr__(self) -> str:  # never the headers: they hold the secret key
        return f"<backfill {self.url}>"

    def fail(self, message: str) -> BackfillError:
        return BackfillError(message, self.summary)

    async def run(self) -> BackfillSummary:
        overlap = page_overlap(self.page_size)
        offset = 0
        previous_ids: set[str] = set()
        while True:
            users = await self.page(offset)
            self.summary.pages += 1
            page_ids: set[str] = set()
            fresh: list[Any] = []
            for user in users:
                user_id = user.get("id") if isinstance(user, Mapping) else None
                if isinstance(user_id, str):
                    if user_id in previous_ids or user_id in page_ids:
                        continue  # already written by this run (the page overlap)
                    page_ids.add(user_id)
                fresh.append(user)
            if len(users) >= self.page_size and not fresh:
                # a full page of nothing new: the offset is not being honoured (a proxy or cache in the way),
                # and going on would ask for the same page for ever
                raise self.fail(f"Clerk's Backend API answered GET /v1/users (offset {offset:,}) with users "
                                "already listed: the paging does not move on; is CLERK_API_URL the Backend API?")
            self.summary.listed += len(fresh)
            for start in range(0, len(fresh), self.concurrency):
                await asyncio.gather(*(self.apply(user) for user in fresh[start:start + self.concurrency]))
                if self.failures_in_a_row >= self.max_failures_in_a_row:
                    reason = self.summary.failure_reasons.most_common(1)[0][0]
                    raise self.fail(f"the backend failed {self.failures_in_a_row} users in a row ({reason}); "
                                    f"stopped after {_plural(self.summary.pages, 'page')}")
            if self.progress is not None:
                self.progress.update(self.summary)
            if len(users) < self.page_size:
                return self.summary
            previous_ids = page_ids
            offset += len(users) - overlap

    async def page(self, offset: int) -> Sequence[Any]:
        """One page of users; 429s waited out and transient failures retried, the same page each time."""
        params = {"limit": str(self.page_size), "offset": str(offset), "order_by": ORDER_BY}
        failures = waits = 0
        where = f"GET /v1/users (offset {offset:,})"
        while True:
            delay: float | None = None
            try:
                response = await self.client.get(self.url, params=params, headers=self.headers)
            except (httpx.UnsupportedProtocol, httpx.InvalidURL):
                raise self.fail("CLERK_API_URL is not an http(s) URL such as https://api.clerk.com") from None
            except httpx.TransportError as exc:  # connection refused or reset, timeouts, bad TLS
                problem = type(exc).__name__
            else:
                status = response.status_code
                if status == 429:
                    waits += 1
                    if waits > MAX_RATE_LIMIT_WAITS_PER_PAGE:
                        raise self.fail(f"Clerk's Backend API kept answering 429 (rate limited) to {where}, "
                                        f"{waits - 1} waits in a row; try again later")
                    delay = retry_after_seconds(response.headers.get("retry-after"))
                    self.summary.rate_limit_waits += 1
                    if self.progress is not None:
                        self.progress.update(self.summary, f"rate limited, waiting {delay:g} s")
                    await self.sleep(delay)
                    continue
                if status in (401, 403):
                    raise self.fail(f"CLERK_SECRET_KEY was refused by Clerk's Backend API (HTTP {status}"
                                    f"{_clerk_code(response)}): use the instance's secret key (sk_live_… or "
                                    "sk_test_…) from the Clerk Dashboard, API keys")
                if status >= 500:
                    problem = f"HTTP {status}"
                    if "retry-after" in response.headers:
                        delay = retry_after_seconds(response.headers["retry-after"])
                elif status != 200:
                    raise self.fail(f"Clerk's Backend API answered HTTP {status}{_clerk_code(response)} to {where}")
                else:
                    try:
                        users = response.json()
                    except ValueError:
                        users = None
                    if isinstance(users, list):
                        return users
                    problem = "a 200 whose body is not a JSON array of users"
            failures += 1
            if failures > self.max_retries:
                raise self.fail(f"Clerk's Backend API failed {where}: {problem}, "
                                f"{_plural(failures, 'attempt')}; try again later")
            await self.sleep(delay if delay is not None else _backoff(failures))

    async def apply(self, user: Any) -> None:
        """One user through the guarded upsert; every outcome ends in exactly one count."""
        try:
            if not isinstance(user, Mapping):
                raise InvalidUserPayload("not an object")
            record = user_record(user, self.sync)
        except InvalidUserPayload:
            self.summary.skipped += 1
            return
        if self.store is None:
            return  # dry run: listed and mapped, nothing written
        reason = ""
        for attempt in range(self.store_retries + 1):
            if attempt:
                await self.sleep(_backoff(attempt) / 2)
            try:
                outcome = await self.store.upsert(record)
            except SyncUnavailable as exc:
                reason = exc.reason
                continue
            except Exception as exc:  # not retryable (a store refusing the write for good): count it, go on
                reason = type(exc).__name__
                break
            if outcome is WriteOutcome.APPLIED:
                self.summary.applied += 1
            else:
                self.summary.unchanged += 1
            self.failures_in_a_row = 0
            return
        self.summary.failed += 1
        self.summary.failure_reasons[reason] += 1
        self.failures_in_a_row += 1


async def backfill(store: UserStore | None, sync: UserSyncSettings, *, api_url: str, secret_key: str,
                   client: httpx.AsyncClient, progress: Progress | None = None, sleep: Sleep = asyncio.sleep,
                   page_size: int = DEFAULT_PAGE_SIZE, max_retries: int = 5, store_retries: int = 3,
                   concurrency: int = DEFAULT_CONCURRENCY,
                   max_failures_in_a_row: int = MAX_FAILURES_IN_A_ROW) -> BackfillSummary:
    """Write every Clerk user through ``store``'s guarded upsert (``None``: a dry run, nothing written).

    ``max_retries``: attempts after the first for a page that fails with a 5xx or a transport error
    (backoff 1, 2, 4 … s); 429s do not count against it. ``store_retries``: attempts after the first
    for a user whose write raises :class:`~.store.SyncUnavailable`; then it counts as failed and the
    run goes on with the rest. Raises :class:`BackfillError` when the run cannot go on.
    """
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be 1…{MAX_PAGE_SIZE}")
    run = _Run(store, sync, api_url=api_url, secret_key=secret_key, client=client, progress=progress, sleep=sleep,
               page_size=page_size, max_retries=max_retries, store_retries=store_retries,
               concurrency=max(1, concurrency), max_failures_in_a_row=max(1, max_failures_in_a_row))
    return await run.run()


VERSIONLESS_WARNING = (
    "clerk-gateway backfill: GATEWAY_USER_SYNC has no version_column, so a user updated by a webhook while the "
    "backfill runs can be overwritten with the copy listed a moment earlier; set version_column to make the "
    "upsert refuse older versions")


async def run_backfill(settings: Settings, *, page_size: int = DEFAULT_PAGE_SIZE, dry_run: bool = False,
                       out: TextIO | None = None, err: TextIO | None = None) -> int:
    """The ``backfill`` command once its settings are known to be complete (``GATEWAY_USER_SYNC`` and
    ``CLERK_SECRET_KEY`` set): builds the adapters and the store as ``serve`` does, runs
    :func:`backfill`, prints the summary line on ``out``, and returns the exit status."""
    from clerk_gateway.adapters.registry import create_adapter

    from .stores import build_user_store

    out = out or sys.stdout
    err = err or sys.stderr
    sync, secret_key = settings.user_sync, settings.clerk.secret_key
    if sync is None or secret_key is None:
        raise ValueError("run_backfill needs GATEWAY_USER_SYNC and CLERK_SECRET_KEY (cmd_backfill checks both)")
    if sync.version_column is None and not dry_run:
        print(VERSIONLESS_WARNING, file=err)
    adapters = {name: create_adapter(name, backend) for name, backend in settings.backends.items()}
    timeout = httpx.Timeout(30.0, connect=10.0)  # a page of 500 users is about 1 MB
    store: UserStore | None = None
    async with httpx.AsyncClient(timeout=timeout, trust_env=False,
                                 headers={"user-agent": "clerk-gateway backfill"}) as client:
        try:
            if not dry_run:
                try:
                    store = build_user_store(sync, adapters, client)
                except ValueError as exc:  # the loader checks the same; its message names the setting
                    print(f"clerk-gateway backfill: {exc}", file=err)
                    return 2
            progress = progress_for(err)
            try:
                summary = await backfill(store, sync, api_url=settings.clerk.api_url, secret_key=secret_key,
                                         client=client, progress=progress, page_size=page_size)
            except BackfillError as exc:
                progress.close()
                print(f"clerk-gateway backfill: {exc}", file=err)
                _print_summary(exc.summary, out, err)
                return 1
            progress.close()
            _print_summary(summary, out, err)
            return summary.exit_status
        finally:
            if store is not None:
                await store.aclose()
            for adapter in adapters.values():
                await adapter.aclose()


def _print_summary(summary: BackfillSummary, out: TextIO, err: TextIO) -> None:
    failures = summary.failure_line()
    if failures is not None:
        print(failures, file=err)
    print(summary.line(), file=out, flush=True)
