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
from clerk_gateway.auth.upstream_tokens import TokenExchanger, TokenMinter
from clerk_gateway.errors import GatewayError

Header = tuple[bytes, bytes]


def http_url(value: str, example: str) -> str:
    """A backend URL as adapters' settings accept it: http(s), without a trailing slash (paths are
    appended to it). ``example`` goes into the one-line settings error."""
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"must be an http(s) URL such as {example}")
    return value.rstrip("/")


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
    #: End the response when the verified token expires (a long-lived stream must not outlive the
    #: identity it was opened with); see :meth:`Adapter.stream_expired_ending`.
    ends_at_token_expiry: bool = False


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
class AdapterServices:
    """The stateful collaborators the runtime builds once and hands to every adapter that needs
    them (see :meth:`Adapter.services_needed`): the ``mint`` signer and the ``exchange`` client.
    An adapter uses them; it never signs, reads key files or calls Clerk itself."""

    minter: TokenMinter | None = None
    exchanger: TokenExchanger | None = None


#: Names for :meth:`Adapter.services_needed`.
MINTER = "minter"
EXCHANGER = "exchanger"


@dataclass(frozen=True, slots=True)
class HeaderPolicy:
    """Which client headers never go upstream, applied by the proxy in one pass."""

    blocked: frozenset[bytes] = frozenset()
    blocked_prefixes: tuple[bytes, ...] = ()


class Adapter(ABC):
    """Base of every backend adapter; registered under the ``clerk_gateway.adapters`` entry point."""

    settings_model: ClassVar[type[BackendSettings]] = BackendSettings
    header_policy: ClassVar[HeaderPolicy] = HeaderPolicy()
    #: Paths this backend also serves at the gateway's root when it is ``GATEWAY_DEFAULT_BACKEND``,
    #: for clients that cannot be given a path prefix (Fauna's JavaScript driver resolves
    #: ``/query/1`` against the endpoint's origin, dropping ``/<name>``).
    root_paths: ClassVar[frozenset[str]] = frozenset()
    default_token_kinds: ClassVar[frozenset[TokenKind]] = frozenset({TokenKind.SESSION})

    def __init__(self, name: str, settings: BackendSettings) -> None:
        self.name = name
        self.settings = settings
        kinds = settings.token_kinds
        self.accepted_kinds: frozenset[TokenKind] = (
            frozenset(kinds) if kinds is not None else self.default_token_kinds
        )
        #: Set by the runtime once every adapter said what it needs (:meth:`services_needed`).
        self.services = AdapterServices()

    def services_needed(self) -> frozenset[str]:
        """Which of :class:`AdapterServices` this backend uses (:data:`MINTER`, :data:`EXCHANGER`),
        so that the runtime builds only what is used and start-up fails when one cannot be built."""
        return frozenset()

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

    #: Headers a client may put in its ``connection_init`` payload for the adapter to read (Hasura:
    #: ``x-hasura-role`` picks among the allowed roles); every other payload member is dropped.
    websocket_passed_headers: ClassVar[frozenset[str]] = frozenset()

    def websocket_url(self, path: str) -> str | None:
        """The upstream WebSocket URL for ``path`` (below ``/<name>``), or ``None``: no WebSocket there."""
        return None

    async def connection_init(self, token: VerifiedToken, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The ``connection_init`` payload the upstream receives for this identity.

        The default serves backends that read the identity from ``payload.headers``, as Hasura does:
        the same headers :meth:`identity_headers` gives an HTTP request (with the client's
        :attr:`websocket_passed_headers` taken into account), and nothing else the client wrote.
        """
        sent = payload.get("headers")
        passed: list[Header] = []
        if isinstance(sent, Mapping):
            passed = [(str(name).lower().encode(), str(value).encode("latin-1", "replace"))
                      for name, value in sent.items() if str(name).lower() in self.websocket_passed_headers]
        request = IncomingRequest(method="GET", path="", query_string=b"", headers=passed, request_id="")
        identity = await self.identity_headers(token, request, Route(upstream_url=""))
        return {"headers": {name.decode("latin-1"): value.decode("latin-1") for name, value in identity}}

    async def renewed_connection_init(self, token: VerifiedToken, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The ``connection_init`` payload for a socket renewed with ``token`` (the default: the same as
        for a new socket). An adapter whose identity is cached per session refreshes it here."""
        return await self.connection_init(token, payload)

    def socket_identity_expires(self) -> bool:
        """Whether the identity given upstream on a socket expires with the client's token (a
        forwarded or exchanged token): a renewal then needs a new upstream connection."""
        return False

    def probe_url(self) -> str | None:
        """A URL whose answer says the backend is reachable (``/readyz``, ``check``)."""
        return None

    def render_error(self, error: GatewayError, route: Route | None) -> tuple[int, list[Header], bytes]:
        """The gateway's own refusal on this backend's paths, in the shape its clients expect."""
        from clerk_gateway.proxy.responses import render_error

        return render_error(error, graphql=route.graphql if route else False)

    def stream_expired_ending(self, route: Route, last_chunk: bytes) -> bytes | None:
        """The bytes that end a response on a route with ``ends_at_token_expiry`` when its token
        expires, after which the body is completed; ``None`` cuts the connection instead. The
        default cuts: for a body format the gateway does not know, a truncation the client sees is
        safer than a body that looks complete. ``last_chunk`` is the last piece relayed, so an
        adapter can tell whether the body stands at a message boundary."""
        return None

    async def aclose(self) -> None:
        """Release what the adapter holds (token caches, API clients)."""
