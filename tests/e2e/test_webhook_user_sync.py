"""Signed Clerk deliveries through the real gateway into real rows: gateway → the GraphQL-over-Postgres
double (:mod:`tests.support.pg_graphql`, Hasura's mutation shapes) → a throw-away Postgres, read back with SQL.

The table is the tutorials' (``hasura/migrations``) plus a version column and a deleted-at column, the
setup docs/webhooks.md recommends. Proven here, end to end: a write is acknowledged only once it is in
the table; a failing backend is a 503 and the retry applies it; duplicates, reordered and late events
leave the newest state; ``user.deleted`` writes the tombstone and ends the user's sessions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.e2e.conftest import Mint, bearer
from tests.support.clerk_events import USER_ID, deleted_user, event, user_payload
from tests.support.gateway_process import GatewayProcess, gateway_env, hasura_backend
from tests.support.jwks_server import JwksServer
from tests.support.pg_graphql import DEFAULT_ADMIN_SECRET, PgGraphQL, recreate_users_table
from tests.support.postgres import PostgresServer, unavailable_reason
from tests.support.upstream import RecordingUpstream
from tests.support.webhook_signing import SECRET, signed_delivery

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=f"Postgres: {unavailable_reason()}")

DATABASE = "webhook_sync"
T0 = 1748751899113


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
def table(postgres: PostgresServer, backend: PgGraphQL) -> str:
    recreate_users_table(postgres, DATABASE, "ALTER TABLE public.users ADD COLUMN clerk_updated_at bigint,"
                         " ADD COLUMN email text, ADD COLUMN deleted_at timestamp with time zone;")
    backend.reset()
    return postgres.dsn_for(DATABASE)


def row(dsn: str, user_id: str = USER_ID) -> dict[str, Any] | None:
    with psycopg.connect(dsn, row_factory=dict_row) as connection:
        found: dict[str, Any] | None = connection.execute("SELECT * FROM public.users WHERE id = %s",
                                                          (user_id,)).fetchone()
        return found


@pytest.fixture(scope="module")
def gateway(jwks_server: JwksServer, backend: PgGraphQL, upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    sync = {"backend": "db", "columns": {"id": "id", "name": "name", "email": "email"},
            "version_column": "clerk_updated_at", "delete": "soft", "deleted_column": "deleted_at"}
    env = gateway_env(jwks_server.url, {
        "hasura": hasura_backend(upstream.url),
        # the sync's backend runs in forward mode, as many do: its admin secret is given to the sync only
        "db": hasura_backend(backend.graphql_url.removesuffix("/v1/graphql"), auth_mode="forward",
                             admin_secret=None)},
        CLERK_WEBHOOK_SIGNING_SECRET=SECRET,
        GATEWAY_USER_SYNC=json.dumps({**sync, "secret": DEFAULT_ADMIN_SECRET}))
    with GatewayProcess(env) as process:
        yield process


def deliver(gateway: GatewayProcess, payload: dict[str, Any], **options: Any) -> tuple[int, dict[str, Any]]:
    body, headers = signed_delivery(payload, **options)
    with gateway.client(timeout=20) as client:
        answer = client.post("/webhooks/clerk", content=body, headers=headers)
    return answer.status_code, answer.json()


def test_user_created_then_updated_is_in_the_table_and_older_events_change_nothing(
        gateway: GatewayProcess, table: str) -> None:
    created = event("user.created", user_payload(private_metadata={"stripe": "cus_hidden"}), T0)
    assert deliver(gateway, created) == (200, {"status": "applied"})
    stored = row(table)
    assert stored is not None and (stored["name"], stored["email"], stored["clerk_updated_at"]) == (
        "Ada Lovelace", "ada@example.com", T0)
    newer = event("user.updated", user_payload(first_name="Augusta", updated_at=T0 + 5000), T0 + 5000)
    assert deliver(gateway, newer) == (200, {"status": "applied"})
    late = event("user.updated", user_payload(first_name="Stale", updated_at=T0 + 1000), T0 + 1000)
    assert deliver(gateway, late) == (200, {"status": "stale"})  # reordered: the newer state stays
    stored = row(table)
    assert stored is not None and stored["name"] == "Augusta Lovelace" and stored["clerk_updated_at"] == T0 + 5000


def test_nothing_but_the_mapped_columns_reaches_the_backend(gateway: GatewayProcess, backend: PgGraphQL,
                                                            table: str) -> None:
    payload = user_payload(private_metadata={"stripe": "cus_hidden"}, unsafe_metadata={"note": "mine"})
    assert deliver(gateway, event("user.created", payload, T0))[0] == 200
    sent = json.dumps(backend.bodies())
    assert "cus_hidden" not in sent and "mine" not in sent and "+1" not in sent
    assert all(request.header("x-hasura-admin-secret") == DEFAULT_ADMIN_SECRET for request in backend.requests)
    assert not any(request.has_header("x-hasura-role") for request in backend.requests)


def test_a_failing_backend_is_a_503_and_the_retry_applies_it(gateway: GatewayProcess, backend: PgGraphQL,
                                                             table: str) -> None:
    delivery = event("user.created", user_payload(), T0)
    backend.fail_with_status(500)
    status, answer = deliver(gateway, delivery, message_id="msg_retry")
    assert status == 503 and answer["reason"] == "backend-http-500"
    assert row(table) is None  # nothing acknowledged, nothing written
    backend.fail_with_errors("constraint-violation", "Uniqueness violation. duplicate key value")
    status, answer = deliver(gateway, delivery, message_id="msg_retry")  # a 200 with errors is a failure too
    assert status == 503 and answer["reason"] == "constraint-violation"
    assert deliver(gateway, delivery, message_id="msg_retry") == (200, {"status": "applied"})  # Svix's retry
    assert row(table) is not None
    assert deliver(gateway, delivery, message_id="msg_retry") == (200, {"status": "duplicate"})


def test_user_deleted_writes_the_tombstone_ends_the_sessions_and_a_late_update_cannot_revive_it(
        gateway: GatewayProcess, table: str, mint: Mint) -> None:
    token = mint(sub=USER_ID, sid="sess_deleted_user")
    with gateway.client() as client:
        assert client.post("/hasura/v1/graphql", json={"query": "{ a }"}, headers=bearer(token)).status_code == 200
    assert deliver(gateway, event("user.created", user_payload(), T0))[0] == 200
    assert deliver(gateway, event("user.deleted", deleted_user(), T0 + 10_000)) == (200, {"status": "applied"})
    stored = row(table)
    assert stored is not None and stored["deleted_at"] is not None
    late = event("user.updated", user_payload(first_name="Back", updated_at=T0 + 20_000), T0 + 20_000)
    assert deliver(gateway, late) == (200, {"status": "stale"})
    stored = row(table)
    assert stored is not None and stored["name"] == "Ada Lovelace" and stored["deleted_at"] is not None
    with gateway.client() as client:
        refused = client.post("/hasura/v1/graphql", json={"query": "{ a }"}, headers=bearer(token))
    assert refused.status_code == 401 and refused.json()["errors"][0]["extensions"]["reason"] == "session-revoked"


def test_a_delete_before_the_create_leaves_the_user_deleted(gateway: GatewayProcess, table: str) -> None:
    other = "user_early_delete"
    assert deliver(gateway, event("user.deleted", deleted_user(other), T0 + 10_000))[0] == 200
    assert deliver(gateway, event("user.created", user_payload(id=other), T0)) == (200, {"status": "stale"})
    stored = row(table, other)
    assert stored is not None and stored["deleted_at"] is not None and stored["name"] is None
