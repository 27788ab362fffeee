"""Signs test deliveries the way Svix does, with the ``standardwebhooks`` library itself.

Tests never hand-roll the HMAC: if the gateway and these helpers disagreed on the scheme, the
library is the referee. ``sign()`` is given an aware UTC datetime, because the library replaces a
naive one's timezone (REFERENCE.md §8.1.1: a local naive time signs the wrong second).
"""

from __future__ import annotations

import base64
import json
import os
import time
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook

__all__ = ["SECOND_SECRET", "SECRET", "new_secret", "signed_delivery"]


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


SECRET = new_secret()
SECOND_SECRET = new_secret()


def signed_delivery(event: Any, *, secrets: tuple[str, ...] = (SECRET,), message_id: str | None = None,
                    timestamp: int | None = None, body: bytes | None = None) -> tuple[bytes, dict[str, str]]:
    """``(body, headers)`` of a delivery signed with every secret in ``secrets`` (a rotation signs
    with both). ``body`` replaces the serialised event (for tampering and non-JSON cases)."""
    raw = body if body is not None else json.dumps(event, separators=(",", ":")).encode()
    ts = int(time.time()) if timestamp is None else timestamp
    msg_id = message_id or f"msg_{os.urandom(10).hex()}"
    moment = datetime.fromtimestamp(ts, tz=UTC)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:  # a non-UTF-8 body cannot be signed as Svix signs: any signature will do
        text = raw.decode("latin-1")
    signatures = " ".join(Webhook(secret).sign(msg_id, moment, text) for secret in secrets)
    return raw, {"svix-id": msg_id, "svix-timestamp": str(ts), "svix-signature": signatures,
                 "content-type": "application/json"}
