"""The two GraphQL-over-WebSocket subprotocols, as far as the gateway needs to tell them apart.

``graphql-transport-ws`` (the ``graphql-ws`` npm library, Apollo Client's ``GraphQLWsLink``) and the
legacy Apollo ``subscriptions-transport-ws``, whose subprotocol name is confusingly ``graphql-ws``.
Hasura speaks both and picks by the subprotocol the client offers: exactly
``graphql-transport-ws`` selects the new one, anything else — including none — the legacy one
(REFERENCE.md §2.6). The gateway does the same, passes the choice upstream and echoes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["LEGACY", "TRANSPORT", "WsProtocol", "choose_protocol"]


@dataclass(frozen=True, slots=True)
class WsProtocol:
    name: str
    subscribe: str  #: the message that starts an operation
    stop: str  #: the client message that ends one
    ended: tuple[str, ...]  #: upstream messages after which an operation is over

    def error(self, operation_id: str, message: str) -> str:
        """An error for one operation, in this protocol's shape (the socket stays open)."""
        if self is TRANSPORT:
            return orjson.dumps({"id": operation_id, "type": "error", "payload": [{"message": message}]}).decode()
        return orjson.dumps({"id": operation_id, "type": "error", "payload": {"message": message}}).decode()


TRANSPORT = WsProtocol("graphql-transport-ws", "subscribe", "complete", ("complete", "error"))
LEGACY = WsProtocol("graphql-ws", "start", "stop", ("complete", "error"))


def choose_protocol(offered: Sequence[str]) -> tuple[WsProtocol, str | None]:
    """The protocol to speak and the subprotocol to accept (echo) for what the client offered."""
    if list(offered) == [TRANSPORT.name]:
        return TRANSPORT, TRANSPORT.name
    return LEGACY, (LEGACY.name if LEGACY.name in offered else None)


def parse(text: str) -> dict[str, Any] | None:
    """A client or upstream message as an object, or ``None`` when it is not one."""
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return message if isinstance(message, dict) else None
