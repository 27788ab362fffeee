"""The adapter interface, the seam where backends plug in.

An adapter declares its settings model and its allow-listed paths, and turns a verified token plus
the incoming request into the headers the upstream must see (and, for subscriptions, the
``connection_init`` payload). The proxy owns sockets and bytes; the adapter owns identity.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from clerk_gateway.auth.model import TokenKind, VerifiedToken
from clerk_gateway.errors import GatewayError

Header = tuple[bytes, bytes]


class BackendSettings(BaseModel):
    """Fields every backend has; adapters extend it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    adapter: str
    url: str
    timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    max_connections: int = Field(default=256, ge=1, le=65536)
    token_kinds: list[TokenKind] | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """An allow-listed path: where it goes upstream and how errors on it are shaped."""

    upstream_url: str
    graphql: bool = True
    streaming: bool = False


@dataclass(slots=True)
class IncomingRequest:
    """What the proxy read from the client; header names are lower-case bytes (ASGI)."""

    method: str
    path: str
    query_string: bytes
    headers: list[Header]
    request_id: str
    client_ip: str | None = None
    _index: dict[bytes, bytes] | None = field(default=None, repr=False)

    def header(self, name: bytes) -> bytes | None:
        """Last value of a header (names are lower-case)."""
        if self._index is None:
            self._index = dict(self.headers)
        return self._index.get(name)


@dataclass(frozen=True, slots=True)
class HeaderPolicy:
    """Which client headers never go upstream, applied by the proxy in one pass."""

    blocked: frozenset[bytes] = frozenset()
    blocked_prefixes: tuple[bytes, ...] = ()


class Adapter(ABC):
    """Base of every backend adapter; registered under the ``clerk_gateway.adapters`` entry point."""

    settings_model: ClassVar[type[BackendSettings]] = BackendSettings
    header_policy: ClassVar[HeaderPolicy] = HeaderPolicy()
    default_token_kinds: ClassVar[frozenset[TokenKind]] = frozenset({TokenKind.SESSION})

    def __init__(self, name: str, settings: BackendSettings) -> None:
        self.name = name
        self.settings = settings
        kinds = settings.token_kinds
        self.accepted_kinds: frozenset[TokenKind] = (
            frozenset(kinds) if kinds is not None else self.default_token_kinds
        )

    @property
    def timeout_seconds(self) -> float:
        return self.settings.timeout_seconds

    @abstractmethod
    def match(self, method: str, path: str) -> Route:
        """Return the route for ``path`` (below ``/<name>``); raise NotFoundError or MethodNotAllowedError."""

    @abstractmethod
    async def identity_headers(
        self, token: VerifiedToken, request: IncomingRequest, route: Route
    ) -> list[Header]:
        """Headers that carry the identity upstream; raise ForbiddenError to refuse the request."""

    async def connection_init(self, token: VerifiedToken, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Rewrite a WebSocket ``connection_init`` payload (subscriptions issue)."""
        raise NotImplementedError

    def probe_url(self) -> str | None:
        """A URL whose answer says the backend is reachable (``/readyz``, ``check``)."""
        return None

    def render_error(self, error: GatewayError, route: Route | None) -> tuple[int, list[Header], bytes]:
        """The gateway's own refusal on this backend's paths, in the shape its clients expect."""
        from clerk_gateway.proxy.responses import render_error

        return render_error(error, graphql=route.graphql if route else False)

    async def aclose(self) -> None:
        """Release what the adapter holds (token caches, API clients)."""
