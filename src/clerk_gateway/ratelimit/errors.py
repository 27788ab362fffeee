"""The 429 the rate limiter raises; the proxy renders it in the backend's error shape."""

from __future__ import annotations

import math

from clerk_gateway.errors import GatewayError

__all__ = ["RateLimitedError"]


class RateLimitedError(GatewayError):
    """Too many requests for one limit; ``Retry-After`` says when one more will pass.

    ``reason`` names the limit (``rate-limited-user``, ``rate-limited-auth-failures``) so that
    clients and log lines can tell them apart; ``code`` is the one clients match on. The
    ``gateway_rate_limited_total{kind}`` counter counts them.
    """

    status = 429
    code = "rate-limited"
    title = "Too Many Requests"

    def __init__(self, reason: str, message: str, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(reason, f"{message}; retry after {self.retry_after} s",
                         headers={"retry-after": str(self.retry_after)})
