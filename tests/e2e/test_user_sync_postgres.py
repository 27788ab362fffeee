"""The Hasura user store against real rows: :class:`HasuraUserStore` → the GraphQL-over-Postgres double
(:mod:`tests.support.pg_graphql`) → a throw-away Postgres, and every outcome read back with SQL.

The table is the tutorials' (``hasura/migrations/default/*/up.sql``: ``id`` text primary key, ``name``,
``last_seen``) plus what the sync's options use: ``version bigint`` (Clerk's ``updated_at``), ``deleted_at
timestamptz`` (soft delete), ``email text UNIQUE`` (the collision Clerk users meet when a deleted user signs up
again), ``metadata jsonb`` and ``image_url``. It is created afresh for every test.

What this proves that the unit tests cannot: the ``on_conflict`` guard really keeps a newer row (also under
concurrent deliveries), the tombstone really refuses a late or early ``user.created``, Postgres's own unique
violation comes back as a retryable ``constraint-violation`` without the offending value, and nothing is
half-written when the backend fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from pydantic import SecretStr

from clerk_gateway.adapters.hasura import HasuraAdapter, HasuraSettings
from clerk_gateway.adapters.nhost import NhostAdapter, NhostSettings
from clerk_gateway.settings.user_sync import UserSyncSettings
from clerk_gateway.webhooks.hasura_store import HasuraUserStore
from clerk_gateway.webhooks.records import user_record
from clerk_gateway.webhooks.store import SyncUnavailable, WriteOutcome
from clerk_gateway.webhooks.stores import build_user_store
from tests.support.clerk_events import USER_ID, deleted_user, event, user_payload
from tests.support.pg_graphql import DEFAULT_ADMIN_SECRET, PgGraphQL, recreate_users_table
from tests.support.ports import free_port
from tests.support.postgres import PostgresServer, unavailable_reason

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=f"Postgres: {unavailable_reason()}")

SYNC_COLUMNS = """
ALTER TABLE public.users
    ADD COLUMN version bigint,
    ADD COLUMN deleted_at timestamp with time zone,
    ADD COLUMN email text,
    ADD COLUMN metadata jsonb,
    ADD COLUMN image_url text,
    ADD CONSTRAINT users_email_key UNIQUE (email);
"""
DATABASE = "user_sync"
COLUMNS = {"id": "id", "name": "name", "email": "email"}
SOFT = {"columns": COLUMNS, "version_column": "version", "delete": "soft", "deleted_column": "deleted_at"}
HARD = {"columns": COLUMNS, "version_column": "version"}
T0 = 1748751899113  # the example user's updated_at


class Rows:
    """The users table, read with plain SQL (not through the double)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def all(self) -> list[dict[str, Any]]:
        with psycopg.connect(self.dsn, row_factory=dict_row) as connection:
            return connection.execute("SELECT * FROM public.users ORDER BY id").fetchall()

    def get(self, user_id: str = USER_ID) -> dict[str, Any] | None:
        with psycopg.connect(self.dsn, row_factory=dict_row) as connection:
            return connection.execute("SELECT * FROM public.users WHERE id = %s", (user_id,)).fetchone()

    def execute(self, statement: str) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            connection.execute(statement.encode())


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        server.create_database(DATABASE)
        yield server


@pytest.fixture(scope="module")
def backend(postgres: PostgresServer) -> Iterator[PgGraphQL]:
    with PgGraphQL(postgres.dsn_for(DATABASE)) as server:
        yield server


@pytest.fixture
def rows(postgres: PostgresServer, backend: PgGraphQL) -> Rows:
    recreate_users_table(postgres, DATABASE, SYNC_COLUMNS)
    backend.reset()
    return Rows(postgres.dsn_for(DATABASE))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


StoreFactory = Callable[..., HasuraUserStore]


@pytest.fixture
def store_for(backend: PgGraphQL, http: httpx.AsyncClient) -> StoreFactory:
    def make(url: str | None = None, secret: str = DEFAULT_ADMIN_SECRET, **settings: Any) -> HasuraUserStore:
        sync = UserSyncSettings(backend="hasura", **settings)
        return HasuraUserStore(url or backend.graphql_url, secret, sync, http)

    return make


def sync_of(store: HasuraUserStore) -> UserSyncSettings:
    return store._sync


async def apply(store: HasuraUserStore, **overrides: Any) -> WriteOutcome:
    """``user.created`` / ``user.updated`` for ``user_payload(**overrides)``, as the webhook applies it."""
    return await store.upsert(user_record(user_payload(**overrides), sync_of(store)))


