"""The attack table of REFERENCE.md §5.4 as data: one catalogue for the unit and the end-to-end tests.

Each :class:`AttackCase` names its table row, builds its hostile token from the shared test keys
for a given :class:`AttackContext` (issuer, clock, leeway — the unit tests use a frozen clock, the
end-to-end tests the real one and the running gateway's issuer), names the key set to publish when
the attack lives in the key set itself (rows 22, 24, 25, 26), and states the outcome a gateway must
give. Keeping the cases in one place means the verifier and the whole gateway are held to exactly
the same list: a row added here is checked in both places.

Outcomes are stated for a backend that accepts session tokens only (every mode but ``forward``);
where the verifier alone answers differently (row 11: it *classifies* a template token, the
backend then refuses it) the case says so in :attr:`AttackCase.verifier_outcome`.

Tokens are signed with real keys wherever the row allows, so a rejection is due to the check under
test and not to a broken signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from clerk_gateway.auth.model import TokenKind
from clerk_gateway.auth.verifier import CATEGORY_SESSION, CATEGORY_TEMPLATE

from .tokens import SigningKey, b64url, clerk_claims, jwks

__all__ = [
    "AUDIENCE",
    "AUTHORIZED_PARTY",
    "CASES",
    "DEFAULT_SUBJECT",
    "EVIL_PARTY",
    "NEEDS_AUDIENCE",
    "NEEDS_AUTHORIZED_PARTIES",
    "P256_ORDER",
    "Accepted",
    "AttackCase",
    "AttackContext",
    "AttackKeys",
    "Outcome",
    "Rejected",
    "attack_keys",
    "case",
    "ecdsa_rs",
    "mirror_ecdsa",
]

#: The audience a backend requires in the row-9 cases (a Fauna-style ``aud``).
AUDIENCE = "https://db.fauna.com/db/ywx8"
#: The one authorized party of the row-10 cases; tokens of a context with ``azp`` set carry it.
AUTHORIZED_PARTY = "https://app.example.com"
EVIL_PARTY = "https://evil.example"
#: ``sub`` of every token built here (the default of :func:`tests.support.tokens.clerk_claims`).
DEFAULT_SUBJECT = "user_2abc"
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

#: What a case may need from the policy beyond issuer and clock.
NEEDS_AUDIENCE = "audience"
NEEDS_AUTHORIZED_PARTIES = "authorized-parties"


# -- keys and context ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AttackKeys:
    """The published keys (``k1``, ``k2`` RSA; ``k3`` EC P-256), an attacker's key and a too-small RSA key."""

    k1: SigningKey
    k2: SigningKey
    k3: SigningKey
    attacker: SigningKey
    small: SigningKey


@cache
def attack_keys() -> AttackKeys:
    """Generated once per process (key generation is the slow part of these tests)."""
    return AttackKeys(
        k1=SigningKey.rsa("k1"),
        k2=SigningKey.rsa("k2"),
        k3=SigningKey.ec("k3"),
        attacker=SigningKey.rsa("attacker"),
        small=SigningKey.rsa("small", 1024),
    )


@dataclass(frozen=True)
class AttackContext:
    """Where the tokens are aimed: the expected issuer, the verifier's clock and leeway.

    ``azp``: the authorized party every well-behaved token carries — set it when the verifier under
    test has authorized parties configured, so that cases about other checks are not refused for
    their ``azp``.
    """

    issuer: str
    now: float
    skew: float
    azp: str | None = None
    audience: str = AUDIENCE
    keys: AttackKeys = field(default_factory=attack_keys)

    def claims(self, **extra: Any) -> dict[str, Any]:
        """Valid Clerk session claims at :attr:`now`; ``extra`` adds or overrides, ``None`` removes."""
        extra.setdefault("azp", self.azp)
        return clerk_claims(issuer=self.issuer, now=self.now, **extra)

    def default_key_set(self) -> dict[str, Any]:
        """The JWKS published when a case does not name its own: ``k1``, ``k2``, ``k3``."""
        return jwks(self.keys.k1, self.keys.k2, self.keys.k3)

    def key_set_with(self, *extra_keys: dict[str, Any]) -> dict[str, Any]:
        document = self.default_key_set()
        document["keys"].extend(extra_keys)
        return document


