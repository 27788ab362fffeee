"""What the sync needs from a backend: an upsert guarded by the version, and a delete.

Both are idempotent and order-safe by themselves, because Svix delivers at least once and in no
guaranteed order, and a manual replay can come at any time. The ``svix-id`` log
(:mod:`.deliveries`) is only an optimisation on top.
"""

from __future__ import annotations

import enum
from typing import Protocol

from .records import UserRecord


class WriteOutcome(enum.Enum):
    APPLIED = "applied"
    #: the backend holds a newer version, or the user is deleted (soft delete): nothing written
    STALE = "stale"


class SyncUnavailable(Exception):
    """The write did not happen for a reason a retry may fix (unreachable, 5xx, a Hasura 200 with
    ``errors``, a Fauna error). The webhook answers 503 so that Svix retries. ``reason`` is a short
    machine word for logs and metrics; never a payload value."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class UserStore(Protocol):
    async def upsert(self, user: UserRecord) -> WriteOutcome:
        """Create the user or update the mapped columns, unless the stored version is newer (or,
        with soft delete, the user is marked deleted)."""
        ...

    async def delete(self, user_id: str, version_ms: int) -> WriteOutcome:
        """Delete the user (hard), or mark it deleted at ``version_ms`` (soft). Deleting a user
        that is not there is applied, not an error."""
        ...

    async def aclose(self) -> None: ...
