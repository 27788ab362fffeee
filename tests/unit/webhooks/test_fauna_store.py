"""FaunaUserStore on the wire (respx): the FQL and the tagged arguments of each write, the headers, and how Fauna's
answers and error bodies map onto WriteOutcome / SyncUnavailable.

No Fauna core can run here (it is built with sbt from fauna/faunadb), so what the FQL does is argued in
fauna_store.py and build/notes/user-sync.md, and pinned here as text: a change to it is a deliberate one."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import respx

from clerk_gateway.settings.user_sync import UserSyncSettings
from clerk_gateway.webhooks.fauna_store import FaunaUserStore, Instant, build_queries, tagged
from clerk_gateway.webhooks.records import UserRecord
from clerk_gateway.webhooks.store import SyncUnavailable, WriteOutcome

URL = "http://fauna.test/query/1"
SECRET = "fnAFauna-key-secret"
VERSION = 1748751899113
USER = UserRecord(user_id="user_abc123", values={"id": "user_abc123", "name": "Ada Lovelace"}, version_ms=VERSION)
SOFT = {"version_column": "version", "delete": "soft", "deleted_column": "deleted_at"}




def store(http: httpx.AsyncClient, **settings: Any) -> FaunaUserStore:
    return FaunaUserStore(URL, SECRET, UserSyncSettings(backend="fauna", **settings), http)


def success(data: Any) -> dict[str, Any]:
    """Fauna's 200 body (tagged format)."""
    return {"data": data, "static_type": "String", "summary": "", "txn_ts": 1748751900000000,
            "stats": {"compute_ops": 1, "read_ops": 1, "write_ops": 1}, "schema_version": 0}


def answer(mock: respx.MockRouter, body: Any = None, *, status: int = 200, **kwargs: Any) -> respx.Route:
    response = httpx.Response(status, json=body, **kwargs) if body is not None else httpx.Response(status, **kwargs)
    return mock.post(URL).mock(return_value=response)


def sent(route: respx.Route) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls[-1].request.content)
    return body


# -- the queries -----------------------------------------------------------------------------------------------------


def test_default_queries() -> None:
    queries = build_queries(UserSyncSettings(backend="fauna"))
    assert queries.upsert == (
        "let doc = users.byClerkId(clerkId).first()\n"
        "if (doc == null) {\n  users.create(fields)\n  \"applied\"\n"
        "} else {\n  doc!.update(fields)\n  \"applied\"\n}")
    assert queries.delete == (
        "let doc = users.byClerkId(clerkId).first()\n"
        "if (doc != null) {\n  doc!.delete()\n}\n\"applied\"")


def test_guarded_queries() -> None:
    queries = build_queries(UserSyncSettings(backend="fauna", collection="people", **SOFT))
    assert queries.upsert == (
        "let doc = people.byClerkId(clerkId).first()\n"
        "if (doc == null) {\n  people.create(fields)\n  \"applied\"\n"
        "} else if (doc!.deleted_at != null) {\n  \"stale\"\n"
        "} else if (doc!.version != null && doc!.version >= version) {\n  \"stale\"\n"
        "} else {\n  doc!.update(fields)\n  \"applied\"\n}")
    assert queries.delete == (
        "let doc = people.byClerkId(clerkId).first()\n"
        "if (doc == null) {\n  people.create(tombstone)\n"
        "} else if (doc!.deleted_at == null) {\n  doc!.update(mark)\n}\n\"applied\"")


def test_version_only() -> None:
    upsert = build_queries(UserSyncSettings(backend="fauna", version_column="v")).upsert
    assert "doc!.v != null && doc!.v >= version" in upsert and "deleted" not in upsert