# -- outcomes and cases --------------------------------------------------------------------------


@dataclass(frozen=True)
class Rejected:
    """Refused with one of ``reasons``; 401 (``invalid-jwt``) or 403 (``access-denied``)."""

    reasons: frozenset[str]
    status: int = 401

    @property
    def code(self) -> str:
        return "invalid-jwt" if self.status == 401 else "access-denied"


@dataclass(frozen=True)
class Accepted:
    """Verified, as a token of ``kind`` for :data:`DEFAULT_SUBJECT`."""

    kind: TokenKind = TokenKind.SESSION


Outcome = Rejected | Accepted


def _rejected(*reasons: str, status: int = 401) -> Rejected:
    return Rejected(frozenset(reasons), status)


@dataclass(frozen=True)
class AttackCase:
    row: int | None  # None: the "Also reject" line under the table
    name: str
    build: Callable[[AttackContext], str] = field(repr=False)
    outcome: Outcome
    #: When the verifier on its own answers differently from a session-only backend.
    verifier_outcome: Outcome | None = None
    #: The key set to publish instead of :meth:`AttackContext.default_key_set`.
    key_set: Callable[[AttackContext], dict[str, Any]] | None = field(default=None, repr=False)
    #: ``(kid, reason)`` pairs the key loader must refuse in that key set.
    skipped_at_load: tuple[tuple[str, str], ...] = ()
    #: Policy the case needs (:data:`NEEDS_AUDIENCE`, :data:`NEEDS_AUTHORIZED_PARTIES`).
    needs: frozenset[str] = frozenset()
    #: Megabytes of token: an HTTP server may refuse the request before the gateway sees it.
    oversized: bool = False

    @property
    def id(self) -> str:
        return f"row{self.row:02d}-{self.name}" if self.row is not None else f"also-{self.name}"

    @property
    def expected_from_verifier(self) -> Outcome:
        return self.verifier_outcome if self.verifier_outcome is not None else self.outcome

    def document(self, ctx: AttackContext) -> dict[str, Any]:
        return self.key_set(ctx) if self.key_set is not None else ctx.default_key_set()


# -- token building helpers ----------------------------------------------------------------------


def _raw(header: dict[str, Any] | str, payload: dict[str, Any] | str, signature: bytes = b"") -> str:
    header_text = header if isinstance(header, str) else json.dumps(header)
    payload_text = payload if isinstance(payload, str) else json.dumps(payload)
    return f"{b64url(header_text.encode())}.{b64url(payload_text.encode())}.{b64url(signature)}"


def _keep_real_signature(ctx: AttackContext, alg: str) -> str:
    """An ``alg: none`` token that still carries a real RS256 signature (of another header)."""
    unsigned = _raw({"alg": alg, "kid": "k1"}, ctx.claims()).rstrip(".")
    return f"{unsigned}.{ctx.keys.k1.sign(ctx.claims()).split('.')[2]}"


def _hs256(header: dict[str, Any], secret: bytes, payload: dict[str, Any]) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def _public_encoding(key: SigningKey, encoding: str) -> bytes:
    """The published RSA key in the forms an HMAC-confusion attacker would try as the secret."""
    if encoding == "pem":
        return key.public_pem().encode()
    if encoding == "jwks":
        return json.dumps(jwks(key)).encode()
    if encoding == "raw-n":
        n = key.public_jwk()["n"]
        return base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))
    public = serialization.load_pem_public_key(key.public_pem().encode())
    if encoding == "der":
        return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert encoding == "openssh"
    return public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)


def ecdsa_rs(token: str) -> tuple[int, int]:
    """``(r, s)`` of an ES256 token's raw signature."""
    signature = base64.urlsafe_b64decode(token.split(".")[2] + "==")
    return int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")