# -- create, update, replays -----------------------------------------------------------------------------------------


async def test_create_writes_the_mapped_columns_and_nothing_else(rows: Rows, store_for: StoreFactory) -> None:
    store = store_for(**SOFT)
    payload = user_payload(private_metadata={"stripe": "cus_secret"})
    assert await store.upsert(user_record(payload, sync_of(store))) is WriteOutcome.APPLIED
    row = rows.get()
    assert row is not None
    assert (row["id"], row["name"], row["email"], row["version"]) == (USER_ID, "Ada Lovelace", "ada@example.com", T0)
    assert row["deleted_at"] is None and row["metadata"] is None
    assert row["last_seen"] is not None  # the migration's default, untouched by the sync


async def test_update_with_a_newer_version_overwrites(rows: Rows, store_for: StoreFactory) -> None:
    store = store_for(**SOFT)
    await apply(store)
    outcome = await apply(store, first_name="Augusta Ada", email="ada@lovelace.example", updated_at=T0 + 1)
    assert outcome is WriteOutcome.APPLIED
    row = rows.get()
    assert row is not None
    assert (row["name"], row["email"], row["version"]) == ("Augusta Ada Lovelace", "ada@lovelace.example", T0 + 1)
    assert len(rows.all()) == 1


async def test_duplicate_delivery_is_idempotent(rows: Rows, store_for: StoreFactory) -> None:
    store = store_for(**SOFT)
    assert await apply(store) is WriteOutcome.APPLIED
    before = rows.get()
    assert await apply(store) is WriteOutcome.STALE  # same version: nothing to write
    assert rows.all() == [before]


async def test_an_older_event_after_a_newer_one_is_stale(rows: Rows, store_for: StoreFactory) -> None:
    store = store_for(**SOFT)
    assert await apply(store, first_name="New", updated_at=T0 + 5000) is WriteOutcome.APPLIED
    assert await apply(store, first_name="Old", updated_at=T0 + 1000) is WriteOutcome.STALE
    row = rows.get()
    assert row is not None
    assert (row["name"], row["version"]) == ("New Lovelace", T0 + 5000)


async def test_concurrent_deliveries_leave_the_newest(rows: Rows, store_for: StoreFactory) -> None:
    store = store_for(**SOFT)
    versions = [T0 + step for step in (3, 1, 4, 2, 5, 0)]
    outcomes = await asyncio.gather(*(apply(store, first_name=f"v{v - T0}", updated_at=v) for v in versions))
    assert WriteOutcome.APPLIED in outcomes
    row = rows.get()
    assert row is not None
    assert (row["name"], row["version"]) == ("v5 Lovelace", T0 + 5)


async def test_a_row_the_app_created_without_a_version_is_filled_in(rows: Rows, store_for: StoreFactory) -> None:
    """A lazily created row (the app inserted the id on first sign-in) or one from before the version column
    existed has version NULL: the first event must update it, not be refused forever."""
    rows.execute(f"INSERT INTO public.users (id) VALUES ('{USER_ID}')")
    store = store_for(**SOFT)
    assert await apply(store) is WriteOutcome.APPLIED
    row = rows.get()
    assert row is not None
    assert (row["name"], row["version"]) == ("Ada Lovelace", T0)


async def test_without_a_version_column_every_event_is_applied(rows: Rows, store_for: StoreFactory) -> None:
    store = store_for(columns={"id": "id", "name": "name"})
    assert await apply(store, first_name="New", updated_at=T0 + 5) is WriteOutcome.APPLIED
    assert await apply(store, first_name="Old", updated_at=T0) is WriteOutcome.APPLIED  # last write wins
    row = rows.get()
    assert row is not None
    assert (row["name"], row["version"]) == ("Old Lovelace", None)


async def test_only_the_id_mapped_is_applied_on_replay(rows: Rows, store_for: StoreFactory) -> None:
    store = store_for(columns={"id": "id"})
    assert await apply(store) is WriteOutcome.APPLIED
    assert await apply(store) is WriteOutcome.APPLIED  # update_columns: [] is DO NOTHING: the row is as it should be
    assert [row["id"] for row in rows.all()] == [USER_ID]


