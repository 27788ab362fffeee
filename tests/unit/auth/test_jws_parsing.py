"""Structural pre-checks and header policy of compact JWS parsing (REFERENCE.md §5.3 steps 1-3)."""

from __future__ import annotations

import json

import pytest

from clerk_gateway.auth.jws_parsing import ParsedJws, ParsedJwt, check_header, parse_compact_jws, parse_jwt
from clerk_gateway.errors import AuthenticationError
from tests.support.tokens import SigningKey, b64url, clerk_claims

ISSUER = "https://clerk.example.com"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.rsa()


def _reason(token: str, **kwargs: int) -> str:
    with pytest.raises(AuthenticationError) as caught:
        parse_jwt(token, **kwargs)  # type: ignore[arg-type]
    assert "eyJ" not in caught.value.message
    return caught.value.reason


def _unsigned(header: str | bytes, payload: str | bytes = b'{"sub":"x"}', signature: str = "c2ln") -> str:
    header_bytes = header.encode() if isinstance(header, str) else header
    payload_bytes = payload.encode() if isinstance(payload, str) else payload
    return f"{b64url(header_bytes)}.{b64url(payload_bytes)}.{signature}"


def test_parses_a_well_formed_token(key: SigningKey) -> None:
    claims = clerk_claims(issuer=ISSUER)
    token = key.sign(claims)
    parsed = parse_jwt(token)
    assert isinstance(parsed, ParsedJwt)
    assert isinstance(parsed.jws, ParsedJws)
    assert parsed.header == {"alg": "RS256", "kid": "ins_test", "typ": "JWT"}
    assert parsed.claims == claims
    assert parsed.jws.algorithm == "RS256"
    assert parsed.jws.kid == "ins_test"
    assert parsed.jws.signing_input == token.rsplit(".", 1)[0].encode()
    assert b64url(parsed.jws.signature) == token.rsplit(".", 1)[1]
    assert json.loads(parsed.jws.payload) == claims
    assert token not in repr(parsed)


def test_kid_may_be_absent(key: SigningKey) -> None:
    assert parse_jwt(key.sign({"sub": "x"}, header={"kid": None})).jws.kid is None


@pytest.mark.parametrize("typ", [None, "JWT", "at+jwt", "application/at+jwt"])
def test_allowed_typ_values(key: SigningKey, typ: str | None) -> None:
    parse_compact_jws(key.sign({"sub": "x"}, header={"typ": typ}))


# -- size and segments ---------------------------------------------------------------------------


def test_too_large(key: SigningKey) -> None:
    token = key.sign({"sub": "x", "pad": "a" * 9000})
    assert _reason(token) == "token-too-large"
    assert _reason(key.sign({"sub": "x"}), max_token_bytes=50) == "token-too-large"
    parse_jwt(token, max_token_bytes=20000)


def test_five_segments_is_an_encrypted_token() -> None:
    header = b64url(b'{"alg":"RSA-OAEP","enc":"A256GCM"}')
    assert _reason(f"{header}.a.b.c.d") == "encrypted-token-not-accepted"


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", "a.b.c.d.e.f", "..."])
def test_wrong_segment_count(token: str) -> None:
    assert _reason(token) == "malformed-token"


@pytest.mark.parametrize("mutation", [
    lambda t: t + "=",                              # padding
    lambda t: t.replace(".", "=.", 1),              # padding on the header
    lambda t: t + "\n",                             # trailing newline (re.match would pass it)
    lambda t: " " + t,
    lambda t: t[:10] + "#" + t[11:],
    lambda t: t[:10] + "+" + t[11:],
    lambda t: t[:10] + "/" + t[11:],
    lambda t: t[:10] + " " + t[11:],
    lambda t: t[:10] + "\u00e9" + t[11:],
    lambda t: t + "AAA",                            # a 342-character RSA signature becomes 4n+1
])
def test_bad_base64(key: SigningKey, mutation: object) -> None:
    token = key.sign({"sub": "x"})
    assert _reason(mutation(token)) == "malformed-token"  # type: ignore[operator]


def test_non_canonical_last_character_is_rejected(key: SigningKey) -> None:
    token = key.sign({"sub": "x"})
    head, payload, signature = token.split(".")
    # 256-byte RSA signatures end in a 4-bit remainder: flipping a low bit keeps the bytes but not the text
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    variant = alphabet[last ^ 1]
    assert _reason(f"{head}.{payload}.{signature[:-1]}{variant}") == "malformed-token"


