"""Which headers cross the gateway, precomputed once so the hot path is one pass per request."""

from __future__ import annotations

from clerk_gateway.adapters.base import Header, HeaderPolicy

# RFC 9110 §7.6.1 hop-by-hop headers, plus what the gateway always sets or never forwards.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"proxy-connection",
    b"te", b"trailer", b"transfer-encoding", b"upgrade",
})
_ALWAYS_DROPPED_REQUEST = HOP_BY_HOP | {b"host", b"content-length", b"cookie", b"authorization", b"x-request-id",
                                        b"expect"}
_ALWAYS_DROPPED_RESPONSE = HOP_BY_HOP | {b"x-request-id"}


class RequestHeaderFilter:
    """Drops every client header that must not reach the upstream under an adapter's policy."""

    __slots__ = ("_blocked", "_prefixes")

    def __init__(self, policy: HeaderPolicy) -> None:
        self._blocked = _ALWAYS_DROPPED_REQUEST | policy.blocked
        self._prefixes = policy.blocked_prefixes

    def apply(self, headers: list[Header]) -> list[Header]:
        blocked, prefixes = self._blocked, self._prefixes
        extra = _connection_tokens(headers)
        out = []
        for name, value in headers:
            if name in blocked or (prefixes and name.startswith(prefixes)) or (extra and name in extra):
                continue
            out.append((name, value))
        return out


def filter_response_headers(headers: list[Header]) -> list[Header]:
    extra = _connection_tokens(headers)
    return [(name, value) for name, value in headers
            if name not in _ALWAYS_DROPPED_RESPONSE and not (extra and name in extra)]


def _connection_tokens(headers: list[Header]) -> frozenset[bytes]:
    """Headers named in ``Connection`` (every such line, RFC 9110 §5.3) are hop-by-hop too."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            tokens.update(token.strip().lower() for token in value.split(b","))
    tokens.discard(b"close")
    tokens.discard(b"keep-alive")
    tokens.discard(b"")
    return frozenset(tokens)
