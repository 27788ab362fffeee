"""Clerk webhook payloads in their real shape (REFERENCE §8.3.4), for the sync's tests and the webhook tests.

Every field a real ``user.created`` carries is there, secret-grade ones included (``private_metadata``,
``unsafe_metadata``, phone numbers), so that a test can prove they never reach a backend. Ids are invented.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

__all__ = ["INSTANCE_ID", "USER_ID", "deleted_user", "event", "user_payload"]

USER_ID = "user_2xtKOmOKFZcYQ8kBGzxhPlrgBJv"
INSTANCE_ID = "ins_2wBhLsbyDWG2fWAHf2X6qoBd8IH"
_EMAIL_ID = "idn_2xtKOcsRaFBgAAGVksuIb6MMjju"
_CREATED_AT = 1748751899098

_USER: dict[str, Any] = {
    "id": USER_ID, "object": "user",
    "username": None, "first_name": "Ada", "last_name": "Lovelace",
    "image_url": "https://img.clerk.com/eyJ0eXBlIjoiZGVmYXVsdCJ9", "has_image": False,
    "primary_email_address_id": _EMAIL_ID,
    "email_addresses": [],  # filled by user_payload(email=...)
    "primary_phone_number_id": None, "phone_numbers": [], "web3_wallets": [], "passkeys": [],
    "external_accounts": [], "saml_accounts": [], "enterprise_accounts": [],
    "public_metadata": {}, "private_metadata": {}, "unsafe_metadata": {},
    "external_id": None, "password_enabled": True, "two_factor_enabled": False,
    "banned": False, "locked": False,
    "created_at": _CREATED_AT, "updated_at": 1748751899113,
    "last_sign_in_at": None, "last_active_at": 1748751899097,
}


def _email_address(address: str, address_id: str) -> dict[str, Any]:
    return {"id": address_id, "object": "email_address", "email_address": address, "reserved": False,
            "linked_to": [], "verification": {"status": "verified", "strategy": "email_code"},
            "created_at": _CREATED_AT - 134, "updated_at": _CREATED_AT + 3}


def user_payload(*, email: str | None = "ada@example.com", **overrides: Any) -> dict[str, Any]:
    """A Clerk User object (the ``data`` of ``user.created`` / ``user.updated``, and a Backend API user).

    ``email`` becomes the one (primary, verified) address; ``None`` leaves the user without any. ``overrides``
    replace top-level fields (``id``, ``first_name``, ``updated_at``, ``public_metadata``, …)."""
    user = copy.deepcopy(_USER)
    if email is None:
        user["primary_email_address_id"] = None
    else:
        digest = hashlib.sha256(f"{overrides.get('id', USER_ID)}|{email}".encode()).hexdigest()
        address_id = f"idn_{digest[:27]}"  # stable: the same user and address always get the same id
        user["primary_email_address_id"] = address_id
        user["email_addresses"] = [_email_address(email, address_id)]
    user.update(copy.deepcopy(overrides))
    return user


def deleted_user(user_id: str = USER_ID) -> dict[str, Any]:
    """The ``data`` of ``user.deleted``: Clerk's DeletedObject (no ``updated_at``; the event's timestamp orders it)."""
    return {"object": "user", "id": user_id, "deleted": True}


def event(type: str, data: dict[str, Any], timestamp_ms: int) -> dict[str, Any]:
    """The webhook envelope around ``data`` (``timestamp`` in ms, as Clerk sends it)."""
    return {"data": data, "object": "event", "type": type, "timestamp": timestamp_ms, "instance_id": INSTANCE_ID,
            "event_attributes": {"http_request": {"client_ip": "203.0.113.7", "user_agent": "Mozilla/5.0"}}}
