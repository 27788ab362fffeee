"""``backfill``: paging Clerk's user list into the guarded upsert, against the FakeClerkApi on 127.0.0.1.

The paging, the 429s and the 5xx retries go over real HTTP (the fake speaks the documented
``GET /v1/users``); the store is in memory and applies the same version guard the backends do, so
that a second run, or a webhook that was faster, shows up as *unchanged*. Every wait goes through
an injected sleep that records the delay and returns at once: nothing here waits for real.
"""

from __future__ import annotations

import asyncio
import email.utils
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from clerk_gateway.cli import main
from clerk_gateway.settings import load_settings
from clerk_gateway.settings.user_sync import UserSyncSettings
from clerk_gateway.webhooks import backfill as backfill_module
from clerk_gateway.webhooks.backfill import (
    BackfillError,
    BackfillSummary,
    PeriodicProgress,
    TerminalProgress,
    backfill,
    page_overlap,
    progress_for,
    retry_after_seconds,
    run_backfill,
)
from clerk_gateway.webhooks.records import UserRecord
from clerk_gateway.webhooks.store import SyncUnavailable, WriteOutcome
from tests.support.clerk_api import FakeClerkApi, clerk_user
from tests.support.tokens import SigningKey

SECRET = "sk_test_" + "backfillUnitSecret" * 2
SYNC = UserSyncSettings(backend="hasura", columns={"id": "id", "name": "name", "email": "email"},
                        version_column="clerk_updated_at")


class MemoryStore:
    """A UserStore with the backends' version guard: an upsert whose version is not newer than the
    stored one is STALE. ``fail`` decides, per call, an exception to raise instead."""

    def __init__(self, fail: Callable[[UserRecord, int], BaseException | None] | None = None) -> None:
        self.rows: dict[str, UserRecord] = {}
        self.upserts: list[UserRecord] = []
        self.fail = fail
        self.in_flight = self.max_in_flight = 0
        self.closed = False

    async def upsert(self, user: UserRecord) -> WriteOutcome:
        self.upserts.append(user)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)
            error = self.fail(user, sum(u.user_id == user.user_id for u in self.upserts)) if self.fail else None
            if error is not None:
                raise error
            stored = self.rows.get(user.user_id)
            if stored is not None and stored.version_ms >= user.version_ms:
                return WriteOutcome.STALE
            self.rows[user.user_id] = user
            return WriteOutcome.APPLIED
        finally:
            self.in_flight -= 1

    async def delete(self, user_id: str, version_ms: int) -> WriteOutcome:
        self.rows.pop(user_id, None)
        return WriteOutcome.APPLIED

    async def aclose(self) -> None:
        self.closed = True

    def upserted_ids(self) -> list[str]:
        return [user.user_id for user in self.upserts]


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def clerk() -> Iterator[FakeClerkApi]:
    with FakeClerkApi(SigningKey.ec("ins_backfill"), secret_key=SECRET, issuer="https://clerk.test.local") as api:
        yield api


@pytest.fixture(autouse=True)
def _fresh_clerk(clerk: FakeClerkApi) -> None:
    clerk.reset()
    clerk.clear_users()
    clerk.on_users_page = None



@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


async def run(clerk: FakeClerkApi, store: MemoryStore | None, http: httpx.AsyncClient, sleep: FakeSleep,
              **kwargs: Any) -> BackfillSummary:
    kwargs.setdefault("secret_key", SECRET)
    return await backfill(store, SYNC, api_url=clerk.url, client=http, sleep=sleep, **kwargs)


# -- paging -----------------------------------------------------------------------------------------


