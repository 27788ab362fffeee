"""Strict parsing of compact JWS tokens, before any key or signature is involved.

python-jose's own parser is lenient (padding, ``+``/``/``, duplicate JSON members, ``crit``,
``b64``…), so every token is parsed here first, with the rules of the safe-usage recipe
(REFERENCE.md §5.3 steps 1-3): a token that passes has exactly one byte representation, plain
JSON objects without duplicate members or non-finite numbers, and a header that asks for nothing
but a signature check with an asymmetric algorithm we support.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, NoReturn

from clerk_gateway.auth.jwk import SUPPORTED_ALGORITHMS
from clerk_gateway.errors import AuthenticationError

#: Asymmetric signature algorithms the gateway verifies (the same set the key loader binds keys
#: to). Symmetric (HS*) algorithms are never accepted: a shared secret next to public keys is a
#: forgery waiting to happen.
SIGNATURE_ALGORITHMS: frozenset[str] = SUPPORTED_ALGORITHMS

#: Header members that change how the token must be processed (``crit``, ``b64``, compression,
#: encryption, nesting) or that point at keys chosen by the token itself. Keys come only from the
#: configured key set, so any of these is refused outright.
FORBIDDEN_HEADER_MEMBERS: frozenset[str] = frozenset(
    {"crit", "b64", "jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "cty", "zip", "enc"}
)
ALLOWED_TYPES: frozenset[str] = frozenset({"JWT", "at+jwt", "application/at+jwt"})
DEFAULT_MAX_TOKEN_BYTES = 8192
MAX_KID_LENGTH = 256

_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")


@dataclass(frozen=True, slots=True)
class ParsedJws:
    """A compact JWS that passed every structural pre-check; its signature is *not* checked yet.

    This is the JWS layer only: the payload is raw bytes (Wycheproof's vectors sign arbitrary
    payloads). :func:`parse_jwt` adds the JWT layer, a JSON object of claims.
    """

    token: str = field(repr=False)
    header: dict[str, Any]
    payload: bytes = field(repr=False)
    signing_input: bytes = field(repr=False)
    signature: bytes = field(repr=False)

    @property
    def algorithm(self) -> str:
        alg: str = self.header["alg"]
        return alg

    @property
    def kid(self) -> str | None:
        kid: str | None = self.header.get("kid")
        return kid


@dataclass(frozen=True, slots=True)
class ParsedJwt:
    """A parsed JWS whose payload is a JSON object of claims."""

    jws: ParsedJws
    claims: dict[str, Any] = field(repr=False)

    @property
    def header(self) -> dict[str, Any]:
        return self.jws.header


class _InvalidJson(ValueError):
    """Raised from inside ``json.loads`` hooks; turned into ``malformed-token``."""


def _malformed(message: str) -> NoReturn:
    raise AuthenticationError("malformed-token", message)


def parse_jwt(token: str, *, max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
              algorithms: frozenset[str] = SIGNATURE_ALGORITHMS) -> ParsedJwt:
    """:func:`parse_compact_jws` plus the claims: the payload must be a strict JSON object."""
    jws = parse_compact_jws(token, max_token_bytes=max_token_bytes, algorithms=algorithms)
    return ParsedJwt(jws, decode_json_object(jws.payload, "payload"))


def parse_compact_jws(token: str, *, max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
                      algorithms: frozenset[str] = SIGNATURE_ALGORITHMS) -> ParsedJws:
    """Pre-check and parse ``token``; raise :class:`AuthenticationError` with a precise reason."""
    if not isinstance(token, str):
        _malformed("the token is not text")
    if len(token) > max_token_bytes:
        raise AuthenticationError("token-too-large", f"the token is larger than {max_token_bytes} bytes")
    segments = token.split(".")
    if len(segments) == 5:
        raise AuthenticationError("encrypted-token-not-accepted",
                                  "encrypted tokens (JWE) are not accepted; send a signed JWT")
    if len(segments) != 3:
        _malformed("the token is not a JWT (expected three dot-separated parts)")
    header_segment, payload_segment, signature_segment = segments
    header = decode_json_object(decode_segment(header_segment, "header"), "header")
    check_header(header, algorithms)
    payload = decode_segment(payload_segment, "payload")
    signature = decode_segment(signature_segment, "signature")
    signing_input = f"{header_segment}.{payload_segment}".encode("ascii")
    return ParsedJws(token, header, payload, signing_input, signature)


def decode_segment(segment: str, part: str) -> bytes:
    """Decode unpadded base64url, accepting only the one canonical spelling of the bytes."""
    if _SEGMENT.fullmatch(segment) is None or len(segment) % 4 == 1:
        _malformed(f"the token {part} is not base64url without padding")
    try:
        data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        _malformed(f"the token {part} is not base64url without padding")
    if base64.urlsafe_b64encode(data).rstrip(b"=") != segment.encode("ascii"):
        _malformed(f"the token {part} is not canonical base64url")
    return data


def decode_json_object(data: bytes, part: str) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_unique_members,
                           parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        _malformed(f"the token {part} is nested too deeply")
    except ValueError:  # also UnicodeDecodeError, JSONDecodeError and _InvalidJson
        _malformed(f"the token {part} is not valid UTF-8 JSON without duplicate members")
    if not isinstance(value, dict):
        _malformed(f"the token {part} is not a JSON object")
    if not _all_strings_encodable(value):
        _malformed(f"the token {part} contains an unpaired surrogate escape")
    return value


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _InvalidJson("duplicate member")
    return result


def _reject_constant(name: str) -> NoReturn:
    raise _InvalidJson(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _InvalidJson("number out of range")
    return value


def _all_strings_encodable(root: dict[str, Any]) -> bool:
    """False when any string (key or value) holds a lone surrogate that UTF-8 cannot carry on."""
    stack: list[Any] = [root]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    return False
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return True


def check_header(header: dict[str, Any], algorithms: frozenset[str] = SIGNATURE_ALGORITHMS) -> None:
    """The header policy: nothing beyond a plain signature by a supported asymmetric algorithm."""
    forbidden = FORBIDDEN_HEADER_MEMBERS.intersection(header)
    if forbidden:
        raise AuthenticationError("forbidden-header",
                                  f"the token header carries '{sorted(forbidden)[0]}', which is not accepted")
    typ = header.get("typ", "JWT")
    if not isinstance(typ, str) or typ not in ALLOWED_TYPES:
        raise AuthenticationError("forbidden-header", "the token header 'typ' is not JWT")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise AuthenticationError("unsupported-algorithm",
                                  "the token algorithm is not one of " + ", ".join(sorted(algorithms)))
    if "kid" in header:
        kid = header["kid"]
        if (not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH
                or not kid.isprintable()):
            _malformed("the token header 'kid' is not a usable key id")
