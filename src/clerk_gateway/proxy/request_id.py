"""``X-Request-ID``: kept when the client sends a sane one, generated otherwise."""

from __future__ import annotations

import os
import re

from clerk_gateway.adapters.base import Header

_SANE = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")


def request_id_from(headers: list[Header]) -> bytes:
    for name, value in headers:
        if name == b"x-request-id" and _SANE.fullmatch(value):
            return value
    return os.urandom(16).hex().encode()