async def test_json_and_other_sources(rows: Rows, store_for: StoreFactory) -> None:
    store = store_for(columns={"id": "id", "name": "username", "metadata": "public_metadata",
                               "image_url": "image_url"}, version_column="version")
    metadata = {"plan": "pro", "@odd": [1, {"nested": True}]}
    assert await apply(store, username="ada", public_metadata=metadata) is WriteOutcome.APPLIED
    row = rows.get()
    assert row is not None
    assert (row["name"], row["metadata"]) == ("ada", metadata)
    assert row["image_url"] == user_payload()["image_url"]


# -- deletes ---------------------------------------------------------------------------------------------------------


async def test_soft_delete_then_a_late_update_stays_deleted(rows: Rows, store_for: StoreFactory) -> None:
    store = store_for(**SOFT)
    await apply(store)
    deleted_at = T0 + 60_000
    assert await store.delete(USER_ID, deleted_at) is WriteOutcome.APPLIED
    # a retried user.updated arrives after the delete, even one that claims to be newer
    assert await apply(store, first_name="Ghost", updated_at=T0 + 30_000) is WriteOutcome.STALE
    assert await apply(store, first_name="Ghost", updated_at=deleted_at + 1) is WriteOutcome.STALE
    row = rows.get()
    assert row is not None
    assert row["name"] == "Ada Lovelace"
    assert row["deleted_at"] is not None and int(row["deleted_at"].timestamp() * 1000) == deleted_at


async def test_soft_delete_is_idempotent_and_keeps_the_first_time(rows: Rows, store_for: StoreFactory) -> None:
    store = store_for(**SOFT)
    await apply(store)
    assert await store.delete(USER_ID, T0 + 1000) is WriteOutcome.APPLIED
    assert await store.delete(USER_ID, T0 + 9000) is WriteOutcome.APPLIED
    row = rows.get()
    assert row is not None
    assert int(row["deleted_at"].timestamp() * 1000) == T0 + 1000
    assert row["version"] == T0  # the row's data version: the tombstone does not change it


async def test_delete_before_create_leaves_a_tombstone(rows: Rows, store_for: StoreFactory) -> None:
    """Svix does not order deliveries: a user.deleted may come before the user.created it follows."""
    store = store_for(**SOFT)
    envelope = event("user.deleted", deleted_user(), T0 + 60_000)
    assert await store.delete(envelope["data"]["id"], envelope["timestamp"]) is WriteOutcome.APPLIED
    tombstone = rows.get()
    assert tombstone is not None
    assert (tombstone["name"], tombstone["email"], tombstone["version"]) == (None, None, T0 + 60_000)
    assert await apply(store) is WriteOutcome.STALE
    assert rows.all() == [tombstone]


async def test_a_soft_deleted_users_email_stays_taken(rows: Rows, store_for: StoreFactory) -> None:
    """The tombstone keeps the row's data, unique email included (build/notes/user-sync.md): a user who deletes the
    account and signs up again (a new Clerk id) collides until the app clears the old row's address."""
    store = store_for(**SOFT)
    await apply(store)
    await store.delete(USER_ID, T0 + 1000)
    with pytest.raises(SyncUnavailable) as caught:
        await apply(store, id="user_2ySignedUpAgain000000000", updated_at=T0 + 2000)
    assert caught.value.reason == "constraint-violation"
    rows.execute(f"UPDATE public.users SET email = NULL WHERE id = '{USER_ID}'")
    assert await apply(store, id="user_2ySignedUpAgain000000000", updated_at=T0 + 2000) is WriteOutcome.APPLIED


async def test_hard_delete(rows: Rows, store_for: StoreFactory) -> None:
    store = store_for(**HARD)
    await apply(store)
    assert await store.delete(USER_ID, T0 + 1) is WriteOutcome.APPLIED
    assert rows.all() == []
    assert await store.delete(USER_ID, T0 + 1) is WriteOutcome.APPLIED  # a replay, or a user never synced
    assert await store.delete("user_never_seen", T0) is WriteOutcome.APPLIED
    assert rows.all() == []


# -- failures --------------------------------------------------------------------------------------------------------


async def test_a_unique_email_collision_is_retryable_and_does_not_leak(rows: Rows, store_for: StoreFactory) -> None:
    """A user deleted in Clerk and signed up again gets a new id but keeps the address (REFERENCE §8.7)."""
    store = store_for(**HARD)
    await apply(store)
    with pytest.raises(SyncUnavailable) as caught:
        await apply(store, id="user_2yNewAccountSameEmail00000")
    assert caught.value.reason == "constraint-violation"
    message = str(caught.value)
    assert 'unique constraint "users_email_key"' in message
    assert "ada@example.com" not in message and "user_2yNewAccountSameEmail00000" not in message
    assert [row["id"] for row in rows.all()] == [USER_ID]