def test_not_text() -> None:
    assert _reason(b"a.b.c") == "malformed-token"  # type: ignore[arg-type]


# -- JSON ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [
    '{"alg":"RS256","kid":"k1","alg":"RS256"}',   # duplicate member
    "[]",
    '"RS256"',
    "null",
    "",
    "{",
    '{"alg":"RS256"} x',
    '\ufeff{"alg":"RS256"}',
    '{"alg":"RS256","x":NaN}',
    '{"alg":"RS256","x":Infinity}',
    '{"alg":"RS256","x":-Infinity}',
    '{"alg":"RS256","x":1e400}',
    '{"alg":"RS256","x":"\\ud800"}',
    '{"alg":"RS256","x":{"y":1,"y":2}}',
])
def test_bad_header_json(header: str) -> None:
    assert _reason(_unsigned(header)) == "malformed-token"


@pytest.mark.parametrize("payload", [
    b'{"sub":"a","sub":"b"}',
    b'{"iss":"a","iss":"a"}',
    b"[1,2]",
    b"\xff\xfe{}",
    b'{"sub":"\xc3"}',
    b'{"exp":NaN}',
    b"[" * 3000 + b"]" * 3000,
    b'{"a":' * 2000 + b"1" + b"}" * 2000,
    b'{"big":' + b"9" * 5000 + b"}",
])
def test_bad_payload_json(payload: bytes) -> None:
    assert _reason(_unsigned('{"alg":"RS256"}', payload), max_token_bytes=20000) == "malformed-token"


def test_the_jws_layer_accepts_any_payload_bytes() -> None:
    for payload in (b"", b"foo", b"\xff\x00", b"[1]"):
        assert parse_compact_jws(_unsigned('{"alg":"ES256"}', payload)).payload == payload


def test_escaped_surrogate_pairs_are_fine() -> None:
    parsed = parse_jwt(_unsigned('{"alg":"RS256"}', '{"sub":"\\ud83d\\ude00"}'))
    assert parsed.claims["sub"] == "\U0001f600"


# -- header policy -------------------------------------------------------------------------------


@pytest.mark.parametrize("member", ["crit", "b64", "jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "cty", "zip",
                                    "enc"])
def test_forbidden_header_members(key: SigningKey, member: str) -> None:
    assert _reason(key.sign({"sub": "x"}, header={member: "x"})) == "forbidden-header"


@pytest.mark.parametrize("typ", ["jwt", "JWS", "", None, 1, ["JWT"], {"a": 1}, "at+JWT"])
def test_other_typ_values_are_refused(typ: object) -> None:
    header = json.dumps({"alg": "RS256", "typ": typ})
    assert _reason(_unsigned(header)) == "forbidden-header"


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", "HS256", "HS384", "HS512", "rs256", "PS256",
                                 "EdDSA", "RSA-OAEP", "", None, 1, ["RS256"], {"RS256": 1}, True])
def test_unsupported_algorithms(alg: object) -> None:
    assert _reason(_unsigned(json.dumps({"alg": alg, "kid": "k1"}))) == "unsupported-algorithm"


def test_missing_alg() -> None:
    assert _reason(_unsigned('{"kid":"k1"}')) == "unsupported-algorithm"


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"])
def test_supported_algorithms(alg: str) -> None:
    assert parse_compact_jws(_unsigned(json.dumps({"alg": alg}))).algorithm == alg


@pytest.mark.parametrize("kid", ["", None, 0, ["k1"], {}, "k1\u0000", "k\n1", "x" * 257, True])
def test_bad_kid(kid: object) -> None:
    assert _reason(_unsigned(json.dumps({"alg": "RS256", "kid": kid}))) == "malformed-token"


@pytest.mark.parametrize("kid", ["../../dev/null", "' OR '1'='1", "x" * 256, "ins_2abc", "k 1"])
def test_odd_but_printable_kids_are_left_to_the_key_lookup(kid: str) -> None:
    assert parse_compact_jws(_unsigned(json.dumps({"alg": "RS256", "kid": kid}))).kid == kid


def test_unknown_header_members_are_ignored() -> None:
    check_header({"alg": "RS256", "kid": "k", "oiat": 1, "cat": "cl_B7d4PD111AAA"})


def test_forbidden_beats_alg(key: SigningKey) -> None:
    # a hostile header is named for what is wrong with it first
    assert _reason(key.sign({"sub": "x"}, header={"alg": "none", "jku": "https://evil"})) == "forbidden-header"
