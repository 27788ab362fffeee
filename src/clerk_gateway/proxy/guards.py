"""Request guards: checks that run around authentication on every proxied request.

Rate limits and GraphQL document limits plug in here without the proxy knowing them. A guard
raises a :class:`clerk_gateway.errors.GatewayError` to refuse; the proxy renders it in the
backend's error shape. Guards never see the upstream and never change the request.
"""

from __future__ import annotations

from dataclasses import dataclass

from clerk_gateway.adapters.base import Header, Route
from clerk_gateway.auth.model import VerifiedToken
from clerk_gateway.errors import GatewayError


@dataclass(slots=True)
class RequestContext:
    """What a guard may look at. ``token`` and ``body`` are set once authentication passed."""

    backend: str
    method: str
    route: Route
    headers: list[Header]
    client_ip: str | None
    token: VerifiedToken | None = None
    body: bytes = b""
    query_string: bytes = b""

    def header(self, name: bytes) -> bytes | None:
        """The header's last value: the one the adapter acts on (``IncomingRequest.header``), and
        the one a proxy in front appended when a client sent its own copy first."""
        found: bytes | None = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found


class RequestGuard:
    """Base with no-op hooks; a guard overrides the ones it needs."""

    async def before_auth(self, context: RequestContext) -> None:
        """Runs before the token is looked at; raising refuses the request whatever its token."""

    async def after_auth(self, context: RequestContext) -> None:
        """Runs with the verified token and the whole body (e.g. per-user rate limit, query limits)."""

    async def on_refused(self, context: RequestContext, error: GatewayError) -> GatewayError | None:
        """Told about every refusal; may return the error to answer with instead (the per-address
        failure limit turns a 401 into a 429 once an address has failed too often)."""
        return None
