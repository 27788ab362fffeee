"""The live WebSocket sockets, by user and session: what shutdown, and later session revocation
(Clerk webhooks: ``session.ended`` closes every socket of that ``sid``), act on."""

from __future__ import annotations

from typing import Protocol

from clerk_gateway.observability.metrics import WEBSOCKETS_OPEN

__all__ = ["LiveSocket", "SocketRegistry"]


class LiveSocket(Protocol):
    @property
    def subject(self) -> str | None: ...

    @property
    def session_id(self) -> str | None: ...

    def close_soon(self, code: int, reason: str = "") -> None: ...


class SocketRegistry:
    """One per process; sockets add themselves when accepted and leave when they end."""

    def __init__(self) -> None:
        self._sockets: set[LiveSocket] = set()

    def __len__(self) -> int:
        return len(self._sockets)

    def add(self, socket: LiveSocket) -> None:
        self._sockets.add(socket)
        WEBSOCKETS_OPEN.inc()

    def discard(self, socket: LiveSocket) -> None:
        if socket in self._sockets:
            self._sockets.discard(socket)
            WEBSOCKETS_OPEN.dec()

    def close_session(self, session_id: str, code: int = 4403, reason: str = "session ended") -> int:
        """Close every socket of ``session_id``; returns how many."""
        matched = [socket for socket in self._sockets if socket.session_id == session_id]
        for socket in matched:
            socket.close_soon(code, reason)
        return len(matched)

    def close_subject(self, subject: str, code: int = 4403, reason: str = "session ended") -> int:
        """Close every socket of the user ``subject`` (all of their sessions); returns how many."""
        matched = [socket for socket in self._sockets if socket.subject == subject]
        for socket in matched:
            socket.close_soon(code, reason)
        return len(matched)

    def close_all(self, code: int = 1001, reason: str = "server shutting down") -> int:
        sockets = list(self._sockets)
        for socket in sockets:
            socket.close_soon(code, reason)
        return len(sockets)