async def test_pages_through_every_user_oldest_first_with_the_secret_key(
        clerk: FakeClerkApi, http: httpx.AsyncClient, sleep: FakeSleep) -> None:
    users = clerk.add_users(1203)
    store = MemoryStore()
    summary = await run(clerk, store, http, sleep)

    assert store.upserted_ids() == [user["id"] for user in users]  # each once, in Clerk's (ascending) order
    assert (summary.applied, summary.unchanged, summary.skipped, summary.failed) == (1203, 0, 0, 0)
    assert (summary.pages, summary.rate_limit_waits, summary.listed) == (3, 0, 1203)
    requests = clerk.user_list_requests
    overlap = page_overlap(500)
    assert [(r.limit, r.offset, r.order_by) for r in requests] == [
        (500, 0, "+created_at"), (500, 500 - overlap, "+created_at"), (500, 1000 - 2 * overlap, "+created_at")]
    assert all("order_by=%2Bcreated_at" in r.query for r in requests)  # a bare + would be a space
    assert {r.authorization for r in requests} == {f"Bearer {SECRET}"}
    assert sleep.delays == []
    assert summary.exit_status == 0


async def test_users_are_mapped_through_the_sync_columns(clerk: FakeClerkApi, http: httpx.AsyncClient,
                                                         sleep: FakeSleep) -> None:
    clerk.add_users(12)
    store = MemoryStore()
    await run(clerk, store, http, sleep)
    ada = store.rows[clerk_user(0)["id"]]
    assert ada.values == {"id": clerk_user(0)["id"], "name": "Ada Lovelace", "email": "user0@example.com"}
    assert ada.version_ms == clerk_user(0)["updated_at"]
    assert store.rows[clerk_user(3)["id"]].values["name"] == "coder3"  # username when there are no names
    assert store.rows[clerk_user(5)["id"]].values["email"] is None  # phone-only: no primary email
    assert all("cus_SECRET" not in repr(row.values) for row in store.rows.values())  # private_metadata never read


@pytest.mark.parametrize(("count", "pages"), [(0, 1), (499, 1), (500, 2), (989, 2), (990, 3)])
async def test_stops_at_the_first_short_page(clerk: FakeClerkApi, http: httpx.AsyncClient, sleep: FakeSleep,
                                             count: int, pages: int) -> None:
    clerk.add_users(count)
    store = MemoryStore()
    summary = await run(clerk, store, http, sleep)
    assert summary.pages == pages == len(clerk.user_list_requests)
    assert summary.applied == summary.listed == count == len(store.upserts)


async def test_small_pages(clerk: FakeClerkApi, http: httpx.AsyncClient, sleep: FakeSleep) -> None:
    users = clerk.add_users(7)
    store = MemoryStore()
    summary = await run(clerk, store, http, sleep, page_size=3)
    assert [r.offset for r in clerk.user_list_requests] == [0, 3, 6]  # no overlap below 50 a page
    assert store.upserted_ids() == [user["id"] for user in users] and summary.pages == 3


async def test_page_size_outside_clerks_limits_is_refused(clerk: FakeClerkApi, http: httpx.AsyncClient,
                                                          sleep: FakeSleep) -> None:
    for size in (0, 501):
        with pytest.raises(ValueError, match="page_size"):
            await run(clerk, MemoryStore(), http, sleep, page_size=size)
    assert clerk.user_list_requests == []


async def test_users_deleted_during_the_run_do_not_make_it_miss_the_next_page(
        clerk: FakeClerkApi, http: httpx.AsyncClient, sleep: FakeSleep) -> None:
    """Deleting listed users moves later users back under the offset; the page overlap reads them anyway."""
    users = clerk.add_users(1100)

    def during_run(offset: int, page: list[dict[str, Any]]) -> None:
        if offset == 0:
            for user in page[:5]:
                clerk.delete_user(user["id"])
            clerk.add_user(clerk_user(5000, created_at=users[-1]["created_at"] + 60_000))  # signed up meanwhile

    clerk.on_users_page = during_run
    store = MemoryStore()
    summary = await run(clerk, store, http, sleep)
    assert sorted(store.upserted_ids()) == sorted([u["id"] for u in users] + [clerk_user(5000)["id"]])
    assert len(store.upserts) == len(set(store.upserted_ids())) == summary.listed == 1101


# -- rate limits and failures -------------------------------------------------------------------------


