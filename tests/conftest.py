"""Shared pytest configuration: markers only. Fixtures live beside the tests that use them
(``tests/e2e/conftest.py`` for the end-to-end doubles)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: starts the real gateway as a subprocess on 127.0.0.1")
