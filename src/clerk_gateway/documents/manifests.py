"""Manifests in the formats frontends already produce, read once at start-up.

Two shapes, told apart by their content (REFERENCE.md §9):

- Apollo's persisted query manifest (``@apollo/generate-persisted-query-manifest``):
  ``{"format": "apollo-persisted-query-manifest", "version": 1, "operations": [{"id", "name", "type", "body"}]}``;
- a flat ``{"<id>": "<document>"}`` object: GraphQL Codegen's client preset
  (``persisted-documents.json``) and Relay (``persisted_queries.json``).

Ids are the manifest's keys, compared in lower case without a ``sha256:`` prefix, and never
recomputed from the bodies: a tool may hash a normalised print of the document, so a hash of the
body as written would not match what the client sends. A file that cannot be used stops start-up
with one line naming it; an id listed twice with different bodies is such a problem too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from graphql import GraphQLError, parse

APOLLO_FORMAT = "apollo-persisted-query-manifest"
MAX_MANIFEST_BYTES = 64 * 1024 * 1024


class ManifestError(ValueError):
    """One line naming the file and what is wrong with it."""


def normalise_id(value: str) -> str:
    text = value.strip().lower()
    return text.removeprefix("sha256:")


@dataclass(frozen=True, slots=True)
class ManifestOperation:
    id: str
    body: str
    name: str | None
    source: str  # the file it came from, for messages


@dataclass
class Manifests:
    """Every loaded operation by id, and the ids of each body (for full-text requests)."""

    by_id: dict[str, ManifestOperation] = field(default_factory=dict)
    by_body: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.by_id)

    def add(self, operation: ManifestOperation) -> None:
        known = self.by_id.get(operation.id)
        if known is not None and known.body != operation.body:
            raise ManifestError(f"{operation.source}: id {operation.id[:16]}… is also in {known.source} with "
                                "another document")
        self.by_id[operation.id] = operation
        self.by_body.setdefault(operation.body, operation.id)


def load_manifests(paths: Iterable[str]) -> Manifests:
    manifests = Manifests()
    for path in paths:
        for operation in read_manifest(path):
            manifests.add(operation)
    return manifests


def read_manifest(path: str) -> list[ManifestOperation]:
    """The operations of one file; raises :class:`ManifestError`."""
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{path}: larger than {MAX_MANIFEST_BYTES // (1024 * 1024)} MiB")
        data: Any = orjson.loads(file.read_bytes())
    except OSError as exc:
        raise ManifestError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"{path}: is not JSON ({str(exc).splitlines()[0][:120]})") from None
    if isinstance(data, dict) and "format" in data:
        return _apollo(path, data)
    if isinstance(data, dict):
        return _flat(path, data)
    raise ManifestError(f"{path}: is a JSON {type(data).__name__}; a manifest is an Apollo persisted query manifest "
                        "or a flat {\"<id>\": \"<document>\"} object")


def _apollo(path: str, data: Mapping[str, Any]) -> list[ManifestOperation]:
    if data.get("format") != APOLLO_FORMAT:
        raise ManifestError(f"{path}: format is {str(data.get('format'))[:60]!r}, not {APOLLO_FORMAT!r}")
    if data.get("version") != 1:
        raise ManifestError(f"{path}: is an Apollo manifest of version {str(data.get('version'))[:20]}; "
                            "only version 1 is understood")
    operations = data.get("operations")
    if not isinstance(operations, list):
        raise ManifestError(f"{path}: has no 'operations' list")
    found = []
    for index, item in enumerate(operations):
        if not (isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"].strip()
                and isinstance(item.get("body"), str) and item["body"].strip()):
            raise ManifestError(f"{path}: operations[{index}] needs an 'id' and a 'body' (strings)")
        name = item.get("name")
        found.append(ManifestOperation(normalise_id(item["id"]), item["body"], name if isinstance(name, str) else None,
                                       path))
    return found


def _flat(path: str, data: Mapping[str, Any]) -> list[ManifestOperation]:
    found = []
    for key, body in data.items():
        if not isinstance(body, str) or not body.strip() or not key.strip():
            raise ManifestError(f"{path}: the entry {key[:40]!r} is not an id mapped to a document text")
        found.append(ManifestOperation(normalise_id(key), body, None, path))
    return found


def parse_problems(manifests: Manifests) -> list[str]:
    """Documents that do not parse as GraphQL: ``documents check`` reports them."""
    problems = []
    for operation in manifests.by_id.values():
        try:
            parse(operation.body)
        except GraphQLError as error:
            problems.append(f"{operation.source}: {operation.name or operation.id[:16]}: does not parse "
                            f"({error.message})")
    return problems
