"""What each verified Clerk event does: user events write the users table, session events (and
``user.deleted``) revoke. Unknown types are acknowledged and counted, never retried: Svix would
otherwise retry every event type the Dashboard subscribes the endpoint to."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from clerk_gateway.settings.user_sync import UserSyncSettings

from .records import InvalidUserPayload, user_record
from .revocation import RevocationHub
from .store import UserStore, WriteOutcome
from .verification import Delivery

log = logging.getLogger("clerk_gateway.webhooks")

USER_EVENTS = frozenset({"user.created", "user.updated"})
SESSION_ENDS = frozenset({"session.ended", "session.removed", "session.revoked"})
#: Types named as themselves in metrics; any other becomes "other" (the label set stays closed).
KNOWN_TYPES = USER_EVENTS | SESSION_ENDS | {"user.deleted", "session.created", "session.pending"}


class InvalidEvent(ValueError):
    """A signed event whose content the gateway cannot act on (400: Svix shows it as failing)."""


@dataclass(frozen=True, slots=True)
class Applied:
    """How a delivery ended: ``outcome`` for the answer, the log and the metric."""

    outcome: str  # applied | stale | revoked | ignored | unhandled


class ClerkEventHandler:
    def __init__(self, *, sync: UserSyncSettings | None, store: UserStore | None, revocations: RevocationHub) -> None:
        self.sync = sync
        self.store = store
        self.revocations = revocations

    async def handle(self, delivery: Delivery) -> Applied:
        """Apply one event; raises :class:`~.store.SyncUnavailable` or
        :class:`~.revocation.SharedStateUnavailable` (503) or :class:`InvalidEvent` (400)."""
        kind = delivery.type
        data = delivery.event.get("data")
        if not isinstance(data, dict):
            raise InvalidEvent("the event has no 'data' object")
        if kind in USER_EVENTS:
            return await self._write_user(data)
        if kind == "user.deleted":
            return await self._delete_user(data, delivery.event)
        if kind in SESSION_ENDS:
            session_id = _text(data, "id")
            await self.revocations.revoke(self.revocations.revocation(session_id=session_id))
            return Applied("revoked")
        return Applied("unhandled")

    async def _write_user(self, data: dict[str, Any]) -> Applied:
        if self.store is None or self.sync is None:
            return Applied("ignored")  # no GATEWAY_USER_SYNC: the endpoint only ends sessions
        try:
            record = user_record(data, self.sync)
        except InvalidUserPayload as exc:
            raise InvalidEvent(str(exc)) from None
        outcome = await self.store.upsert(record)
        return Applied("applied" if outcome is WriteOutcome.APPLIED else "stale")

    async def _delete_user(self, data: dict[str, Any], event: dict[str, Any]) -> Applied:
        user_id = _text(data, "id")
        await self.revocations.revoke(self.revocations.revocation(subject=user_id))
        if self.store is None:
            return Applied("revoked")
        # a deleted user has no updated_at: the envelope's timestamp (ms) orders the tombstone
        version = event.get("timestamp")
        if isinstance(version, bool) or not isinstance(version, int):
            raise InvalidEvent("the user.deleted event has no timestamp")
        if version < 10**12:  # Clerk documents milliseconds; some examples carry seconds
            version *= 1000
        outcome = await self.store.delete(user_id, version)
        return Applied("applied" if outcome is WriteOutcome.APPLIED else "stale")


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidEvent(f"the event's data has no '{name}'")
    return value
