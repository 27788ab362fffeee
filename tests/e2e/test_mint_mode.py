"""``mint`` mode end to end: the gateway signs, the upstream verifies against the gateway's JWKS.

The upstream here is :class:`JwtVerifyingUpstream`, which checks the minted token the way Hasura's
``jwk_url`` does (iss, aud, signature by ``kid``, claims namespace, JWKS cached for its max-age and
not refetched for an unknown kid), so "it works" means a real verifier accepted the tokens.
"""

from __future__ import annotations

import stat
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Mint, bearer
from tests.e2e.test_cli import run_cli
from tests.support.gateway_process import GatewayProcess, gateway_env
from tests.support.jwks_server import JwksServer
from tests.support.jwt_upstream import NAMESPACE, JwtVerifyingUpstream

GRAPHQL = "/hasura/v1/graphql"
ISSUER = "clerk-gateway"


def mint_backend(url: str, **fields: object) -> dict[str, object]:
    backend: dict[str, object] = {"adapter": "hasura", "url": url, "auth_mode": "mint",
                                  "allowed_roles": ["user", "editor"], "timeout_seconds": 10}
    backend.update(fields)
    return backend


@pytest.fixture(scope="module")
def verifying_upstream() -> Iterator[JwtVerifyingUpstream]:
    with JwtVerifyingUpstream(issuer=ISSUER, audience="hasura") as server:
        yield server


def start_minting_gateway(jwks_server: JwksServer, upstream: JwtVerifyingUpstream, keys: list[Path],
                          **extra: object) -> GatewayProcess:
    env = gateway_env(jwks_server.url, {"hasura": mint_backend(upstream.base_url)},
                      GATEWAY_SIGNING_KEY_FILES=",".join(str(path) for path in keys),
                      GATEWAY_JWKS_MAX_AGE_SECONDS=1, GATEWAY_LOG_LEVEL="warning", **extra)
    return GatewayProcess(env).start()


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("signing-keys")


@pytest.fixture(scope="module")
def gateway(jwks_server: JwksServer, verifying_upstream: JwtVerifyingUpstream,
            key_dir: Path) -> Iterator[GatewayProcess]:
    process = start_minting_gateway(jwks_server, verifying_upstream, [key_dir / "main.pem"])
    verifying_upstream.jwks_url = process.url + "/.well-known/jwks.json"
    try:
        yield process
    finally:
        process.close()


def test_the_upstream_verifies_the_minted_identity(gateway: GatewayProcess, verifying_upstream: JwtVerifyingUpstream,
                                                   mint: Mint) -> None:
    with gateway.client() as client:
        response = client.post(GRAPHQL, json={"query": "{ viewer { id } }"},
                               headers={**bearer(mint(sub="user_minted")), "x-hasura-role": "editor"})
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"viewer": {"role": "editor"}}}
    claims = verifying_upstream.last_claims
    assert claims is not None and claims["sub"] == "user_minted" and claims["aud"] == "hasura"
    assert claims["exp"] - claims["iat"] <= 60
    assert claims[NAMESPACE] == {"x-hasura-default-role": "user", "x-hasura-allowed-roles": ["user", "editor"],
                                 "x-hasura-user-id": "user_minted"}


