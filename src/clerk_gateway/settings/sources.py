"""The optional YAML/TOML settings file named by ``GATEWAY_CONFIG_FILE``.

The file has a ``clerk:`` and a ``gateway:`` section whose keys are the variable names without
their prefix, in lower case (``clerk: {publishable_key: …}``, ``gateway: {backends: {…}}``).
Environment variables win over the file.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import yaml

CONFIG_FILE_VARIABLE = "GATEWAY_CONFIG_FILE"


class ConfigFileError(ValueError):
    pass


def read_config_file(path: str | None = None) -> dict[str, Any]:
    """Return the parsed file, or ``{}`` when no file is named."""
    name = path if path is not None else os.environ.get(CONFIG_FILE_VARIABLE, "")
    if not name:
        return {}
    file = Path(name)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(f"cannot read {name}: {exc.strerror}") from exc
    try:
        if file.suffix.lower() == ".toml":
            data: Any = tomllib.loads(text)
        else:
            data = yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigFileError(f"{name} is not valid {file.suffix.lstrip('.') or 'YAML'}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"{name} must hold a mapping with 'clerk' and 'gateway' sections")
    unknown = set(data) - {"clerk", "gateway", "graphql", "rate_limit"}
    if unknown:
        raise ConfigFileError(f"{name} has unknown sections: {', '.join(sorted(map(str, unknown)))}")
    for section, content in data.items():
        if content is not None and not (isinstance(content, dict) and all(isinstance(k, str) for k in content)):
            raise ConfigFileError(f"{name}: the '{section}' section must be a mapping of setting names to values")
    return data
