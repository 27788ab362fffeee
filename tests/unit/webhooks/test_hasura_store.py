"""HasuraUserStore on the wire (respx): the exact mutations per settings, the variables, the headers, and how every
answer and failure maps onto WriteOutcome / SyncUnavailable. What the mutations *do* to rows is proven against
Postgres in tests/e2e/test_user_sync_postgres.py."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import graphql
import httpx
import pytest
import respx

from clerk_gateway.settings.user_sync import UserSyncSettings
from clerk_gateway.webhooks.backend_http import iso_utc, safe_message
from clerk_gateway.webhooks.hasura_store import HasuraUserStore, build_documents
from clerk_gateway.webhooks.records import UserRecord
from clerk_gateway.webhooks.store import SyncUnavailable, WriteOutcome

URL = "http://hasura.test/v1/graphql"
SECRET = "admin-secret-value-1234"
USER = UserRecord(user_id="user_abc123", values={"id": "user_abc123", "name": "Ada Lovelace"},
                  version_ms=1748751899113)
SOFT = {"version_column": "version", "delete": "soft", "deleted_column": "deleted_at"}




def store(http: httpx.AsyncClient, **settings: Any) -> HasuraUserStore:
    return HasuraUserStore(URL, SECRET, UserSyncSettings(backend="hasura", **settings), http)


def answer(mock: respx.MockRouter, body: Any = None, *, status: int = 200, **kwargs: Any) -> respx.Route:
    return mock.post(URL).mock(return_value=httpx.Response(status, json=body, **kwargs)
                               if body is not None else httpx.Response(status, **kwargs))


def sent(route: respx.Route, index: int = -1) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls[index].request.content)
    return body


# -- the documents ---------------------------------------------------------------------------------------------------


def test_default_settings_upsert_and_hard_delete() -> None:
    documents = build_documents(UserSyncSettings(backend="hasura"))
    assert documents.upsert == (
        "mutation ClerkUserUpsert($object: users_insert_input!) {\n"
        "  insert_users_one(object: $object, on_conflict: {constraint: users_pkey, update_columns: [name]}) {\n"
        "    id\n  }\n}")
    assert documents.delete == (
        "mutation ClerkUserDelete($id: String!) {\n  delete_users_by_pk(id: $id) {\n    id\n  }\n}")
    assert (documents.upsert_field, documents.delete_field, documents.guarded) == (
        "insert_users_one", "delete_users_by_pk", False)


def test_version_guard() -> None:
    documents = build_documents(UserSyncSettings(backend="hasura", version_column="clerk_updated_at",
                                                 columns={"id": "id", "name": "name", "email": "email"}))
    assert documents.upsert == (
        "mutation ClerkUserUpsert($object: users_insert_input!, $version: bigint!) {\n"
        "  insert_users_one(object: $object, on_conflict: {constraint: users_pkey, update_columns: "
        "[name, email, clerk_updated_at], where: {_or: [{clerk_updated_at: {_is_null: true}}, "
        "{clerk_updated_at: {_lt: $version}}]}}) {\n    id\n  }\n}")
    assert documents.guarded


def test_soft_delete_guard_and_tombstone() -> None:
    documents = build_documents(UserSyncSettings(backend="hasura", delete="soft", deleted_column="deleted_at"))
    assert "where: {deleted_at: {_is_null: true}}}) {" in documents.upsert
    assert "$version" not in documents.upsert
    assert documents.delete == (
        "mutation ClerkUserTombstone($object: users_insert_input!) {\n"
        "  insert_users_one(object: $object, on_conflict: {constraint: users_pkey, update_columns: [deleted_at], "
        "where: {deleted_at: {_is_null: true}}}) {\n    id\n  }\n}")
    assert documents.delete_field == "insert_users_one"


def test_both_guards_are_combined_with_and() -> None:
    documents = build_documents(UserSyncSettings(backend="hasura", **SOFT))
    assert ("update_columns: [name, version], where: {_and: [{_or: [{version: {_is_null: true}}, "
            "{version: {_lt: $version}}]}, {deleted_at: {_is_null: true}}]}}") in documents.upsert


def test_table_constraint_and_id_column_names() -> None:
    sync = UserSyncSettings(backend="hasura", table="app_users", constraint="app_users_clerk_pk",
                            columns={"clerk_id": "id", "display_name": "name"})
    documents = build_documents(sync)
    assert documents.upsert.startswith("mutation ClerkUserUpsert($object: app_users_insert_input!) {\n"
                                       "  insert_app_users_one(object: $object, on_conflict: "
                                       "{constraint: app_users_clerk_pk, update_columns: [display_name]}) {\n"
                                       "    clerk_id\n")
    assert "delete_app_users_by_pk(clerk_id: $id)" in documents.delete
    assert sync.constraint_name == "app_users_clerk_pk"
    assert UserSyncSettings(backend="h", table="people").constraint_name == "people_pkey"


@pytest.mark.parametrize("settings", [{}, {"version_column": "version"}, {"delete": "soft", "deleted_column": "d"},
                                      SOFT, {"columns": {"id": "id"}}])
def test_every_document_is_valid_graphql(settings: dict[str, Any]) -> None:
    documents = build_documents(UserSyncSettings(backend="hasura", **settings))
    for document in (documents.upsert, documents.delete):
        parsed = graphql.parse(document)
        assert len(parsed.definitions) == 1


# -- what is sent ----------------------------------------------------------------------------------------------------


async def test_upsert_variables_and_headers(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    route = answer(mock, {"data": {"insert_users_one": {"id": USER.user_id}}})
    subject = store(http, **SOFT)
    assert await subject.upsert(USER) is WriteOutcome.APPLIED
    body = sent(route)
    assert body == {"query": subject.documents.upsert,
                    "variables": {"object": {"id": "user_abc123", "name": "Ada Lovelace", "version": USER.version_ms},
                                  "version": USER.version_ms}}
    request = route.calls[-1].request
    assert request.headers["x-hasura-admin-secret"] == SECRET
    assert request.headers["content-type"] == "application/json"
    assert "x-hasura-role" not in request.headers
    assert USER.values == {"id": "user_abc123", "name": "Ada Lovelace"}  # the record is not modified


async def test_upsert_without_version_sends_no_version(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    route = answer(mock, {"data": {"insert_users_one": {"id": USER.user_id}}})
    await store(http).upsert(USER)
    assert sent(route)["variables"] == {"object": USER.values}


async def test_hard_delete_variables(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    route = answer(mock, {"data": {"delete_users_by_pk": None}})
    subject = store(http)
    assert await subject.delete("user_abc123", 1748751899130) is WriteOutcome.APPLIED
    assert sent(route) == {"query": subject.documents.delete, "variables": {"id": "user_abc123"}}


async def test_soft_delete_tombstone_variables(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    route = answer(mock, {"data": {"insert_users_one": {"id": "user_abc123"}}})
    subject = store(http, **SOFT)
    assert await subject.delete("user_abc123", 1748751899130) is WriteOutcome.APPLIED
    assert sent(route) == {"query": subject.documents.delete, "variables": {"object": {
        "id": "user_abc123", "deleted_at": "2025-06-01T04:24:59.130Z", "version": 1748751899130}}}


async def test_soft_delete_without_version(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    route = answer(mock, {"data": {"insert_users_one": None}})  # already deleted: still applied
    assert await store(http, delete="soft", deleted_column="gone").delete("u_1", 0) is WriteOutcome.APPLIED
    assert sent(route)["variables"] == {"object": {"id": "u_1", "gone": "1970-01-01T00:00:00.000Z"}}


def test_iso_utc_is_exact() -> None:
    assert iso_utc(1748751899130) == "2025-06-01T04:24:59.130Z"
    assert iso_utc(1748751899001) == "2025-06-01T04:24:59.001Z"
    assert iso_utc(253402300799999) == "9999-12-31T23:59:59.999Z"


# -- outcomes --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("settings", "result", "outcome"), [
    (SOFT, {"id": "user_abc123"}, WriteOutcome.APPLIED),
    (SOFT, None, WriteOutcome.STALE),
    ({"version_column": "version"}, None, WriteOutcome.STALE),
    ({"delete": "soft", "deleted_column": "deleted_at"}, None, WriteOutcome.STALE),
    ({}, None, WriteOutcome.APPLIED),  # no guard: a null is update_columns: [] on an existing row
    ({}, {"id": "user_abc123"}, WriteOutcome.APPLIED),
])
async def test_upsert_outcome(mock: respx.MockRouter, http: httpx.AsyncClient, settings: dict[str, Any],
                              result: dict[str, Any] | None, outcome: WriteOutcome) -> None:
    answer(mock, {"data": {"insert_users_one": result}})
    assert await store(http, **settings).upsert(USER) is outcome


# -- failures --------------------------------------------------------------------------------------------------------


async def failure(http: httpx.AsyncClient, **settings: Any) -> SyncUnavailable:
    with pytest.raises(SyncUnavailable) as caught:
        await store(http, **settings).upsert(USER)
    return caught.value


@pytest.mark.parametrize("status", [500, 502, 503, 401, 404, 201, 204])
async def test_http_status(mock: respx.MockRouter, http: httpx.AsyncClient, status: int) -> None:
    answer(mock, {"data": {"insert_users_one": {"id": "x"}}}, status=status)
    error = await failure(http)
    assert error.reason == f"backend-http-{status}"


async def test_connection_refused(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    mock.post(URL).mock(side_effect=httpx.ConnectError("refused"))
    error = await failure(http)
    assert error.reason == "backend-unreachable"
    assert "ConnectError" in str(error)


async def test_broken_connection(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    mock.post(URL).mock(side_effect=httpx.RemoteProtocolError("peer closed"))
    assert (await failure(http)).reason == "backend-unreachable"


async def test_httpx_timeout(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    mock.post(URL).mock(side_effect=httpx.ReadTimeout("slow"))
    error = await failure(http)
    assert error.reason == "backend-timeout"


async def test_overall_timeout(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    """The whole exchange is bounded, not only each phase: Svix waits 15 s in all."""

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json={"data": {"insert_users_one": {"id": "x"}}})

    mock.post(URL).mock(side_effect=slow)
    loop = asyncio.get_running_loop()
    started = loop.time()
    error = await failure(http, timeout_seconds=0.2)
    assert error.reason == "backend-timeout"
    assert "0.2 s" in str(error)
    assert loop.time() - started < 2


async def test_timeout_is_passed_to_httpx(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    route = answer(mock, {"data": {"insert_users_one": {"id": "x"}}})
    await store(http, timeout_seconds=3.5).upsert(USER)
    assert route.calls[-1].request.extensions["timeout"] == {"connect": 3.5, "read": 3.5, "write": 3.5, "pool": 3.5}


async def test_not_json(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    answer(mock, text="<html>bad gateway</html>")
    assert (await failure(http)).reason == "backend-invalid-answer"


@pytest.mark.parametrize("body", [[], "data", {"data": None}, {"data": {}}, {"data": {"other_field": None}},
                                  {"data": {"insert_users_one": "yes"}}, {"data": {"insert_users_one": [1]}}])
async def test_unexpected_json(mock: respx.MockRouter, http: httpx.AsyncClient, body: Any) -> None:
    answer(mock, body)
    assert (await failure(http)).reason == "backend-invalid-answer"


async def test_graphql_errors_use_the_extensions_code(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    """A Hasura 200 with ``errors`` (REFERENCE §8.6): the code is the reason; the message keeps the constraint
    name and drops the values, and ``extensions.internal`` (which quotes them) is never read."""
    answer(mock, {"errors": [{
        "message": 'Uniqueness violation. duplicate key value violates unique constraint "users_email_key"',
        "extensions": {"path": "$.selectionSet.insert_users_one.args.object", "code": "constraint-violation",
                       "internal": {"error": {"description": "Key (email)=(ada@example.com) already exists."},
                                    "arguments": ["user_abc123", "Ada Lovelace"]}}}]})
    error = await failure(http)
    assert error.reason == "constraint-violation"
    assert str(error) == ('Hasura refused the write: Uniqueness violation. duplicate key value violates unique '
                          'constraint "users_email_key"')


async def test_graphql_error_messages_lose_the_values_sent(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    answer(mock, {"errors": [{"message": 'bad value "Ada Lovelace" for user_abc123: "two words" and "users_x"\n'
                                         f"echo {SECRET}",
                              "extensions": {"code": "data-exception"}}]})
    text = str(await failure(http))
    assert "Ada" not in text and "user_abc123" not in text and "two words" not in text and SECRET not in text
    assert '"users_x"' in text and "\n" not in text


async def test_graphql_error_without_code(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    answer(mock, {"errors": [{"message": "something"}], "data": None})
    error = await failure(http)
    assert (error.reason, str(error)) == ("graphql-error", "Hasura refused the write: something")


@pytest.mark.parametrize("errors", [["a string"], [{}], "not a list", [{"extensions": "x", "message": 3}]])
async def test_malformed_errors_still_fail(mock: respx.MockRouter, http: httpx.AsyncClient, errors: Any) -> None:
    answer(mock, {"errors": errors, "data": {"insert_users_one": {"id": "x"}}})
    assert (await failure(http)).reason == "graphql-error"


async def test_errors_win_over_data(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    answer(mock, {"errors": [{"message": "no", "extensions": {"code": "unexpected"}}],
                  "data": {"insert_users_one": {"id": "x"}}})
    assert (await failure(http)).reason == "unexpected"


async def test_odd_codes_become_words(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    answer(mock, {"errors": [{"message": "x", "extensions": {"code": "Concurrent Update!"}}]})
    assert (await failure(http)).reason == "concurrent-update"


async def test_delete_failure(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    answer(mock, {"errors": [{"message": "x", "extensions": {"code": "permission-error"}}]})
    with pytest.raises(SyncUnavailable) as caught:
        await store(http).delete("user_abc123", 1)
    assert caught.value.reason == "permission-error"


def test_safe_message_limits() -> None:
    assert len(safe_message("x" * 1000, {})) == 240
    assert safe_message(None, {}) == ""
    assert safe_message("a 'b c' `d` \"e.f\"", {}) == "a '…' `d` \"e.f\""
    # keys deep inside a value (public_metadata) are user data too; variable and column names are not
    sent = {"object": {"name": "x", "meta": {"secret_key_name": 1}}}
    assert safe_message("name meta secret_key_name", sent) == "name meta …"
