"""Finds adapters by name: the built-in ones and any installed under the entry-point group
``clerk_gateway.adapters``, and validates each backend's settings with its adapter's model."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from pydantic import ValidationError

from clerk_gateway.settings.complex_values import problem_message
from clerk_gateway.settings.problems import Problems

from .base import Adapter, BackendSettings

ENTRY_POINT_GROUP = "clerk_gateway.adapters"


def _builtin() -> dict[str, type[Adapter]]:
    """The built-in adapters, for a source checkout whose entry points are not installed."""
    from .fauna import FaunaAdapter
    from .hasura import HasuraAdapter
    from .nhost import NhostAdapter

    return {"hasura": HasuraAdapter, "nhost": NhostAdapter, "fauna": FaunaAdapter}


_classes: dict[str, type[Adapter]] | None = None


class AdapterLoadError(Exception):
    """An installed adapter that cannot be used; its message is the one line start-up prints."""


def adapter_classes() -> dict[str, type[Adapter]]:
    """Every adapter by name. A third-party package whose entry point cannot be imported, or does
    not name an :class:`Adapter` subclass, raises :class:`AdapterLoadError` naming that entry
    point: start-up stops with one line instead of a traceback from deep inside importlib."""
    global _classes
    if _classes is None:
        classes = _builtin()
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            where = f"entry point '{entry.name}' ({entry.value}) in {ENTRY_POINT_GROUP}"
            try:
                loaded = entry.load()
            except Exception as exc:  # any import-time failure of a plug-in is reported, not raised
                raise AdapterLoadError(f"{where} cannot be loaded: {type(exc).__name__}: {exc}") from None
            if not (isinstance(loaded, type) and issubclass(loaded, Adapter)):
                raise AdapterLoadError(f"{where} is not an Adapter class")
            classes[entry.name] = loaded
        _classes = classes
    return _classes


def build_backend_settings(raw: Mapping[str, Any], problems: Problems) -> dict[str, BackendSettings]:
    """Validate each backend with its adapter's settings model; report problems by variable name."""
    try:
        classes = adapter_classes()
    except AdapterLoadError as exc:
        problems.add("GATEWAY_BACKENDS", f"an installed adapter is broken: {exc}")
        return {}
    result: dict[str, BackendSettings] = {}
    for name, fields in raw.items():
        prefix = f"GATEWAY_BACKENDS__{name.upper()}"
        if not name.replace("-", "").replace("_", "").isalnum() or name.lower() != name:
            problems.add(prefix, "backend names are lower-case letters, digits, '-' and '_'")
            continue
        if not isinstance(fields, Mapping):
            problems.add(prefix, "must be an object of backend fields")
            continue
        values = dict(fields)
        adapter_name = values.setdefault("adapter", name if name in classes else None)
        if adapter_name is None:
            problems.add(f"{prefix}__ADAPTER", f"missing; one of: {', '.join(sorted(classes))}")
            continue
        cls = classes.get(str(adapter_name))
        if cls is None:
            problems.add(f"{prefix}__ADAPTER", f"unknown adapter '{adapter_name}'; one of: "
                         f"{', '.join(sorted(classes))}")
            continue
        try:
            result[name] = cls.settings_model.model_validate(values)
        except ValidationError as exc:
            for item in exc.errors():
                path = "__".join(str(part).upper() for part in item["loc"])
                where = f"{prefix}__{path}" if path else prefix
                problems.add(where, problem_message(item))
    return result


def create_adapter(name: str, settings: BackendSettings) -> Adapter:
    return adapter_classes()[settings.adapter](name, settings)
