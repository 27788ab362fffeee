"""GATEWAY_GRAPHQL_* settings: defaults, the environment, and refusal of nonsense."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from clerk_gateway.settings.graphql_limits import GraphQLLimitSettings


def load() -> GraphQLLimitSettings:
    return GraphQLLimitSettings(_env_file=None)  # type: ignore[call-arg]


def test_defaults_are_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("GATEWAY_GRAPHQL_"):
            monkeypatch.delenv(name)
    settings = load()
    assert settings.limits_enabled and not settings.allow_introspection
    assert settings.introspection_roles == ["admin"]
    assert (settings.max_depth, settings.max_aliases, settings.max_root_fields, settings.max_tokens,
            settings.max_operations, settings.max_batch, settings.max_query_length) == (12, 15, 20, 1000, 3, 10, 20_000)


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_GRAPHQL_LIMITS_ENABLED", "false")
    monkeypatch.setenv("GATEWAY_GRAPHQL_MAX_DEPTH", "0")
    monkeypatch.setenv("GATEWAY_GRAPHQL_ALLOW_INTROSPECTION", "true")
    monkeypatch.setenv("GATEWAY_GRAPHQL_INTROSPECTION_ROLES", "admin, developer ,")
    settings = load()
    assert not settings.limits_enabled and settings.max_depth == 0 and settings.allow_introspection
    assert settings.introspection_roles == ["admin", "developer"]


def test_negative_limits_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_GRAPHQL_MAX_ALIASES", "-1")
    with pytest.raises(ValidationError):
        load()