def _with_ec_signature(ctx: AttackContext, signature: bytes) -> str:
    head, payload, _ = ctx.keys.k3.sign(ctx.claims()).split(".")
    return f"{head}.{payload}.{b64url(signature)}"


def mirror_ecdsa(token: str) -> str:
    """The same ES256 token with ``s`` replaced by ``n - s``: a second valid signature (row 21)."""
    head, payload, _ = token.split(".")
    r, s = ecdsa_rs(token)
    return f"{head}.{payload}.{b64url(r.to_bytes(32, 'big') + (P256_ORDER - s).to_bytes(32, 'big'))}"


def _flip_last(segment: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return segment[:-1] + alphabet[alphabet.index(segment[-1]) ^ 1]


def _plus_slash(good: str) -> str:
    if "-" in good or "_" in good:
        return good.replace("-", "+").replace("_", "/")
    return good[:-2] + "+/"


_BAD_BASE64: dict[str, Callable[[str], str]] = {
    "padding": lambda good: good + "=",
    "header-padding": lambda good: good.replace(".", "==.", 1),
    "plus-slash": _plus_slash,
    "space": lambda good: good[:20] + " " + good[20:],
    "hash": lambda good: good[:20] + "#" + good[20:],
    "newline": lambda good: good + "\n",
    "non-canonical": lambda good: ".".join([*good.split(".")[:2], _flip_last(good.split(".")[2])]),
    "2-segments": lambda good: ".".join(good.split(".")[:2]),
    "4-segments": lambda good: good + ".",
    "0-segments": lambda good: "",
    "1-segment": lambda good: good.replace(".", ""),
}


def _unencoded_payload(ctx: AttackContext) -> str:
    header = b64url(json.dumps({"alg": "RS256", "kid": "k1", "b64": False, "crit": ["b64"]}).encode())
    signing_input = f"{header}.{json.dumps(ctx.claims())}"
    return f"{signing_input}.{b64url(ctx.keys.k1.signature_for(signing_input.encode()))}"


def _jwe(ctx: AttackContext) -> str:
    header = b64url(json.dumps({"alg": "RSA-OAEP", "enc": "A256GCM", "kid": "k1"}).encode())
    return f"{header}.{b64url(b'k' * 256)}.{b64url(b'iv')}.{b64url(b'ct')}.{b64url(b'tag')}"


def _exp_literal(ctx: AttackContext, literal: str) -> str:
    claims = ctx.claims()
    payload = json.dumps(claims).replace(f'"exp": {claims["exp"]}', f'"exp": {literal}')
    assert literal in payload
    return ctx.keys.k1.sign_raw(json.dumps({"alg": "RS256", "kid": "k1"}), payload)


def _audience(value: Any) -> Callable[[AttackContext], str]:
    def build(ctx: AttackContext) -> str:
        claims = ctx.claims()
        if value is not None:
            claims["aud"] = value(ctx) if callable(value) else value
        return ctx.keys.k1.sign(claims)

    return build


def _oct_key(kid: str, secret: bytes) -> dict[str, Any]:
    return {"kty": "oct", "kid": kid, "alg": "HS256", "use": "sig", "k": b64url(secret)}


# -- the catalogue -------------------------------------------------------------------------------


def _cases() -> Iterator[AttackCase]:
    invalid = _rejected("unsupported-algorithm")
    forbidden_header = _rejected("forbidden-header")
    malformed = _rejected("malformed-token")

    # 1: alg none, with and without the real RS256 signature kept
    for alg in ("none", "None", "NONE", "nOnE"):
        yield AttackCase(1, f"alg-{alg}", lambda ctx, alg=alg: _raw({"alg": alg, "kid": "k1"}, ctx.claims()),
                         invalid)
        yield AttackCase(1, f"alg-{alg}-real-signature", lambda ctx, alg=alg: _keep_real_signature(ctx, alg),
                         invalid)

    # 2: HMAC keyed with the published RSA key, in every encoding
    for alg in ("HS256", "HS384", "HS512"):
        for encoding in ("pem", "der", "jwks", "openssh", "raw-n"):
            yield AttackCase(2, f"{alg.lower()}-{encoding}", lambda ctx, alg=alg, encoding=encoding: _hs256(
                {"alg": alg, "kid": "k1"}, _public_encoding(ctx.keys.k1, encoding), ctx.claims()), invalid)

    # 3, 4: keys named by the token itself
    yield AttackCase(3, "embedded-jwk", lambda ctx: ctx.keys.attacker.sign(
        ctx.claims(), header={"kid": "k1", "jwk": ctx.keys.attacker.public_jwk()}), forbidden_header)
    members: dict[str, Any] = {
        "jku": "https://attacker.example/jwks.json",
        "x5u": "https://attacker.example/cert.pem",
        "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"],
        "x5t": "dGh1bWJwcmludA",
        "x5t#S256": "dGh1bWJwcmludA",
    }
    for member, value in members.items():
        yield AttackCase(4, f"{member}-attacker-key", lambda ctx, m=member, v=value: ctx.keys.attacker.sign(
            ctx.claims(), header={"kid": "k1", m: v}), forbidden_header)
        yield AttackCase(4, f"{member}-real-key", lambda ctx, m=member, v=value: ctx.keys.k1.sign(
            ctx.claims(), header={m: v}), forbidden_header)

    # 5: hostile kid values, signed by the attacker and by the real key
    kids: list[tuple[str, Any, str]] = [
        ("path", "../../dev/null", "unknown-kid"),
        ("sql", "' OR '1'='1", "unknown-kid"),
        ("nul", "k1\u0000", "malformed-token"),
        ("empty", "", "malformed-token"),
        ("zero", 0, "malformed-token"),
        ("null", None, "malformed-token"),
        ("list", ["k1"], "malformed-token"),
        ("object", {}, "malformed-token"),
    ]
    for signer in ("attacker", "k1"):
        for label, kid, reason in kids:
            yield AttackCase(5, f"kid-{label}-{signer}-key", lambda ctx, kid=kid, signer=signer: getattr(
                ctx.keys, signer).sign_raw(json.dumps({"alg": "RS256", "kid": kid}), json.dumps(ctx.claims())),
                _rejected(reason))

    # 6: no kid while several keys are published
    yield AttackCase(6, "no-kid-multi-key-set", lambda ctx: ctx.keys.k2.sign(ctx.claims(), header={"kid": None}),
                     _rejected("missing-kid"))

    # 7: time, outside and inside the leeway
    yield AttackCase(7, "expired", lambda ctx: ctx.keys.k1.sign(ctx.claims(
        exp=ctx.now - ctx.skew - 60, iat=ctx.now - 200, nbf=ctx.now - 200)), _rejected("token-expired"))
    yield AttackCase(7, "not-yet-valid", lambda ctx: ctx.keys.k1.sign(ctx.claims(
        nbf=ctx.now + ctx.skew + 60, exp=ctx.now + 200)), _rejected("token-not-active-yet"))
    yield AttackCase(7, "iat-in-the-future", lambda ctx: ctx.keys.k1.sign(ctx.claims(
        iat=ctx.now + 3600, exp=ctx.now + 3700)), _rejected("token-iat-in-the-future"))
    yield AttackCase(7, "expired-within-leeway", lambda ctx: ctx.keys.k1.sign(ctx.claims(
        exp=ctx.now - ctx.skew / 2)), Accepted())
    yield AttackCase(7, "nbf-within-leeway", lambda ctx: ctx.keys.k1.sign(ctx.claims(
        nbf=ctx.now + ctx.skew / 2)), Accepted())

    # 8: iss
    yield AttackCase(8, "iss-other", lambda ctx: ctx.keys.k1.sign(ctx.claims(iss="https://other.clerk.accounts.dev")),
                     _rejected("issuer-mismatch"))
    yield AttackCase(8, "iss-missing", lambda ctx: ctx.keys.k1.sign(ctx.claims(iss=None)),
                     _rejected("issuer-mismatch"))
    yield AttackCase(8, "iss-trailing-slash", lambda ctx: ctx.keys.k1.sign(ctx.claims(iss=ctx.issuer + "/")),
                     _rejected("issuer-mismatch"))

    # 9: aud, when the backend requires an audience
    aud = frozenset({NEEDS_AUDIENCE})
    yield AttackCase(9, "aud-other", _audience("https://db.fauna.com/db/other"), _rejected("audience-mismatch"),
                     needs=aud)
    yield AttackCase(9, "aud-missing", _audience(None), _rejected("audience-mismatch"), needs=aud)
    yield AttackCase(9, "aud-number", _audience(5), _rejected("audience-mismatch"), needs=aud)
    yield AttackCase(9, "aud-list-containing-it", _audience(lambda ctx: ["https://example.com", ctx.audience]),
                     Accepted(), needs=aud)

    # 10: azp, with authorized parties configured
    azp = frozenset({NEEDS_AUTHORIZED_PARTIES})
    yield AttackCase(10, "azp-not-authorized", lambda ctx: ctx.keys.k1.sign(ctx.claims(azp=EVIL_PARTY)),
                     _rejected("azp-not-authorized", status=403), needs=azp)
    yield AttackCase(10, "azp-missing", lambda ctx: ctx.keys.k1.sign(ctx.claims(azp=None)),
                     _rejected("azp-missing", status=403), needs=azp)

    # 11: a template token where a session token is expected
    yield AttackCase(11, "template-token", lambda ctx: ctx.keys.k1.sign(ctx.claims(sid=None),
                                                                        header={"cat": CATEGORY_TEMPLATE}),
                     _rejected("token-kind-not-accepted"), verifier_outcome=Accepted(TokenKind.TEMPLATE))
    yield AttackCase(11, "session-category-without-sid", lambda ctx: ctx.keys.k1.sign(
        ctx.claims(sid=None), header={"cat": CATEGORY_SESSION}), _rejected("token-category-mismatch"))

    # 12: pending session
    yield AttackCase(12, "pending-session", lambda ctx: ctx.keys.k1.sign(ctx.claims(sts="pending")),
                     _rejected("session-pending", status=403))

    # 13: huge tokens
    yield AttackCase(13, "huge-header-field", lambda ctx: ctx.keys.k1.sign(ctx.claims(),
                                                                           header={"x": "a" * 1_000_000}),
                     _rejected("token-too-large"), oversized=True)
    yield AttackCase(13, "huge-payload", lambda ctx: ctx.keys.k1.sign(ctx.claims(pad="a" * 5_000_000)),
                     _rejected("token-too-large"), oversized=True)

    # 14: bad base64 / segment structure around a good token
    for label, mangle in _BAD_BASE64.items():
        yield AttackCase(14, label, lambda ctx, mangle=mangle: mangle(ctx.keys.k1.sign(ctx.claims())), malformed)

    # 15: duplicate members
    yield AttackCase(15, "alg-twice", lambda ctx: ctx.keys.k1.sign_raw(
        '{"alg":"RS256","kid":"k1","alg":"RS256"}', json.dumps(ctx.claims())), malformed)
    yield AttackCase(15, "sub-twice", lambda ctx: ctx.keys.k1.sign_raw(
        '{"alg":"RS256","kid":"k1"}', json.dumps(ctx.claims())[:-1] + ', "sub": "user_admin"}'), malformed)
    yield AttackCase(15, "iss-twice", lambda ctx: ctx.keys.k1.sign_raw(
        '{"alg":"RS256","kid":"k1"}', json.dumps(ctx.claims())[:-1] + ', "iss": "https://evil.example"}'), malformed)

    # 16, 17: crit and b64
    crits: dict[str, dict[str, Any]] = {
        "crit-unknown": {"crit": ["x-unknown"], "x-unknown": 1},
        "crit-string": {"crit": "x"},
        "crit-empty": {"crit": []},
    }
    for label, extra in crits.items():
        yield AttackCase(16, label, lambda ctx, extra=extra: ctx.keys.k1.sign(ctx.claims(), header=extra),
                         forbidden_header)
    # the raw payload's dots (in URLs) even change the segment count: refused either way, before any key work
    yield AttackCase(17, "b64-false-raw-payload", _unencoded_payload,
                     _rejected("forbidden-header", "malformed-token", "encrypted-token-not-accepted"))
    yield AttackCase(17, "b64-false-encoded-payload", lambda ctx: ctx.keys.k1.sign(
        ctx.claims(), header={"b64": False, "crit": ["b64"]}), forbidden_header)
    yield AttackCase(17, "b64-false-without-crit", lambda ctx: ctx.keys.k1.sign(ctx.claims(), header={"b64": False}),
                     forbidden_header)

    # 18, 19: nesting and encryption
    yield AttackCase(18, "nested-jwt", lambda ctx: ctx.keys.k1.sign_raw(
        json.dumps({"alg": "RS256", "kid": "k1", "cty": "JWT"}), json.dumps(ctx.keys.k1.sign(ctx.claims()))),
        forbidden_header)
    yield AttackCase(19, "jwe", _jwe, _rejected("encrypted-token-not-accepted"))

    # 20, 21: ECDSA signature values
    signatures: dict[str, Callable[[AttackContext], bytes]] = {
        "zero": lambda ctx: bytes(64),
        "r=s=n": lambda ctx: P256_ORDER.to_bytes(32, "big") * 2,
        "der": lambda ctx: encode_dss_signature(*ecdsa_rs(ctx.keys.k3.sign(ctx.claims()))),
        "one": lambda ctx: (1).to_bytes(32, "big") * 2,
        "n-1,0": lambda ctx: (P256_ORDER - 1).to_bytes(32, "big") + bytes(32),
    }
    for label, signature in signatures.items():
        yield AttackCase(20, f"ecdsa-{label}", lambda ctx, signature=signature: _with_ec_signature(
            ctx, signature(ctx)), _rejected("invalid-signature"))
    yield AttackCase(21, "ecdsa-mirrored-s", lambda ctx: mirror_ecdsa(ctx.keys.k3.sign(ctx.claims())), Accepted())

    # 22: a too-small RSA key in the published set
    yield AttackCase(22, "small-rsa-key", lambda ctx: ctx.keys.small.sign(ctx.claims()), _rejected("unknown-kid"),
                     key_set=lambda ctx: ctx.key_set_with(ctx.keys.small.public_jwk()),
                     skipped_at_load=(("small", "rsa-too-small"),))

    # 23: exp of the wrong type; a float exp is legal
    wrong_exps: dict[str, Any] = {"string": "1999999999", "huge": 10**30, "true": True, "null": None, "list": [],
                                  "object": {}}
    for label, exp in wrong_exps.items():
        yield AttackCase(23, f"exp-{label}", lambda ctx, exp=exp: ctx.keys.k1.sign(ctx.claims() | {"exp": exp}),
                         _rejected("invalid-claims"))
    for literal in ("1e400", "NaN", "Infinity", "-1e400"):
        yield AttackCase(23, f"exp-{literal}", lambda ctx, literal=literal: _exp_literal(ctx, literal), malformed)
    yield AttackCase(23, "exp-float", lambda ctx: ctx.keys.k1.sign(ctx.claims() | {"exp": ctx.now + 30.5}),
                     Accepted())

    # 24: algorithm versus key
    yield AttackCase(24, "key-published-for-rs384", lambda ctx: ctx.keys.k1.sign(ctx.claims(), header={"kid": "k384"}),
                     _rejected("algorithm-mismatch"),
                     key_set=lambda ctx: ctx.key_set_with(ctx.keys.k1.public_jwk() | {"kid": "k384", "alg": "RS384"}))
    yield AttackCase(24, "key-published-for-encryption", lambda ctx: ctx.keys.k1.sign(
        ctx.claims(), header={"kid": "kenc"}), _rejected("unknown-kid"),
        key_set=lambda ctx: ctx.key_set_with(ctx.keys.k1.public_jwk() | {"kid": "kenc", "use": "enc"}),
        skipped_at_load=(("kenc", "not-for-signatures"),))
    yield AttackCase(24, "pss-key-pkcs1-signature", lambda ctx: ctx.keys.k1.sign(ctx.claims(), header={"kid": "kps"}),
                     _rejected("unknown-kid"),
                     key_set=lambda ctx: ctx.key_set_with(ctx.keys.k1.public_jwk() | {"kid": "kps", "alg": "PS512"}))
    yield AttackCase(24, "ec-key-rsa-token", lambda ctx: ctx.keys.k1.sign(ctx.claims(), header={"kid": "k3"}),
                     _rejected("algorithm-mismatch"))

    # 25: a mixed key set, EC first
    for label, signer in (("rsa", "k1"), ("ec", "k3")):
        yield AttackCase(25, f"mixed-key-set-{label}-token", lambda ctx, signer=signer: getattr(
            ctx.keys, signer).sign(ctx.claims()), Accepted(),
            key_set=lambda ctx: jwks(ctx.keys.k3, ctx.keys.k1))

    # 26: weak HMAC secrets in the published set
    for label, secret in (("empty", b""), ("one-byte", b"x")):
        yield AttackCase(26, f"hmac-secret-{label}", lambda ctx, secret=secret: _hs256(
            {"alg": "HS256", "kid": "hmac"}, secret, ctx.claims()), invalid,
            key_set=lambda ctx, secret=secret: ctx.key_set_with(_oct_key("hmac", secret)),
            skipped_at_load=(("hmac", "symmetric-key"),))

    # Also reject
    algs: dict[str, Any] = {"list": ["RS256"], "lower-case": "rs256", "mixed-case": "Rs256",
                            "trailing-space": "RS256 ", "list-with-hs256": ["RS256", "HS256"]}
    for label, alg in algs.items():
        yield AttackCase(None, f"alg-{label}", lambda ctx, alg=alg: ctx.keys.k1.sign(ctx.claims(), header={"alg": alg}),
                         invalid)
    yield AttackCase(None, "header-array", lambda ctx: ctx.keys.k1.sign_raw('["RS256"]', json.dumps(ctx.claims())),
                     malformed)
    yield AttackCase(None, "payload-array", lambda ctx: ctx.keys.k1.sign_raw(
        json.dumps({"alg": "RS256", "kid": "k1"}), json.dumps([ctx.claims()])), malformed)
    yield AttackCase(None, "non-utf8-payload", lambda ctx: ctx.keys.k1.sign_raw(
        json.dumps({"alg": "RS256", "kid": "k1"}).encode(),
        json.dumps(ctx.claims()).encode().replace(DEFAULT_SUBJECT.encode(), b"user_\xff\xfe")), malformed)
    for label, typ in (("JWS", "JWS"), ("jwt+x", "jwt+x"), ("dpop+jwt", "dpop+jwt"), ("empty", ""), ("number", 1)):
        yield AttackCase(None, f"typ-{label}", lambda ctx, typ=typ: ctx.keys.k1.sign(ctx.claims(), header={"typ": typ}),
                         forbidden_header)


CASES: tuple[AttackCase, ...] = tuple(_cases())
_BY_ID = {attack.id: attack for attack in CASES}
assert len(_BY_ID) == len(CASES), "attack ids must be unique"


def case(case_id: str) -> AttackCase:
    """One case by its id (``"row21-ecdsa-mirrored-s"``)."""
    return _BY_ID[case_id]