def test_the_key_file_was_created_private_and_the_jwks_is_published(gateway: GatewayProcess, key_dir: Path) -> None:
    key_file = key_dir / "main.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    with gateway.client() as client:
        response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200 and response.headers["cache-control"] == "public, max-age=1"
    (key,) = response.json()["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig" and "d" not in key


def test_no_minted_token_or_key_material_reaches_the_log(gateway: GatewayProcess,
                                                         verifying_upstream: JwtVerifyingUpstream,
                                                         key_dir: Path, mint: Mint) -> None:
    with gateway.client() as client:
        for n in range(3):
            assert client.post(GRAPHQL, json={"query": "{ a }"}, headers=bearer(mint(sub=f"user_log_{n}"))
                               ).status_code == 200
    log = gateway.stderr_text()
    assert verifying_upstream.tokens_seen and not any(token in log for token in verifying_upstream.tokens_seen)
    key_body = "".join((key_dir / "main.pem").read_text().splitlines()[1:-1])
    assert key_body[:64] not in log.replace("\n", "")


def test_a_role_outside_the_allowed_roles_is_refused_before_anything_is_minted(gateway: GatewayProcess,
                                                                              mint: Mint) -> None:
    with gateway.client() as client:
        response = client.post(GRAPHQL, json={"query": "{ a }"}, headers={**bearer(mint()), "x-hasura-role": "admin"})
    assert response.status_code == 403


def test_mint_without_a_key_file_is_one_settings_line(jwks_server: JwksServer, tmp_path: Path) -> None:
    env = gateway_env(jwks_server.url, {"hasura": mint_backend("http://127.0.0.1:9")})
    result = run_cli("serve", env=env, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "GATEWAY_SIGNING_KEY_FILE: required by GATEWAY_BACKENDS__HASURA__AUTH_MODE=mint" in result.stderr


def test_an_unusable_key_file_is_one_settings_line(jwks_server: JwksServer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    env = gateway_env(jwks_server.url, {"hasura": mint_backend("http://127.0.0.1:9")},
                      GATEWAY_SIGNING_KEY_FILE=str(bad))
    result = run_cli("serve", env=env, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"GATEWAY_SIGNING_KEY_FILE: {bad}: not an unencrypted PEM private key" in result.stderr


class _Load:
    """Requests in a loop against whichever gateway replica is current, counting every outcome."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.target = ""
        self.outcomes: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10, trust_env=False) as client:
            n = 0
            while not self._stop.is_set():
                if not self.target:
                    time.sleep(0.01)
                    continue
                n += 1
                try:
                    response = client.post(self.target + GRAPHQL, json={"query": "{ viewer { id } }"},
                                           headers=bearer(self.tokens[n % len(self.tokens)]))
                    self.outcomes[str(response.status_code)] += 1
                except httpx.TransportError as exc:
                    self.outcomes[type(exc).__name__] += 1

    def __enter__(self) -> _Load:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _roll(jwks_server: JwksServer, upstream: JwtVerifyingUpstream, load: _Load, stages: list[list[Path]],
          dwell: float) -> None:
    """Replace the serving replica stage by stage, as a rolling deploy does: start the new one,
    move traffic (and the upstream's JWKS URL) to it, stop the old one, keep serving for ``dwell``."""
    current: GatewayProcess | None = None
    try:
        for keys in stages:
            replica = start_minting_gateway(jwks_server, upstream, keys)
            load.target = replica.url
            upstream.jwks_url = replica.url + "/.well-known/jwks.json"
            if current is not None:
                time.sleep(0.3)  # a balancer drains the old replica: its in-flight requests finish
                current.close()
            current = replica
            time.sleep(dwell)
    finally:
        load.stop()  # before the last replica goes away
        if current is not None:
            current.close()


def test_rotating_the_key_under_load_fails_no_request(jwks_server: JwksServer, mint: Mint, tmp_path: Path) -> None:
    """The documented procedure: publish the new key behind the old one, wait for caches (max-age),
    sign with it, then retire the old key — continuous traffic throughout, and not one refusal."""
    old, new = tmp_path / "old.pem", tmp_path / "new.pem"
    with JwtVerifyingUpstream(issuer=ISSUER, audience="hasura") as upstream:
        with _Load([mint(sub=f"user_rot_{n}", lifetime=600) for n in range(20)]) as load:
            _roll(jwks_server, upstream, load, [[old], [old, new], [new, old], [new]], dwell=2.5)
        assert load.outcomes["200"] > 200, load.outcomes
        assert set(load.outcomes) == {"200"}, load.outcomes
        assert upstream.outcomes.keys() == {"ok"}, upstream.outcomes
        assert len(upstream.kids) == 2  # both keys really signed requests


def test_skipping_the_publish_step_does_fail_requests(jwks_server: JwksServer, mint: Mint, tmp_path: Path) -> None:
    """The control: swapping the key in one step leaves the upstream's cached JWKS without the new
    kid, and requests fail until the cache expires — which is why the procedure has three steps."""
    with JwtVerifyingUpstream(issuer=ISSUER, audience="hasura") as upstream:
        upstream_refresh_never = 3600
        with _Load([mint(sub="user_swap", lifetime=600)]) as load:
            first = start_minting_gateway(jwks_server, upstream, [tmp_path / "one.pem"])
            load.target, upstream.jwks_url = first.url, first.url + "/.well-known/jwks.json"
            time.sleep(1.0)
            upstream._max_age = upstream_refresh_never  # Hasura would keep this JWKS for its max-age
            second = start_minting_gateway(jwks_server, upstream, [tmp_path / "two.pem"])
            load.target = second.url
            time.sleep(0.3)
            first.close()
            time.sleep(1.0)
            load.stop()
            second.close()
        assert upstream.outcomes["unknown-kid"] > 0, upstream.outcomes