async def test_a_429_waits_retry_after_and_asks_for_the_same_page_again(
        clerk: FakeClerkApi, http: httpx.AsyncClient, sleep: FakeSleep) -> None:
    users = clerk.add_users(1203)
    second_page = 500 - page_overlap(500)
    clerk.throttle_users(offset=second_page, retry_after="7")
    store = MemoryStore()
    summary = await run(clerk, store, http, sleep)

    assert sleep.delays == [7.0]
    assert [(r.offset, r.status) for r in clerk.user_list_requests] == [
        (0, 200), (second_page, 429), (second_page, 200), (second_page * 2, 200)]
    assert store.upserted_ids() == [user["id"] for user in users]
    assert (summary.rate_limit_waits, summary.pages, summary.applied) == (1, 3, 1203)
    assert summary.line() == ("backfill: 1,203 users applied, 0 unchanged, 0 skipped, 0 failed "
                              "(3 pages, 1 rate-limit wait)")


async def test_a_429_without_retry_after_waits_the_default(clerk: FakeClerkApi, http: httpx.AsyncClient,
                                                           sleep: FakeSleep) -> None:
    clerk.add_users(3)
    clerk.throttle_users(retry_after=None, times=2)
    summary = await run(clerk, MemoryStore(), http, sleep)
    assert sleep.delays == [10.0, 10.0] and summary.rate_limit_waits == 2 and summary.applied == 3


async def test_429s_do_not_use_up_the_retries_but_do_end(clerk: FakeClerkApi, http: httpx.AsyncClient,
                                                          sleep: FakeSleep) -> None:
    clerk.add_users(3)
    clerk.throttle_users(retry_after="1", times=8)
    assert (await run(clerk, MemoryStore(), http, sleep, max_retries=1)).rate_limit_waits == 8
    clerk.throttle_users(retry_after="1", times=1000)
    with pytest.raises(BackfillError, match="kept answering 429"):
        await run(clerk, MemoryStore(), http, sleep)


NOW = 1_760_000_000.0


@pytest.mark.parametrize(("header", "seconds"), [
    ("3", 3.0), ("2.5", 2.5), (None, 10.0), ("", 10.0), ("soon", 10.0), ("0", 1.0), ("-4", 10.0), ("3600", 60.0),
    (email.utils.formatdate(NOW + 30, usegmt=True), 30.0), (email.utils.formatdate(NOW - 30, usegmt=True), 1.0),
    (email.utils.formatdate(NOW + 86400, usegmt=True), 60.0),
])
def test_retry_after_seconds_or_http_date_bounded(header: str | None, seconds: float) -> None:
    assert retry_after_seconds(header, now=NOW) == pytest.approx(seconds)


async def test_5xx_is_retried_with_backoff(clerk: FakeClerkApi, http: httpx.AsyncClient, sleep: FakeSleep) -> None:
    clerk.add_users(3)
    clerk.fail_users(status=503, times=3)
    summary = await run(clerk, MemoryStore(), http, sleep)
    assert sleep.delays == [1.0, 2.0, 4.0]
    assert [r.status for r in clerk.user_list_requests] == [503, 503, 503, 200]
    assert summary.applied == 3 and summary.rate_limit_waits == 0


async def test_5xx_after_the_retries_is_one_clear_line(clerk: FakeClerkApi, http: httpx.AsyncClient,
                                                       sleep: FakeSleep) -> None:
    clerk.add_users(600)
    clerk.fail_users(status=500, offset=490, times=100)
    store = MemoryStore()
    with pytest.raises(BackfillError) as caught:
        await run(clerk, store, http, sleep, max_retries=2)
    message = str(caught.value)
    assert message == ("Clerk's Backend API failed GET /v1/users (offset 490): HTTP 500, 3 attempts; try again later")
    assert caught.value.summary.applied == 500 == len(store.upserts)  # what was done before stays counted
    assert sleep.delays == [1.0, 2.0]


