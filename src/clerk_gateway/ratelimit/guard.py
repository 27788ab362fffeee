"""The rate-limit request guard: per verified user, and per client address for failed sign-ins.

*Per user* (``after_auth``): each verified subject has a bucket; a request over it is a 429
``rate-limited-user``. The key is the subject, so one user's runaway client (a render loop, a
retry storm) cannot starve everybody else, and users behind one NAT do not share a budget.

*Per address, for authentication failures* (``on_refused``): each 401 — except "no token at all",
which costs nothing to refuse and guesses nothing — takes one from the client address's bucket;
once it is empty, that address's failures are answered 429 ``rate-limited-auth-failures`` with
``Retry-After`` instead of 401, so a retry storm of bad or expired tokens is told to back off.

Two rules keep this limit from turning one bad client into an outage for everyone:

* **It never refuses a token that verifies.** It acts only on a request that already failed
  authentication; a good token from the same address is served as usual, so a buggy tab behind
  the same NAT or load balancer cannot lock its neighbours out. (It also costs nothing on the
  success path: an address is looked up only when a request from it failed.)
* **It runs only on an address that can be trusted** (see :func:`client_address`): the entry a
  proxy appended to ``GATEWAY_RATE_LIMIT_CLIENT_IP_HEADER``, or the socket's peer when the operator
  said clients connect directly (``GATEWAY_RATE_LIMIT_TRUST_PEER_ADDRESS``). Behind a load balancer
  the peer is the balancer, shared by every client, so without either setting the limit is off.

IPv6 addresses are grouped by /64, since one client usually owns a whole /64.
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


def client_address(context: RequestContext, header: bytes | None = None, *,
                   trust_peer: bool = True) -> str | None:
    """The address a failure budget is kept for, or ``None`` when no trustworthy one is known.

    With ``header`` (set only when every request passes through a proxy that sets it), the last
    entry of that header is used — the one the proxy itself appended; earlier entries of an
    ``X-Forwarded-For`` are whatever the client wrote. Otherwise — no header configured, or it is
    missing or not an address — the peer address of the connection, but only with ``trust_peer``.
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
    if context.client_ip is None or not trust_peer:
        return None
    return _normalise(context.client_ip)


class RateLimitGuard(RequestGuard):
    """Either limit may be ``None`` (turned off); the stores decide, the guard raises.

    ``trust_peer_address`` says the socket's peer is the client itself (no proxy in front); the
    failure limit uses it when ``client_ip_header`` is not set or a request lacks it.
    """

    def __init__(self, users: BucketStore | None, failures: BucketStore | None, *,
                 client_ip_header: str | None = None, trust_peer_address: bool = False) -> None:
        self.users = users
        self.failures = failures
        self.client_ip_header = client_ip_header.strip().lower().encode("latin-1") if client_ip_header else None
        self.trust_peer_address = trust_peer_address
        self._limited_user = RATE_LIMITED.labels("user")
        self._limited_failures = RATE_LIMITED.labels("auth-failures")

    async def after_auth(self, context: RequestContext) -> None:
        users, token = self.users, context.token
        if users is None or token is None:
            return
        decision = await users.take(token.subject, 1)
        if not decision.allowed:
            self._limited_user.inc()
            raise RateLimitedError(USER_REASON, "too many requests for this user", decision.retry_after)

    async def on_refused(self, context: RequestContext, error: GatewayError) -> GatewayError | None:
        failures = self.failures
        if failures is None or not isinstance(error, AuthenticationError) or isinstance(error, MissingTokenError):
            return None
        address = client_address(context, self.client_ip_header, trust_peer=self.trust_peer_address)
        if address is None:
            return None
        decision = await failures.take(address, 1)
        if decision.allowed:
            return None
        self._limited_failures.inc()
        return RateLimitedError(FAILURES_REASON, "too many failed authentications from this address",
                                decision.retry_after)

    async def aclose(self) -> None:
        for store in (self.users, self.failures):
            if store is not None:
                await store.aclose()
