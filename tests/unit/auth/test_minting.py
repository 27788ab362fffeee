"""Minted tokens: their claims, their signature against the published JWKS, and their cache."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from jose import jwt

from clerk_gateway.auth.minting import GatewayMinter, build_minter, prepare_signing_keys, signing_key_paths
from clerk_gateway.auth.signing_keys import load_signing_keys
from clerk_gateway.settings.gateway import GatewaySettings
from tests.support.clock import ManualClock


@pytest.fixture(scope="module")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    folder = tmp_path_factory.mktemp("keys")
    return [str(folder / "a.pem"), str(folder / "b.pem")]


def minter(paths: list[str], clock: ManualClock | None = None) -> GatewayMinter:
    return GatewayMinter(load_signing_keys(paths), issuer="clerk-gateway", jwks_max_age=120,
                         clock=clock or ManualClock(1_000_000.0))


async def mint(m: GatewayMinter, key: object = "id-1", **changes: object) -> str:
    values: dict[str, object] = {"cache_key": key, "audience": "hasura", "subject": "user_1",
                                 "claims": {"https://hasura.io/jwt/claims": {"x-hasura-default-role": "user"}},
                                 "lifetime_seconds": 60}
    values.update(changes)
    return await m.token_for(**values)  # type: ignore[arg-type]


async def test_a_minted_token_verifies_against_the_published_jwks_with_every_claim(key_files: list[str]) -> None:
    clock = ManualClock(1_000_000.0)
    m = minter(key_files, clock)
    token = await mint(m)
    jwks = orjson.loads(m.jwks_body)
    assert [k["kid"] for k in jwks["keys"]] == [key.kid for key in m.keys]  # every key is published
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "RS256", "kid": m.signing_kid, "typ": "JWT"} and m.signing_kid == m.keys[0].kid
    published = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(token, published, algorithms=["RS256"], audience="hasura", issuer="clerk-gateway",
                        options={"verify_exp": False})
    assert claims["sub"] == "user_1" and claims["iat"] == 1_000_000 and claims["exp"] == 1_000_060
    assert claims["https://hasura.io/jwt/claims"] == {"x-hasura-default-role": "user"}
    assert m.jwks_cache_control == b"public, max-age=120"


async def test_the_same_identity_reuses_its_token_until_shortly_before_exp(key_files: list[str]) -> None:
    clock = ManualClock(1_000_000.0)
    m = minter(key_files, clock)
    first = await mint(m)
    clock.now += 49
    assert await mint(m) == first
    clock.now += 2  # 51 s: within the last 10 s of a 60 s token
    assert await mint(m) != first


async def test_another_identity_gets_another_token(key_files: list[str]) -> None:
    m = minter(key_files)
    assert await mint(m, "id-1") != await mint(m, "id-2", subject="user_2")


async def test_a_minted_token_never_outlives_the_clerk_token(key_files: list[str]) -> None:
    clock = ManualClock(1_000_000.0)
    m = minter(key_files, clock)
    token = await mint(m, not_after=1_000_020)
    assert jwt.get_unverified_claims(token)["exp"] == 1_000_020


async def test_the_cache_is_bounded(key_files: list[str]) -> None:
    m = GatewayMinter(load_signing_keys(key_files), issuer="i", cache_size=3)
    for n in range(10):
        await mint(m, f"id-{n}")
    assert len(m._cache) == 3


def test_the_key_list_comes_from_files_or_file(key_files: list[str], tmp_path: Path) -> None:
    assert signing_key_paths(GatewaySettings(signing_key_files=key_files)) == key_files
    assert signing_key_paths(GatewaySettings(signing_key_file=key_files[0])) == key_files[:1]
    assert build_minter(GatewaySettings(signing_key_files=key_files[::-1])).signing_kid == \
        load_signing_keys(key_files[1:])[0].kid
    bad = tmp_path / "bad.pem"
    bad.write_text("nope")
    problem = prepare_signing_keys(GatewaySettings(signing_key_file=str(bad)))
    assert problem is not None and problem.startswith("GATEWAY_SIGNING_KEY_FILE: ") and "\n" not in problem
    assert json.dumps(problem)