@respx.mock(assert_all_called=True)
async def test_transport_errors_are_retried_then_reported(respx_mock: respx.MockRouter, sleep: FakeSleep) -> None:
    route = respx_mock.get("https://api.clerk.test/v1/users").mock(
        side_effect=[httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.Response(200, json=[])])
    async with httpx.AsyncClient() as client:
        summary = await backfill(MemoryStore(), SYNC, api_url="https://api.clerk.test", secret_key=SECRET,
                                 client=client, sleep=sleep)
    assert route.call_count == 3 and summary.pages == 1 and sleep.delays == [1.0, 2.0]

    route.side_effect = httpx.ConnectError("refused")
    async with httpx.AsyncClient() as client:
        with pytest.raises(BackfillError, match=r"ConnectError, 3 attempts"):
            await backfill(MemoryStore(), SYNC, api_url="https://api.clerk.test", secret_key=SECRET,
                           client=client, sleep=sleep, max_retries=2)


@respx.mock
async def test_a_list_that_ignores_the_offset_does_not_loop_for_ever(respx_mock: respx.MockRouter,
                                                                    sleep: FakeSleep) -> None:
    page = [clerk_user(index) for index in range(50)]
    route = respx_mock.get("https://api.clerk.test/v1/users").mock(return_value=httpx.Response(200, json=page))
    store = MemoryStore()
    async with httpx.AsyncClient() as client:
        with pytest.raises(BackfillError, match=r"the paging does not move on"):
            await backfill(store, SYNC, api_url="https://api.clerk.test", secret_key=SECRET, client=client,
                           sleep=sleep, page_size=50)
    assert route.call_count == 2 and len(store.upserts) == 50


async def test_an_api_url_that_is_not_http_fails_at_once(http: httpx.AsyncClient, sleep: FakeSleep) -> None:
    with pytest.raises(BackfillError, match="CLERK_API_URL is not an http"):
        await backfill(MemoryStore(), SYNC, api_url="api.clerk.com", secret_key=SECRET, client=http, sleep=sleep)
    assert sleep.delays == []


@respx.mock
async def test_a_200_that_is_not_a_list_of_users_is_retried(respx_mock: respx.MockRouter, sleep: FakeSleep) -> None:
    respx_mock.get("https://api.clerk.test/v1/users").mock(return_value=httpx.Response(200, text="<html>login"))
    async with httpx.AsyncClient() as client:
        with pytest.raises(BackfillError, match="not a JSON array of users, 2 attempts"):
            await backfill(MemoryStore(), SYNC, api_url="https://api.clerk.test", secret_key=SECRET,
                           client=client, sleep=sleep, max_retries=1)


async def test_a_refused_secret_key_fails_at_once(clerk: FakeClerkApi, http: httpx.AsyncClient,
                                                  sleep: FakeSleep) -> None:
    clerk.add_users(3)
    wrong = "sk_test_" + "wrongWrongWrong" * 2
    with pytest.raises(BackfillError) as caught:
        await run(clerk, MemoryStore(), http, sleep, secret_key=wrong)
    message = str(caught.value)
    assert message.startswith("CLERK_SECRET_KEY was refused by Clerk's Backend API (HTTP 401, clerk_key_invalid)")
    assert "\n" not in message and wrong not in message and SECRET not in message
    assert len(clerk.user_list_requests) == 1 and sleep.delays == []


@respx.mock
async def test_403_fails_at_once_and_other_4xx_too(respx_mock: respx.MockRouter, sleep: FakeSleep) -> None:
    route = respx_mock.get("https://api.clerk.test/v1/users").mock(return_value=httpx.Response(403))
    async with httpx.AsyncClient() as client:
        with pytest.raises(BackfillError, match=r"^CLERK_SECRET_KEY was refused .*\(HTTP 403\)"):
            await backfill(MemoryStore(), SYNC, api_url="https://api.clerk.test", secret_key=SECRET, client=client,
                           sleep=sleep)
        route.return_value = httpx.Response(422, json={"errors": [{"code": "form_param_value_invalid"}]})
        with pytest.raises(BackfillError, match=r"answered HTTP 422, form_param_value_invalid to GET /v1/users"):
            await backfill(MemoryStore(), SYNC, api_url="https://api.clerk.test", secret_key=SECRET, client=client,
                           sleep=sleep)
    assert route.call_count == 2 and sleep.delays == []


# -- what the store says ------------------------------------------------------------------------------


