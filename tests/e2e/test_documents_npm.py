"""Trusted documents and APQ with the tools a frontend actually uses (docs/PRODUCT.md "Trusted documents").

``frontend_fixture/`` is a tiny Apollo Client app (three operations in ``src/*.graphql`` against
``schema.graphql``; packages pinned by its ``package-lock.json``, installed by
``scripts/test-tools/node.sh``). Its build step, ``generate_manifests.mjs`` (``npm run manifests``), runs
the real generators into a temporary directory:

* ``@apollo/generate-persisted-query-manifest`` → ``persisted-query-manifest.json`` (Apollo's format);
* ``@graphql-codegen/cli`` with the client preset's ``persistedDocuments`` → ``gql/persisted-documents.json``
  (a flat ``{"sha256:<hex>": "<document>"}`` map).

``apollo_driver.mjs`` then drives the real gateway with the real ``@apollo/client`` (HttpLink with an
observing ``fetch``, and the persisted-queries link), printing one JSON line per exchange. The
gateway stands in front of the recording upstream (the fake Hasura), so each test checks both sides:
what Apollo Client saw, and what Hasura received (``{query, operationName, variables}`` only, never
``extensions``).

* ``mode: apq``: a hash-only request misses (200 ``PersistedQueryNotFound``, no-cache), Apollo Client
  retries with the text, the gateway registers it; a second client (a reload) hits with the hash only.
  POST, and GET with ``useGETForHashedQueries``.
* ``mode: enforce`` with both generated manifests: operations sent by their Apollo manifest id (the
  ``@apollo/persisted-query-lists`` link) or by their codegen id (``sha256:`` prefix) run the manifest's
  text; a listed text sent as full text runs; an ad-hoc operation is refused (400 ``validation-failed``,
  ``query is not allowed``) whether sent as text or by hash, never reaches Hasura, and Apollo Client does
  not retry it.

Skipped when ``node`` is missing or the fixture's ``node_modules`` are not installed: a test never runs
``npm`` itself (that would reach the registry); CI runs ``scripts/test-tools/node.sh`` first.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from tests.e2e.conftest import Mint
from tests.support.gateway_process import GatewayProcess, gateway_env, hasura_backend
from tests.support.jwks_server import JwksServer
from tests.support.upstream import RecordedRequest, RecordingUpstream

FIXTURE_DIR = Path(__file__).resolve().parent / "frontend_fixture"
NODE = shutil.which("node")
PACKAGES = ("graphql", "@apollo/client", "@apollo/persisted-query-lists", "@apollo/generate-persisted-query-manifest",
            "@graphql-codegen/cli", "@graphql-codegen/client-preset")
GRAPHQL_PATH = "/hasura/v1/graphql"
OPERATION_NAMES = {"Users": "query", "ViewerProfile": "query", "RenameUser": "mutation"}
USERS_VARIABLES = {"limit": 2}
RENAME_VARIABLES = {"id": "user_driver", "name": "Ada"}
FORWARDED_KEYS = {"query", "operationName", "variables"}
NO_CACHE = "private, no-cache, must-revalidate"
SUB = "user_docs"

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed: the Apollo Client/manifest tests need it")

Events = list[dict[str, Any]]


@dataclass(frozen=True)
class Manifests:
    apollo_path: Path
    codegen_path: Path
    apollo: dict[str, Any]
    codegen: dict[str, str]

    def apollo_operation(self, name: str) -> dict[str, Any]:
        (operation,) = [op for op in self.apollo["operations"] if op["name"] == name]
        return dict(operation)

    def codegen_entry(self, name: str) -> tuple[str, str]:
        (entry,) = [(key, text) for key, text in self.codegen.items() if _operation_name(text) == name]
        return entry


@dataclass
class Step:
    """One operation the driver ran: its HTTP exchanges (request, response) and how it ended."""

    name: str
    operation: str
    exchanges: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    outcome: dict[str, Any] | None = None

    @property
    def requests(self) -> list[dict[str, Any]]:
        return [request for request, _ in self.exchanges]

    @property
    def responses(self) -> list[dict[str, Any]]:
        return [response for _, response in self.exchanges]


# -- helpers -----------------------------------------------------------------------------------------


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _operation_name(document: str) -> str | None:
    match = re.search(r"\b(?:query|mutation|subscription)\s+(\w+)", document)
    return match.group(1) if match else None


def _node_env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if name.lower() not in {"http_proxy", "https_proxy", "all_proxy", "node_options"}
           and not name.startswith(("DRIVER_", "MANIFEST_"))}
    env["NO_PROXY"] = "*"
    env.update(extra)
    return env


def _require_packages() -> None:
    missing = [name for name in PACKAGES if not (FIXTURE_DIR / "node_modules" / name / "package.json").exists()]
    if missing:
        pytest.skip(f"tests/e2e/frontend_fixture/node_modules lacks {', '.join(missing)}: "
                    "run scripts/test-tools/node.sh (npm ci) first")


def run_driver(scenario: str, gateway: GatewayProcess, token: str, manifests: Manifests | None = None) -> list[Step]:
    """Runs ``apollo_driver.mjs <scenario>`` against ``gateway`` and returns its steps, in order."""
    assert NODE is not None
    env = _node_env(DRIVER_URL=gateway.url + GRAPHQL_PATH, DRIVER_TOKEN=token, DRIVER_TIMEOUT_MS="20000")
    if manifests is not None:
        env.update(APOLLO_MANIFEST=str(manifests.apollo_path), CODEGEN_MANIFEST=str(manifests.codegen_path))
    result = subprocess.run([NODE, "apollo_driver.mjs", scenario], cwd=FIXTURE_DIR, env=env, capture_output=True,
                            text=True, timeout=40, check=False)
    events: Events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0, f"apollo_driver.mjs {scenario} exited {result.returncode}:\n{result.stdout}\n" \
                                   f"{result.stderr}\n--- gateway ---\n{gateway.stderr_text()[-4000:]}"
    assert events and events[-1]["event"] == "done", events
    return _steps(events)


def _steps(events: Events) -> list[Step]:
    steps: list[Step] = []
    pending: dict[int, dict[str, Any]] = {}
    for event in events:
        kind = event["event"]
        if kind == "step":
            steps.append(Step(event["name"], event["operation"]))
        elif kind == "request":
            pending[event["n"]] = event
        elif kind == "response":
            steps[-1].exchanges.append((pending.pop(event["n"]), event))
        elif kind in ("result", "error"):
            assert steps[-1].outcome is None and event["step"] == steps[-1].name, events
            steps[-1].outcome = event
    assert not pending, f"requests without a response: {pending}"
    assert all(step.outcome is not None for step in steps), events
    return steps


def by_name(steps: list[Step]) -> dict[str, Step]:
    return {step.name: step for step in steps}


def forwarded(request: RecordedRequest) -> dict[str, Any]:
    """What the gateway sent Hasura: the JSON body of a POST, or the parameters of a GET (the gateway
    forwards a hashed GET as a GET with ``query`` in the URL). The recorded query string is already
    percent-decoded; the fixture's texts hold no ``&``, ``+``, ``=`` or ``%``, so splitting it again is exact."""
    if request.method == "GET":
        params = {key: values[0] for key, values in parse_qs(request.query).items()}
        if "variables" in params:
            params["variables"] = json.loads(params["variables"])
        return params
    body = request.json()
    assert isinstance(body, dict), body
    return body


