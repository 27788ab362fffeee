"""An example adapter for a JSON API behind the gateway that trusts ``X-User-Id``/``X-User-Org``.

It shows every part of the interface (docs/adapters.md): a settings model extending
``BackendSettings``, an allow-list of paths (``match``), the identity as headers
(``identity_headers``), a header policy that drops what a client must never set, its own error
shape (``render_error``), the WebSocket ``connection_init`` mapping, a readiness probe and
``aclose``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from clerk_gateway.adapters.base import (
    Adapter,
    BackendSettings,
    Header,
    HeaderPolicy,
    IncomingRequest,
    Route,
)
from clerk_gateway.auth.model import VerifiedToken
from clerk_gateway.errors import ForbiddenError, GatewayError, MethodNotAllowedError, NotFoundError
from clerk_gateway.proxy.responses import error_headers


class UserApiSettings(BackendSettings):
    adapter: str = "userapi"
    allowed_prefix: str = "/api/"
    require_org: bool = False


class UserApiAdapter(Adapter):
    settings_model: ClassVar[type[BackendSettings]] = UserApiSettings
    header_policy: ClassVar[HeaderPolicy] = HeaderPolicy(blocked=frozenset({b"x-user-id", b"x-user-org"}))

    def __init__(self, name: str, settings: BackendSettings) -> None:
        super().__init__(name, settings)
        assert isinstance(settings, UserApiSettings)
        self.api = settings

    def match(self, method: str, path: str) -> Route:
        if not path.startswith(self.api.allowed_prefix) or ".." in path:
            raise NotFoundError()
        if method not in ("GET", "POST"):
            raise MethodNotAllowedError(["GET", "POST"])
        return Route(upstream_url=self.api.url.rstrip("/") + path, graphql=False)

    async def identity_headers(self, token: VerifiedToken, request: IncomingRequest, route: Route) -> list[Header]:
        org = token.claims.get("o") if isinstance(token.claims.get("o"), dict) else None
        if self.api.require_org and org is None:
            raise ForbiddenError("org-required", "an active organization is required")
        headers: list[Header] = [(b"x-user-id", token.subject.encode())]
        if org is not None and isinstance(org.get("id"), str):
            headers.append((b"x-user-org", org["id"].encode()))
        return headers

    async def connection_init(self, token: VerifiedToken, payload: Mapping[str, Any]) -> dict[str, Any]:
        return {**payload, "userId": token.subject}

    def render_error(self, error: GatewayError, route: Route | None) -> tuple[int, list[Header], bytes]:
        # error_headers keeps what every refusal carries: WWW-Authenticate on 401, Retry-After on 429,
        # Cache-Control: no-store and Date; only the body is this API's own shape.
        body = orjson.dumps({"ok": False, "error": error.reason, "detail": error.message})
        return error.status, error_headers(error, b"application/json"), body

    def probe_url(self) -> str | None:
        return self.api.url.rstrip("/") + "/healthz"