async def test_stale_is_counted_unchanged_and_a_second_run_changes_nothing(
        clerk: FakeClerkApi, http: httpx.AsyncClient, sleep: FakeSleep) -> None:
    users = clerk.add_users(20)
    store = MemoryStore()
    # a webhook was faster for two users: the backend holds newer versions
    for user in users[:2]:
        store.rows[user["id"]] = UserRecord(user["id"], {"id": user["id"]}, user["updated_at"] + 5000)
    first = await run(clerk, store, http, sleep)
    assert (first.applied, first.unchanged) == (18, 2)
    assert store.rows[users[0]["id"]].version_ms == users[0]["updated_at"] + 5000  # the newer one kept

    second = await run(clerk, store, http, sleep)
    assert (second.applied, second.unchanged, second.failed) == (0, 20, 0) and second.exit_status == 0
    assert second.line() == "backfill: 0 users applied, 20 unchanged, 0 skipped, 0 failed (1 page, 0 rate-limit waits)"


async def test_users_the_sync_cannot_write_are_skipped(clerk: FakeClerkApi, http: httpx.AsyncClient,
                                                       sleep: FakeSleep) -> None:
    clerk.add_users(4)
    broken = clerk_user(100)
    del broken["updated_at"]
    clerk.add_user(broken)
    store = MemoryStore()
    summary = await run(clerk, store, http, sleep)
    assert (summary.applied, summary.skipped, summary.listed, summary.exit_status) == (4, 1, 5, 0)
    assert broken["id"] not in store.rows


async def test_sync_unavailable_is_retried_then_counted_failed(clerk: FakeClerkApi, http: httpx.AsyncClient,
                                                               sleep: FakeSleep) -> None:
    users = clerk.add_users(30)
    flaky: str = users[3]["id"]
    down: set[str] = {users[7]["id"], users[8]["id"]}

    def fail(user: UserRecord, attempt: int) -> BaseException | None:
        if user.user_id == flaky and attempt == 1:
            return SyncUnavailable("timeout", "the backend took too long")
        if user.user_id in down:
            return SyncUnavailable("hasura-errors", "the backend answered errors")
        return None

    store = MemoryStore(fail)
    summary = await run(clerk, store, http, sleep, store_retries=2)
    assert (summary.applied, summary.failed) == (28, 2) and flaky in store.rows
    assert store.upserted_ids().count(users[7]["id"]) == 3  # the first attempt and two retries
    assert summary.failure_reasons == {"hasura-errors": 2}
    assert summary.exit_status == 1
    assert summary.failure_line() == ("backfill: 2 users failed (hasura-errors: 2); running backfill again "
                                      "retries them")
    assert "2 failed" in summary.line()


async def test_a_backend_failing_every_write_stops_the_run(clerk: FakeClerkApi, http: httpx.AsyncClient,
                                                           sleep: FakeSleep) -> None:
    clerk.add_users(600)
    store = MemoryStore(lambda user, attempt: SyncUnavailable("unreachable", "connection refused"))
    with pytest.raises(BackfillError, match=r"the backend failed \d+ users in a row \(unreachable\)"):
        await run(clerk, store, http, sleep, store_retries=0, max_failures_in_a_row=10)
    assert len(store.upserts) < 20 and len(clerk.user_list_requests) == 1


async def test_an_unexpected_store_error_fails_that_user_without_retries(
        clerk: FakeClerkApi, http: httpx.AsyncClient, sleep: FakeSleep) -> None:
    users = clerk.add_users(3)
    store = MemoryStore(lambda user, attempt: KeyError("email") if user.user_id == users[1]["id"] else None)
    summary = await run(clerk, store, http, sleep)
    assert (summary.applied, summary.failed, dict(summary.failure_reasons)) == (2, 1, {"KeyError": 1})
    assert store.upserted_ids().count(users[1]["id"]) == 1


async def test_writes_run_a_few_at_a_time(clerk: FakeClerkApi, http: httpx.AsyncClient, sleep: FakeSleep) -> None:
    clerk.add_users(40)
    store = MemoryStore()
    await run(clerk, store, http, sleep, concurrency=4)
    assert store.max_in_flight == 4


