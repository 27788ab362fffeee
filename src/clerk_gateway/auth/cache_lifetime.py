"""How long a fetched JWKS may be used, from the response's ``Cache-Control`` / ``Expires``.

The rules follow Hasura's (``determineJwkExpiryLifetime``, REFERENCE.md §2.7) so that a JWKS that
Hasura and the gateway both read is refreshed on the same schedule:

* ``no-cache`` or ``no-store`` → 0, even next to ``max-age``;
* ``max-age`` (else ``s-maxage``) → that many seconds, less the ``Age`` a shared cache reports;
* ``must-revalidate`` without a max-age → 0;
* otherwise ``Expires`` → seconds until then (measured from the response's ``Date`` when it has
  one, so a skewed local clock does not matter), never negative;
* none of these → ``None``; a corrupt value → ``None`` as well.

Unlike Hasura, "no expiry information" does not mean "never refresh": the caller clamps ``None`` to
a default with :func:`clamp_lifetime`, as it does 0 to a minimum so a ``no-store`` JWKS cannot turn
the gateway into a tight polling loop against Clerk.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

__all__ = ["clamp_lifetime", "lifetime_from_headers"]

_DIRECTIVE = re.compile(
    r'[\s,]*(?P<name>[!#$%&\'*+.^_`|~0-9A-Za-z-]+)[ \t]*'
    r'(?:=[ \t]*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<token>[^,"\s]*)))?[ \t]*(?:,|$)'
)
_DELTA_SECONDS = re.compile(r"[0-9]{1,12}")


class _CorruptHeader(ValueError):
    pass


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup that also works on a plain ``dict``."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def _directives(cache_control: str) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    position, text = 0, cache_control.strip()
    while position < len(text):
        if not text[position:].strip(" \t,"):
            break
        match = _DIRECTIVE.match(text, position)
        if match is None or match.end() == position:
            raise _CorruptHeader("malformed Cache-Control directive")
        value = match.group("quoted") if match.group("quoted") is not None else match.group("token")
        found.setdefault(match.group("name").lower(), value)  # the first occurrence wins (RFC 9111 §4.2.1)
        position = match.end()
    return found


def _delta_seconds(value: str | None) -> int:
    if value is None or not _DELTA_SECONDS.fullmatch(value):
        raise _CorruptHeader("Cache-Control age is not a number of seconds")
    return int(value)


def _age(headers: Mapping[str, str]) -> int:
    raw = _header(headers, "age")
    if raw is None or not _DELTA_SECONDS.fullmatch(raw.strip()):
        return 0  # an unreadable Age only costs freshness accuracy; ignore it
    return int(raw.strip())


def _http_date(value: str) -> float:
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError) as exc:
        raise _CorruptHeader("not an HTTP date") from exc
    if parsed.tzinfo is None:
        raise _CorruptHeader("HTTP date without a time zone")
    return parsed.timestamp()


def _from_cache_control(headers: Mapping[str, str], cache_control: str) -> float | None:
    directives = _directives(cache_control)
    if "no-cache" in directives or "no-store" in directives:
        return 0.0
    for name in ("max-age", "s-maxage"):
        if name in directives:
            return float(max(0, _delta_seconds(directives[name]) - _age(headers)))
    if "must-revalidate" in directives:
        return 0.0
    return None


def _from_expires(headers: Mapping[str, str], expires: str, now: float) -> float:
    expires_at = _http_date(expires)
    date = _header(headers, "date")
    reference = now
    if date is not None:
        try:
            reference = _http_date(date)
        except _CorruptHeader:
            reference = now
    return max(0.0, expires_at - reference)


def lifetime_from_headers(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the response stays fresh, or ``None`` when it says nothing usable.

    ``now`` is wall-clock time (``time.time()``), needed only for ``Expires`` without ``Date``.
    """
    try:
        cache_control = _header(headers, "cache-control")
        if cache_control is not None:
            lifetime = _from_cache_control(headers, cache_control)
            if lifetime is not None:
                return lifetime
        expires = _header(headers, "expires")
        if expires is not None:
            return _from_expires(headers, expires, now)
    except _CorruptHeader:
        return None
    return None


def clamp_lifetime(value: float | None, *, default: float = 300.0, minimum: float = 30.0,
                   maximum: float = 86400.0) -> float:
    """Bound a lifetime: ``None`` (or NaN) → ``default``; otherwise within ``[minimum, maximum]``."""
    if value is None or math.isnan(value):
        return default
    return min(max(value, minimum), maximum)
