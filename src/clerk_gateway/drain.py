"""Graceful drain: what a SIGTERM starts before the process stops serving.

A load balancer keeps sending requests for a moment after it was told a replica goes away, and a
stream or a slow query may be under way. So on SIGTERM the gateway first *drains*: ``/readyz``
answers 503 at once (the balancer takes the replica out), every answer from now on says
``Connection: close`` (clients reconnect elsewhere), WebSockets close with 1001, and in-flight
requests and streams get until ``GATEWAY_DRAIN_SECONDS`` to finish. Once nothing is in flight, or
the deadline passed, the server stops listening and the process exits 0.

One :data:`DRAIN` per process: the server flips it, the app, the HTTP protocol and the WebSocket
registry read it — a flag, because the request path must not pay for more than a check.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["DRAIN", "DrainState"]


class DrainState:
    def __init__(self) -> None:
        self.active = False
        self._listeners: list[Callable[[], None]] = []

    def on_begin(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` when draining begins (at once, if it already has)."""
        self._listeners.append(listener)
        if self.active:
            listener()

    def begin(self) -> None:
        if self.active:
            return
        self.active = True
        for listener in self._listeners:
            listener()


DRAIN = DrainState()
