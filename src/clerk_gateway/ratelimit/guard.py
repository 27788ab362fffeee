"""The rate-limit request guard: per verified user, and per client address for failed sign-ins.

*Per user* (``after_auth``): each verified subject has a bucket; a request over it is a 429
``rate-limited-user``. The key is the subject, so one user's runaway client (a render loop, a
retry storm) cannot starve everybody else, and users behind one NAT do not share a budget.

*Per address, for authentication failures* (``on_refused`` counts each 401 — except "no token at
all", which costs nothing to refuse and guesses nothing; ``before_auth`` checks): an address that
used up its failure budget is refused with 429 ``rate-limited-auth-failures`` *before* its token
is even parsed, so guessing tokens, or making the gateway verify signatures of forged ones, is
throttled. The check takes nothing from the bucket and stores nothing for an address that never
failed. IPv6 addresses are grouped by /64, since one client usually owns a whole /64.
"""

from __future__ import annotations

import ipaddress

from clerk_gateway.errors import AuthenticationError, GatewayError, MissingTokenError
from clerk_gateway.proxy.guards import RequestContext, RequestGuard

from .buckets import BucketStore
from .errors import RateLimitedError
from .metrics import RATE_LIMITED

__all__ = ["RateLimitGuard", "client_address"]

USER_REASON = "rate-limited-user"
FAILURES_REASON = "rate-limited-auth-failures"


def _normalise(text: str) -> str | None:
    if ":" not in text:
        return text  # IPv4 (or a socket name): as the server reported it
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def client_address(context: RequestContext, header: bytes | None = None) -> str | None:
    """The address a failure budget is kept for.

    With ``header`` (set only when every request passes through a proxy that sets it), the last
    entry of that header is used — the one the proxy itself appended; earlier entries of an
    ``X-Forwarded-For`` are whatever the client wrote. Without it, or when it is missing or not an
    address, the peer address of the connection.
    """
    if header is not None:
        value = context.header(header)
        if value:
            candidate = value.rsplit(b",", 1)[-1].strip().decode("latin-1")
            try:
                ipaddress.ip_address(candidate)
            except ValueError:
                pass
            else:
                return _normalise(candidate)
    if context.client_ip is None:
        return None
    return _normalise(context.client_ip)


class RateLimitGuard(RequestGuard):
    """Either limit may be ``None`` (turned off); the stores decide, the guard raises."""

    def __init__(self, users: BucketStore | None, failures: BucketStore | None, *,
                 client_ip_header: str | None = None) -> None:
        self.users = users
        self.failures = failures
        self.client_ip_header = client_ip_header.strip().lower().encode("latin-1") if client_ip_header else None
        self._limited_user = RATE_LIMITED.labels("user")
        self._limited_failures = RATE_LIMITED.labels("auth-failures")

    async def before_auth(self, context: RequestContext) -> None:
        failures = self.failures
        if failures is None:
            return
        address = client_address(context, self.client_ip_header)
        if address is None:
            return
        decision = await failures.take(address, 0)
        if not decision.allowed:
            self._limited_failures.inc()
            raise RateLimitedError(FAILURES_REASON, "too many failed authentications from this address",
                                   decision.retry_after)

    async def after_auth(self, context: RequestContext) -> None:
        users, token = self.users, context.token
        if users is None or token is None:
            return
        decision = await users.take(token.subject, 1)
        if not decision.allowed:
            self._limited_user.inc()
            raise RateLimitedError(USER_REASON, "too many requests for this user", decision.retry_after)

    async def on_refused(self, context: RequestContext, error: GatewayError) -> None:
        failures = self.failures
        if failures is None or not isinstance(error, AuthenticationError) or isinstance(error, MissingTokenError):
            return
        address = client_address(context, self.client_ip_header)
        if address is not None:
            await failures.take(address, 1)

    async def aclose(self) -> None:
        for store in (self.users, self.failures):
            if store is not None:
                await store.aclose()
