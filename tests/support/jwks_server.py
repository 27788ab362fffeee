"""A real JWKS endpoint on 127.0.0.1 that a test can rotate, break and count.

It stands in for Clerk's Frontend API ``/.well-known/jwks.json``. The gateway fetches it over a real
socket, so the tests exercise the gateway's actual fetching, caching, cool-down and outage handling
rather than a mocked client.

Failure modes (:meth:`JwksServer.fail`):

``"error"``    HTTP 500 with a short text body.
``"garbage"``  HTTP 200, ``application/json``, a body that is not JSON.
``"reset"``    the connection is dropped without an answer.
``"slow"``     the answer waits until :meth:`JwksServer.release_slow` (or ``slow_max_seconds``).
``"refused"``  shorthand for :meth:`stop`: nothing listens on the port any more.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any, Literal

from aiohttp import web

from .ports import BackgroundServer
from .tokens import SigningKey, jwks

__all__ = ["JWKS_PATH", "FailureMode", "JwksServer"]

JWKS_PATH = "/.well-known/jwks.json"
FailureMode = Literal["error", "garbage", "reset", "slow", "refused"]


class JwksServer(BackgroundServer):
    """Serves a settable key set at :data:`JWKS_PATH` and counts every request made to it."""

    def __init__(self, *keys: SigningKey, port: int | None = None, slow_max_seconds: float = 30.0) -> None:
        super().__init__(self._build_app, port=port)
        self._lock = threading.Lock()
        self._document: dict[str, Any] = jwks(*keys)
        self._headers: dict[str, str] = {}
        self._mode: FailureMode | None = None
        self._fetches = 0
        self._slow_max_seconds = slow_max_seconds
        self._slow_release: asyncio.Event | None = None

    # -- what tests read ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The JWKS URL to give the gateway (``CLERK_JWKS_URL``)."""
        return self.base_url + JWKS_PATH

    @property
    def fetch_count(self) -> int:
        """Requests that reached the JWKS path, answered or not."""
        with self._lock:
            return self._fetches

    def reset_count(self) -> None:
        with self._lock:
            self._fetches = 0

    # -- what tests set -------------------------------------------------------------------------

    def set_keys(self, *keys: SigningKey) -> None:
        """Publish exactly these keys from now on."""
        self.set_document(jwks(*keys))

    def add_key(self, key: SigningKey) -> None:
        """Publish ``key`` in addition to the current keys (a rotation's first step)."""
        with self._lock:
            self._document = {"keys": [*self._document.get("keys", []), key.public_jwk()]}

    def set_document(self, document: dict[str, Any]) -> None:
        """Serve an arbitrary JSON document (e.g. a key set with unusable keys)."""
        with self._lock:
            self._document = json.loads(json.dumps(document))

    def set_headers(self, headers: dict[str, str]) -> None:
        """Extra response headers on successful answers, e.g. ``{"Cache-Control": "max-age=60"}``."""
        with self._lock:
            self._headers = dict(headers)

    def fail(self, mode: FailureMode) -> None:
        """Make the endpoint misbehave until :meth:`recover`."""
        if mode == "refused":
            self.stop()
            return
        with self._lock:
            self._mode = mode
            if mode == "slow":
                self._slow_release = None  # a fresh hold; the handler creates it on its loop

    def recover(self) -> None:
        """Serve the key set normally again (restarting the listener if it was stopped)."""
        with self._lock:
            self._mode = None
        self.release_slow()
        if not self.running:
            self.start()

    def release_slow(self) -> None:
        """Let every answer held back by the ``"slow"`` mode go out now."""
        event = self._slow_release
        if event is not None and self.running:
            self.call_soon(event.set)

    # -- the server -----------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        self._slow_release = None
        app = web.Application()
        app.router.add_get(JWKS_PATH, self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self._fetches += 1
            mode = self._mode
            body = json.dumps(self._document).encode()
            headers = dict(self._headers)
        if mode == "error":
            return web.Response(status=500, text="internal error (test double)")
        if mode == "garbage":
            return web.Response(status=200, body=b"<html>not a key set", content_type="application/json")
        if mode == "reset":
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError()
        if mode == "slow":
            if self._slow_release is None:
                self._slow_release = asyncio.Event()
            try:
                await asyncio.wait_for(self._slow_release.wait(), self._slow_max_seconds)
            except TimeoutError:
                pass
        return web.Response(status=200, body=body, content_type="application/json", headers=headers)
