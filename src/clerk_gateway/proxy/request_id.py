"""``X-Request-ID``: kept when the client sends a sane one, generated otherwise."""

from __future__ import annotations

import itertools
import os
import re

from clerk_gateway.adapters.base import Header

_SANE = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
# Unique, not secret: a random per-process prefix and a counter cost no system call per request.
_prefix = os.urandom(8).hex().encode()
_counter = itertools.count(1)


def _new_process_prefix() -> None:
    global _prefix, _counter
    _prefix = os.urandom(8).hex().encode()
    _counter = itertools.count(1)


os.register_at_fork(after_in_child=_new_process_prefix)


def request_id_from(headers: list[Header]) -> bytes:
    for name, value in headers:
        if name == b"x-request-id" and _SANE.fullmatch(value):
            return value
    return b"%s%016x" % (_prefix, next(_counter))
