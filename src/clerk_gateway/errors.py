"""One error hierarchy for everything the gateway refuses or fails at.

Each error carries a machine-readable ``reason`` (used in the error body, the log line and the
``reason`` metric label) and the Hasura-compatible ``code`` that GraphQL clients already know.
Messages are written for the client and never contain a token or a secret; the edge renders them
(see :mod:`clerk_gateway.proxy.responses`).
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway answers with."""

    status: int = 500
    code: str = "unexpected"
    title: str = "Internal gateway error"
    content_type: bytes | None = None  # the body's media type when not the error shape's default

    def __init__(self, reason: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})


class AuthenticationError(GatewayError):
    """No usable token, or a token that failed verification: the client should get a new token."""

    status = 401
    code = "invalid-jwt"
    title = "Unauthorized"


class MissingTokenError(AuthenticationError):
    """No token at all, as Hasura reports it (``invalid-headers``)."""

    code = "invalid-headers"

    def __init__(self) -> None:
        super().__init__("missing-token", "Missing 'Authorization' or 'Cookie' header in JWT authentication mode")


class ForbiddenError(GatewayError):
    """A valid identity that may not do what it asked (role not allowed, party not authorized)."""

    status = 403
    code = "access-denied"
    title = "Forbidden"


class NotFoundError(GatewayError):
    status = 404
    code = "not-found"
    title = "Not Found"

    def __init__(self, message: str = "no such route on this gateway") -> None:
        super().__init__("not-found", message)


class MethodNotAllowedError(GatewayError):
    status = 405
    code = "method-not-allowed"
    title = "Method Not Allowed"

    def __init__(self, allowed: list[str]) -> None:
        super().__init__("method-not-allowed", "method not allowed on this path",
                         headers={"allow": ", ".join(allowed)})


class PayloadTooLargeError(GatewayError):
    status = 413
    code = "request-too-large"
    title = "Payload Too Large"

    def __init__(self, limit: int) -> None:
        super().__init__("body-too-large", f"request body exceeds the limit of {limit} bytes")


class BadRequestError(GatewayError):
    status = 400
    code = "bad-request"
    title = "Bad Request"


class UpstreamUnavailableError(GatewayError):
    status = 502
    code = "bad-gateway"
    title = "Bad Gateway"

    def __init__(self, backend: str) -> None:
        super().__init__("upstream-unavailable", f"backend '{backend}' is unreachable")


class UpstreamTimeoutError(GatewayError):
    status = 504
    code = "gateway-timeout"
    title = "Gateway Timeout"

    def __init__(self, backend: str) -> None:
        super().__init__("upstream-timeout", f"backend '{backend}' did not answer in time")


class ServiceUnavailableError(GatewayError):
    """The gateway itself cannot decide (no verification keys yet)."""

    status = 503
    code = "unavailable"
    title = "Service Unavailable"
