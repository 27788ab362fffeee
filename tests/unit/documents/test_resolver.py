"""The resolver alone: the cases the end-to-end tests do not reach cheaply."""

from __future__ import annotations

import hashlib
import json

import pytest

from clerk_gateway.documents.apq_store import ApqStore
from clerk_gateway.documents.manifests import ManifestOperation, Manifests
from clerk_gateway.documents.resolver import DocumentRefused, DocumentResolver
from clerk_gateway.documents.settings import DocumentsSettings

TEXT = "query A { a }"


def resolver(mode: str, **fields: object) -> DocumentResolver:
    manifests = Manifests()
    manifests.add(ManifestOperation("id1", TEXT, "A", "m.json"))
    return DocumentResolver("b", DocumentsSettings(mode=mode, **fields), manifests=manifests,  # type: ignore[arg-type]
                            apq=ApqStore(max_entries=2))


async def test_an_untouched_body_is_forwarded_as_the_same_bytes_in_off_and_apq() -> None:
    body = b'{"query": "{ a }",   "variables": {"x": "extensions are only text here"}}'
    for mode in ("off", "apq"):
        assert await resolver(mode).resolve_body(body, []) is body


async def test_a_body_that_is_not_json_is_left_to_the_limits() -> None:
    assert await resolver("enforce").resolve_body(b"{not json", []) == b"{not json"


async def test_apq_refuses_other_versions_and_bounds_its_store() -> None:
    apq = resolver("apq", apq_cache_size=2)
    with pytest.raises(DocumentRefused) as refused:
        await apq.resolve_operation({"extensions": {"persistedQuery": {"version": 2, "sha256Hash": "x"}}}, [])
    assert refused.value.code == "PERSISTED_QUERY_NOT_SUPPORTED" and refused.value.status == 400
    texts = [f"query Q{i} {{ a }}" for i in range(3)]
    for text in texts:
        digest = hashlib.sha256(text.encode()).hexdigest()
        await apq.resolve_operation({"query": text, "extensions": {"persistedQuery": {"version": 1,
                                                                                       "sha256Hash": digest}}}, [])
    first = hashlib.sha256(texts[0].encode()).hexdigest()
    with pytest.raises(DocumentRefused):  # the least recently used went first
        await apq.resolve_operation({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": first}}}, [])


async def test_a_get_query_string_keeps_only_the_three_parameters() -> None:
    query = b"documentId=id1&variables=%7B%22a%22%3A1%7D&extensions=%7B%7D&other=1"
    resolved = await resolver("enforce").resolve_query_string(query, [])
    assert resolved == b"variables=%7B%22a%22%3A1%7D&query=query+A+%7B+a+%7D"


async def test_log_mode_runs_an_unknown_id_only_with_text_beside_it() -> None:
    log = resolver("log")
    assert (await log.resolve_operation({"documentId": "zzz", "query": "{ b }"}, []))["query"] == "{ b }"
    with pytest.raises(DocumentRefused) as refused:
        await log.resolve_operation({"documentId": "zzz"}, [])
    assert refused.value.reason == "unknown-document-id"


async def test_a_batch_is_resolved_entry_by_entry() -> None:
    body = json.dumps([{"documentId": "id1"}, {"query": TEXT, "extensions": {"x": 1}}]).encode()
    resolved = json.loads(await resolver("enforce").resolve_body(body, []))
    assert resolved == [{"query": TEXT}, {"query": TEXT}]


@pytest.mark.parametrize("extensions", ["text", 3, True, [1]])
async def test_extensions_that_are_not_an_object_are_a_400_not_silently_dropped(extensions: object) -> None:
    body = json.dumps({"query": "{ a }", "extensions": extensions}).encode()
    with pytest.raises(DocumentRefused) as refused:
        await resolver("off").resolve_body(body, [])
    assert refused.value.status == 400 and refused.value.reason == "invalid-extensions"
    with pytest.raises(DocumentRefused):
        await resolver("off").resolve_query_string(b"query=%7B+a+%7D&extensions=not-json", [])
