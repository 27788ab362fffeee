"""Refusals at the edge: a request too slow to arrive, or whose headers are too large."""

from __future__ import annotations

from clerk_gateway.errors import GatewayError

__all__ = ["HeaderFieldsTooLargeError", "RequestTimeoutError"]


class RequestTimeoutError(GatewayError):
    """The client did not send its request (headers or body) in time (408)."""

    status = 408
    code = "request-timeout"
    title = "Request Timeout"

    def __init__(self, part: str, seconds: float) -> None:
        super().__init__(f"{part}-timeout", f"the request {part} did not arrive within {seconds:g} s")


class HeaderFieldsTooLargeError(GatewayError):
    """The request line and headers together exceed the limit (431, RFC 6585)."""

    status = 431
    code = "request-too-large"
    title = "Request Header Fields Too Large"

    def __init__(self, limit: int) -> None:
        super().__init__("headers-too-large", f"the request headers exceed the limit of {limit} bytes")
