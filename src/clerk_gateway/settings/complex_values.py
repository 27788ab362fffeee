"""JSON- and list-valued ("complex") settings: a bad value is an ordinary problem line.

pydantic-settings decodes a complex variable (``GATEWAY_BACKENDS``, a nested ``GATEWAY_BACKENDS__HASURA``,
the same names in ``.env``) with ``json.loads`` while the model is being built, and a decoding failure
escapes as its own ``SettingsError`` *before* validation: not a ``ValidationError`` the loader can report
per field, and nothing it can retry past, because the source fails again on every attempt. So the sources
used here keep a value that is not JSON as text marked with the decoder's reason (:class:`NotJson`);
validation then rejects it like any other wrong value, and :func:`problem_message` prints that reason and
never the value itself (``GATEWAY_BACKENDS`` holds admin secrets).

List settings are not decoded by the sources (``NoDecode``); :func:`split_list` parses them, from a
comma-separated value, a JSON list, or a list in the config file.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
)
from pydantic_settings.sources import PydanticBaseEnvSettingsSource

__all__ = ["LIST_EXPECTED", "NotJson", "SettingsBase", "problem_message", "split_list"]

LIST_EXPECTED = ('must be a list of strings: a comma-separated value such as a,b, a JSON list such as ["a", "b"], '
                 "or a list in the config file")
OBJECT_EXPECTED = "must be an object: a JSON object {…} in a variable, a mapping in the config file"


def _json_reason(error: json.JSONDecodeError) -> str:
    """What is wrong, in words: the decoder's position and complaint, which never quote the text."""
    if not error.doc.strip():
        return "is empty; set it to JSON or leave it unset"
    return f"is not valid JSON (line {error.lineno} column {error.colno}: {error.msg})"


class NotJson(str):
    """The text of a complex value that is not valid JSON, with the reason.

    It stays a ``str`` so that where pydantic-settings would have kept the raw text (a field whose type
    also accepts a string), nothing changes; where the text is not acceptable, validation fails with
    this object as the input and :func:`problem_message` reports :attr:`reason` instead of pydantic's
    message.
    """

    reason: str

    def __new__(cls, text: str, error: json.JSONDecodeError) -> NotJson:
        marked = super().__new__(cls, text)
        marked.reason = _json_reason(error)
        return marked


class _MarkBadJson(PydanticBaseEnvSettingsSource):
    """Decodes complex values as pydantic-settings does, but returns :class:`NotJson` instead of raising."""

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except json.JSONDecodeError as exc:
            return NotJson(value, exc)


class _EnvSource(_MarkBadJson, EnvSettingsSource):
    pass


class _DotEnvSource(_MarkBadJson, DotEnvSettingsSource):
    pass


def _marking(source: PydanticBaseSettingsSource) -> PydanticBaseSettingsSource:
    """The same source object, with :class:`_MarkBadJson`'s decoding.

    The class is swapped rather than a new source built so that everything the source was configured
    with (``_env_file=None`` in a test, an ``env_prefix`` override) still applies; the subclasses add
    no state.
    """
    if type(source) is EnvSettingsSource:
        source.__class__ = _EnvSource
    elif type(source) is DotEnvSettingsSource:
        source.__class__ = _DotEnvSource
    return source


class SettingsBase(BaseSettings):
    """Base of every settings model: environment and ``.env`` decode complex values with :class:`NotJson`."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _marking(env_settings), _marking(dotenv_settings), file_secret_settings


def split_list(value: object) -> object:
    """A list of strings from a comma-separated value, a JSON list (a value starting with ``[`` or ``{``),
    or a list from the config file; anything else is refused in words instead of pydantic's
    "Input should be a valid list" (or, worse, ``["admin"]`` becoming one role named ``["admin"]``).
    Nested ``__`` variables are not read for lists: they arrive as a mapping and are refused too."""
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith(("[", "{")):
            return [part.strip() for part in text.split(",") if part.strip()]
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{_json_reason(exc)}; it {LIST_EXPECTED}") from None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise ValueError(LIST_EXPECTED)


def problem_message(item: ErrorDetails) -> str:
    """One validation error in plain words, without the input (which may be a secret).

    Also used for backend fields (``GATEWAY_BACKENDS__HASURA__CLAIMS_MAP``), whose validators decode
    JSON text themselves: their ``JSONDecodeError`` reads the same as the sources' :class:`NotJson`."""
    value = item["input"]
    if isinstance(value, NotJson):
        return value.reason
    error = item.get("ctx", {}).get("error")
    if isinstance(error, json.JSONDecodeError):
        return _json_reason(error)
    if item["type"] == "dict_type":
        return OBJECT_EXPECTED
    return item["msg"].removeprefix("Value error, ")
