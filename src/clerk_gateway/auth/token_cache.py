"""A bounded cache of verified tokens, so a client that reuses its token pays for one signature check.

Correctness rules:

- Keyed by the exact token string. The parser accepts only canonical base64url, so one token has
  one spelling and a cache hit means the very bytes that were verified.
- Only successes are stored (the verifier never calls :meth:`put` for a rejection).
- An entry dies when its token expires (``exp + leeway <= now``, leeway 0 by default, so a cached
  token never outlives its own ``exp``) or ``max_age_seconds`` after it was stored, whichever is
  first. The age bound caps how long a token signed by a key that has since been rotated out of
  the JWKS can still be served from the cache.
- ``nbf`` and ``iat`` are not re-checked on a hit: both passed at verification time, and with a
  clock that moves forward they cannot stop passing later.

The hit path is one dict lookup, one comparison and an LRU touch.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from clerk_gateway.auth.model import VerifiedToken
from clerk_gateway.observability.metrics import TOKEN_CACHE_LOOKUPS, TOKEN_CACHE_SIZE

__all__ = ["VerifiedTokenCache"]


class VerifiedTokenCache:
    """LRU map ``token -> (deadline, VerifiedToken)`` holding at most ``max_entries`` tokens."""

    def __init__(self, max_entries: int = 10_000, *, leeway_seconds: float = 0.0,
                 max_age_seconds: float = 300.0) -> None:
        if max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        self.max_entries = max_entries
        self.leeway_seconds = leeway_seconds
        self.max_age_seconds = max_age_seconds
        self._entries: OrderedDict[str, tuple[float, VerifiedToken]] = OrderedDict()
        self._hits = TOKEN_CACHE_LOOKUPS.labels("hit")
        self._misses = TOKEN_CACHE_LOOKUPS.labels("miss")

    def get(self, token: str, now: float) -> VerifiedToken | None:
        entry = self._entries.get(token)
        if entry is None:
            self._misses.inc()
            return None
        if entry[0] <= now:
            del self._entries[token]
            TOKEN_CACHE_SIZE.set(len(self._entries))
            self._misses.inc()
            return None
        self._entries.move_to_end(token)
        self._hits.inc()
        return entry[1]

    def put(self, token: str, verified: VerifiedToken, *, now: float | None = None) -> None:
        if self.max_entries == 0:
            return
        stored_at = time.time() if now is None else now
        deadline = min(verified.expires_at + self.leeway_seconds, stored_at + self.max_age_seconds)
        if deadline <= stored_at:
            return
        entries = self._entries
        entries[token] = (deadline, verified)
        entries.move_to_end(token)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)
        TOKEN_CACHE_SIZE.set(len(entries))

    def clear(self) -> None:
        self._entries.clear()
        TOKEN_CACHE_SIZE.set(0)

    def forget(self, *, session_id: str | None = None, subject: str | None = None) -> int:
        """Drop the tokens of a session (or of every session of a user): a revocation, seen in a
        Clerk webhook. A walk over the cache, but revocations are rare and the cache is bounded."""
        doomed = [token for token, (_, verified) in self._entries.items()
                  if (session_id is not None and verified.session_id == session_id)
                  or (subject is not None and verified.subject == subject)]
        for token in doomed:
            del self._entries[token]
        TOKEN_CACHE_SIZE.set(len(self._entries))
        return len(doomed)

    def __len__(self) -> int:
        return len(self._entries)
