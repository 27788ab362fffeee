"""Verifies a Clerk (Svix / Standard Webhooks) delivery on its raw bytes, before anything reads it.

The HMAC is computed by the ``standardwebhooks`` package over ``id.timestamp.body`` exactly as the
bytes arrived: re-serialised JSON is the most common reason hand-written handlers reject every
delivery (REFERENCE.md §8.7). The package raises more than its own error for malformed input (a
``ValueError`` for a signature entry without exactly one comma, a ``UnicodeDecodeError`` for a
non-UTF-8 body, ``binascii.Error`` for bad base64), so everything it raises becomes a
:class:`WebhookRejected` with a reason, never a 500. The body is parsed only after the signature
matched, so an unsigned body cannot probe the parser.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from standardwebhooks import Webhook, WebhookVerificationError

Header = tuple[bytes, bytes]

#: Svix's header names (what Clerk sends) and the Standard Webhooks names the library reads.
_NAMES = {b"svix-id": "webhook-id", b"svix-timestamp": "webhook-timestamp", b"svix-signature": "webhook-signature"}
_STANDARD = {b"webhook-id": "webhook-id", b"webhook-timestamp": "webhook-timestamp",
             b"webhook-signature": "webhook-signature"}
#: Longest header value looked at: a signature list during a rotation holds a few entries.
_MAX_HEADER = 4096

_LIBRARY_REASONS = {
    "Missing required headers": ("missing-headers",
                                 "the svix-id, svix-timestamp and svix-signature headers are required"),
    "Invalid Signature Headers": ("invalid-timestamp", "svix-timestamp is not a Unix time in seconds"),
    "Message timestamp too old": ("stale-timestamp", "svix-timestamp is more than 5 minutes in the past"),
    "Message timestamp too new": ("future-timestamp", "svix-timestamp is more than 5 minutes in the future"),
    "No matching signature found": ("invalid-signature", "no svix-signature entry matches the body"),
}


class WebhookRejected(Exception):
    """The delivery is refused (400): ``reason`` for the body, logs and metrics; never input."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Delivery:
    """A verified delivery: the ``svix-id`` (the same on every retry) and the parsed event."""

    message_id: str
    event: dict[str, Any]

    @property
    def type(self) -> str:
        value = self.event.get("type")
        return value if isinstance(value, str) else ""


class WebhookVerifier:
    """One ``Webhook`` per signing secret; a delivery passes when any secret's signature matches
    (Svix signs with the old and the new secret during a rotation, so one secret suffices too)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("at least one signing secret is needed")
        self._webhooks = [Webhook(secret) for secret in secrets]

    def verify(self, body: bytes, headers: Sequence[Header]) -> Delivery:
        signed = _signature_headers(headers)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise WebhookRejected("invalid-body", "the body is not UTF-8 text") from None
        last = WebhookRejected(*_LIBRARY_REASONS["No matching signature found"])
        for webhook in self._webhooks:
            try:
                webhook.verify(text, signed, json_parse=False)
            except WebhookVerificationError as error:
                reason, message = _LIBRARY_REASONS.get(str(error), ("invalid-signature", "the signature is not valid"))
                last = WebhookRejected(reason, message)
                if reason != "invalid-signature":
                    raise last from None  # headers and timestamp are the same for every secret
            except Exception:  # the library's ValueError / binascii.Error for malformed entries
                raise WebhookRejected("malformed-signature", "svix-signature is not a list of 'v1,<base64>' "
                                      "entries separated by single spaces") from None
            else:
                return Delivery(message_id=signed["webhook-id"], event=_event(body))
        raise last


def _signature_headers(headers: Sequence[Header]) -> dict[str, str]:
    """The three headers by their Standard Webhooks names; Svix's names win, as the ``svix``
    package does it. Values are latin-1 text (ASGI bytes); oversized values are refused."""
    found: dict[str, str] = {}
    standard: dict[str, str] = {}
    for name, value in headers:
        target = _NAMES.get(name)
        other = _STANDARD.get(name) if target is None else None
        if target is None and other is None:
            continue
        if len(value) > _MAX_HEADER:
            raise WebhookRejected("malformed-signature", "a svix-* header is too long")
        text = value.decode("latin-1").strip()
        if target is not None:
            found[target] = text
        elif other is not None:
            standard[other] = text
    return {**standard, **found}


def _event(body: bytes) -> dict[str, Any]:
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise WebhookRejected("invalid-body", "the body is not JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise WebhookRejected("invalid-body", "the body is not a Clerk event (an object with a 'type')")
    return event
