"""Finding the Clerk token in a request: the ``Authorization`` header first, then the session cookie.

The rules follow Clerk's own SDK (REFERENCE.md §1.5): a token in ``Authorization`` wins; the
scheme must be exactly ``Bearer`` (case-sensitive); a bare value without a scheme is the token
itself; any other scheme is ignored. Otherwise the first of the configured cookie names that is
present (``__session_<suffix>`` before ``__session``) carries the token.

Cookies are parsed by hand rather than with :mod:`http.cookies`, which silently drops a whole
header on one odd character and un-escapes octal sequences. This runs on every request, so it
does one pass over the headers and no regular expressions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

__all__ = ["bearer_token", "cookie_value", "find_token"]

Headers = Iterable[tuple[bytes, bytes]] | Mapping[str, str] | Mapping[bytes, bytes]


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def find_token(headers: Headers, cookie_names: Sequence[str]) -> str | None:
    """Return the token text, or ``None`` when the request carries none."""
    authorization: str | None = None
    cookies: list[str] = []
    items = headers.items() if isinstance(headers, Mapping) else headers
    for raw_name, raw_value in items:
        name = _text(raw_name)
        if len(name) == 13 and name.lower() == "authorization":
            if authorization is None:
                authorization = _text(raw_value)
        elif len(name) == 6 and name.lower() == "cookie":
            cookies.append(_text(raw_value))
    if authorization is not None:
        token = bearer_token(authorization)
        if token is not None:
            return token
    if cookies and cookie_names:
        return cookie_value("; ".join(cookies), cookie_names)
    return None


def bearer_token(value: str) -> str | None:
    """The token in an ``Authorization`` value: ``Bearer <t>`` or a bare ``<t>``; other schemes → None."""
    value = value.strip()
    if not value:
        return None
    scheme, space, rest = value.partition(" ")
    if not space:
        return scheme  # no scheme: the whole value is the token
    if scheme != "Bearer":
        return None
    token = rest.strip()
    return token or None


def cookie_value(header: str, names: Sequence[str]) -> str | None:
    """The value of the first of ``names`` (in that order of preference) present in a ``Cookie`` header."""
    found: dict[str, str] = {}
    wanted = set(names)
    for pair in header.split(";"):
        name, equals, value = pair.partition("=")
        if not equals:
            continue
        name = name.strip()
        if name in wanted and name not in found:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            if value:
                found[name] = value
    for name in names:
        if name in found:
            return found[name]
    return None
