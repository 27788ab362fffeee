"""JSON- and list-valued settings: a bad value is one problem line naming its variable, from every source.

The sources are the environment, nested ``__`` variables, ``.env`` and the ``GATEWAY_CONFIG_FILE``
(YAML and TOML). Each bad value must give a :class:`SettingsError` whose problems name the variable
once, in plain words, without a traceback's wording and without the value (it may hold a secret).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from clerk_gateway.settings import SettingsError, load_settings

SRC = str(Path(__file__).resolve().parents[3] / "src")
SECRET = "s3cret-do-not-print-me"
GOOD_BACKENDS = json.dumps({"hasura": {"url": "http://hasura:8080"}})
NOT_JSON = "is not valid JSON"
NOT_OBJECT = "must be an object"
NOT_LIST = "must be a list of strings"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("CLERK_", "GATEWAY_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # the .env read is the one a case writes, or none


@dataclass(frozen=True)
class Case:
    source: str  # "env" (incl. nested __ variables), "dotenv", "yaml" or "toml"
    setting: str  # the variable (env, dotenv) or the file text (yaml, toml)
    value: str  # the variable's value; unused for files
    variable: str  # the variable the problem must name
    message: str  # what the problem line must say


CASES = {
    # GATEWAY_BACKENDS: a JSON object, or nested GATEWAY_BACKENDS__<NAME>[__<FIELD>] variables
    "backends-truncated": Case("env", "GATEWAY_BACKENDS", '{"hasura": {"url": ', "GATEWAY_BACKENDS",
                               f"{NOT_JSON} (line 1 column 20: Expecting value)"),
    "backends-secret": Case("env", "GATEWAY_BACKENDS", f'{{"hasura": {{"admin_secret": "{SECRET}"', "GATEWAY_BACKENDS",
                            NOT_JSON),
    "backends-single-quotes": Case("env", "GATEWAY_BACKENDS", f"{{'hasura': {{'admin_secret': '{SECRET}'}}}}",
                                   "GATEWAY_BACKENDS", NOT_JSON),
    "backends-empty": Case("env", "GATEWAY_BACKENDS", "", "GATEWAY_BACKENDS", "is empty"),
    "backends-list": Case("env", "GATEWAY_BACKENDS", '["hasura"]', "GATEWAY_BACKENDS", NOT_OBJECT),
    "backends-string": Case("env", "GATEWAY_BACKENDS", '"hasura"', "GATEWAY_BACKENDS", NOT_OBJECT),
    "backends-entry-string": Case("env", "GATEWAY_BACKENDS", '{"hasura": "http://h"}', "GATEWAY_BACKENDS__HASURA",
                                  NOT_OBJECT),
    "nested-truncated": Case("env", "GATEWAY_BACKENDS__hasura", f'{{"admin_secret": "{SECRET}',
                             "GATEWAY_BACKENDS__HASURA", NOT_JSON),
    "nested-plain": Case("env", "GATEWAY_BACKENDS__HASURA", "http://hasura:8080", "GATEWAY_BACKENDS__HASURA", NOT_JSON),
    "nested-list": Case("env", "GATEWAY_BACKENDS__hasura", "[1]", "GATEWAY_BACKENDS__HASURA", NOT_OBJECT),
    "backend-field-json": Case("env", "GATEWAY_BACKENDS__HASURA__CLAIMS_MAP", '{"x-hasura-user-id": ',
                               "GATEWAY_BACKENDS__HASURA__CLAIMS_MAP",
                               f"{NOT_JSON} (line 1 column 22: Expecting value)"),
    "backend-field-list": Case("env", "GATEWAY_BACKENDS__HASURA__ALLOWED_ROLES", '["user", ',
                               "GATEWAY_BACKENDS__HASURA__ALLOWED_ROLES", NOT_JSON),
    # list settings: a comma-separated value or a JSON list of strings
    "cors-truncated": Case("env", "GATEWAY_CORS_ORIGINS", '["https://app.example.com"', "GATEWAY_CORS_ORIGINS",
                           NOT_JSON),
    "cors-numbers": Case("env", "GATEWAY_CORS_ORIGINS", "[1, 2]", "GATEWAY_CORS_ORIGINS", NOT_LIST),
    "cors-object": Case("env", "GATEWAY_CORS_ORIGINS", '{"origin": "https://a.example"}', "GATEWAY_CORS_ORIGINS",
                        NOT_LIST),
    "cors-nested": Case("env", "GATEWAY_CORS_ORIGINS__0", "https://app.example.com", "GATEWAY_CORS_ORIGINS",
                        NOT_LIST),
    "key-files-truncated": Case("env", "GATEWAY_SIGNING_KEY_FILES", '["/keys/a.pem",', "GATEWAY_SIGNING_KEY_FILES",
                                NOT_JSON),
    "key-files-nested": Case("env", "GATEWAY_SIGNING_KEY_FILES__a", "/keys/a.pem", "GATEWAY_SIGNING_KEY_FILES",
                             NOT_LIST),
    "parties-truncated": Case("env", "CLERK_AUTHORIZED_PARTIES", '["https://app.example.com',
                              "CLERK_AUTHORIZED_PARTIES", NOT_JSON),
    "parties-nulls": Case("env", "CLERK_AUTHORIZED_PARTIES", "[null]", "CLERK_AUTHORIZED_PARTIES", NOT_LIST),
    "roles-truncated": Case("env", "GATEWAY_GRAPHQL_INTROSPECTION_ROLES", '["admin"',
                            "GATEWAY_GRAPHQL_INTROSPECTION_ROLES", NOT_JSON),
    "roles-object": Case("env", "GATEWAY_GRAPHQL_INTROSPECTION_ROLES", '{"admin": true}',
                         "GATEWAY_GRAPHQL_INTROSPECTION_ROLES", NOT_LIST),
    # the same values from .env
    "dotenv-backends": Case("dotenv", "GATEWAY_BACKENDS", f'{{"hasura": {{"admin_secret": "{SECRET}"',
                            "GATEWAY_BACKENDS", NOT_JSON),
    "dotenv-backends-list": Case("dotenv", "GATEWAY_BACKENDS", "[]", "GATEWAY_BACKENDS", NOT_OBJECT),
    "dotenv-nested": Case("dotenv", "GATEWAY_BACKENDS__hasura", f'{{"admin_secret": "{SECRET}',
                          "GATEWAY_BACKENDS__HASURA", NOT_JSON),
    "dotenv-cors": Case("dotenv", "GATEWAY_CORS_ORIGINS", '["https://app.example.com"', "GATEWAY_CORS_ORIGINS",
                        NOT_JSON),
    "dotenv-parties": Case("dotenv", "CLERK_AUTHORIZED_PARTIES", "[1]", "CLERK_AUTHORIZED_PARTIES", NOT_LIST),
    "dotenv-roles": Case("dotenv", "GATEWAY_GRAPHQL_INTROSPECTION_ROLES", "[", "GATEWAY_GRAPHQL_INTROSPECTION_ROLES",
                         NOT_JSON),
    # wrong types in the config file
    "yaml-backends-string": Case("yaml", f"gateway:\n  backends: '{SECRET}'\n", "", "GATEWAY_BACKENDS", NOT_OBJECT),
    "yaml-backends-list": Case("yaml", "gateway:\n  backends: [hasura]\n", "", "GATEWAY_BACKENDS", NOT_OBJECT),
    "yaml-backend-string": Case("yaml", "gateway:\n  backends:\n    hasura: http://h\n", "",
                                "GATEWAY_BACKENDS__HASURA", NOT_OBJECT),
    "yaml-cors-number": Case("yaml", "gateway:\n  cors_origins: 5\n", "", "GATEWAY_CORS_ORIGINS", NOT_LIST),
    "yaml-cors-mapping": Case("yaml", "gateway:\n  cors_origins: {a: https://a.example}\n", "",
                              "GATEWAY_CORS_ORIGINS", NOT_LIST),
    "yaml-key-files-null": Case("yaml", "gateway:\n  signing_key_files: [null]\n", "", "GATEWAY_SIGNING_KEY_FILES",
                                NOT_LIST),
    "yaml-parties-numbers": Case("yaml", "clerk:\n  authorized_parties: [1, 2]\n", "", "CLERK_AUTHORIZED_PARTIES",
                                 NOT_LIST),
    "yaml-roles-mapping": Case("yaml", "graphql:\n  introspection_roles: {admin: true}\n", "",
                               "GATEWAY_GRAPHQL_INTROSPECTION_ROLES", NOT_LIST),
    "yaml-section-string": Case("yaml", "gateway: backends\n", "", "GATEWAY_CONFIG_FILE", "must be a mapping"),
    "yaml-key-number": Case("yaml", "gateway:\n  1: backends\n", "", "GATEWAY_CONFIG_FILE", "must be a mapping"),
    "toml-backends-string": Case("toml", f'[gateway]\nbackends = "{SECRET}"\n', "", "GATEWAY_BACKENDS", NOT_OBJECT),
    "toml-backends-list": Case("toml", '[gateway]\nbackends = ["hasura"]\n', "", "GATEWAY_BACKENDS", NOT_OBJECT),
    "toml-backend-number": Case("toml", "[gateway.backends]\nhasura = 1\n", "", "GATEWAY_BACKENDS__HASURA",
                                NOT_OBJECT),
    "toml-cors-number": Case("toml", "[gateway]\ncors_origins = 5\n", "", "GATEWAY_CORS_ORIGINS", NOT_LIST),
    "toml-parties-numbers": Case("toml", "[clerk]\nauthorized_parties = [1]\n", "", "CLERK_AUTHORIZED_PARTIES",
                                 NOT_LIST),
    "toml-roles-string-list": Case("toml", "[graphql]\nintrospection_roles = [[\"admin\"]]\n", "",
                                   "GATEWAY_GRAPHQL_INTROSPECTION_ROLES", NOT_LIST),
    "toml-section-list": Case("toml", "rate_limit = [1]\n", "", "GATEWAY_CONFIG_FILE", "must be a mapping"),
}


def apply(case: Case, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Configure a valid Clerk issuer and backend, then the case's bad value from its source."""
    monkeypatch.setenv("CLERK_FRONTEND_API", "clerk.example.com")
    if case.source in ("yaml", "toml"):
        path = tmp_path / f"gateway.{case.source}"
        path.write_text(case.setting, encoding="utf-8")
        monkeypatch.setenv("GATEWAY_CONFIG_FILE", str(path))
    if not case.setting.startswith("GATEWAY_BACKENDS"):
        monkeypatch.setenv("GATEWAY_BACKENDS", GOOD_BACKENDS)
        if case.source in ("yaml", "toml") and "backends" in case.setting:
            monkeypatch.delenv("GATEWAY_BACKENDS")  # the file's backends must not be overridden
    if case.setting.startswith("GATEWAY_BACKENDS__HASURA__"):
        monkeypatch.setenv("GATEWAY_BACKENDS__HASURA__URL", "http://hasura:8080")
    if case.source == "env":
        monkeypatch.setenv(case.setting, case.value)
    elif case.source == "dotenv":
        (tmp_path / ".env").write_text(f"{case.setting}={case.value}\n", encoding="utf-8")


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_complex_value_is_one_clear_line(case: Case, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    apply(case, monkeypatch, tmp_path)
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    problems = excinfo.value.problems
    named = [message for variable, message in problems if variable == case.variable]
    assert len(named) == 1, problems
    assert case.message in named[0], problems
    text = str(excinfo.value)
    assert len(text.splitlines()) == len(problems)
    for banned in (SECRET, "Traceback", "error parsing value", "Value error", "Input should be", "input_value"):
        assert banned not in text, problems


def test_bad_json_does_not_hide_the_other_problems(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GATEWAY_BACKENDS", '{"hasura": {"url": ')
    monkeypatch.setenv("CLERK_CLOCK_SKEW_SECONDS", "-1")
    monkeypatch.setenv("CLERK_AUTHORIZED_PARTIES", "[")
    monkeypatch.setenv("GATEWAY_PORT", "http")
    monkeypatch.setenv("GATEWAY_GRAPHQL_MAX_DEPTH", "deep")
    (tmp_path / ".env").write_text('GATEWAY_CORS_ORIGINS=*\n', encoding="utf-8")
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    problems = dict(excinfo.value.problems)
    assert problems["GATEWAY_BACKENDS"] == "is not valid JSON (line 1 column 20: Expecting value)"
    assert {"CLERK_CLOCK_SKEW_SECONDS", "CLERK_AUTHORIZED_PARTIES", "GATEWAY_PORT", "GATEWAY_GRAPHQL_MAX_DEPTH",
            "GATEWAY_CORS_ORIGINS", "CLERK_PUBLISHABLE_KEY"} <= set(problems)
    assert len(excinfo.value.problems) == len(problems)  # no line twice, no "no backend configured" on top


def test_bad_nested_backend_still_checks_the_rest_of_the_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLERK_FRONTEND_API", "clerk.example.com")
    monkeypatch.setenv("GATEWAY_BACKENDS__hasura", "{")
    monkeypatch.setenv("GATEWAY_CORS_ORIGINS", "*")
    monkeypatch.setenv("GATEWAY_DEFAULT_BACKEND", "hasura")
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    assert [variable for variable, _ in excinfo.value.problems] == ["GATEWAY_BACKENDS__HASURA", "GATEWAY_CORS_ORIGINS"]


def test_good_complex_values_still_parse(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLERK_FRONTEND_API", "clerk.example.com")
    monkeypatch.setenv("CLERK_AUTHORIZED_PARTIES", '["https://app.example.com", "https://admin.example.com"]')
    monkeypatch.setenv("GATEWAY_BACKENDS", GOOD_BACKENDS)
    monkeypatch.setenv("GATEWAY_BACKENDS__HASURA__AUTH_MODE", "admin_secret")  # merged into the JSON
    monkeypatch.setenv("GATEWAY_BACKENDS__HASURA__ADMIN_SECRET", SECRET)
    monkeypatch.setenv("GATEWAY_CORS_ORIGINS", "https://app.example.com, https://admin.example.com")
    monkeypatch.setenv("GATEWAY_GRAPHQL_INTROSPECTION_ROLES", "")
    settings = load_settings()
    assert settings.clerk.authorized_parties == {"https://app.example.com", "https://admin.example.com"}
    assert settings.backends["hasura"].admin_secret.get_secret_value() == SECRET
    assert settings.gateway.cors_origins == ["https://app.example.com", "https://admin.example.com"]
    assert settings.graphql.introspection_roles == []


def test_serve_reports_bad_backends_json_in_one_line(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("CLERK_", "GATEWAY_"))}
    env.update({"PYTHONPATH": SRC, "CLERK_FRONTEND_API": "clerk.example.com",
                "GATEWAY_BACKENDS": f'{{"hasura": {{"admin_secret": "{SECRET}", "url": '})
    result = subprocess.run([sys.executable, "-m", "clerk_gateway", "serve"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "clerk-gateway: the settings have problems:"
    assert lines[1:] == ["  GATEWAY_BACKENDS: is not valid JSON (line 1 column 62: Expecting value)"]
