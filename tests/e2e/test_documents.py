"""Trusted documents and APQ through the real gateway, against a recording Hasura.

One gateway, one backend per mode (all pointing at the same recording upstream): what each mode
lets through, what it refuses and in which words, what the upstream receives (only ``query``,
``operationName``, ``variables``), the GET forms, the metrics and the log line of ``log`` mode.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Mint, bearer
from tests.support.gateway_process import GatewayProcess, gateway_env, hasura_backend
from tests.support.jwks_server import JwksServer
from tests.support.upstream import RecordingUpstream

LISTED = "query Viewer { viewer { id name } }"
LISTED_ID = "a" * 64  # a manifest key: never recomputed from the body
FLAT = "query Users($limit: Int) { users(limit: $limit) { id } }"
FLAT_ID = "b" * 64
ADHOC = "query Sneaky { users { id name last_seen } }"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    folder = tmp_path_factory.mktemp("manifests")
    apollo = folder / "persisted-query-manifest.json"
    apollo.write_text(json.dumps({"format": "apollo-persisted-query-manifest", "version": 1, "operations": [
        {"id": LISTED_ID, "name": "Viewer", "type": "query", "body": LISTED}]}))
    flat = folder / "persisted-documents.json"
    flat.write_text(json.dumps({FLAT_ID: FLAT}))
    return [str(apollo), str(flat)]


@pytest.fixture(scope="module")
def gateway(jwks_server: JwksServer, upstream: RecordingUpstream, manifests: list[str]) -> Iterator[GatewayProcess]:
    def backend(**documents: Any) -> dict[str, Any]:
        return hasura_backend(upstream.url, allowed_roles=["user", "tooling"], documents=documents)

    env = gateway_env(jwks_server.url, {
        "off": backend(), "apq": backend(mode="apq"), "log": backend(mode="log", manifests=manifests),
        "enforce": backend(mode="enforce", manifests=manifests, bypass_roles=["tooling"]),
        "strict": backend(mode="enforce", manifests=manifests, require_id=True)})
    with GatewayProcess(env) as process:
        yield process


def post(gateway: GatewayProcess, backend: str, body: Any, token: str, **headers: str) -> httpx.Response:
    with gateway.client() as client:
        return client.post(f"/{backend}/v1/graphql", json=body, headers={**bearer(token), **headers})


def get(gateway: GatewayProcess, backend: str, params: dict[str, str], token: str) -> httpx.Response:
    with gateway.client() as client:
        return client.get(f"/{backend}/v1/graphql", params=params, headers=bearer(token))


def refusal(response: httpx.Response) -> tuple[int, str, str, str]:
    error = response.json()["errors"][0]
    return response.status_code, error["message"], error["extensions"]["code"], error["extensions"]["reason"]


def test_off_mode_cleans_what_goes_upstream(gateway: GatewayProcess, upstream: RecordingUpstream, mint: Mint) -> None:
    body = {"query": ADHOC, "operationName": "Sneaky", "variables": {"a": 1},
            "extensions": {"clientLibrary": {"name": "@apollo/client", "version": "4"},
                           "persistedQuery": {"version": 1, "sha256Hash": sha(ADHOC)}}, "documentId": "x"}
    assert post(gateway, "off", body, mint()).status_code == 200
    assert upstream.last().json() == {"query": ADHOC, "operationName": "Sneaky", "variables": {"a": 1}}
    upstream.reset()
    plain = {"query": ADHOC}
    assert post(gateway, "off", plain, mint()).status_code == 200
    assert upstream.last().json() == plain


def test_apq_miss_register_and_hit(gateway: GatewayProcess, upstream: RecordingUpstream, mint: Mint) -> None:
    text = "query Apq { viewer { id } }"
    hashed = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha(text)}}, "operationName": "Apq"}
    miss = post(gateway, "apq", hashed, mint())
    assert refusal(miss) == (200, "PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND", "persisted-query-not-found")
    assert miss.headers["cache-control"] == "private, no-cache, must-revalidate"
    assert upstream.requests == []
    register = post(gateway, "apq", {**hashed, "query": text}, mint())
    assert register.status_code == 200
    assert upstream.last().json() == {"query": text, "operationName": "Apq"}
    upstream.reset()
    hit = post(gateway, "apq", hashed, mint())
    assert hit.status_code == 200 and upstream.last().json() == {"query": text, "operationName": "Apq"}
    upstream.reset()
    via_get = get(gateway, "apq", {"operationName": "Apq",
                                   "extensions": json.dumps(hashed["extensions"])}, mint())
    assert via_get.status_code == 200
    sent = upstream.last()
    assert sent.method == "GET" and "extensions" not in sent.query and "query=" in sent.query


def test_apq_refuses_a_hash_that_does_not_match(gateway: GatewayProcess, upstream: RecordingUpstream,
                                                mint: Mint) -> None:
    wrong = {"query": "query A { viewer { id } }",
             "extensions": {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}}
    answer = post(gateway, "apq", wrong, mint())
    assert refusal(answer) == (400, "provided sha does not match query", "PERSISTED_QUERY_HASH_MISMATCH",
                               "persisted-query-hash-mismatch")
    assert upstream.requests == []


@pytest.mark.parametrize("body", [
    {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": LISTED_ID}}},
    {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "sha256:" + LISTED_ID.upper()}}},
    {"documentId": LISTED_ID},
    {"documentId": "sha256:" + LISTED_ID},
    {"doc_id": LISTED_ID},
    {"documentId": LISTED_ID, "query": ADHOC},  # text beside a known id is ignored
], ids=["apollo-extension", "prefixed-upper", "documentId", "documentId-prefixed", "relay-doc_id", "id-wins"])
def test_enforce_runs_a_manifest_document_by_id(gateway: GatewayProcess, upstream: RecordingUpstream, mint: Mint,
                                                body: dict[str, Any]) -> None:
    answer = post(gateway, "enforce", {**body, "variables": {"v": 1}}, mint())
    assert answer.status_code == 200, answer.text
    assert upstream.last().json() == {"query": LISTED, "variables": {"v": 1}}


def test_enforce_runs_listed_text_and_refuses_the_rest(gateway: GatewayProcess, upstream: RecordingUpstream,
                                                       mint: Mint) -> None:
    assert post(gateway, "enforce", {"query": FLAT, "variables": {"limit": 2}}, mint()).status_code == 200
    assert upstream.last().json() == {"query": FLAT, "variables": {"limit": 2}}
    upstream.reset()
    adhoc = post(gateway, "enforce", {"query": ADHOC}, mint())
    assert refusal(adhoc) == (400, "query is not allowed", "validation-failed", "document-not-in-manifest")
    unknown = post(gateway, "enforce", {"documentId": "c" * 64}, mint())
    assert refusal(unknown) == (400, "query is not allowed", "validation-failed", "unknown-document-id")
    batch = post(gateway, "enforce", [{"documentId": FLAT_ID}, {"query": ADHOC}], mint())
    assert refusal(batch)[3] == "document-not-in-manifest"  # one refused entry refuses the batch
    assert upstream.requests == []
    by_get = get(gateway, "enforce", {"documentId": FLAT_ID, "variables": '{"limit": 1}'}, mint())
    assert by_get.status_code == 200
    assert f"query={FLAT}" in upstream.last().query and "documentId" not in upstream.last().query


def test_require_id_refuses_even_listed_text(gateway: GatewayProcess, upstream: RecordingUpstream, mint: Mint) -> None:
    assert refusal(post(gateway, "strict", {"query": LISTED}, mint()))[3] == "document-id-required"
    assert post(gateway, "strict", {"documentId": LISTED_ID}, mint()).status_code == 200


def test_a_bypass_role_may_send_any_document(gateway: GatewayProcess, upstream: RecordingUpstream, mint: Mint) -> None:
    assert post(gateway, "enforce", {"query": ADHOC}, mint(), **{"x-hasura-role": "tooling"}).status_code == 200
    assert upstream.last().json() == {"query": ADHOC}
    assert refusal(post(gateway, "enforce", {"query": ADHOC}, mint(), **{"x-hasura-role": "user"}))[0] == 400


def test_log_mode_runs_everything_and_names_the_unknown(gateway: GatewayProcess, upstream: RecordingUpstream,
                                                         mint: Mint) -> None:
    answer = post(gateway, "log", {"query": ADHOC, "operationName": "Sneaky"}, mint(),
                  **{"apollographql-client-name": "web-app"})
    assert answer.status_code == 200 and upstream.last().json() == {"query": ADHOC, "operationName": "Sneaky"}
    assert post(gateway, "log", {"documentId": LISTED_ID}, mint()).status_code == 200
    with gateway.client() as client:
        metrics = client.get("/metrics").text
    assert 'gateway_documents_total{backend="log",outcome="unknown-text"}' in metrics
    assert 'gateway_documents_total{backend="log",outcome="manifest-id"}' in metrics
    assert 'gateway_documents_total{backend="enforce",outcome="refused-not-in-manifest"}' in metrics
    lines = [json.loads(line) for line in gateway.stderr_text().splitlines() if "document not in the manifests" in line]
    assert any(line.get("operation_name") == "Sneaky" and line.get("client_name") == "web-app"
               and line.get("document_sha256") == sha(ADHOC) for line in lines), lines


@pytest.mark.parametrize(("content", "words"), [
    (None, "cannot be read"),
    ("[1, 2]", "is a JSON list"),
    ('{"format": "apollo-persisted-query-manifest", "version": 2, "operations": []}', "of version 2"),
    ("{not json", "is not JSON"),
], ids=["missing", "array", "other-version", "not-json"])
def test_an_unusable_manifest_stops_start_up_with_one_line(jwks_server: JwksServer, upstream: RecordingUpstream,
                                                           tmp_path: Path, content: str | None, words: str) -> None:
    path = tmp_path / "manifest.json"
    if content is not None:
        path.write_text(content)
    env = gateway_env(jwks_server.url, {"hasura": hasura_backend(upstream.url, documents={
        "mode": "enforce", "manifests": [str(path)]})})
    process = GatewayProcess(env)
    with pytest.raises(AssertionError) as failure:
        process.start()
    text = str(failure.value)
    assert f"GATEWAY_BACKENDS__HASURA__DOCUMENTS__MANIFESTS: {path}: " in text and words in text
    assert "Traceback" not in text


# -- WebSocket subscribe / start ------------------------------------------------------------------------

async def test_websocket_subscriptions_are_resolved_and_refused_per_operation(
        jwks_server: JwksServer, manifests: list[str], mint: Mint) -> None:
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.typing import Subprotocol

    from tests.support.ws_upstream import LEGACY, TRANSPORT, GraphQLWebSocketUpstream

    subscription = "subscription Live { users { id } }"
    folder = Path(manifests[0]).parent
    (folder / "subscriptions.json").write_text(json.dumps({"d" * 64: subscription}))

    async def run(url: str, protocol: str, subscribe: str) -> list[dict[str, Any]]:
        received: list[dict[str, Any]] = []
        async with connect(url, subprotocols=[Subprotocol(protocol)], proxy=None, open_timeout=5) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"headers": bearer(mint())}}))
            received.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            for index, payload in enumerate([
                    {"query": "", "extensions": {"persistedQuery": {"version": 1, "sha256Hash": "d" * 64}}},
                    {"query": ADHOC},
                    {"documentId": "d" * 64, "extensions": {"clientLibrary": {"name": "x"}}}]):
                await ws.send(json.dumps({"id": str(index), "type": subscribe, "payload": payload}))
            await asyncio.sleep(0.5)
            received.extend(json.loads(m) for m in [await asyncio.wait_for(ws.recv(), 2)])
        return received

    with GraphQLWebSocketUpstream() as ws_upstream:
        env = gateway_env(jwks_server.url, {"hasura": hasura_backend(ws_upstream.http_url, documents={
            "mode": "enforce", "manifests": [str(folder / "subscriptions.json")]})})
        with GatewayProcess(env) as gateway:
            url = gateway.url.replace("http://", "ws://") + "/hasura/v1/graphql"
            for protocol, subscribe in ((TRANSPORT, "subscribe"), (LEGACY, "start")):
                ws_upstream.reset()
                received = await run(url, protocol, subscribe)
                assert received[0]["type"] == "connection_ack"
                assert received[1]["id"] == "1" and received[1]["type"] == "error"  # only the ad-hoc one
                assert "query is not allowed" in json.dumps(received[1]["payload"])
                # every subscribe the upstream ever saw (the socket may be closed by now)
                await ws_upstream.wait_for(lambda: len(ws_upstream.connections) == 1
                                           and len(ws_upstream.connections[0].subscribed) >= 2, what="2 subscribes")
                (conn,) = ws_upstream.connections
                assert [(op_id, payload) for op_id, payload in conn.subscribed] == [
                    ("0", {"query": subscription}), ("2", {"query": subscription})]  # resolved, extensions gone


def test_documents_check_command(manifests: list[str], tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {name: value for name, value in os.environ.items() if not name.startswith(("CLERK_", "GATEWAY_"))}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src")
    ok = subprocess.run([sys.executable, "-m", "clerk_gateway", "documents", "check", *manifests], env=env,
                        cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "documents check: 2 operations in 2 files, all usable"
    broken = tmp_path / "broken.json"
    broken.write_text("[]")
    bad = subprocess.run([sys.executable, "-m", "clerk_gateway", "documents", "check", str(broken)], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "is a JSON list" in bad.stderr and "Traceback" not in bad.stderr


def test_apq_registered_on_one_replica_hits_on_another_through_redis(
        jwks_server: JwksServer, upstream: RecordingUpstream, mint: Mint) -> None:
    from tests.support.redis_server import running_redis

    text = "query Shared { viewer { id } }"
    hashed = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha(text)}}}
    with running_redis() as redis:
        env = gateway_env(jwks_server.url, {"hasura": hasura_backend(upstream.url, documents={"mode": "apq"})},
                          GATEWAY_REDIS_URL=redis.url)
        with GatewayProcess(env) as first, GatewayProcess(env) as second:
            assert refusal(post(second, "hasura", hashed, mint()))[1] == "PersistedQueryNotFound"
            assert post(first, "hasura", {**hashed, "query": text}, mint()).status_code == 200
            upstream.reset()
            assert post(second, "hasura", hashed, mint()).status_code == 200
            assert upstream.last().json() == {"query": text}


def test_a_manifest_document_the_limits_refuse_is_named_at_start_and_refused_per_request(
        jwks_server: JwksServer, upstream: RecordingUpstream, tmp_path: Path, mint: Mint) -> None:
    deep = "query TooDeep { " + "a { " * 20 + "b" + " }" * 20 + " }"
    manifest = tmp_path / "deep.json"
    manifest.write_text(json.dumps({"e" * 64: deep}))
    env = gateway_env(jwks_server.url, {"hasura": hasura_backend(upstream.url, documents={
        "mode": "enforce", "manifests": [str(manifest)]})})
    with GatewayProcess(env) as gateway:
        warning = [json.loads(line) for line in gateway.stderr_text().splitlines()
                   if "breaks the GraphQL limits" in line]
        assert warning and warning[0]["operation_name"] is None and warning[0]["document_id"] == "e" * 64
        answer = post(gateway, "hasura", {"documentId": "e" * 64}, mint())
        assert answer.json()["errors"][0]["extensions"]["reason"] == "graphql-depth-limit"
        assert upstream.requests == []
