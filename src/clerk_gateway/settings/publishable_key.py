"""Clerk publishable-key decoding and the URLs derived from the Frontend API host.

A publishable key is ``pk_test_``/``pk_live_`` + base64(``<frontend-api-host>$``); Clerk's own
SDKs accept it only when the decoded text ends with exactly one ``$`` and the host has a dot.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from urllib.parse import urlsplit

_PREFIXES = {"pk_test_": "development", "pk_live_": "production"}


class PublishableKeyError(ValueError):
    """The text is not a Clerk publishable key."""


@dataclass(frozen=True, slots=True)
class PublishableKey:
    raw: str
    instance_type: str
    frontend_api: str

    @property
    def cookie_suffix(self) -> str:
        """Suffix of Clerk's ``__session_<suffix>`` cookie: 8 chars of url-safe b64(SHA-1(key))."""
        digest = hashlib.sha1(self.raw.encode(), usedforsecurity=False).digest()
        return base64.urlsafe_b64encode(digest).decode()[:8]


def parse_publishable_key(text: str) -> PublishableKey:
    text = text.strip()
    prefix = text[:8]
    instance_type = _PREFIXES.get(prefix)
    if instance_type is None:
        raise PublishableKeyError("must start with pk_test_ or pk_live_")
    encoded = text[len(prefix):]
    try:
        decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise PublishableKeyError("is not valid base64 after its prefix") from exc
    if not decoded.endswith("$") or decoded.count("$") != 1 or "." not in decoded:
        raise PublishableKeyError("does not decode to a Frontend API host")
    return PublishableKey(raw=text, instance_type=instance_type, frontend_api=decoded[:-1])


def frontend_api_host(text: str) -> str:
    """Accept ``clerk.example.com`` or ``https://clerk.example.com/`` and return the host[:port]."""
    text = text.strip()
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    if not parts.netloc or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be a host name or an origin such as https://clerk.example.com")
    return parts.netloc


def issuer_for(host: str) -> str:
    return f"https://{host}"


def jwks_url_for(host: str) -> str:
    return f"https://{host}/.well-known/jwks.json"
