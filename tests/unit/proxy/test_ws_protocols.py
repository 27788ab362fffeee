"""Subprotocol choice, per-operation errors and the socket registry."""

from __future__ import annotations

import orjson
import pytest

from clerk_gateway.proxy.ws_protocols import LEGACY, TRANSPORT, choose_protocol, parse
from clerk_gateway.proxy.ws_sessions import SocketRegistry


@pytest.mark.parametrize(("offered", "protocol", "echoed"), [
    (["graphql-transport-ws"], TRANSPORT, "graphql-transport-ws"),
    (["graphql-ws"], LEGACY, "graphql-ws"),
    ([], LEGACY, None),  # none offered: legacy, as Hasura does it
    (["graphql-transport-ws", "graphql-ws"], LEGACY, "graphql-ws"),  # compared whole, as Hasura does
    (["something-else"], LEGACY, None),
])
def test_the_protocol_is_chosen_as_hasura_chooses_it(offered: list[str], protocol: object, echoed: str | None) -> None:
    assert choose_protocol(offered) == (protocol, echoed)


def test_operation_errors_use_each_protocols_shape() -> None:
    assert orjson.loads(TRANSPORT.error("7", "no")) == {"id": "7", "type": "error", "payload": [{"message": "no"}]}
    assert orjson.loads(LEGACY.error("7", "no")) == {"id": "7", "type": "error", "payload": {"message": "no"}}


def test_parse_accepts_objects_only() -> None:
    assert parse('{"type": "ping"}') == {"type": "ping"}
    assert parse("[1]") is None and parse("not json") is None


class _Socket:
    def __init__(self, sid: str) -> None:
        self.subject, self.session_id = "user_1", sid
        self.closed: list[tuple[int, str]] = []

    def close_soon(self, code: int, reason: str = "") -> None:
        self.closed.append((code, reason))


def test_the_registry_closes_a_session_or_everything() -> None:
    registry = SocketRegistry()
    a, b = _Socket("sess_a"), _Socket("sess_b")
    registry.add(a)
    registry.add(b)
    assert registry.close_session("sess_a") == 1 and a.closed == [(4403, "session ended")] and b.closed == []
    assert registry.close_all() == 2 and b.closed == [(1001, "server shutting down")]
    registry.discard(a)
    assert len(registry) == 1