async def test_a_dry_run_lists_and_maps_but_writes_nothing(clerk: FakeClerkApi, http: httpx.AsyncClient,
                                                           sleep: FakeSleep) -> None:
    clerk.add_users(510)
    broken = clerk_user(900)
    broken["id"] = None
    clerk.add_user(broken)
    summary = await run(clerk, None, http, sleep)
    assert (summary.listed, summary.skipped, summary.applied, summary.dry_run) == (511, 1, 0, True)
    assert summary.line() == ("backfill (dry run): 511 users listed, 510 would be written, 1 skipped, nothing written "
                              "(2 pages, 0 rate-limit waits)")


# -- progress and the command ----------------------------------------------------------------------


async def test_progress_on_a_terminal_is_one_updating_line(clerk: FakeClerkApi, http: httpx.AsyncClient,
                                                           sleep: FakeSleep) -> None:
    clerk.add_users(1203)
    clerk.throttle_users(offset=490, retry_after="2")
    tty = FakeTty()
    progress = progress_for(tty)
    assert isinstance(progress, TerminalProgress)
    await run(clerk, MemoryStore(), http, sleep, progress=progress)
    progress.close()
    text = tty.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n") and text.startswith("\r")
    frames = [frame.rstrip() for frame in text.rstrip("\n").split("\r")[1:]]
    assert frames == [
        "backfill: 500 users, page 1, 0 rate-limit waits",
        "backfill: 500 users, page 1, 1 rate-limit wait (rate limited, waiting 2 s)",
        "backfill: 990 users, page 2, 1 rate-limit wait",
        "backfill: 1,203 users, page 3, 1 rate-limit wait",
    ]
    assert SECRET not in text


async def test_progress_elsewhere_is_quiet_but_for_a_line_every_few_pages(
        clerk: FakeClerkApi, http: httpx.AsyncClient, sleep: FakeSleep) -> None:
    clerk.add_users(1203)
    log = io.StringIO()
    progress = progress_for(log)
    assert isinstance(progress, PeriodicProgress)
    await run(clerk, MemoryStore(), http, sleep, progress=progress)
    progress.close()
    assert log.getvalue() == ""

    log = io.StringIO()
    await run(clerk, MemoryStore(), http, sleep, progress=PeriodicProgress(log, every=2), page_size=100)
    step = 100 - page_overlap(100)  # 13 pages in all, a line after every second one
    assert log.getvalue().splitlines() == [f"backfill: {100 + step * (page - 1):,} users, page {page}, "
                                           "0 rate-limit waits" for page in (2, 4, 6, 8, 10, 12)]


def test_summary_lines_count_in_words() -> None:
    summary = BackfillSummary(applied=1234, unchanged=5, pages=3, rate_limit_waits=1, listed=1239)
    assert summary.line() == ("backfill: 1,234 users applied, 5 unchanged, 0 skipped, 0 failed "
                              "(3 pages, 1 rate-limit wait)")
    assert summary.progress_line() == "backfill: 1,239 users, page 3, 1 rate-limit wait"
    assert summary.failure_line() is None
    assert BackfillSummary(applied=1, pages=1, listed=1).line() == (
        "backfill: 1 user applied, 0 unchanged, 0 skipped, 0 failed (1 page, 0 rate-limit waits)")


