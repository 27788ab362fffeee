"""``clerk-gateway demo``: the whole verified path on one machine, with no Clerk account.

A development issuer (its own RSA key) publishes its JWKS at ``/.well-known/jwks.json`` beside a
built-in echo backend that stands in for Hasura and answers with the identity it got. The
gateway fetches those keys over HTTP exactly as it would from Clerk's Frontend API.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
import uvicorn

from clerk_gateway.app import GatewayApp
from clerk_gateway.auth.dev_issuer import DevelopmentIssuer
from clerk_gateway.observability.logging import configure_logging
from clerk_gateway.runtime import Runtime
from clerk_gateway.server import GatewayHttpProtocol
from clerk_gateway.settings import load_settings

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

JWKS_PATH = "/.well-known/jwks.json"
DEMO_ADMIN_SECRET = "demo-admin-secret"  # noqa: S105 - a fixed secret between two local demo processes


def demo_backend(issuer: DevelopmentIssuer) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The development issuer's JWKS plus an echo backend that answers any GraphQL POST with the
    session variables that reached it."""
    jwks = orjson.dumps(issuer.jwks())

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == JWKS_PATH:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"cache-control", b"public, max-age=300")]})
            await send({"type": "http.response.body", "body": jwks})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        received = {k.decode(): v.decode() for k, v in scope["headers"]
                    if k.startswith(b"x-hasura-") and k != b"x-hasura-admin-secret"}
        try:
            query = json.loads(body).get("query") if body else None
        except (ValueError, AttributeError):
            query = None
        payload = orjson.dumps({"data": {"identity": received, "query": query}})
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})

    return app


async def run_demo(host: str = "127.0.0.1", port: int = 8000, backend_port: int = 8001) -> None:
    base = f"http://{host}:{port}"
    issuer_url = f"http://{host}:{backend_port}"
    issuer = DevelopmentIssuer.load_or_create(None, issuer=issuer_url)
    settings = load_settings(
        {"jwks_url": issuer_url + JWKS_PATH, "issuer": issuer.issuer, "publishable_key": None,
         "frontend_api": None, "jwt_key": None, "secret_key": None, "jwks_cooldown_seconds": 0},
        {"host": host, "port": port, "log_format": "console", "default_backend": "demo",
         "backends": {"demo": {"adapter": "hasura", "url": f"http://{host}:{backend_port}",
                               "auth_mode": "admin_secret", "admin_secret": DEMO_ADMIN_SECRET,
                               "allowed_roles": ["user", "editor"]}}},
    )
    configure_logging(settings.gateway.log_level, "console")
    gateway = uvicorn.Server(uvicorn.Config(GatewayApp(Runtime.build(settings)), host=host, port=port,
                                            http=GatewayHttpProtocol, log_config=None, access_log=False,
                                            server_header=False, date_header=False, lifespan="on"))
    backend = uvicorn.Server(uvicorn.Config(demo_backend(issuer), host=host, port=backend_port,
                                            log_config=None, access_log=False, lifespan="off"))
    token = issuer.mint("user_demo", lifetime=3600)
    print(f"""
clerk-gateway demo
  gateway:      {base}  (backend 'demo' → echo backend on {host}:{backend_port})
  dev issuer:   {issuer.issuer}  (JWKS at {issuer_url}{JWKS_PATH})

A development session token for user_demo, valid for one hour:

{token}

Try it:

curl -s {base}/demo/v1/graphql -H 'Authorization: Bearer {token}' \\
     -H 'Content-Type: application/json' -d '{{"query":"{{ me {{ id }} }}"}}'

Without a token you get a 401; with -H 'x-hasura-role: admin' a 403. Ctrl-C stops.
""", flush=True)
    # The issuer's JWKS must be listening before the gateway's first key fetch.
    backend_task = asyncio.create_task(backend.serve())
    while not backend.started and not backend_task.done():  # noqa: ASYNC110 - uvicorn exposes a flag, no event
        await asyncio.sleep(0.02)
    await asyncio.gather(gateway.serve(), backend_task)
