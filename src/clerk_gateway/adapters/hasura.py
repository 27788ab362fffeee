"""Hasura GraphQL Engine v2: the allow-listed endpoints and the identity in Hasura's terms.

Hasura trusts whatever ``x-hasura-*`` headers arrive alongside a valid admin secret, and an
absent ``x-hasura-role`` means admin. So every client ``x-hasura-*`` header is dropped by the
proxy's header policy, and in ``admin_secret`` mode the role is always set explicitly.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from clerk_gateway.auth.model import TokenKind, VerifiedToken
from clerk_gateway.errors import MethodNotAllowedError, NotFoundError

from .base import Adapter, BackendSettings, Header, HeaderPolicy, IncomingRequest, Route
from .claims import HasuraIdentity, identity_from_map, identity_from_namespace

AuthMode = Literal["forward", "admin_secret", "mint", "exchange"]
_LATER_MODES = {"mint", "exchange"}
_IDENTITY_CACHE_SIZE = 4096


def _list_from_text(value: object) -> object:
    """Nested variables arrive as text: accept JSON (``["a","b"]``) or comma-separated values."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class HasuraSettings(BackendSettings):
    adapter: str = "hasura"
    auth_mode: AuthMode = "forward"
    admin_secret: SecretStr | None = None
    claims_namespace: str = "https://hasura.io/jwt/claims"
    claims_map: dict[str, Any] = Field(default_factory=dict)
    default_role: str = "user"
    allowed_roles: list[str] | None = None
    expose_rest: bool = False

    _lists = field_validator("allowed_roles", "token_kinds", mode="before")(_list_from_text)

    @field_validator("claims_map", mode="before")
    @classmethod
    def _map_from_text(cls, value: object) -> object:
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL such as http://hasura:8080")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> HasuraSettings:
        if self.auth_mode in _LATER_MODES:
            raise ValueError(f"auth_mode '{self.auth_mode}' is not available in this version; "
                             "use 'forward' or 'admin_secret'")
        if self.auth_mode == "admin_secret" and not self.admin_secret:
            raise ValueError("auth_mode 'admin_secret' needs admin_secret")
        roles = self.roles()
        if self.default_role not in roles:
            raise ValueError(f"default_role '{self.default_role}' is not in allowed_roles")
        for name in self.claims_map:
            if not name.lower().startswith("x-hasura-") or name != name.lower():
                raise ValueError(f"claims_map key '{name}' must be a lower-case x-hasura-* name")
        return self

    def roles(self) -> tuple[str, ...]:
        return tuple(self.allowed_roles) if self.allowed_roles else (self.default_role,)


class HasuraAdapter(Adapter):
    settings_model: ClassVar[type[BackendSettings]] = HasuraSettings
    header_policy: ClassVar[HeaderPolicy] = HeaderPolicy(
        blocked=frozenset({b"x-hasura-admin-secret", b"x-hasura-access-key"}),
        blocked_prefixes=(b"x-hasura-",),
    )
    graphql_paths: ClassVar[dict[str, tuple[str, ...]]] = {
        "/v1/graphql": ("POST", "GET"),
        "/v1beta1/relay": ("POST",),
    }

    def __init__(self, name: str, settings: BackendSettings) -> None:
        super().__init__(name, settings)
        assert isinstance(settings, HasuraSettings)
        self.hasura: HasuraSettings = settings
        if settings.token_kinds is None and settings.auth_mode == "forward":
            self.accepted_kinds = frozenset(TokenKind)
        self._routes = {
            path: Route(upstream_url=self.upstream_url(path), graphql=True) for path in self.graphql_paths
        }
        secret = settings.admin_secret.get_secret_value() if settings.admin_secret else ""
        self._secret_header: Header = (b"x-hasura-admin-secret", secret.encode())
        self._identities: dict[str, HasuraIdentity] = {}

    def upstream_url(self, path: str) -> str:
        return self.hasura.url + path

    def match(self, method: str, path: str) -> Route:
        route = self._routes.get(path)
        if route is not None:
            methods = self.graphql_paths[path]
            if method not in methods:
                raise MethodNotAllowedError(list(methods))
            return route
        if self.hasura.expose_rest and path.startswith("/api/rest/") and ".." not in path:
            return Route(upstream_url=self.upstream_url(path), graphql=False)
        raise NotFoundError()

    def identity(self, token: VerifiedToken) -> HasuraIdentity:
        """The Hasura identity of a token, remembered per token: the same token always maps to the
        same identity, and a client sends the same token for up to a minute."""
        cached = self._identities.get(token.token)
        if cached is not None:
            return cached
        namespace = token.claims.get(self.hasura.claims_namespace)
        if namespace is not None:
            identity = identity_from_namespace(namespace)
        else:
            identity = identity_from_map(token.claims, token.subject, self.hasura.default_role,
                                         self.hasura.roles(), self.hasura.claims_map)
        if len(self._identities) >= _IDENTITY_CACHE_SIZE:
            self._identities.clear()
        self._identities[token.token] = identity
        return identity

    async def identity_headers(
        self, token: VerifiedToken, request: IncomingRequest, route: Route
    ) -> list[Header]:
        requested = request.header(b"x-hasura-role")
        role_name = requested.decode("latin-1") if requested is not None else None
        if self.hasura.auth_mode == "forward":
            headers: list[Header] = [(b"authorization", b"Bearer " + token.token.encode())]
            if self.hasura.claims_namespace in token.claims:
                role = self.identity(token).select_role(role_name)
                headers.append((b"x-hasura-role", role.encode()))
            elif requested is not None:
                headers.append((b"x-hasura-role", requested))  # Hasura checks it against the token
            return headers
        identity = self.identity(token)
        role = identity.select_role(role_name)
        headers = [self._secret_header, (b"x-hasura-role", role.encode())]
        headers.extend(identity.header_bytes)
        return headers

    def probe_url(self) -> str | None:
        return self.hasura.url + "/healthz"
