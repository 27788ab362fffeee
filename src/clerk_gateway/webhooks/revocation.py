"""Signed-out sessions cut off at once, on every replica.

Clerk's session tokens are verified without a network call, so a user who signs out keeps a
valid token for up to its lifetime, and a socket opened with it would live on (Hasura has had
that gap since 2019, hasura/graphql-engine#3602). The gateway sees Clerk's ``session.*`` and
``user.deleted`` webhooks, so it can do better: a :class:`Revocation` is applied here at once —
the listeners close that session's WebSockets and drop what was cached for it — and published
over Redis, so that every replica applies it within a second. Each replica keeps the revoked
sessions in memory (:class:`RevokedSessions`), which the verifier checks for every token: a
dictionary lookup, and nothing at all while no revocation is known.

Revocations live :data:`REVOKED_FOR_SECONDS`, longer than any token of the session can: Clerk's
session tokens last a minute, and JWT-template lifetimes are short in practice. In Redis they are
keys with that expiry, so a replica that starts (or reconnects) later loads the ones still alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from clerk_gateway.auth.model import VerifiedToken

log = logging.getLogger("clerk_gateway.webhooks")

REVOKED_FOR_SECONDS = 24 * 3600.0
#: Most revoked sessions (and users) one process remembers; the soonest to expire go first.
MAX_REVOKED = 200_000
CHANNEL = "clerk-gateway:revocations"
KEY_PREFIX = "clerk-gateway:revoked:"


class SharedStateUnavailable(Exception):
    """Redis is configured but did not take the write: the other replicas would not know."""


@dataclass(frozen=True, slots=True)
class Revocation:
    """A session (``session_id``) or every session of a user (``subject``), until ``until``."""

    session_id: str | None
    subject: str | None
    until: float

    def to_json(self) -> bytes:
        return orjson.dumps({"sid": self.session_id, "sub": self.subject, "until": self.until})

    @classmethod
    def from_json(cls, data: bytes | str) -> Revocation | None:
        try:
            value: Any = orjson.loads(data)
            sid, sub, until = value.get("sid"), value.get("sub"), float(value["until"])
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
            return None
        if not (isinstance(sid, str) or isinstance(sub, str)):
            return None
        return cls(sid if isinstance(sid, str) else None, sub if isinstance(sub, str) else None, until)

    @property
    def key(self) -> str:
        return f"{KEY_PREFIX}sid:{self.session_id}" if self.session_id else f"{KEY_PREFIX}sub:{self.subject}"


class RevokedSessions:
    """The revoked sessions and users this process knows, each until its ``until``."""

    def __init__(self, *, max_entries: int = MAX_REVOKED, clock: Callable[[], float] = time.time) -> None:
        self._sessions: dict[str, float] = {}
        self._subjects: dict[str, float] = {}
        self._max = max_entries
        self._clock = clock

    def add(self, revocation: Revocation) -> None:
        if revocation.session_id is not None:
            _put(self._sessions, revocation.session_id, revocation.until, self._max)
        if revocation.subject is not None:
            _put(self._subjects, revocation.subject, revocation.until, self._max)

    def is_revoked(self, token: VerifiedToken) -> bool:
        """The verifier's check, on every token: nothing to do while nothing was revoked."""
        if not self._sessions and not self._subjects:
            return False
        now = self._clock()
        sid = token.session_id
        if sid is not None and self._sessions.get(sid, 0.0) > now:
            return True
        return self._subjects.get(token.subject, 0.0) > now

    def __len__(self) -> int:
        return len(self._sessions) + len(self._subjects)


def _put(entries: dict[str, float], key: str, until: float, limit: int) -> None:
    entries[key] = max(until, entries.get(key, 0.0))
    if len(entries) > limit:
        for stale in sorted(entries, key=entries.__getitem__)[: len(entries) - limit]:
            del entries[stale]


Listener = Callable[[Revocation], None]


class RevocationHub:
    """Applies revocations here (the listeners) and, with Redis, on every replica."""

    def __init__(self, revoked: RevokedSessions, *, redis: Redis | None = None, subscriber: Redis | None = None,
                 clock: Callable[[], float] = time.time, timeout: float = 2.0) -> None:
        """``redis`` takes the writes (short timeouts); ``subscriber`` holds the channel open, so it
        has no read timeout (default: ``redis``)."""
        self.revoked = revoked
        self._redis = redis
        self._subscriber = subscriber or redis
        self._clock = clock
        self._timeout = timeout
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    def on_revoke(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def revocation(self, *, session_id: str | None = None, subject: str | None = None) -> Revocation:
        return Revocation(session_id, subject, self._clock() + REVOKED_FOR_SECONDS)

    async def revoke(self, revocation: Revocation) -> None:
        """Apply at once here; then publish. Raises :class:`SharedStateUnavailable` when Redis is
        configured and refused the write, so the webhook answers 503 and Svix retries."""
        self._apply(revocation)
        if self._redis is None:
            return
        ttl = max(int(revocation.until - self._clock()), 1)
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.set(revocation.key, revocation.to_json(), ex=ttl)
                await self._redis.publish(CHANNEL, revocation.to_json())
        except Exception as exc:  # redis errors, timeouts, a closed connection
            raise SharedStateUnavailable(f"Redis did not take the revocation ({type(exc).__name__})") from None

    def _apply(self, revocation: Revocation) -> None:
        if revocation.until <= self._clock():
            return
        self.revoked.add(revocation)
        for listener in self._listeners:
            try:
                listener(revocation)
            except Exception:  # one listener failing must not stop the others
                log.exception("a revocation listener failed")

    # -- the replicas' channel ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._redis is not None and self._task is None:
            self._task = asyncio.create_task(self._listen(), name="revocations")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _listen(self) -> None:
        """Subscribe, then load the revocations still alive (a replica that started late, or lost
        the connection, missed their messages); reconnect with a growing pause on any failure."""
        assert self._subscriber is not None
        pause = 0.5
        while True:
            pubsub = self._subscriber.pubsub()
            try:
                await pubsub.subscribe(CHANNEL)
                await self._load_alive()
                self.subscribed.set()
                pause = 0.5
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=30.0)
                    if message is not None and message.get("type") == "message":
                        revocation = Revocation.from_json(message["data"])
                        if revocation is not None:
                            self._apply(revocation)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.subscribed.clear()
                log.warning("revocation channel lost; reconnecting", extra={"error": type(exc).__name__})
                await asyncio.sleep(pause)
                pause = min(pause * 2, 10.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _load_alive(self) -> None:
        assert self._redis is not None
        async for key in self._redis.scan_iter(match=f"{KEY_PREFIX}*", count=500):
            value = await self._redis.get(key)
            revocation = Revocation.from_json(value) if value is not None else None
            if revocation is not None:
                self._apply(revocation)
