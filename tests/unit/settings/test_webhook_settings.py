"""The webhook settings: signing secrets, GATEWAY_USER_SYNC against its backend, GATEWAY_REDIS_URL."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from clerk_gateway.settings import SettingsError, load_settings

PK = "pk_test_ZGl2aW5lLWZveGhvdW5kLTIyLmNsZXJrLmFjY291bnRzLmRldiQ="
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BACKENDS = {
    "hasura": {"url": "http://hasura:8080", "auth_mode": "admin_secret", "admin_secret": "s3cret"},
    "jwt": {"adapter": "hasura", "url": "http://hasura:8080", "auth_mode": "forward"},
    "db": {"adapter": "fauna", "auth_mode": "forward"},
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("CLERK_", "GATEWAY_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLERK_PUBLISHABLE_KEY", PK)
    monkeypatch.setenv("GATEWAY_BACKENDS", json.dumps(BACKENDS))


def _problems(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as failure:
        load_settings()
    return dict(failure.value.problems)


def test_signing_secrets_are_whsec_values_one_or_several(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLERK_WEBHOOK_SIGNING_SECRET", f"{SECRET}, whsec_plJ3nmyCDGBKInavdOK15jsl")
    assert load_settings().clerk.webhook_signing_secrets == (SECRET, "whsec_plJ3nmyCDGBKInavdOK15jsl")
    monkeypatch.delenv("CLERK_WEBHOOK_SIGNING_SECRET")
    assert load_settings().clerk.webhook_signing_secrets == ()


@pytest.mark.parametrize("value", ["sk_test_not_a_webhook_secret", "whsec_", "whsec_@@@@", "whsec_c2hvcnQ="])
def test_a_bad_signing_secret_is_one_line_that_never_echoes_it(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    problems = _problems(monkeypatch, CLERK_WEBHOOK_SIGNING_SECRET=value)
    assert list(problems) == ["CLERK_WEBHOOK_SIGNING_SECRET"]
    assert value == "whsec_" or value not in problems["CLERK_WEBHOOK_SIGNING_SECRET"]


def _sync(monkeypatch: pytest.MonkeyPatch, sync: dict[str, Any]) -> dict[str, str]:
    return _problems(monkeypatch, GATEWAY_USER_SYNC=json.dumps(sync))


def test_a_good_user_sync_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_USER_SYNC", json.dumps({
        "backend": "hasura", "columns": {"id": "id", "name": "name", "email": "email"},
        "version_column": "clerk_updated_at", "delete": "soft", "deleted_column": "deleted_at"}))
    sync = load_settings().user_sync
    assert sync is not None and sync.id_column == "id" and sync.table == "users" and sync.delete == "soft"
    monkeypatch.setenv("GATEWAY_USER_SYNC__BACKEND", "hasura")  # nested variables work as for backends
    monkeypatch.delenv("GATEWAY_USER_SYNC")
    monkeypatch.setenv("GATEWAY_USER_SYNC__TABLE", "profiles")
    nested = load_settings().user_sync
    assert nested is not None and nested.table == "profiles"


@pytest.mark.parametrize(("sync", "variable", "words"), [
    ({"backend": "nope"}, "GATEWAY_USER_SYNC__BACKEND", "is not one of GATEWAY_BACKENDS"),
    ({"backend": "hasura", "columns": {"id": "id", "x": "private_metadata"}}, "GATEWAY_USER_SYNC__COLUMNS__X",
     "Input should be"),
    ({"backend": "hasura", "columns": {"name": "name"}}, "GATEWAY_USER_SYNC__COLUMNS",
     "exactly one column must come from 'id'"),
    ({"backend": "hasura", "columns": {"id": "id", "drop table": "name"}}, "GATEWAY_USER_SYNC__COLUMNS",
     "is not a plain name"),
    ({"backend": "hasura", "delete": "soft"}, "GATEWAY_USER_SYNC", "needs deleted_column"),
    ({"backend": "hasura", "table": "users; --"}, "GATEWAY_USER_SYNC__TABLE", "is not a plain name"),
    ({"backend": "hasura", "colums": {}}, "GATEWAY_USER_SYNC__COLUMS", "Extra inputs"),
    ({"backend": "jwt"}, "GATEWAY_USER_SYNC__SECRET", "has no admin_secret"),
    ({"backend": "db"}, "GATEWAY_USER_SYNC__SECRET", "a Fauna key"),
], ids=["unknown-backend", "secret-grade-source", "no-id", "bad-column", "soft-without-column", "bad-table",
        "typo", "jwt-backend-without-admin-secret", "fauna-without-key"])
def test_a_bad_user_sync_is_one_line_naming_the_field(monkeypatch: pytest.MonkeyPatch, sync: dict[str, Any],
                                                      variable: str, words: str) -> None:
    problems = _sync(monkeypatch, sync)
    assert variable in problems, problems
    assert words in problems[variable]


def test_a_backend_without_its_own_admin_secret_can_be_given_one_for_the_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_USER_SYNC", json.dumps({"backend": "jwt", "secret": "sync-admin-secret"}))
    sync = load_settings().user_sync
    assert sync is not None and sync.secret is not None and sync.secret.get_secret_value() == "sync-admin-secret"


def test_the_shared_redis_serves_the_rate_limits_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_REDIS_URL", "redis://shared:6379/0")
    limits = load_settings().rate_limit
    assert limits.backend == "redis" and limits.redis_url is not None
    assert limits.redis_url.get_secret_value() == "redis://shared:6379/0"
    monkeypatch.setenv("GATEWAY_RATE_LIMIT_REDIS_URL", "redis://limiter:6379/1")
    assert load_settings().rate_limit.redis_url.get_secret_value() == "redis://limiter:6379/1"  # type: ignore[union-attr]
    monkeypatch.setenv("GATEWAY_RATE_LIMIT_BACKEND", "memory")
    assert load_settings().rate_limit.backend == "memory"
