"""The ASGI application: a thin dispatcher in front of two halves.

Proxied requests (``/<backend>/…`` and ``/graphql``) go straight to the raw-ASGI proxy, because a
gateway pays its framework's per-request cost on every request; the operational routes
(``/healthz``, ``/readyz``, ``/metrics``) and everything else are a small FastAPI app.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from clerk_gateway.auth.minting import JWKS_PATH, GatewayMinter
from clerk_gateway.drain import DRAIN
from clerk_gateway.edge.cors import CorsMiddleware
from clerk_gateway.edge.keepalive import CONNECTION_CLOSE, refusal_can_keep_connection
from clerk_gateway.errors import NotFoundError
from clerk_gateway.observability.metrics import exposition
from clerk_gateway.proxy.http import BackendProxy
from clerk_gateway.proxy.responses import render_error
from clerk_gateway.readiness import ReadinessProbe
from clerk_gateway.runtime import Runtime
from clerk_gateway.server import tune_gc
from clerk_gateway.settings import Settings, load_settings
from clerk_gateway.webhooks.endpoint import PATH as WEBHOOK_PATH

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

log = logging.getLogger("clerk_gateway.app")


def build_ops_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(title="clerk-gateway", docs_url=None, redoc_url=None, openapi_url=None)
    readiness = ReadinessProbe(runtime.http, runtime.adapters, runtime.keys)

    @app.get("/healthz")
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("OK")

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        if DRAIN.active:  # SIGTERM: out of the balancer at once, whatever the backends say
            return JSONResponse({"ready": False, "reason": "draining"}, status_code=503)
        ready, body = await readiness.report()
        return JSONResponse(body, status_code=200 if ready else 503)

    minter = runtime.services.minter
    if isinstance(minter, GatewayMinter):  # only when a backend mints: the public half of the gateway's keys

        @app.get(JWKS_PATH)
        async def jwks() -> Response:
            assert isinstance(minter, GatewayMinter)
            return Response(minter.jwks_body, media_type="application/json",
                            headers={"cache-control": minter.jwks_cache_control.decode()})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Exception) -> Response:
        status, headers, body = render_error(NotFoundError(), graphql=False)
        return Response(body, status_code=status,
                        headers={k.decode(): v.decode() for k, v in headers})

    return app


class GatewayApp:
    """Routes each request to a backend proxy or to the operational app."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.ops = build_ops_app(runtime)
        self.proxies: dict[str, BackendProxy] = runtime.proxies
        default = runtime.settings.gateway.default_backend
        self.default_proxy = runtime.proxies.get(default) if default else None
        self.root_paths = self.default_proxy.adapter.root_paths if self.default_proxy else frozenset()
        self.default_socket_proxy = runtime.socket_proxies.get(default) if default else None
        self._entry = CorsMiddleware(self._dispatch, runtime.settings.gateway.cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self._entry(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            if path == WEBHOOK_PATH and self.runtime.webhooks is not None:
                await self.runtime.webhooks.endpoint(scope, receive, send)
                return
            end = path.find("/", 1)
            proxy = self.proxies.get(path[1:end] if end > 0 else path[1:])
            if proxy is not None:
                await proxy.handle(scope, receive, send, path[end:] if end > 0 else "/")
                return
            if self.default_proxy is not None:
                if path == "/graphql":
                    await self.default_proxy.handle(scope, receive, send, "/v1/graphql")
                    return
                if path in self.root_paths:
                    await self.default_proxy.handle(scope, receive, send, path)
                    return
            if not refusal_can_keep_connection(scope["headers"]):
                send = _announcing_close(send)  # the ops routes never read a request body
            await self.ops(scope, receive, send)
        elif kind == "websocket":
            path = scope["path"]
            end = path.find("/", 1)
            sockets = self.runtime.socket_proxies
            socket_proxy = sockets.get(path[1:end] if end > 0 else path[1:])
            if socket_proxy is not None:
                await socket_proxy.handle(scope, receive, send, path[end:] if end > 0 else "/")
            elif path == "/graphql" and self.default_socket_proxy is not None:
                await self.default_socket_proxy.handle(scope, receive, send, "/v1/graphql")
            else:
                await receive()
                await send({"type": "websocket.close", "code": 1008})  # no such endpoint: 403, no upgrade
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self.ops(scope, receive, send)

    def _close_sockets_soon(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        """Drain's listener: it runs in the signal handler, so the closing is handed to the loop."""
        sockets = self.runtime.websockets

        def close() -> None:
            loop.call_soon_threadsafe(sockets.close_all, 1001, "server draining")

        return close

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.runtime.start()
                except Exception as exc:  # start-up must report, not crash silently
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": type(exc).__name__})
                    return
                DRAIN.on_begin(self._close_sockets_soon(asyncio.get_running_loop()))
                tune_gc()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.runtime.websockets.close_all(1001, "server shutting down")
                await self.runtime.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _announcing_close(send: Send) -> Send:
    """``send`` with ``Connection: close`` added to the answer (see :mod:`clerk_gateway.edge.keepalive`)."""

    async def send_closing(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = [*message.get("headers", ()), CONNECTION_CLOSE]
        await send(message)

    return send_closing


def create_app(settings: Settings | None = None) -> GatewayApp:
    """The ASGI app for ``serve`` (uvicorn factory) and for tests with explicit settings."""
    return GatewayApp(Runtime.build(settings or load_settings()))