@pytest.mark.parametrize(("settings", "problem"), [
    ({"columns": {"id": "id", "ts": "name"}}, "reserves"),
    ({"columns": {"id": "id", "data": "name"}}, "reserves"),
    ({"columns": {"id": "id", "update": "name"}}, "reserves"),
    ({"columns": {"id": "id", "clerk_id": "name"}}, "holds the Clerk id"),
    ({"version_column": "ttl"}, "reserved or a keyword"),
    ({"delete": "soft", "deleted_column": "if"}, "reserved or a keyword"),
    ({"collection": "let"}, "keyword"),
])
def test_names_fauna_refuses(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        build_queries(UserSyncSettings(backend="fauna", **settings))


def test_the_id_column_may_have_any_name() -> None:
    build_queries(UserSyncSettings(backend="fauna", columns={"id": "id", "name": "name"}))
    build_queries(UserSyncSettings(backend="fauna", columns={"clerk_id": "id", "name": "name"}))


# -- the tagged format -----------------------------------------------------------------------------------------------


def test_tagged_values() -> None:
    assert tagged({"s": "x", "n": None, "t": True, "f": False}) == {"s": "x", "n": None, "t": True, "f": False}
    assert tagged(7) == {"@int": "7"}
    assert tagged(-(2**31)) == {"@int": "-2147483648"}
    assert tagged(2**31) == {"@long": "2147483648"}
    assert tagged(VERSION) == {"@long": "1748751899113"}
    assert tagged(2**63) == {"@double": "9.223372036854776e+18"}
    assert tagged(1.5) == {"@double": "1.5"}
    assert tagged(Instant(1748751899130)) == {"@time": "2025-06-01T04:24:59.130Z"}
    assert tagged([1, [2.0]]) == [{"@int": "1"}, [{"@double": "2.0"}]]


def test_objects_with_tag_like_keys_are_escaped() -> None:
    """public_metadata is the user's own JSON: a key ``@int`` must stay a key, not become a number."""
    assert tagged({"@int": "5", "plain": 1}) == {"@object": {"@int": "5", "plain": {"@int": "1"}}}
    assert tagged({"outer": {"@x": []}}) == {"outer": {"@object": {"@x": []}}}


def test_tagged_refuses_unknown_types() -> None:
    with pytest.raises(TypeError):
        tagged(object())


# -- what is sent ----------------------------------------------------------------------------------------------------


async def test_upsert_request(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    route = answer(mock, success("applied"))
    subject = store(http, timeout_seconds=4, **SOFT)
    assert await subject.upsert(USER) is WriteOutcome.APPLIED
    assert sent(route) == {"query": subject.queries.upsert, "arguments": {
        "clerkId": "user_abc123",
        "fields": {"clerk_id": "user_abc123", "name": "Ada Lovelace", "version": {"@long": str(VERSION)}},
        "version": {"@long": str(VERSION)}}}
    headers = route.calls[-1].request.headers
    assert headers["authorization"] == f"Bearer {SECRET}"
    assert (headers["x-format"], headers["x-typecheck"], headers["x-query-timeout-ms"]) == ("tagged", "false", "4000")
    assert headers["content-type"] == "application/json"


async def test_upsert_other_sources(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    route = answer(mock, success("applied"))
    user = UserRecord(user_id="user_1", values={"uid": "user_1", "meta": {"@tier": 2}, "created": 1748751899098},
                      version_ms=1)
    await store(http, columns={"uid": "id", "meta": "public_metadata", "created": "created_at"}).upsert(user)
    assert sent(route)["arguments"] == {"clerkId": "user_1", "fields": {
        "clerk_id": "user_1", "meta": {"@object": {"@tier": {"@int": "2"}}}, "created": {"@long": "1748751899098"}}}


async def test_hard_delete_request(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    route = answer(mock, success("applied"))
    subject = store(http)
    assert await subject.delete("user_abc123", VERSION) is WriteOutcome.APPLIED
    assert sent(route) == {"query": subject.queries.delete, "arguments": {"clerkId": "user_abc123"}}


async def test_soft_delete_request(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    route = answer(mock, success("applied"))
    assert await store(http, **SOFT).delete("user_abc123", 1748751899130) is WriteOutcome.APPLIED
    assert sent(route)["arguments"] == {
        "clerkId": "user_abc123",
        "tombstone": {"clerk_id": "user_abc123", "deleted_at": {"@time": "2025-06-01T04:24:59.130Z"},
                      "version": {"@long": "1748751899130"}},
        "mark": {"deleted_at": {"@time": "2025-06-01T04:24:59.130Z"}}}


@pytest.mark.parametrize(("data", "outcome"), [("applied", WriteOutcome.APPLIED), ("stale", WriteOutcome.STALE)])
async def test_upsert_outcomes(mock: respx.MockRouter, http: httpx.AsyncClient, data: str,
                               outcome: WriteOutcome) -> None:
    answer(mock, success(data))
    assert await store(http, **SOFT).upsert(USER) is outcome


# -- failures --------------------------------------------------------------------------------------------------------


async def failure(http: httpx.AsyncClient, **settings: Any) -> SyncUnavailable:
    with pytest.raises(SyncUnavailable) as caught:
        await store(http, **settings).upsert(USER)
    return caught.value


@pytest.mark.parametrize(("status", "code"), [
    (400, "constraint_failure"), (400, "invalid_query"), (400, "permission_denied"), (401, "unauthorized"),
    (403, "forbidden"), (409, "contended_transaction"), (429, "limit_exceeded"), (440, "time_out"),
    (500, "internal_error"), (503, "time_out"),
])
async def test_fauna_error_codes(mock: respx.MockRouter, http: httpx.AsyncClient, status: int, code: str) -> None:
    answer(mock, {"error": {"code": code, "message": "refused"}, "summary": "error: at *query*:1", "txn_ts": 1},
           status=status)
    error = await failure(http)
    assert error.reason == code
    assert str(error) == f"Fauna refused the write (HTTP {status}): refused"


async def test_error_message_drops_values_and_the_summary(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    answer(mock, {"error": {"code": "constraint_failure",
                            "message": "Failed to create document for user_abc123 `Ada Lovelace`",
                            "constraint_failures": [{"paths": [["clerk_id"]], "message": "Failed unique constraint"}]},
                  "summary": "2 |   users.create({ name: \"Ada Lovelace\" })"}, status=400)
    text = str(await failure(http))
    assert "user_abc123" not in text and "Ada" not in text and "users.create" not in text


@pytest.mark.parametrize("body", [None, {"error": "flat"}, {"error": {"message": "no code"}}, ["x"]])
async def test_errors_without_a_code(mock: respx.MockRouter, http: httpx.AsyncClient, body: Any) -> None:
    if body is None:
        answer(mock, status=502, text="<html>bad gateway</html>")
    else:
        answer(mock, body, status=502)
    assert (await failure(http)).reason == "backend-http-502"


@pytest.mark.parametrize("body", [{"data": "done"}, {"data": None}, {"data": {"@int": "1"}}, {"summary": ""}, []])
async def test_unexpected_success(mock: respx.MockRouter, http: httpx.AsyncClient, body: Any) -> None:
    answer(mock, body)
    assert (await failure(http)).reason == "backend-invalid-answer"


async def test_success_not_json(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    answer(mock, text="applied")
    assert (await failure(http)).reason == "backend-invalid-answer"


@pytest.mark.parametrize(("error", "reason"), [
    (httpx.ConnectError("refused"), "backend-unreachable"),
    (httpx.ReadError("reset"), "backend-unreachable"),
    (httpx.ConnectTimeout("slow"), "backend-timeout"),
    (httpx.ReadTimeout("slow"), "backend-timeout"),
])
async def test_transport_errors(mock: respx.MockRouter, http: httpx.AsyncClient, error: Exception,
                                reason: str) -> None:
    mock.post(URL).mock(side_effect=error)
    failed = await failure(http)
    assert failed.reason == reason
    assert SECRET not in str(failed)


async def test_overall_timeout(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json=success("applied"))

    mock.post(URL).mock(side_effect=slow)
    assert (await failure(http, timeout_seconds=0.2)).reason == "backend-timeout"


async def test_delete_failure(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    answer(mock, {"error": {"code": "unauthorized", "message": "Access token required"}}, status=401)
    with pytest.raises(SyncUnavailable) as caught:
        await store(http, **SOFT).delete("user_abc123", VERSION)
    assert caught.value.reason == "unauthorized"


async def test_delete_with_unexpected_answer(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    answer(mock, success(None))
    with pytest.raises(SyncUnavailable) as caught:
        await store(http).delete("user_abc123", VERSION)
    assert caught.value.reason == "backend-invalid-answer"
