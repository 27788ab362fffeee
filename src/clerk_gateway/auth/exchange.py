"""``exchange`` mode: the session's JWT-template token from Clerk's Backend API, cached.

For a verified session token the gateway asks Clerk for the template token of the same session
(``POST /v1/sessions/{sid}/tokens/{template}``, authorised with ``CLERK_SECRET_KEY``) and forwards
that, so the backend verifies a token Clerk itself signed, with the claims the template defines.
Clerk allows 1000 such calls per 10 s in production and 100 in development, and each one costs a
round trip, so the answer is cached:

* per (session, template), until a safety margin before the token's ``exp`` (the smaller of
  :data:`MARGIN_SECONDS` and :data:`MARGIN_FRACTION` of its lifetime), measured on the gateway's
  own clock from the moment the answer arrived, so a skewed clock cannot make it serve an expired
  token; a token without ``exp`` is not cached; nothing is cached for longer than
  ``max_ttl_seconds``;
* in a bounded LRU (``max_entries``), so a flood of sessions costs memory in proportion to the
  bound, not to the traffic;
* with one call per key in flight: concurrent misses for the same session and template await the
  same call (single flight, as in :mod:`clerk_gateway.auth.jwks_cache`); a caller that goes away
  does not cancel the call the others wait for;
* a session Clerk refused is remembered, so that a client retrying in a loop does not spend the
  instance's rate limit for everybody: an ended session for ``negative_ttl_seconds`` (it never
  comes back), an unknown one for :data:`NOT_FOUND_TTL_SECONDS` only (just after sign-in a
  lagging replica of Clerk's may not know the session yet; a burst is still collapsed).

The token is read without verifying it (only ``exp``/``iat`` are needed): it comes from Clerk over
TLS in answer to a request authorised with our secret, and the backend verifies it anyway.

Failures (see :meth:`ClerkTokenExchange.token_for`) never reach the backend: a session Clerk does
not know or has ended is a 401 (the client must sign in again); Clerk unreachable, timing out,
failing or answering something unusable is a 502 (:class:`ClerkUnavailableError`); Clerk's rate
limit is a 503 with ``Retry-After``. Neither the secret key nor a token ever appears in a log
line, an error message or a metric label: Clerk's error bodies and the SDK's exception texts
(which embed response bodies) are never logged, only the status and Clerk's error codes.

HTTP goes through Clerk's official SDK (``clerk-backend-api``), on the runtime's shared, pooled
``httpx.AsyncClient``. Its defaults are unfit for a request path and are overridden here: it
retries 5xx and connection errors with backoff for up to an hour (retries are turned off: the
client retries, the gateway answers 502 at once), and it inserts path parameters into the URL
unencoded (``a/../../users`` would reach another endpoint with our secret), so both segments are
checked and percent-encoded before the SDK sees them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn, cast
from urllib.parse import quote

import httpx
from clerk_backend_api import Clerk, models

from clerk_gateway.errors import AuthenticationError, GatewayError, UpstreamUnavailableError
from clerk_gateway.observability.metrics import TOKEN_EXCHANGES

__all__ = [
    "MARGIN_FRACTION",
    "MARGIN_SECONDS",
    "ClerkRateLimitedError",
    "ClerkTokenExchange",
    "ClerkUnavailableError",
]

log = logging.getLogger("clerk_gateway.exchange")

#: The cache gives a token up this long before its ``exp`` …
MARGIN_SECONDS = 10.0
#: … or this fraction of its lifetime, whichever is smaller (a 30 s token is kept 24 s, not 20 s).
MARGIN_FRACTION = 0.2
DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_TIMEOUT_SECONDS = 5.0
DEFAULT_MAX_TTL_SECONDS = 600.0
DEFAULT_NEGATIVE_TTL_SECONDS = 10.0
NOT_FOUND_TTL_SECONDS = 1.0  # a 404 is remembered only this long (see _refusal)
MAX_SEGMENT_LENGTH = 256
MAX_TOKEN_LENGTH = 16 * 1024  # Hasura, like most servers, refuses larger headers anyway
RETRY_AFTER_DEFAULT_SECONDS = 1
RETRY_AFTER_MAX_SECONDS = 60
LOG_EVERY_SECONDS = 10.0  # one warning per kind of failure per this long: an outage is not a log flood

# Compact JWS with a non-empty signature. Also what makes the token safe to put into a header.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
# Clerk's error codes for a request whose *credentials* are wrong (clerk.com/docs/errors/authentication):
# the gateway's secret key, not the user's session. Other codes on 400/401/422 mean the session.
_CREDENTIAL_CODES = frozenset({"clerk_key_invalid", "authorization_header_format_invalid"})
_SESSION_STATUSES = frozenset({400, 401, 404, 422})


class ClerkUnavailableError(UpstreamUnavailableError):
    """Clerk's Backend API could not give the session's token: unreachable, too slow, failing,
    refusing the gateway's own credentials, or answering something unusable.

    A 502: the client's token is fine and a retry may succeed, so it must not be a 401 (which
    makes clients refresh tokens in a loop). A subclass of :class:`UpstreamUnavailableError`, as
    :class:`~clerk_gateway.auth.upstream_tokens.TokenExchanger` promises.
    """

    def __init__(self, message: str, *, reason: str = "clerk-unavailable",
                 headers: dict[str, str] | None = None) -> None:
        GatewayError.__init__(self, reason, message, headers=headers)


class ClerkRateLimitedError(ClerkUnavailableError):
    """Clerk answered 429: the instance's Backend API rate limit is spent. A 503 with
    ``Retry-After`` (Clerk's own, bounded), so that well-behaved clients back off."""

    status = 503
    code = "unavailable"
    title = "Service Unavailable"


@dataclass(slots=True)
class _Entry:
    token: str
    until: float  # clock time after which the token is no longer handed out


@dataclass(frozen=True, slots=True)
class _Refusal:
    reason: str
    message: str
    until: float

    def error(self) -> AuthenticationError:
        return AuthenticationError(self.reason, self.message)


class _NoSyncClient:
    """Stands in for the SDK's synchronous client, which the gateway never uses.

    Without it the SDK would build an idle ``httpx.Client`` (and its TLS context) per instance;
    with it a synchronous SDK call — which would block the event loop — fails loudly instead.
    """

    def send(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError("the gateway's Clerk client is async-only; use the *_async methods")

    def build_request(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError("the gateway's Clerk client is async-only; use the *_async methods")

    def close(self) -> None:
        return None


class ClerkTokenExchange:
    """Obtains and caches template tokens from Clerk's Backend API; one per runtime, shared by
    every ``exchange`` backend (see :func:`clerk_gateway.runtime.build_adapter_services`).

    ``http`` is the runtime's pooled client (the runtime closes it); ``api_url`` is
    ``CLERK_API_URL`` without ``/v1``. ``clock`` gives Unix time (it is compared with ``exp``);
    tests pass a hand-moved one.
    """

    def __init__(self, http: httpx.AsyncClient, secret_key: str, *, api_url: str = "https://api.clerk.com",
                 max_entries: int = DEFAULT_MAX_ENTRIES, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
                 max_ttl_seconds: float = DEFAULT_MAX_TTL_SECONDS,
                 negative_ttl_seconds: float = DEFAULT_NEGATIVE_TTL_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        if not secret_key:
            raise ValueError("the exchange mode needs CLERK_SECRET_KEY")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._api_url = api_url.rstrip("/")
        self._max_entries = max_entries
        self._timeout = timeout_seconds
        self._max_ttl = max_ttl_seconds
        self._negative_ttl = negative_ttl_seconds
        self._clock = clock
        self._clerk = Clerk(bearer_auth=secret_key, server_url=self._api_url + "/v1", async_client=http,
                            client=cast(Any, _NoSyncClient()), retry_config=None,
                            timeout_ms=int(timeout_seconds * 1000))
        self._cache: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._refused: OrderedDict[str, _Refusal] = OrderedDict()
        self._inflight: dict[tuple[str, str], asyncio.Task[str]] = {}
        self._last_logged: dict[str, float] = {}

    def __repr__(self) -> str:  # never the secret key
        return f"ClerkTokenExchange(api_url={self._api_url!r}, entries={len(self._cache)})"

    # -- TokenExchanger --------------------------------------------------------------------------

    async def token_for(self, session_id: str, template: str) -> str:
        """The template token for the session: from the cache, from the call already in flight,
        or from Clerk.

        Raises :class:`~clerk_gateway.errors.AuthenticationError` (401 ``invalid-jwt``, reason
        ``session-not-found``/``session-ended``, or ``session-id-invalid``/``template-invalid`` for
        a value that cannot be a path segment), :class:`ClerkUnavailableError` (502, reason
        ``clerk-unavailable``, or ``template-not-found`` when Clerk has no such template) and
        :class:`ClerkRateLimitedError` (503, reason ``clerk-rate-limited``).
        """
        key = (session_id, template)
        now = self._clock()
        entry = self._cache.get(key)
        if entry is not None:
            if now < entry.until:
                self._cache.move_to_end(key)
                TOKEN_EXCHANGES.labels("hit").inc()
                return entry.token
            del self._cache[key]
        refusal = self._refused.get(session_id)
        if refusal is not None:
            if now < refusal.until:
                TOKEN_EXCHANGES.labels("rejected").inc()
                raise refusal.error()
            del self._refused[session_id]
        task = self._inflight.get(key)
        if task is None:
            path = (_segment(session_id, "session-id-invalid", "session id"),
                    _segment(template, "template-invalid", "JWT template name"))
            task = asyncio.create_task(self._fetch(key, *path), name="clerk-token-exchange")
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        else:
            TOKEN_EXCHANGES.labels("joined").inc()
        return await asyncio.shield(task)

    async def aclose(self) -> None:
        """Cancel the calls in flight and forget every token; the shared client stays open."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._inflight.clear()
        self._cache.clear()
        self._refused.clear()

    def forget_session(self, session_id: str) -> None:
        """Drop every token cached for the session (a revocation seen elsewhere, e.g. a webhook)."""
        for key in [key for key in self._cache if key[0] == session_id]:
            del self._cache[key]

    @property
    def size(self) -> int:
        """Tokens currently cached."""
        return len(self._cache)

    # -- the call --------------------------------------------------------------------------------

    def _finished(self, key: tuple[str, str], task: asyncio.Task[str]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" when every waiter left

    async def _fetch(self, key: tuple[str, str], session_segment: str, template_segment: str) -> str:
        try:
            # One deadline for the whole call: httpx's timeout applies to each phase (connect, each
            # read…) and the SDK's hooks run in threads; a trickling answer must still end.
            async with asyncio.timeout(self._timeout + 1.0):
                answer = await self._clerk.sessions.create_token_from_template_async(
                    session_id=session_segment, template_name=template_segment,
                    timeout_ms=int(self._timeout * 1000))
        except models.ClerkBaseError as exc:
            raise self._refusal(key, exc) from None
        except (TimeoutError, httpx.TimeoutException):
            raise self._unavailable("timeout", "Clerk's Backend API did not answer in time") from None
        except httpx.HTTPError as exc:
            raise self._unavailable("unreachable", f"Clerk's Backend API is unreachable ({type(exc).__name__})",
                                    client_message="Clerk's Backend API is unreachable") from None
        except Exception as exc:  # the SDK's own failures (NoResponseError, …): the type, never the text
            raise self._unavailable("unexpected", f"the Clerk SDK failed ({type(exc).__name__})",
                                    client_message="Clerk's Backend API gave no usable answer") from None
        token = answer.jwt
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not _COMPACT_JWS.fullmatch(token):
            raise self._unavailable("no-token", "Clerk's Backend API answered without a usable token")
        TOKEN_EXCHANGES.labels("fetched").inc()
        self._store(key, token)
        return token

    def _store(self, key: tuple[str, str], token: str) -> None:
        now = self._clock()
        until = _cache_until(_unverified_claims(token), now, self._max_ttl)
        if until is None:
            return
        self._cache[key] = _Entry(token, until)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)

    def _refusal(self, key: tuple[str, str], exc: models.ClerkBaseError) -> GatewayError:
        """Clerk's non-2xx answer (or an unreadable 2xx) as the error the client gets."""
        status = exc.status_code
        errors = _clerk_errors(exc)
        codes = sorted({_printable_code(code) for code, _ in errors})
        if 200 <= status < 300:  # not JSON, not the documented shape, or another media type
            return self._unavailable("invalid", "Clerk's Backend API answered something that is not a token")
        if status == 429:
            TOKEN_EXCHANGES.labels("error").inc()
            self._warn("rate-limited", "Clerk's Backend API rate limit is exhausted (HTTP 429)")
            return ClerkRateLimitedError("Clerk's Backend API rate limit is exhausted; retry shortly",
                                         reason="clerk-rate-limited",
                                         headers={"retry-after": str(_retry_after(exc.headers))})
        if errors and status in _SESSION_STATUSES:
            if _CREDENTIAL_CODES.intersection(codes):
                TOKEN_EXCHANGES.labels("error").inc()
                self._warn("credentials", "Clerk's Backend API refused CLERK_SECRET_KEY (HTTP %d, %s): "
                           "check that it is the secret key of this instance", status, ", ".join(codes),
                           level=logging.ERROR)
                return ClerkUnavailableError("Clerk's Backend API refused the gateway's credentials")
            if status == 404 and any("template" in message.lower() for _, message in errors):
                TOKEN_EXCHANGES.labels("error").inc()
                self._warn("template", "Clerk has no JWT template named %s: create it in the Clerk dashboard "
                           "or fix the backend's template field", _printable(key[1]), level=logging.ERROR)
                return ClerkUnavailableError("the JWT template configured for this backend does not exist in Clerk",
                                             reason="template-not-found")
            TOKEN_EXCHANGES.labels("rejected").inc()
            if status == 404:  # briefly: right after sign-in a lagging replica may not know it yet
                refusal = self._remember(key[0], "session-not-found", "the session is not known to Clerk",
                                         min(NOT_FOUND_TTL_SECONDS, self._negative_ttl))
            else:
                refusal = self._remember(key[0], "session-ended", "the session is no longer active; sign in again",
                                         self._negative_ttl)
            return refusal.error()
        detail = f", {', '.join(codes)}" if codes else ""
        return self._unavailable(f"http-{status}", f"Clerk's Backend API failed (HTTP {status}{detail})",
                                 client_message=f"Clerk's Backend API failed (HTTP {status})")

    def _remember(self, session_id: str, reason: str, message: str, ttl: float) -> _Refusal:
        refusal = _Refusal(reason, message, self._clock() + ttl)
        if ttl > 0:
            self._refused[session_id] = refusal
            self._refused.move_to_end(session_id)
            while len(self._refused) > self._max_entries:
                self._refused.popitem(last=False)
        return refusal

    def _unavailable(self, kind: str, log_message: str, *,
                     client_message: str | None = None) -> ClerkUnavailableError:
        TOKEN_EXCHANGES.labels("error").inc()
        self._warn(kind, "%s", log_message)
        return ClerkUnavailableError(client_message or log_message)

    def _warn(self, kind: str, message: str, *args: object, level: int = logging.WARNING) -> None:
        """Log a failure, at most once per :data:`LOG_EVERY_SECONDS` per kind. Arguments are only
        statuses, exception type names, Clerk's error codes and the template name: never a body."""
        now = time.monotonic()
        last = self._last_logged.get(kind)
        if last is not None and now - last < LOG_EVERY_SECONDS:
            return
        self._last_logged[kind] = now
        log.log(level, "token exchange: " + message, *args)


# -- helpers ----------------------------------------------------------------------------------------


def _segment(value: str, reason: str, what: str) -> str:
    """``value`` percent-encoded as one URL path segment, or a 401: an empty value, a slash or a
    dot segment would make the SDK (which does not encode) build a URL for another endpoint."""
    if (not isinstance(value, str) or not value or len(value) > MAX_SEGMENT_LENGTH or "/" in value
            or "\\" in value or value in {".", ".."} or not value.isprintable()):
        raise AuthenticationError(reason, f"the {what} cannot be exchanged for a token")
    return quote(value, safe="")


def _unverified_claims(token: str) -> dict[str, Any] | None:
    """The payload of a compact JWS, not verified (see the module docstring); ``None`` if unreadable."""
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        return None
    return claims if isinstance(claims, dict) else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _cache_until(claims: dict[str, Any] | None, now: float, max_ttl: float) -> float | None:
    """Until when a token with these claims may be handed out; ``None``: do not cache it.

    The time left is ``exp - iat`` when that is shorter than ``exp - now``: a gateway clock that
    runs behind Clerk's must not stretch the token's life, one that runs ahead only shortens it.
    """
    exp = _number(claims.get("exp")) if claims is not None else None
    if exp is None:
        return None
    iat = _number(claims.get("iat")) if claims is not None else None
    remaining = exp - now
    if iat is not None and iat < exp:
        remaining = min(remaining, exp - iat)
    lifetime = exp - iat if iat is not None and iat < exp else remaining
    margin = min(MARGIN_SECONDS, MARGIN_FRACTION * lifetime)
    keep = min(remaining - margin, max_ttl)
    return now + keep if keep > 0 else None


def _clerk_errors(exc: models.ClerkBaseError) -> list[tuple[str, str]]:
    """``(code, message + long_message)`` of each entry of Clerk's ``errors`` array; empty when the
    answer has none (a proxy's HTML page, a bare 500)."""
    if isinstance(exc, models.ClerkErrors):
        return [(error.code or "", f"{error.message or ''} {error.long_message or ''}") for error in exc.data.errors]
    try:
        body = json.loads(exc.body) if exc.body else None
    except (ValueError, RecursionError):
        return []
    entries = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        return []
    return [(str(entry.get("code") or ""), f"{entry.get('message') or ''} {entry.get('long_message') or ''}")
            for entry in _dicts(entries)]


def _dicts(items: Iterable[object]) -> Iterable[dict[str, Any]]:
    return (item for item in items if isinstance(item, dict))


def _printable_code(code: str) -> str:
    """A Clerk error code fit for a log line: ``[a-z0-9_]``, bounded (Clerk's codes already are)."""
    return re.sub(r"[^a-z0-9_]", "", code.lower())[:64].removesuffix("_code") or "-"


def _printable(value: str) -> str:
    return repr(value[:64])


def _retry_after(headers: httpx.Headers) -> int:
    """Clerk's ``Retry-After`` in whole seconds, bounded to 1..60 (1 when absent or a date)."""
    value = headers.get("retry-after", "").strip()
    seconds = int(value) if value.isdigit() else RETRY_AFTER_DEFAULT_SECONDS
    return max(1, min(RETRY_AFTER_MAX_SECONDS, seconds))
