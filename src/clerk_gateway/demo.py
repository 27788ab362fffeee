"""``clerk-gateway demo``: the whole verified path on one machine, with no Clerk account.

A development issuer (its own RSA key) publishes its JWKS on the gateway itself at
``/dev-issuer/.well-known/jwks.json``, so the gateway fetches keys over HTTP exactly as it would
from Clerk. A built-in echo backend stands in for Hasura and answers with the identity it got.
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
from clerk_gateway.settings import load_settings

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

JWKS_PATH = "/dev-issuer/.well-known/jwks.json"
DEMO_ADMIN_SECRET = "demo-admin-secret"  # noqa: S105 - a fixed secret between two local demo processes


async def echo_backend(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers any GraphQL POST with the session variables that reached it."""
    if scope["type"] != "http":
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


class DemoGateway(GatewayApp):
    """The gateway plus the development issuer's JWKS route."""

    def __init__(self, runtime: Runtime, issuer: DevelopmentIssuer) -> None:
        super().__init__(runtime)
        self._jwks = orjson.dumps(issuer.jwks())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == JWKS_PATH:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"cache-control", b"public, max-age=300")]})
            await send({"type": "http.response.body", "body": self._jwks})
            return
        await super().__call__(scope, receive, send)


async def run_demo(host: str = "127.0.0.1", port: int = 8000, backend_port: int = 8001) -> None:
    base = f"http://{host}:{port}"
    issuer = DevelopmentIssuer.load_or_create(None, issuer=f"{base}/dev-issuer")
    settings = load_settings(
        {"jwks_url": base + JWKS_PATH, "issuer": issuer.issuer, "publishable_key": None,
         "frontend_api": None, "jwt_key": None, "secret_key": None, "jwks_cooldown_seconds": 0},
        {"host": host, "port": port, "log_format": "console", "default_backend": "demo",
         "backends": {"demo": {"adapter": "hasura", "url": f"http://{host}:{backend_port}",
                               "auth_mode": "admin_secret", "admin_secret": DEMO_ADMIN_SECRET,
                               "allowed_roles": ["user", "editor"]}}},
    )
    configure_logging(settings.gateway.log_level, "console")
    gateway = uvicorn.Server(uvicorn.Config(DemoGateway(Runtime.build(settings), issuer), host=host,
                                            port=port, log_config=None, access_log=False, lifespan="on"))
    backend = uvicorn.Server(uvicorn.Config(echo_backend, host=host, port=backend_port, log_config=None,
                                            access_log=False, lifespan="off"))
    token = issuer.mint("user_demo", lifetime=3600)
    print(f"""
clerk-gateway demo
  gateway:      {base}  (backend 'demo' → echo backend on {host}:{backend_port})
  dev issuer:   {issuer.issuer}  (JWKS at {base}{JWKS_PATH})

A development session token for user_demo, valid for one hour:

{token}

Try it:

curl -s {base}/demo/v1/graphql -H 'Authorization: Bearer {token}' \\
     -H 'Content-Type: application/json' -d '{{"query":"{{ me {{ id }} }}"}}'

Without a token you get a 401; with -H 'x-hasura-role: admin' a 403. Ctrl-C stops.
""", flush=True)
    await asyncio.gather(gateway.serve(), backend.serve())
