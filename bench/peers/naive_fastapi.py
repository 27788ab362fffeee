"""Peer A for the benchmark: the proxy most people would write first.

FastAPI + one shared ``httpx.AsyncClient`` (default limits) + python-jose, one uvicorn worker with
uvicorn's defaults (which pick uvloop and httptools when installed, as in the project venv). It does
the same job as the gateway's Hasura route in ``admin_secret`` mode — verify the RS256 token with
the PEM key, check ``iss``, forward the body with the admin secret and the user's id — and nothing
more: no token cache, no streaming, no metrics. It exists to show what the gateway's design buys
(or costs) against the obvious implementation on the same machine.

Configured by environment (bench.py sets it): PEER_PORT, PEER_UPSTREAM (``http://127.0.0.1:<port>``),
PEER_PEM_FILE, PEER_ISSUER, PEER_ADMIN_SECRET.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from jose import JWTError, jwt

UPSTREAM = os.environ.get("PEER_UPSTREAM", "http://127.0.0.1:8081")
PEM = open(os.environ["PEER_PEM_FILE"]).read() if "PEER_PEM_FILE" in os.environ else ""
ISSUER = os.environ.get("PEER_ISSUER", "https://clerk.bench.local")
ADMIN_SECRET = os.environ.get("PEER_ADMIN_SECRET", "bench-secret")

client: httpx.AsyncClient | None = None


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    global client
    client = httpx.AsyncClient(base_url=UPSTREAM, timeout=10.0)
    try:
        yield
    finally:
        await client.aclose()


app = FastAPI(lifespan=lifespan)


def _unauthorized(reason: str) -> JSONResponse:
    return JSONResponse({"error": "unauthorized", "reason": reason}, status_code=401)


@app.post("/hasura/v1/graphql")
async def graphql(request: Request) -> Response:
    authorization = request.headers.get("authorization", "")
    if not authorization.startswith("Bearer "):
        return _unauthorized("missing_token")
    try:
        claims = jwt.decode(authorization[7:], PEM, algorithms=["RS256"], issuer=ISSUER,
                            options={"verify_aud": False, "leeway": 5})
    except JWTError:
        return _unauthorized("invalid_token")
    body = await request.body()
    assert client is not None
    upstream = await client.post("/v1/graphql", content=body, headers={
        "content-type": "application/json",
        "x-hasura-admin-secret": ADMIN_SECRET,
        "x-hasura-role": "user",
        "x-hasura-user-id": str(claims["sub"]),
    })
    return Response(upstream.content, status_code=upstream.status_code,
                    media_type=upstream.headers.get("content-type"))


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PEER_PORT", "8082")),
                log_level="warning", access_log=False)
