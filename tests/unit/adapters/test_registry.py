"""Adapters are found through the ``clerk_gateway.adapters`` entry-point group, built-in or not."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import ClassVar

import pytest

from clerk_gateway.adapters import registry
from clerk_gateway.adapters.base import Adapter, BackendSettings, Header, IncomingRequest, Route
from clerk_gateway.auth.model import VerifiedToken
from clerk_gateway.errors import NotFoundError
from clerk_gateway.settings.problems import Problems


class EchoSettings(BackendSettings):
    adapter: str = "echo"
    greeting: str


class EchoAdapter(Adapter):
    settings_model: ClassVar[type[BackendSettings]] = EchoSettings

    def match(self, method: str, path: str) -> Route:
        if path != "/hello":
            raise NotFoundError()
        return Route(upstream_url=self.settings.url + path, graphql=False)

    async def identity_headers(self, token: VerifiedToken, request: IncomingRequest, route: Route) -> list[Header]:
        return [(b"x-user", token.subject.encode())]


@pytest.fixture
def with_echo_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = EntryPoint(name="echo", value=f"{__name__}:EchoAdapter", group=registry.ENTRY_POINT_GROUP)

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        return [entry] if group == registry.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    monkeypatch.setattr(registry, "_classes", None)


@pytest.mark.usefixtures("with_echo_entry_point")
def test_installed_adapter_is_found_validated_and_created() -> None:
    problems = Problems()
    settings = registry.build_backend_settings({"greeter": {"adapter": "echo", "url": "http://e",
                                                            "greeting": "hi"}}, problems)
    assert problems.items == []
    adapter = registry.create_adapter("greeter", settings["greeter"])
    assert isinstance(adapter, EchoAdapter)
    assert adapter.match("GET", "/hello").upstream_url == "http://e/hello"
    assert "hasura" in registry.adapter_classes()


@pytest.mark.usefixtures("with_echo_entry_point")
def test_installed_adapter_settings_problems_name_the_variable() -> None:
    problems = Problems()
    registry.build_backend_settings({"echo": {"url": "http://e", "surprise": 1}}, problems)
    names = {name for name, _ in problems.items}
    assert names == {"GATEWAY_BACKENDS__ECHO__GREETING", "GATEWAY_BACKENDS__ECHO__SURPRISE"}


def test_unknown_adapter_lists_the_known_ones() -> None:
    problems = Problems()
    registry.build_backend_settings({"db": {"adapter": "mongo", "url": "http://m"}}, problems)
    assert problems.items[0][0] == "GATEWAY_BACKENDS__DB__ADAPTER"
    assert "hasura" in problems.items[0][1]


def test_entry_point_must_be_an_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = EntryPoint(name="bad", value="json:dumps", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda *, group: [entry])
    monkeypatch.setattr(registry, "_classes", None)
    with pytest.raises(registry.AdapterLoadError, match=r"entry point 'bad' \(json:dumps\).* is not an Adapter"):
        registry.adapter_classes()


def test_an_entry_point_that_cannot_be_imported_is_one_problem_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from clerk_gateway.settings.problems import Problems

    entry = EntryPoint(name="gone", value="no_such_module_xyz:Adapter", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda *, group: [entry])
    monkeypatch.setattr(registry, "_classes", None)
    problems = Problems()
    assert registry.build_backend_settings({"hasura": {"url": "http://h"}}, problems) == {}
    ((variable, message),) = problems.items
    assert variable == "GATEWAY_BACKENDS" and "entry point 'gone'" in message and "ModuleNotFoundError" in message
    assert registry._classes is None  # not cached: a fixed install is picked up by the next load
