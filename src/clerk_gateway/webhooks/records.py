"""A Clerk user as the sync writes it: the mapped columns, its version, and nothing else.

Only the fields ``GATEWAY_USER_SYNC`` maps are ever read from the payload, so secret-grade fields
Clerk also sends (``private_metadata``, ``unsafe_metadata``, phone numbers) never reach a backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clerk_gateway.settings.user_sync import UserSyncSettings


class InvalidUserPayload(ValueError):
    """The event's ``data`` is not a Clerk user the sync can write (no ``id``, wrong types)."""


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One user, ready to write: ``values`` maps column → value (the id column included)."""

    user_id: str
    values: dict[str, Any]
    #: Clerk's ``updated_at`` in ms: the version an older event must never overwrite.
    version_ms: int


def _name(user: Mapping[str, Any]) -> str | None:
    first, last = user.get("first_name"), user.get("last_name")
    full = " ".join(part for part in (first, last) if isinstance(part, str) and part.strip())
    if full:
        return full
    username = user.get("username")
    return username if isinstance(username, str) and username else None


def _email(user: Mapping[str, Any]) -> str | None:
    primary = user.get("primary_email_address_id")
    for address in user.get("email_addresses") or []:
        if isinstance(address, Mapping) and address.get("id") == primary:
            value = address.get("email_address")
            return value if isinstance(value, str) else None
    return None


def source_value(user: Mapping[str, Any], source: str) -> Any:
    """The value of one ``GATEWAY_USER_SYNC`` source for a Clerk User object."""
    if source == "name":
        return _name(user)
    if source == "email":
        return _email(user)
    if source == "public_metadata":
        value = user.get("public_metadata")
        return value if isinstance(value, Mapping) else {}
    return user.get(source)


def user_record(user: Mapping[str, Any], sync: UserSyncSettings) -> UserRecord:
    """The record for a ``user.created`` / ``user.updated`` payload (or a Backend API user)."""
    user_id = user.get("id")
    if not isinstance(user_id, str) or not user_id:
        raise InvalidUserPayload("the user has no id")
    version = user.get("updated_at")
    if isinstance(version, bool) or not isinstance(version, int):
        raise InvalidUserPayload("the user has no updated_at")
    values = {column: source_value(user, source) for column, source in sync.columns.items()}
    return UserRecord(user_id=user_id, values=values, version_ms=version)