@pytest.fixture
def backfill_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clerk: FakeClerkApi) -> pytest.MonkeyPatch:
    """The environment of a backfill against the fake (no .env of the developer's: an empty working directory)."""
    for name in list(os.environ):
        if name.startswith(("CLERK_", "GATEWAY_", "HASURA_", "OTEL_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLERK_ISSUER", "https://clerk.test.local")
    monkeypatch.setenv("CLERK_JWKS_URL", "http://127.0.0.1:9/jwks")  # a key source without the secret; never fetched
    monkeypatch.setenv("CLERK_SECRET_KEY", SECRET)
    monkeypatch.setenv("CLERK_API_URL", clerk.url)
    monkeypatch.setenv("GATEWAY_BACKENDS", '{"hasura": {"url": "http://127.0.0.1:9", "auth_mode": "admin_secret", '
                                           '"admin_secret": "unit-admin-secret"}}')
    monkeypatch.setenv("GATEWAY_USER_SYNC", '{"backend": "hasura", "version_column": "clerk_updated_at"}')
    return monkeypatch


async def test_run_backfill_prints_the_summary_and_closes_the_store(
        backfill_env: pytest.MonkeyPatch, clerk: FakeClerkApi) -> None:
    clerk.add_users(42)
    store = MemoryStore()
    built: list[tuple[UserSyncSettings, list[str]]] = []

    def build(sync: UserSyncSettings, adapters: Any, http: httpx.AsyncClient) -> MemoryStore:
        built.append((sync, sorted(adapters)))
        return store

    backfill_env.setattr("clerk_gateway.webhooks.stores.build_user_store", build)
    out, err = io.StringIO(), io.StringIO()
    status = await run_backfill(load_settings(), out=out, err=err)
    assert status == 0
    assert out.getvalue() == ("backfill: 42 users applied, 0 unchanged, 0 skipped, 0 failed "
                              "(1 page, 0 rate-limit waits)\n")
    assert err.getvalue() == ""  # not a terminal, one page: nothing to say
    assert store.closed and len(store.rows) == 42
    assert built[0][0].backend == "hasura" and built[0][1] == ["hasura"]


async def test_run_backfill_reports_a_stop_and_warns_without_a_version_column(
        backfill_env: pytest.MonkeyPatch, clerk: FakeClerkApi) -> None:
    backfill_env.setenv("GATEWAY_USER_SYNC", '{"backend": "hasura"}')
    backfill_env.setenv("CLERK_SECRET_KEY", "sk_test_notTheRightOneAtAll")
    backfill_env.setattr("clerk_gateway.webhooks.stores.build_user_store", lambda *args: MemoryStore())
    out, err = io.StringIO(), io.StringIO()
    assert await run_backfill(load_settings(), out=out, err=err) == 1
    lines = err.getvalue().splitlines()
    assert lines[0] == backfill_module.VERSIONLESS_WARNING
    assert lines[1].startswith("clerk-gateway backfill: CLERK_SECRET_KEY was refused")
    assert out.getvalue().startswith("backfill: 0 users applied")
    assert "notTheRightOne" not in out.getvalue() + err.getvalue()


def test_the_command_names_each_missing_setting(backfill_env: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    backfill_env.delenv("GATEWAY_USER_SYNC")
    backfill_env.delenv("CLERK_SECRET_KEY")
    assert main(["backfill"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert lines[0] == "clerk-gateway: the settings have problems:"
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["GATEWAY_USER_SYNC", "CLERK_SECRET_KEY"]
    assert captured.out == ""


def test_the_command_reports_bad_settings_like_serve(backfill_env: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    backfill_env.setenv("GATEWAY_USER_SYNC", '{"backend": "nowhere"}')
    assert main(["backfill"]) == 2
    assert "GATEWAY_USER_SYNC__BACKEND: 'nowhere' is not one of GATEWAY_BACKENDS" in capsys.readouterr().err


def test_the_command_runs_a_dry_run_without_a_store(backfill_env: pytest.MonkeyPatch, clerk: FakeClerkApi,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    clerk.add_users(7)

    def no_store(*args: Any) -> None:
        raise AssertionError("a dry run builds no store")

    backfill_env.setattr("clerk_gateway.webhooks.stores.build_user_store", no_store)
    assert main(["backfill", "--dry-run", "--page-size", "5"]) == 0
    assert capsys.readouterr().out == ("backfill (dry run): 7 users listed, 7 would be written, 0 skipped, "
                                       "nothing written (2 pages, 0 rate-limit waits)\n")


@pytest.mark.parametrize("size", ["0", "501", "ten"])
def test_the_page_size_option_is_bounded(size: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["backfill", "--page-size", size])
    assert caught.value.code == 2
    assert "1 to 500" in capsys.readouterr().err
