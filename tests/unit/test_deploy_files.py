"""The deployment files are checked statically (no Docker engine here): they must agree with the code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from clerk_gateway.settings import SettingsError, load_settings
from clerk_gateway.settings.clerk import ClerkSettings
from clerk_gateway.settings.gateway import GatewaySettings
from clerk_gateway.settings.graphql_limits import GraphQLLimitSettings
from clerk_gateway.settings.ratelimit import RateLimitSettings

ROOT = Path(__file__).resolve().parents[2]
MODELS = [(ClerkSettings, "CLERK_"), (GatewaySettings, "GATEWAY_"), (GraphQLLimitSettings, "GATEWAY_GRAPHQL_"),
          (RateLimitSettings, "GATEWAY_RATE_LIMIT_")]


def test_env_example_lists_every_setting_with_a_comment() -> None:
    text = (ROOT / ".env.example").read_text()
    lines = text.splitlines()
    for model, prefix in MODELS:
        for name in model.model_fields:
            variable = f"{prefix}{name.upper()}"
            if model is GatewaySettings and variable.startswith(("GATEWAY_GRAPHQL_", "GATEWAY_RATE_LIMIT_")):
                continue
            found = [i for i, line in enumerate(lines) if re.match(rf"#? ?{variable}=", line)
                     or re.search(rf"`?{variable}`?[ =]", line)]
            assert found, f"{variable} is not in .env.example"
            index = found[0]
            assert lines[index - 1].startswith("#"), f"{variable} has no comment line above it"


def _settings_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gateway_env: dict[str, str]) -> None:
    """Exactly compose's gateway environment (plus a publishable key), nothing from this shell or a .env."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in __import__("os").environ if n.startswith(("CLERK_", "GATEWAY_"))]:
        monkeypatch.delenv(name)
    for name, value in gateway_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CLERK_PUBLISHABLE_KEY", "pk_test_ZGl2aW5lLWZveGhvdW5kLTIyLmNsZXJrLmFjY291bnRzLmRldiQ=")


def _interpolate(value: str) -> str:
    """Compose's ${NAME:-default} with the defaults (no .env here)."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_compose_runs_the_gateway_in_front_of_hasura_and_postgres(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"gateway", "hasura", "postgres"} <= set(services)
    hasura_env = services["hasura"]["environment"]
    assert "ports" not in services["hasura"], "Hasura must be reachable only through the gateway"
    assert hasura_env["HASURA_GRAPHQL_ENABLE_CONSOLE"] == "false"
    gateway_env = {k: _interpolate(str(v)) for k, v in services["gateway"]["environment"].items()}
    backends = json.loads(gateway_env["GATEWAY_BACKENDS"])
    assert backends["hasura"]["admin_secret"] == _interpolate(hasura_env["HASURA_GRAPHQL_ADMIN_SECRET"])
    _settings_environment(monkeypatch, tmp_path, gateway_env)
    try:
        settings = load_settings()
    except SettingsError as error:  # pragma: no cover - the message is the assertion
        pytest.fail(f"compose's gateway settings are refused: {error}")
    assert settings.gateway.host == "0.0.0.0" and settings.gateway.default_backend == "hasura"


def test_dockerfile_runs_serve_as_an_unprivileged_user_with_a_health_check() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["clerk-gateway"]' in text and 'CMD ["serve"]' in text
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert "GATEWAY_HOST=0.0.0.0" in text


def test_the_mint_override_matches_hasuras_jwt_secret_to_the_gateways_jwks(monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Path) -> None:
    base = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    override = yaml.safe_load((ROOT / "docker-compose.mint.yml").read_text())
    secret = json.loads(override["services"]["hasura"]["environment"]["HASURA_GRAPHQL_JWT_SECRET"])
    gateway_env = {k: _interpolate(str(v)) for k, v in {**base["gateway"]["environment"],
                                                         **override["services"]["gateway"]["environment"]}.items()}
    backends = json.loads(gateway_env["GATEWAY_BACKENDS"])
    assert backends["hasura"]["auth_mode"] == "mint"
    assert secret["jwk_url"] == f"http://gateway:{gateway_env['GATEWAY_PORT']}/.well-known/jwks.json"
    assert secret["issuer"] == gateway_env["GATEWAY_ISSUER"]
    assert secret["audience"] == "hasura"  # the minted aud defaults to the backend's name
    key_dir = gateway_env["GATEWAY_SIGNING_KEY_FILE"].rsplit("/", 1)[0]
    assert any(volume.endswith(":" + key_dir) for volume in override["services"]["gateway"]["volumes"])
    assert set(override["volumes"]) == {"gateway-keys"}
    _settings_environment(monkeypatch, tmp_path, gateway_env)
    settings = load_settings()
    assert settings.gateway.signing_key_file == "/var/lib/clerk-gateway/signing-key.pem"
