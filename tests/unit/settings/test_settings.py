"""Settings: every source, every derivation, and one clear line per problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clerk_gateway.settings import SettingsError, load_settings

PK = "pk_test_ZGl2aW5lLWZveGhvdW5kLTIyLmNsZXJrLmFjY291bnRzLmRldiQ="
HASURA = {"hasura": {"url": "http://hasura:8080", "auth_mode": "admin_secret", "admin_secret": "s3cret"}}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("CLERK_", "GATEWAY_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def problems_of(excinfo: pytest.ExceptionInfo[SettingsError]) -> dict[str, str]:
    return dict(excinfo.value.problems)


def test_publishable_key_derives_issuer_jwks_and_cookie(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLERK_PUBLISHABLE_KEY", PK)
    monkeypatch.setenv("GATEWAY_BACKENDS", json.dumps(HASURA))
    settings = load_settings()
    assert settings.clerk.issuer == "https://divine-foxhound-22.clerk.accounts.dev"
    assert settings.clerk.jwks_url == "https://divine-foxhound-22.clerk.accounts.dev/.well-known/jwks.json"
    assert settings.clerk.session_cookie_names == ("__session_rVL_sWZr", "__session")
    assert settings.clerk.clock_skew_seconds == 5
    assert settings.clerk.jwks_cooldown_seconds == 10
    assert settings.backends["hasura"].auth_mode == "admin_secret"


def test_frontend_api_and_explicit_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLERK_FRONTEND_API", "https://clerk.example.com")
    monkeypatch.setenv("CLERK_JWKS_URL", "http://127.0.0.1:9/jwks.json")
    monkeypatch.setenv("CLERK_AUTHORIZED_PARTIES", "https://app.example.com, https://admin.example.com")
    monkeypatch.setenv("CLERK_SECRET_KEY", "sk_test_abc")
    monkeypatch.setenv("GATEWAY_BACKENDS", json.dumps(HASURA))
    clerk = load_settings().clerk
    assert clerk.issuer == "https://clerk.example.com"
    assert clerk.jwks_url == "http://127.0.0.1:9/jwks.json"
    assert clerk.backend_api_jwks_url == "https://api.clerk.com/v1/jwks"
    assert clerk.authorized_parties == {"https://app.example.com", "https://admin.example.com"}


def test_nested_backend_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLERK_FRONTEND_API", "clerk.example.com")
    monkeypatch.setenv("GATEWAY_BACKENDS__HASURA__URL", "http://hasura:8080/")
    monkeypatch.setenv("GATEWAY_BACKENDS__HASURA__AUTH_MODE", "admin_secret")
    monkeypatch.setenv("GATEWAY_BACKENDS__HASURA__ADMIN_SECRET", "s3cret")
    monkeypatch.setenv("GATEWAY_BACKENDS__HASURA__ALLOWED_ROLES", "user,editor")
    backend = load_settings().backends["hasura"]
    assert backend.url == "http://hasura:8080"
    assert backend.allowed_roles == ["user", "editor"]
    assert backend.admin_secret.get_secret_value() == "s3cret"


@pytest.mark.parametrize("suffix", ["yaml", "toml"])
def test_config_file_with_env_winning(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"gateway.{suffix}"
    if suffix == "yaml":
        path.write_text("clerk:\n  frontend_api: clerk.file.example\n  clock_skew_seconds: 9\n"
                        "gateway:\n  port: 9001\n  backends:\n    hasura:\n      url: http://h:8080\n")
    else:
        path.write_text('[clerk]\nfrontend_api = "clerk.file.example"\nclock_skew_seconds = 9\n'
                        '[gateway]\nport = 9001\n[gateway.backends.hasura]\nurl = "http://h:8080"\n')
    monkeypatch.setenv("GATEWAY_CONFIG_FILE", str(path))
    monkeypatch.setenv("GATEWAY_PORT", "9100")
    settings = load_settings()
    assert settings.clerk.issuer == "https://clerk.file.example"
    assert settings.clerk.clock_skew_seconds == 9
    assert settings.gateway.port == 9100
    assert settings.backends["hasura"].url == "http://h:8080"


def test_every_problem_is_reported_with_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLERK_PUBLISHABLE_KEY", "pk_live_garbage!")
    monkeypatch.setenv("CLERK_CLOCK_SKEW_SECONDS", "-3")
    monkeypatch.setenv("GATEWAY_PORT", "http")
    monkeypatch.setenv("GATEWAY_CORS_ORIGINS", "*")
    monkeypatch.setenv("GATEWAY_BACKENDS", json.dumps({
        "hasura": {"url": "hasura:8080"},
        "secretless": {"adapter": "hasura", "url": "http://h", "auth_mode": "admin_secret"},
        "other": {"url": "http://x"},
    }))
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    problems = problems_of(excinfo)
    assert "CLERK_CLOCK_SKEW_SECONDS" in problems
    assert "GATEWAY_PORT" in problems
    assert "GATEWAY_BACKENDS__OTHER__ADAPTER" in problems
    assert "GATEWAY_BACKENDS__HASURA__URL" in problems
    assert "needs admin_secret" in problems["GATEWAY_BACKENDS__SECRETLESS"]
    assert "GATEWAY_CORS_ORIGINS" in problems
    assert all("\n" not in line for line in str(excinfo.value).splitlines())


def test_contradiction_between_publishable_key_and_frontend_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLERK_PUBLISHABLE_KEY", PK)
    monkeypatch.setenv("CLERK_FRONTEND_API", "clerk.other.example")
    monkeypatch.setenv("GATEWAY_BACKENDS", json.dumps(HASURA))
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    assert "contradicts CLERK_PUBLISHABLE_KEY" in problems_of(excinfo)["CLERK_FRONTEND_API"]


def test_nothing_configured_names_what_to_set() -> None:
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    problems = problems_of(excinfo)
    assert "CLERK_PUBLISHABLE_KEY" in problems
    assert "GATEWAY_BACKENDS" in problems


def test_secret_never_appears_in_problem_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLERK_SECRET_KEY", "not-a-real-secret-value-123")
    monkeypatch.setenv("GATEWAY_BACKENDS", json.dumps(HASURA))
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    assert "not-a-real-secret-value-123" not in str(excinfo.value)
    assert "CLERK_SECRET_KEY" in problems_of(excinfo)


def test_identity_modes_name_what_they_still_need(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLERK_FRONTEND_API", "clerk.example.com")
    monkeypatch.setenv("GATEWAY_BACKENDS", json.dumps({
        "hasura": {"url": "http://h", "auth_mode": "mint"},
        "other": {"adapter": "hasura", "url": "http://h", "auth_mode": "exchange", "template": "hasura"},
        "third": {"adapter": "hasura", "url": "http://h", "auth_mode": "exchange"},
    }))
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    problems = problems_of(excinfo)
    assert "GATEWAY_BACKENDS__HASURA__AUTH_MODE=mint" in problems["GATEWAY_SIGNING_KEY_FILE"]
    assert "GATEWAY_BACKENDS__OTHER__AUTH_MODE=exchange" in problems["CLERK_SECRET_KEY"]
    assert "needs template" in problems["GATEWAY_BACKENDS__THIRD"]
