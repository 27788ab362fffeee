"""What the user stores share about talking to a backend: one POST bounded in all, and what a failed
write may say about itself (error codes as reason words, messages without the values that were sent).

One place, so the Hasura and the Fauna store cannot drift apart on what reaches a log line.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from .store import SyncUnavailable

__all__ = ["MESSAGE_LIMIT", "iso_utc", "post_json", "reason_word", "safe_message"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NOT_A_WORD = re.compile(r"[^a-z0-9_-]+")
_QUOTED = re.compile(r"\"([^\"]*)\"|'([^']*)'|`([^`]*)`")
#: A quoted part of a backend message that may stay: a name (constraint, column, type), never free text.
_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.$]{0,62}$")
#: Payload strings shorter than this are not looked for in messages (they would mangle ordinary words).
_MIN_SCRUBBED = 3
MESSAGE_LIMIT = 240


def iso_utc(ms: int) -> str:
    """``ms`` since the epoch as ISO-8601 UTC with milliseconds (``2025-06-01T04:24:59.130Z``), computed in integers
    so that the instant is exact (a float of a 13-digit ms value can be off by one)."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def reason_word(code: object, fallback: str) -> str:
    """A backend's error code as a :class:`SyncUnavailable` reason: a short lower-case word fit for a log field and
    a metric label, whatever the backend sent."""
    if not isinstance(code, str):
        return fallback
    word = _NOT_A_WORD.sub("-", code.strip().lower()).strip("-")[:64]
    return word or fallback


def _strings(value: Any, depth: int = 0) -> Iterator[str]:
    """Every string in what a write sent. The keys of the first two levels are ours (variable and column names,
    which a message may well name); deeper keys, inside a column's value (``public_metadata``), are user data."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if depth >= 2 and isinstance(key, str):
                yield key
            yield from _strings(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item, depth + 1)


def safe_message(message: object, sent: Any, *, secrets: Iterable[str] = ()) -> str:
    """A backend's error message, fit for a log line: without any string the write sent (``sent``: the variables or
    arguments), without quoted free text, on one line and at most :data:`MESSAGE_LIMIT` characters.

    Backends quote what they refuse: Postgres puts the offending value in quotes (``invalid input syntax for type
    bigint: "abc"``) and Hasura's admin answers carry the statement's arguments in ``extensions.internal`` (which
    is never read). A constraint name (``"users_email_key"``) is what makes a violation actionable, so quoted
    *names* stay, unless they are themselves one of the values that were sent."""
    if not isinstance(message, str):
        return ""
    text = " ".join(message.split())
    hidden = {item for item in (*_strings(sent), *secrets) if len(item) >= _MIN_SCRUBBED}
    for item in sorted(hidden, key=len, reverse=True):
        text = text.replace(item, "…")

    def quoted(match: re.Match[str]) -> str:
        inner = next(group for group in match.groups() if group is not None)
        quote = match.group(0)[0]
        return match.group(0) if _PLAIN_NAME.match(inner) else f"{quote}…{quote}"

    text = _QUOTED.sub(quoted, text)
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


async def post_json(client: httpx.AsyncClient, url: str, body: Mapping[str, Any], *, headers: Mapping[str, str],
                    timeout: float, what: str) -> httpx.Response:
    """POST ``body`` and read the whole answer within ``timeout`` seconds *in all* (httpx's own timeouts are per
    phase, so a backend trickling bytes could outlast the 15 s Svix allows); a transport failure is a
    :class:`SyncUnavailable` naming ``what`` and the error class, never the request."""
    try:
        async with asyncio.timeout(timeout):
            return await client.post(url, json=body, headers=headers, timeout=timeout)
    except (TimeoutError, httpx.TimeoutException):
        raise SyncUnavailable("backend-timeout", f"{what} did not answer within {timeout:g} s") from None
    except httpx.HTTPError as error:
        raise SyncUnavailable("backend-unreachable", f"{what} is unreachable ({type(error).__name__})") from None
