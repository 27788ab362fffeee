"""The edge: what happens between the socket and the proxy.

:class:`CorsMiddleware` wraps the ASGI app; :func:`edge_http_protocol` is uvicorn's ``http=``
protocol with header size and header time limits; :func:`read_within` puts a deadline on reading a
request body. The protocol module imports uvicorn, so it is not imported here: ``serve`` imports it
(``from clerk_gateway.edge.protocol import EdgeLimits, edge_http_protocol``).
"""

from __future__ import annotations

from .body import read_within
from .cors import ALLOWED_METHODS, DEFAULT_ALLOW_HEADERS, EXPOSE_HEADERS, CorsMiddleware, normalize_origin
from .errors import HeaderFieldsTooLargeError, RequestTimeoutError

__all__ = ["ALLOWED_METHODS", "DEFAULT_ALLOW_HEADERS", "EXPOSE_HEADERS", "CorsMiddleware",
           "HeaderFieldsTooLargeError", "RequestTimeoutError", "normalize_origin", "read_within"]
