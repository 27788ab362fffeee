"""Where the vendored Wycheproof vectors live, and the pin that keeps them the audited version.

The vectors are the gateway's most important security proof, so they travel with the repository
(``tests/data/wycheproof``, see its README for origin and licence) instead of being read from a
folder beside the checkout: a plain clone runs them. A missing or altered file is a failure, never
a skip — a silently skipped proof is worse than none, because it looks like one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

VECTORS_DIR = Path(__file__).resolve().parents[1] / "data" / "wycheproof"

#: SHA-256 of each vendored file, as taken from C2SP/wycheproof at commit dac1dd47 (testvectors_v1/).
PINNED_SHA256 = {
    "json_web_signature_test.json": "8e687a06fe8359f4ec51480f1a9f73c8faebd6f4c01b818b843b44eee54fd5d9",
    "json_web_key_test.json": "be983255bce26406f97020ec5458b33930a90d5f868e604fcd569c300aba2862",
}


class MissingVectorsError(AssertionError):
    """Raised (and so failing the test that asked) when a vector file is absent or not the pinned one."""


def vector_path(name: str) -> Path:
    """The path of a vendored vector file, checked against its pinned digest."""
    path = VECTORS_DIR / name
    if not path.is_file():
        raise MissingVectorsError(f"Wycheproof vector file {path} is missing: it is part of the repository "
                                  "(tests/data/wycheproof); restore it with git checkout")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != PINNED_SHA256[name]:
        raise MissingVectorsError(f"{path} is not the pinned version (sha256 {digest}); see its README")
    return path


def load_vectors(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(vector_path(name).read_text(encoding="utf-8"))
    return data