def assert_forwarded(request: RecordedRequest, query: str, operation_name: str, variables: dict[str, Any]) -> None:
    """Hasura received exactly the resolved operation: no ``extensions``, no ``documentId``, the identity."""
    params = forwarded(request)
    assert set(params) <= FORWARDED_KEYS, params
    assert "extensions" not in request.query and b"extensions" not in request.body, request
    assert params["query"] == query, params
    assert params.get("operationName") == operation_name, params
    assert (params.get("variables") or {}) == variables, params
    assert request.path == "/v1/graphql", request
    assert request.header_values("x-hasura-user-id") == [SUB], request.headers
    assert not request.has_header("authorization"), request.headers


def persisted_query(request: dict[str, Any]) -> dict[str, Any]:
    extensions = request["extensions"] or {}
    value: dict[str, Any] = extensions.get("persistedQuery") or {}
    return value


def assert_not_found(response: dict[str, Any]) -> None:
    """The APQ miss Apollo Client retries on (docs/PRODUCT.md; Apollo Server's answer)."""
    assert response["status"] == 200, response
    errors = response["body"]["errors"]
    assert set(response["body"]) == {"errors"} and len(errors) == 1, response
    assert errors[0]["message"] == "PersistedQueryNotFound", response
    assert errors[0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND", response
    assert response["cache_control"] == NO_CACHE, response


def assert_ran(step: Step) -> None:
    assert step.outcome is not None and step.outcome["event"] == "result", step
    assert all(response["status"] == 200 and "data" in response["body"] for response in step.responses[-1:]), step


def assert_refused(step: Step, reason: str) -> None:
    """One request, refused like Hasura's allow-list; Apollo Client did not retry it."""
    assert len(step.exchanges) == 1, step
    response = step.responses[0]
    assert response["status"] == 400, response
    errors = response["body"]["errors"]
    assert len(errors) == 1 and errors[0]["message"] == "query is not allowed", response
    assert errors[0]["extensions"]["code"] == "validation-failed", response
    assert errors[0]["extensions"].get("reason") == reason, response
    assert step.outcome is not None and step.outcome["event"] == "error", step


# -- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> Manifests:
    """The frontend build: both generators, through ``npm run manifests``'s script, into a temporary directory."""
    assert NODE is not None
    _require_packages()
    script = json.loads((FIXTURE_DIR / "package.json").read_text())["scripts"]["manifests"]
    assert script == "node generate_manifests.mjs", script  # what runs below, without npm (no registry check)
    out_dir = tmp_path_factory.mktemp("manifests")
    result = subprocess.run([NODE, "generate_manifests.mjs", str(out_dir)], cwd=FIXTURE_DIR, env=_node_env(),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"generate_manifests.mjs failed:\n{result.stdout}\n{result.stderr}"
    apollo_path, codegen_path = out_dir / "persisted-query-manifest.json", out_dir / "gql" / "persisted-documents.json"
    assert json.loads(result.stdout.splitlines()[-1]) == {"apollo": str(apollo_path), "codegen": str(codegen_path)}
    return Manifests(apollo_path, codegen_path, json.loads(apollo_path.read_text()),
                     json.loads(codegen_path.read_text()))


@pytest.fixture(scope="module")
def apq_gateway(jwks_server: JwksServer, upstream: RecordingUpstream, manifests: Manifests) -> Iterator[GatewayProcess]:
    env = gateway_env(jwks_server.url, {"hasura": hasura_backend(upstream.url, documents={"mode": "apq"})},
                      GATEWAY_DEFAULT_BACKEND="hasura")
    with GatewayProcess(env) as process:
        yield process


@pytest.fixture(scope="module")
def enforce_gateway(jwks_server: JwksServer, upstream: RecordingUpstream,
                    manifests: Manifests) -> Iterator[GatewayProcess]:
    documents = {"mode": "enforce", "manifests": [str(manifests.apollo_path), str(manifests.codegen_path)]}
    env = gateway_env(jwks_server.url, {"hasura": hasura_backend(upstream.url, documents=documents)},
                      GATEWAY_DEFAULT_BACKEND="hasura")
    with GatewayProcess(env) as process:
        yield process


@pytest.fixture
def token(mint: Mint) -> str:
    return mint(sub=SUB, sid="sess_docs", lifetime=120)


# -- the build ---------------------------------------------------------------------------------------


def test_the_apollo_generator_writes_its_manifest(manifests: Manifests) -> None:
    manifest = manifests.apollo
    assert set(manifest) == {"format", "version", "operations"}, manifest
    assert (manifest["format"], manifest["version"]) == ("apollo-persisted-query-manifest", 1)
    operations = manifest["operations"]
    assert len(operations) == 3, operations
    assert {op["name"]: op["type"] for op in operations} == OPERATION_NAMES
    for operation in operations:
        assert set(operation) == {"id", "name", "type", "body"}, operation
        assert operation["id"] == sha256(operation["body"]), operation  # the generator's default id
        assert "__typename" in operation["body"], operation  # run through Apollo Client's transforms
    viewer = manifests.apollo_operation("ViewerProfile")["body"]
    assert viewer.index("query ViewerProfile") < viewer.index("fragment UserFields on User"), viewer


def test_codegen_writes_a_flat_map_of_sha256_ids(manifests: Manifests) -> None:
    documents = manifests.codegen
    assert isinstance(documents, dict) and len(documents) == 3, documents
    for key, text in documents.items():
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", key), key  # client-preset 6: sha256, "sha256:" prefix
        assert key.removeprefix("sha256:") == sha256(text), (key, text)
        assert "__typename" not in text and "\n" not in text, text  # its own canonical form
    assert {_operation_name(text) for text in documents.values()} == set(OPERATION_NAMES)
    assert "fragment UserFields on User" in manifests.codegen_entry("ViewerProfile")[1]
    # the same operation, another text, another id: a gateway must take each manifest's ids as they are
    apollo_ids = {op["id"] for op in manifests.apollo["operations"]}
    assert apollo_ids.isdisjoint(key.removeprefix("sha256:") for key in documents)


# -- apq mode ----------------------------------------------------------------------------------------


def test_apq_misses_retries_and_hits_over_post(apq_gateway: GatewayProcess, upstream: RecordingUpstream,
                                               manifests: Manifests, token: str) -> None:
    steps = by_name(run_driver("apq", apq_gateway, token))
    assert list(steps) == ["first-users", "first-rename-user", "second-users", "second-rename-user"]

    texts: dict[str, str] = {}
    for name, operation in (("users", "Users"), ("rename-user", "RenameUser")):
        first, second = steps[f"first-{name}"], steps[f"second-{name}"]
        # first client: the hash alone, a miss, then the retry with the text under the same hash
        assert len(first.exchanges) == 2, first
        miss, retry = first.requests
        assert [miss["method"], retry["method"]] == ["POST", "POST"], first
        assert not miss["has_query"] and retry["has_query"], first
        text = retry["query"]
        texts[operation] = text
        assert persisted_query(miss) == persisted_query(retry) == {"version": 1, "sha256Hash": sha256(text)}, first
        assert_not_found(first.responses[0])
        assert_ran(first)
        # second client (a reload): the hash alone, a hit
        assert len(second.exchanges) == 1, second
        (hit,) = second.requests
        assert hit["method"] == "POST" and not hit["has_query"], second
        assert persisted_query(hit) == {"version": 1, "sha256Hash": sha256(text)}, second
        assert_ran(second)
    # Apollo Client hashes the text it prints, which is the Apollo manifest's body here: one id for both
    assert sha256(texts["Users"]) == manifests.apollo_operation("Users")["id"]

    received = upstream.requests  # the misses never reached Hasura
    assert len(received) == 4, [forwarded(request) for request in received]
    expected: list[tuple[str, dict[str, Any]]] = [("Users", USERS_VARIABLES), ("RenameUser", RENAME_VARIABLES)] * 2
    for sent, (operation, variables) in zip(received, expected, strict=True):
        assert sent.method == "POST", sent
        assert_forwarded(sent, texts[operation], operation, variables)


def test_apq_over_get_misses_retries_by_post_and_hits(apq_gateway: GatewayProcess, upstream: RecordingUpstream,
                                                      token: str) -> None:
    steps = by_name(run_driver("apq-get", apq_gateway, token))
    first, second = steps["first-viewer-profile"], steps["second-viewer-profile"]

    assert [(r["method"], r["has_query"]) for r in first.requests] == [("GET", False), ("POST", True)], first
    text = first.requests[1]["query"]
    assert "fragment UserFields on User" in text, text
    assert persisted_query(first.requests[0]) == {"version": 1, "sha256Hash": sha256(text)}, first
    assert_not_found(first.responses[0])
    assert_ran(first)
    assert [(r["method"], r["has_query"]) for r in second.requests] == [("GET", False)], second
    assert persisted_query(second.requests[0]) == {"version": 1, "sha256Hash": sha256(text)}, second
    assert_ran(second)

    received = upstream.requests
    assert len(received) == 2, [forwarded(request) for request in received]
    for request in received:
        assert_forwarded(request, text, "ViewerProfile", {})


# -- enforce mode ------------------------------------------------------------------------------------


def test_operations_sent_by_apollo_manifest_id_run_the_manifest_text(enforce_gateway: GatewayProcess,
                                                                     upstream: RecordingUpstream,
                                                                     manifests: Manifests, token: str) -> None:
    steps = run_driver("enforce-manifest", enforce_gateway, token, manifests)
    expected: list[tuple[str, dict[str, Any]]] = [("Users", USERS_VARIABLES), ("ViewerProfile", {}),
                                                  ("RenameUser", RENAME_VARIABLES)]
    assert [step.operation for step in steps] == [name for name, _ in expected]

    for step in steps:
        assert len(step.exchanges) == 1, step  # no retry: the id is known
        (request,) = step.requests
        assert request["method"] == "POST" and not request["has_query"], step
        assert persisted_query(request) == {"version": 1,
                                            "sha256Hash": manifests.apollo_operation(step.operation)["id"]}, step
        assert_ran(step)

    received = upstream.requests
    assert len(received) == 3, [forwarded(request) for request in received]
    for sent, (name, variables) in zip(received, expected, strict=True):
        assert_forwarded(sent, manifests.apollo_operation(name)["body"], name, variables)


def test_operations_sent_by_codegen_id_run_the_codegen_text(enforce_gateway: GatewayProcess,
                                                            upstream: RecordingUpstream,
                                                            manifests: Manifests, token: str) -> None:
    steps = run_driver("enforce-codegen", enforce_gateway, token, manifests)
    expected: list[tuple[str, dict[str, Any]]] = [("Users", USERS_VARIABLES), ("RenameUser", RENAME_VARIABLES)]
    assert [step.operation for step in steps] == [name for name, _ in expected]

    for step in steps:
        assert len(step.exchanges) == 1, step
        (request,) = step.requests
        assert not request["has_query"], step
        key, _ = manifests.codegen_entry(step.operation)
        assert persisted_query(request)["sha256Hash"] == key and key.startswith("sha256:"), step
        assert_ran(step)

    received = upstream.requests
    assert len(received) == 2, [forwarded(request) for request in received]
    for sent, (name, variables) in zip(received, expected, strict=True):
        assert_forwarded(sent, manifests.codegen_entry(name)[1], name, variables)


def test_a_listed_document_sent_as_full_text_runs(enforce_gateway: GatewayProcess, upstream: RecordingUpstream,
                                                  manifests: Manifests, token: str) -> None:
    (step,) = run_driver("enforce-fulltext", enforce_gateway, token, manifests)
    body = manifests.apollo_operation("Users")["body"]

    (request,) = step.requests
    assert request["has_query"] and request["query"] == body and not persisted_query(request), step
    assert_ran(step)
    assert_forwarded(upstream.last(), body, "Users", USERS_VARIABLES)


def test_an_ad_hoc_operation_is_refused_and_never_reaches_hasura(enforce_gateway: GatewayProcess,
                                                                 upstream: RecordingUpstream,
                                                                 manifests: Manifests, token: str) -> None:
    steps = by_name(run_driver("enforce-adhoc", enforce_gateway, token, manifests))
    as_text, by_hash = steps["adhoc-text"], steps["adhoc-hash"]

    assert as_text.requests[0]["has_query"] and not persisted_query(as_text.requests[0]), as_text
    assert_refused(as_text, "document-not-in-manifest")
    # by hash: refused as unknown, not as an APQ miss, so the persisted-queries link does not send the text
    assert not by_hash.requests[0]["has_query"] and persisted_query(by_hash.requests[0]), by_hash
    assert_refused(by_hash, "unknown-document-id")
    assert upstream.requests == []
