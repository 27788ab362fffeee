"""Wycheproof JSON web signature and key vectors through the key loader and the signature stage.

Wycheproof tokens carry arbitrary payloads ("foo", empty, RFC 7520 prose) and no Clerk claims, so
they go through the JWS layer of the verifier — :func:`parse_compact_jws`, the key lookup and
:func:`verify_signature` — which is exactly what :meth:`TokenVerifier.verify` runs before it looks
at claims. Keys go through :func:`load_jwks`, as a published JWKS would.

Scoring (REFERENCE.md §5.5): every ``invalid`` case must be refused with a clean reason; every
``valid`` case for a supported algorithm must verify; valid cases for algorithms the gateway never
accepts (HS*, PS*, EdDSA) are counted as *unsupported*; the eight mislabelled tcIds may go either
way. No exception other than a :class:`GatewayError` may escape.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clerk_gateway.auth.jwk import SUPPORTED_ALGORITHMS, JwksDocumentError, load_jwks
from clerk_gateway.auth.jws_parsing import parse_compact_jws
from clerk_gateway.auth.model import VerificationKey
from clerk_gateway.auth.verifier import verify_signature
from clerk_gateway.errors import AuthenticationError, GatewayError
from tests.support.wycheproof import MissingVectorsError, load_vectors, vector_path

FILES = ("json_web_signature_test.json", "json_web_key_test.json")
#: tcIds whose label is wrong (REFERENCE.md §5.5): either outcome is acceptable.
MISLABELLED = {
    "json_web_signature_test.json": {367, 370, 372, 373, 346, 350, 347, 351},
    "json_web_key_test.json": set(),
}
_PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth"}
_UNSUPPORTED_PREFIXES = ("HS", "PS", "Ed")


@dataclass(frozen=True)
class Case:
    file: str
    tc_id: int
    comment: str
    token: str
    expected: str  # "valid" | "invalid"
    keys: Mapping[str, Any]

    @property
    def alg(self) -> str | None:
        """The header ``alg``, read leniently for classification only (never for verification)."""
        import base64

        try:
            head = self.token.split(".")[0]
            alg = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))).get("alg")
        except Exception:
            return None
        return alg if isinstance(alg, str) else None

    @property
    def unsupported(self) -> bool:
        alg = self.alg
        return alg is not None and alg not in SUPPORTED_ALGORITHMS and alg.startswith(_UNSUPPORTED_PREFIXES)


def _public_keyset(material: Mapping[str, Any]) -> dict[str, Any]:
    """The group's key as a published JWKS would hold it: private members of RSA/EC keys removed."""
    keys = material["keys"] if "keys" in material else [material]
    public = [{name: value for name, value in key.items()
               if not (key.get("kty") in ("RSA", "EC") and name in _PRIVATE_MEMBERS)} for key in keys]
    return {"keys": public}


def _cases(file: str) -> Iterator[Case]:
    data = load_vectors(file)
    for group in data["testGroups"]:
        material = group.get("public", group.get("private"))
        for test in group["tests"]:
            token = test["jws"] if isinstance(test["jws"], str) else json.dumps(test["jws"])
            yield Case(file, test["tcId"], test["comment"], token, test["result"], _public_keyset(material))


CASES = [case for file in FILES for case in _cases(file)]  # a missing file fails collection, loudly


class _GroupKeys:
    """Key lookup for one vector group: by ``kid``; a single kid-less key is used for every token,
    as a configured PEM key would be."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.keys: dict[str | None, VerificationKey] = dict(load_jwks(document, source="wycheproof").keys)

    async def key_for(self, kid: str | None) -> VerificationKey:
        key = self.keys.get(kid)
        if key is None and list(self.keys) == [None]:
            key = self.keys[None]
        if key is None:
            raise AuthenticationError("unknown-kid", "no usable key with that id")
        return key


async def outcome(case: Case) -> str:
    """``"accepted"`` or the rejection reason; any non-gateway exception propagates (a failure)."""
    try:
        try:
            keys = _GroupKeys(case.keys)
        except JwksDocumentError:
            return "unusable-key-set"
        parsed = parse_compact_jws(case.token)
        key = await keys.key_for(parsed.kid)
        verify_signature(parsed, key)
    except GatewayError as exc:
        assert exc.reason, "a rejection must carry a reason"
        assert not case.token or case.token not in exc.message
        return exc.reason
    return "accepted"


def verdict(case: Case, result: str) -> str:
    """``passed``, ``unsupported`` (valid, algorithm never accepted) or ``failed``."""
    if case.tc_id in MISLABELLED[case.file]:
        return "passed"
    if case.expected == "invalid":
        return "passed" if result != "accepted" else "failed"
    if result == "accepted":
        return "passed"
    return "unsupported" if case.unsupported else "failed"


@pytest.mark.parametrize("case", CASES, ids=[f"{c.file.split('_test')[0][9:]}-{c.tc_id}" for c in CASES])
async def test_vector(case: Case) -> None:
    result = await outcome(case)
    assert verdict(case, result) != "failed", (
        f"tcId {case.tc_id} ({case.comment}) is labelled {case.expected} but the gateway said {result}")


async def test_summary(capsys: pytest.CaptureFixture[str]) -> None:
    lines = []
    for file in FILES:
        cases = [case for case in CASES if case.file == file]
        tally: Counter[str] = Counter()
        for case in cases:
            tally[verdict(case, await outcome(case))] += 1
        lines.append(f"Wycheproof {file}: {tally['passed']}/{len(cases)} passed, "
                     f"{tally['unsupported']} valid but unsupported (HS*/PS*/EdDSA), {tally['failed']} failed")
        assert tally["failed"] == 0
    with capsys.disabled():
        print("\n" + "\n".join(lines))


def test_the_vector_files_are_complete() -> None:
    counts = Counter(case.file for case in CASES)
    assert counts == {"json_web_signature_test.json": 401, "json_web_key_test.json": 26}


def test_a_missing_vector_file_fails_instead_of_skipping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.support.wycheproof as vectors

    monkeypatch.setattr(vectors, "VECTORS_DIR", tmp_path)
    with pytest.raises(MissingVectorsError, match="missing"):
        vector_path("json_web_signature_test.json")
    (tmp_path / "json_web_signature_test.json").write_text("{}")
    with pytest.raises(MissingVectorsError, match="pinned"):
        vector_path("json_web_signature_test.json")
