"""Local listening endpoints for the test doubles: free ports, and an aiohttp server in a thread.

The end-to-end tests drive a real gateway *process* with a plain (synchronous) httpx client, so the
doubles it talks to must keep serving while a test blocks on a response. Each double therefore runs
its aiohttp application on its own event loop in a daemon thread. The server can be stopped and
started again on the same port, which is how a test makes a dependency "go away" (connection
refused) and "come back" without the gateway's configuration changing.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Self, TypeVar

from aiohttp import web

__all__ = ["BackgroundServer", "free_port"]

T = TypeVar("T")
LOCALHOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    Used both for servers that bind it a moment later and, left unbound, as a "closed port" that
    refuses connections.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


class BackgroundServer:
    """Runs ``app_factory()`` on 127.0.0.1 in a background thread with its own event loop.

    ``app_factory`` is called on every :meth:`start` (an aiohttp application cannot be set up twice);
    the state the handlers use lives on the double, not on the application, so it survives a
    stop/start cycle. ``handler_cancellation`` makes aiohttp cancel a handler whose client went
    away, so a double can *observe* a disconnect (the gateway closing its upstream request).
    """

    def __init__(self, app_factory: Callable[[], web.Application], *, port: int | None = None) -> None:
        self._app_factory = app_factory
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server has not been started yet")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    def start(self) -> None:
        """Listen (again) on the server's port; the first start picks a free port."""
        if self._loop is None:
            self._start_loop()
        if self._runner is None:
            self.run(self._serve())

    def stop(self) -> None:
        """Close the listening socket *and* every open connection: clients now get refused."""
        if self._runner is not None and self._loop is not None:
            self.run(self._shutdown())

    def close(self) -> None:
        """Stop serving and end the background thread."""
        self.stop()
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()
        self._loop = None
        self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- thread plumbing -------------------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run ``coro`` on the server's loop from the test thread and return its result."""
        if self._loop is None:
            raise RuntimeError("the server loop is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Schedule a plain callback on the server's loop (e.g. setting an ``asyncio.Event``)."""
        if self._loop is None:
            raise RuntimeError("the server loop is not running")
        self._loop.call_soon_threadsafe(callback)

    def _start_loop(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._thread = threading.Thread(target=main, name=f"{type(self).__name__}-loop", daemon=True)
        self._thread.start()
        ready.wait(5)
        self._loop = loop

    async def _serve(self) -> None:
        runner = web.AppRunner(self._app_factory(), handler_cancellation=True, shutdown_timeout=0.5,
                               access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, LOCALHOST, self._port or 0, reuse_address=True)
        await site.start()
        if self._port is None:
            self._port = int(runner.addresses[0][1])
        self._runner = runner

    async def _shutdown(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
