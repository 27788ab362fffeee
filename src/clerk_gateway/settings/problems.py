"""Collects every settings problem so that start-up reports all of them at once."""

from __future__ import annotations


class SettingsError(Exception):
    """Raised by :func:`clerk_gateway.settings.load_settings`; one line per problem."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{variable}: {message}" for variable, message in problems))


class Problems:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, variable: str, message: str) -> None:
        """Record a problem once: the loader's retries may meet the same one again."""
        if (variable, message) not in self.items:
            self.items.append((variable, message))

    def names(self, variable: str) -> bool:
        """Whether a problem names ``variable`` or one of its nested ``variable__…`` variables."""
        return any(name == variable or name.startswith(f"{variable}__") for name, _ in self.items)

    def raise_if_any(self) -> None:
        if self.items:
            raise SettingsError(self.items)