async def test_a_type_error_names_no_value(rows: Rows, store_for: StoreFactory) -> None:
    """Text into a timestamptz column is a Postgres data exception, and Postgres quotes the value it refused."""
    store = store_for(columns={"id": "id", "deleted_at": "username"})
    with pytest.raises(SyncUnavailable) as caught:
        await apply(store, username="not-a-time")
    assert caught.value.reason == "data-exception"
    assert "not-a-time" not in str(caught.value)
    assert rows.all() == []


async def test_a_misspelt_column_is_refused_like_hasura(rows: Rows, store_for: StoreFactory) -> None:
    store = store_for(columns={"id": "id", "full_name": "name"})
    with pytest.raises(SyncUnavailable) as caught:
        await apply(store)
    assert caught.value.reason == "validation-failed"
    assert rows.all() == []


async def test_a_wrong_admin_secret(rows: Rows, store_for: StoreFactory) -> None:
    store = store_for(secret="not-the-secret", **HARD)
    with pytest.raises(SyncUnavailable) as caught:
        await apply(store)
    assert caught.value.reason == "access-denied"
    assert "not-the-secret" not in str(caught.value)


async def test_requests_are_admin_requests(rows: Rows, backend: PgGraphQL, store_for: StoreFactory) -> None:
    store = store_for(**SOFT)
    await apply(store)
    await store.delete(USER_ID, T0 + 1)
    assert len(backend.requests) == 2
    for request in backend.requests:
        assert request.header("x-hasura-admin-secret") == DEFAULT_ADMIN_SECRET
        assert not request.has_header("x-hasura-role")


async def test_backend_down(rows: Rows, store_for: StoreFactory) -> None:
    store = store_for(url=f"http://127.0.0.1:{free_port()}/v1/graphql", **SOFT)
    with pytest.raises(SyncUnavailable) as caught:
        await apply(store)
    assert caught.value.reason == "backend-unreachable"


@pytest.mark.parametrize(("fail", "reason"), [
    (lambda backend: backend.fail_with_status(500), "backend-http-500"),
    (lambda backend: backend.fail_with_status(502), "backend-http-502"),
    (lambda backend: backend.fail_with_errors("unexpected"), "unexpected"),
    (lambda backend: backend.answer_not_json(), "backend-invalid-answer"),
    (lambda backend: backend.hang(), "backend-timeout"),
])
async def test_a_failed_write_writes_nothing_and_the_retry_applies(
        rows: Rows, backend: PgGraphQL, store_for: StoreFactory, fail: Callable[[PgGraphQL], None],
        reason: str) -> None:
    store = store_for(timeout_seconds=0.5, **SOFT)
    fail(backend)
    with pytest.raises(SyncUnavailable) as caught:
        await apply(store)
    assert caught.value.reason == reason
    assert rows.all() == []
    assert await apply(store) is WriteOutcome.APPLIED  # Svix's retry
    assert [row["id"] for row in rows.all()] == [USER_ID]


# -- built from the settings -----------------------------------------------------------------------------------------


async def test_build_user_store_for_hasura_and_nhost(rows: Rows, backend: PgGraphQL,
                                                      http: httpx.AsyncClient) -> None:
    secret = SecretStr(DEFAULT_ADMIN_SECRET)
    adapters = {
        "hasura": HasuraAdapter("hasura", HasuraSettings(url=backend.base_url, admin_secret=secret)),
        "nhost": NhostAdapter("nhost", NhostSettings(url=backend.graphql_url, admin_secret=SecretStr("other"))),
    }
    hasura = build_user_store(UserSyncSettings(backend="hasura", **HARD), adapters, http)
    nhost = build_user_store(UserSyncSettings(backend="nhost", secret=secret, **HARD), adapters, http)
    user = user_record(user_payload(), UserSyncSettings(backend="hasura", **HARD))
    assert await hasura.upsert(user) is WriteOutcome.APPLIED
    assert await nhost.upsert(user) is WriteOutcome.STALE
    assert await nhost.delete(USER_ID, T0 + 1) is WriteOutcome.APPLIED
    assert rows.all() == []
    assert {request.path for request in backend.requests} == {"/v1/graphql"}
