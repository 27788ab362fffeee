"""An upstream that verifies the bearer JWT the way Hasura's ``jwk_url`` mode does.

It fetches the JWKS from a URL the test can change (the gateway replica that is current), keeps it
for the ``max-age`` of the answer's ``Cache-Control``, and — as strictly as Hasura — does *not*
refetch when a token names a ``kid`` it does not hold: the token is refused. That strictness is
what a key rotation must survive, so the double counts every refusal for the test to assert on.
Tokens must carry ``iss``/``aud`` as configured and the Hasura claims namespace.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from typing import Any

import httpx
from aiohttp import web
from jose import jwt
from jose.exceptions import JOSEError

from .ports import BackgroundServer

__all__ = ["JwtVerifyingUpstream"]

NAMESPACE = "https://hasura.io/jwt/claims"


class JwtVerifyingUpstream(BackgroundServer):
    def __init__(self, *, issuer: str, audience: str) -> None:
        super().__init__(self._build_app)
        self.issuer, self.audience = issuer, audience
        self.jwks_url: str | None = None
        self._lock = threading.Lock()
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at = 0.0
        self._max_age = 0.0
        self.outcomes: Counter[str] = Counter()
        self.kids: Counter[str] = Counter()
        self.jwks_fetches = 0
        self.last_claims: dict[str, Any] | None = None
        self.tokens_seen: set[str] = set()

    async def _keyset(self) -> dict[str, dict[str, Any]]:
        """The cached JWKS, refetched only when its max-age has passed — never because a kid is unknown."""
        with self._lock:
            fresh = time.monotonic() - self._fetched_at < self._max_age
            if fresh and self._keys:
                return self._keys
            url = self.jwks_url
        assert url is not None, "set jwks_url first"
        async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
            response = await client.get(url)
        response.raise_for_status()
        match = re.search(r"max-age=(\d+)", response.headers.get("cache-control", ""))
        keys = {key["kid"]: key for key in response.json()["keys"]}
        with self._lock:
            self._keys, self._fetched_at = keys, time.monotonic()
            self._max_age = float(match.group(1)) if match else 0.0
            self.jwks_fetches += 1
        return keys

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        if request.path == "/healthz":
            return web.Response(text="OK")
        await request.read()
        outcome, claims = "ok", None
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith("Bearer "):
            outcome = "no-token"
        else:
            token = authorization.removeprefix("Bearer ")
            with self._lock:
                self.tokens_seen.add(token)
            try:
                kid = jwt.get_unverified_header(token).get("kid", "")
                key = (await self._keyset()).get(kid)
                if key is None:
                    outcome = "unknown-kid"
                else:
                    claims = jwt.decode(token, key, algorithms=[key["alg"]], audience=self.audience,
                                        issuer=self.issuer)
                    if NAMESPACE not in claims:
                        outcome = "no-namespace"
                    with self._lock:
                        self.kids[kid] += 1
            except JOSEError as exc:
                outcome = f"invalid: {type(exc).__name__}"
        with self._lock:
            self.outcomes[outcome] += 1
            if claims is not None:
                self.last_claims = claims
        if outcome != "ok":
            body = {"errors": [{"message": outcome, "extensions": {"code": "invalid-jwt"}}]}
            return web.Response(status=401, text=json.dumps(body), content_type="application/json")
        return web.Response(text=json.dumps({"data": {"viewer": {"role": request.headers.get("x-hasura-role")}}}),
                            content_type="application/json")
