"""Manifests as the tools write them, and ``documents check``'s verdicts."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from clerk_gateway.documents.check import check_manifests
from clerk_gateway.documents.manifests import ManifestError, load_manifests, normalise_id, read_manifest

APOLLO = {"format": "apollo-persisted-query-manifest", "version": 1, "operations": [
    {"id": "ABC123", "name": "Viewer", "type": "query", "body": "query Viewer { viewer { id } }"}]}


def write(tmp_path: Path, name: str, content: Any) -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_both_shapes_load_and_ids_are_the_keys_normalised(tmp_path: Path) -> None:
    flat = write(tmp_path, "flat.json", {"sha256:DEF456": "query Users { users { id } }"})
    manifests = load_manifests([write(tmp_path, "apollo.json", APOLLO), flat])
    assert set(manifests.by_id) == {"abc123", "def456"}
    assert manifests.by_id["abc123"].name == "Viewer"
    assert manifests.by_body["query Users { users { id } }"] == "def456"
    assert normalise_id(" SHA256:AbC ") == "abc"


@pytest.mark.parametrize(("content", "words"), [
    ([1, 2], "is a JSON list"),
    ({**APOLLO, "version": 2}, "of version 2"),
    ({**APOLLO, "format": "other"}, "not 'apollo-persisted-query-manifest'"),
    ({**APOLLO, "operations": [{"id": "x"}]}, "operations[0] needs an 'id' and a 'body'"),
    ({"x": 3}, "is not an id mapped to a document text"),
    ("{oops", "is not JSON"),
])
def test_an_unusable_file_is_one_line_naming_it(tmp_path: Path, content: Any, words: str) -> None:
    path = write(tmp_path, "bad.json", content)
    with pytest.raises(ManifestError) as failure:
        read_manifest(path)
    assert str(failure.value).startswith(path) and words in str(failure.value)


def test_one_id_for_two_documents_across_files_is_refused(tmp_path: Path) -> None:
    first = write(tmp_path, "a.json", {"same": "query A { a }"})
    second = write(tmp_path, "b.json", {"same": "query B { b }"})
    with pytest.raises(ManifestError, match="with another document"):
        load_manifests([first, second])


def test_documents_check_passes_good_files_and_lists_every_problem(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    good = write(tmp_path, "good.json", APOLLO)
    assert check_manifests([good], out=out, err=err) == 0
    assert out.getvalue().strip() == "documents check: 1 operation in 1 file, all usable" and err.getvalue() == ""
    deep = "query Deep { " + "a { " * 20 + "b" + " }" * 20 + " }"
    bad = write(tmp_path, "bad.json", {"p1": "query { not closed", "p2": deep})
    missing = str(tmp_path / "missing.json")
    out, err = io.StringIO(), io.StringIO()
    assert check_manifests([good, bad, missing], out=out, err=err) == 1
    lines = err.getvalue().splitlines()
    assert any("missing.json: cannot be read" in line for line in lines)
    assert any("p1" in line and "does not parse" in line for line in lines)
    assert any("p2" in line and "the GraphQL limits would refuse it" in line for line in lines)
    assert out.getvalue().startswith("documents check: 3 problems in 3 files")
