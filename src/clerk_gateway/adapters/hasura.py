"""Hasura GraphQL Engine v2: the allow-listed endpoints and the identity in Hasura's terms.

Hasura trusts whatever ``x-hasura-*`` headers arrive alongside a valid admin secret, and an
absent ``x-hasura-role`` means admin. So every client ``x-hasura-*`` header is dropped by the
proxy's header policy, and in ``admin_secret`` mode the role is always set explicitly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from clerk_gateway.auth.model import TokenKind, VerifiedToken
from clerk_gateway.documents.settings import DocumentsSettings
from clerk_gateway.errors import AuthenticationError, GatewayError, MethodNotAllowedError, NotFoundError
from clerk_gateway.settings.complex_values import split_list

from .base import (
    EXCHANGER,
    MINTER,
    Adapter,
    BackendSettings,
    Header,
    HeaderPolicy,
    IncomingRequest,
    Route,
    http_url,
)
from .claims import HasuraIdentity, identity_from_map, identity_from_namespace
from .orgs import OrgPolicy, bare_org_role

AuthMode = Literal["forward", "admin_secret", "mint", "exchange"]
_IDENTITY_CACHE_SIZE = 4096


class HasuraSettings(BackendSettings):
    adapter: str = "hasura"
    auth_mode: AuthMode = "forward"
    admin_secret: SecretStr | None = None
    claims_namespace: str = "https://hasura.io/jwt/claims"
    claims_map: dict[str, Any] = Field(default_factory=dict)
    default_role: str = "user"
    allowed_roles: list[str] | None = None
    expose_rest: bool = False
    audience: str | None = None  # mint: the minted aud (default: the backend's name)
    token_lifetime_seconds: int = Field(default=60, ge=10, le=3600)  # mint
    template: str | None = None  # exchange: the Clerk JWT template's name
    org_claims: bool = True  # x-hasura-org-id/-slug/-role from the active organization (o)
    org_permissions: bool = False  # also x-hasura-org-permissions from o.per
    org_roles: dict[str, str] = Field(default_factory=dict)  # org role -> Hasura role (then reserved)
    documents: DocumentsSettings = Field(default_factory=DocumentsSettings)  # trusted documents / APQ

    _lists = field_validator("allowed_roles", "token_kinds", mode="before")(split_list)

    @field_validator("claims_map", "org_roles", mode="before")
    @classmethod
    def _map_from_text(cls, value: object) -> object:
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value, "http://hasura:8080")

    @model_validator(mode="after")
    def _consistent(self) -> HasuraSettings:
        if self.auth_mode == "exchange" and not self.template:
            raise ValueError("auth_mode 'exchange' needs template (the name of the Clerk JWT template)")
        if self.auth_mode == "admin_secret" and not self.admin_secret:
            raise ValueError("auth_mode 'admin_secret' needs admin_secret")
        roles = self.roles()
        if self.default_role not in roles:
            raise ValueError(f"default_role '{self.default_role}' is not in allowed_roles")
        for name in self.claims_map:
            if not name.lower().startswith("x-hasura-") or name != name.lower():
                raise ValueError(f"claims_map key '{name}' must be a lower-case x-hasura-* name")
        self._check_orgs(roles)
        return self

    def _check_orgs(self, roles: tuple[str, ...]) -> None:
        """``org_roles`` may only pick among the allowed roles, and the default role cannot be
        reserved (every token without that organization role would be left without one)."""
        if self.org_permissions and not self.org_claims:
            raise ValueError("org_permissions needs org_claims (it is an organization variable too)")
        seen: dict[str, str] = {}
        for org_role, role in self.org_roles.items():
            bare = bare_org_role(org_role)
            if not bare or not role:
                raise ValueError("org_roles entries map a non-empty organization role to a non-empty role")
            if seen.get(bare, role) != role:
                raise ValueError(f"org_roles lists the organization role '{bare}' twice (with and without "
                                 "'org:') with different roles")
            seen[bare] = role
            if role not in roles:
                raise ValueError(f"org_roles maps '{org_role}' to '{role}', which is not in allowed_roles")
        if self.default_role in seen.values():
            raise ValueError(f"default_role '{self.default_role}' is mapped to by org_roles, so it is reserved "
                             "for those organization roles; choose another default_role")

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
        self._orgs = OrgPolicy(variables=settings.org_claims, permissions=settings.org_permissions,
                               roles=settings.org_roles)
        self.audience = settings.audience or name

    def services_needed(self) -> frozenset[str]:
        mode = self.hasura.auth_mode
        return frozenset({MINTER}) if mode == "mint" else frozenset({EXCHANGER}) if mode == "exchange" else frozenset()

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
        same identity, and a client sends the same token for up to a minute.

        The active organization (``o``) is laid over either source by the backend's
        :class:`~clerk_gateway.adapters.orgs.OrgPolicy`, so the org variables and ``org_roles``
        reach every mode that uses the identity: headers in ``admin_secret``, the minted token's
        claims in ``mint`` and the role check in ``forward``."""
        cached = self._identities.get(token.token)
        if cached is not None:
            return cached
        namespace = token.claims.get(self.hasura.claims_namespace)
        if namespace is not None:
            identity = identity_from_namespace(namespace)
        else:
            identity = identity_from_map(token.claims, token.subject, self.hasura.default_role,
                                         self.hasura.roles(), self.hasura.claims_map)
        identity = self._orgs.apply(identity, token.claims)
        if len(self._identities) >= _IDENTITY_CACHE_SIZE:
            self._identities.clear()
        self._identities[token.token] = identity
        return identity

    async def identity_headers(
        self, token: VerifiedToken, request: IncomingRequest, route: Route
    ) -> list[Header]:
        requested = request.header(b"x-hasura-role")
        role_name = requested.decode("latin-1") if requested is not None else None
        mode = self.hasura.auth_mode
        if mode == "forward":
            headers: list[Header] = [(b"authorization", b"Bearer " + token.token.encode())]
            if self.hasura.claims_namespace in token.claims:
                role = self.identity(token).select_role(role_name)
                headers.append((b"x-hasura-role", role.encode()))
            elif requested is not None:
                self._orgs.check_passed_role(requested.decode("latin-1"), token.claims)
                headers.append((b"x-hasura-role", requested))  # Hasura checks it against the token
            return headers
        if mode == "exchange":
            return await self._exchanged_headers(token, requested)
        identity = self.identity(token)
        role = identity.select_role(role_name)
        if mode == "mint":
            minted = await self._minted(token, identity)
            return [(b"authorization", b"Bearer " + minted.encode()), (b"x-hasura-role", role.encode())]
        headers = [self._secret_header, (b"x-hasura-role", role.encode())]
        headers.extend(identity.header_bytes)
        return headers

    async def _minted(self, token: VerifiedToken, identity: HasuraIdentity) -> str:
        """The identity as a token signed by the gateway (``mint``): Hasura verifies it against the
        gateway's JWKS, so no shared secret and no Clerk template is needed."""
        minter = self.services.minter
        if minter is None:  # the runtime builds one for every mint backend; reaching this is a bug
            raise GatewayError("internal-error", "mint mode has no signing key")
        return await minter.token_for(
            cache_key=(self.audience, token.subject, identity), audience=self.audience, subject=token.subject,
            claims={self.hasura.claims_namespace: identity.as_claims()},
            lifetime_seconds=self.hasura.token_lifetime_seconds, not_after=token.expires_at)

    async def _exchanged_headers(self, token: VerifiedToken, requested: bytes | None) -> list[Header]:
        """The session's JWT-template token from Clerk (``exchange``), which Hasura verifies itself."""
        exchanger = self.services.exchanger
        if exchanger is None:
            raise GatewayError("internal-error", "exchange mode has no Clerk Backend API client")
        if token.session_id is None:
            raise AuthenticationError("token-kind-not-accepted", "exchange mode needs a session token (with sid)")
        assert self.hasura.template is not None  # validated with the settings
        exchanged = await exchanger.token_for(token.session_id, self.hasura.template)
        headers: list[Header] = [(b"authorization", b"Bearer " + exchanged.encode())]
        if requested is not None:
            self._orgs.check_passed_role(requested.decode("latin-1"), token.claims)
            headers.append((b"x-hasura-role", requested))  # Hasura checks it against the template's claims
        return headers

    websocket_passed_headers: ClassVar[frozenset[str]] = frozenset({"x-hasura-role"})

    def websocket_url(self, path: str) -> str | None:
        """Subscriptions go to Hasura's own WebSocket endpoint on the same GraphQL paths."""
        if path not in self.graphql_paths:
            return None
        url = self.upstream_url(path)
        return "ws" + url[4:] if url.startswith("http") else None

    def socket_identity_expires(self) -> bool:
        return self.hasura.auth_mode in ("forward", "exchange")

    async def renewed_connection_init(self, token: VerifiedToken, payload: Mapping[str, Any]) -> dict[str, Any]:
        """In ``exchange`` mode the cached template token is about as old as the socket's first one:
        a renewed upstream connection must carry a freshly exchanged token that outlives it."""
        exchanger = self.services.exchanger
        if self.hasura.auth_mode == "exchange" and exchanger is not None and token.session_id is not None:
            exchanger.forget_session(token.session_id)
        return await self.connection_init(token, payload)

    def probe_url(self) -> str | None:
        return self.hasura.url + "/healthz"
