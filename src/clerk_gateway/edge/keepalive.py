"""The rule that keeps a client's next request alive after the gateway refused one.

The gateway answers many requests before reading their bodies (a 401 for an expired token, 403,
413, 429): that is the point of refusing early. But the client's body is still on its way, and
every HTTP client reuses its connection. If the server then closes without saying so, the client
sends its next request (a frontend: the retry with a refreshed token) into a dead connection and
gets "server disconnected without sending a response".

So, for every answer sent before the request body was read:

* **a small declared rest is drained**: when the body has a ``Content-Length`` of at most
  :data:`DRAIN_BYTES` (64 KiB, which covers nearly every GraphQL request), the answer goes out at
  once, the server reads and discards the rest of the body (the protocol's *drain*, bounded in
  time and bytes), and the connection stays open for the next request;
* **anything else is announced**: a larger body, one of unknown length (chunked), or one the
  client holds back until it sees ``100 Continue`` gets ``Connection: close`` in the answer itself,
  and the server closes gently (FIN, then reads what still arrives for a while) so the answer is
  never reset away. The client knows not to reuse the connection.

Either way the next request never fails at the transport level. The decision needs only the request
headers, so it is made where the answer is rendered (the proxy, the ops app) at no cost to the
requests that are not refused.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["BODY_READ", "CONNECTION_CLOSE", "DRAIN_BYTES", "refusal_can_keep_connection"]

DRAIN_BYTES = 64 * 1024

#: Set in the ASGI scope once the proxy has read the whole request body.
BODY_READ = "clerk_gateway.body_read"

CONNECTION_CLOSE = (b"connection", b"close")


def refusal_can_keep_connection(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether an answer sent before the body was read may leave the connection open.

    True when there is no body, or a declared one of at most :data:`DRAIN_BYTES` that the client
    sends without waiting for ``100 Continue``; the server then drains it. False means the answer
    must carry ``Connection: close``.
    """
    length: int | None = None
    expects_continue = False
    for name, value in headers:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return False
        elif name == b"transfer-encoding":
            return False
        elif name == b"expect" and value.strip().lower() == b"100-continue":
            expects_continue = True
    if not length:
        return True
    return not expects_continue and length <= DRAIN_BYTES
