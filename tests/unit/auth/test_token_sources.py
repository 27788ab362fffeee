"""Where the token is found: ``Authorization`` first (Clerk's rules), then the session cookies in order."""

from __future__ import annotations

import pytest

from clerk_gateway.auth.token_sources import bearer_token, cookie_value, find_token

COOKIES = ["__session_rVL_sWZr", "__session"]


def asgi(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs]


def test_bearer_header() -> None:
    assert find_token(asgi(("authorization", "Bearer abc.def.ghi")), COOKIES) == "abc.def.ghi"


def test_no_token() -> None:
    assert find_token([], COOKIES) is None
    assert find_token(asgi(("accept", "*/*")), COOKIES) is None


@pytest.mark.parametrize(("value", "token"), [
    ("Bearer t.o.k", "t.o.k"),
    ("Bearer   t.o.k  ", "t.o.k"),
    ("t.o.k", "t.o.k"),                 # bare value: the token itself
    ("  t.o.k ", "t.o.k"),
    ("bearer t.o.k", None),             # scheme is case-sensitive
    ("BEARER t.o.k", None),
    ("Basic dXNlcjpwYXNz", None),       # other schemes are ignored
    ("Token t.o.k", None),
    ("Bearer", "Bearer"),               # a bare word is a (bad) token, as in Clerk's SDK
    ("Bearer ", "Bearer"),
    ("Bearer  ", "Bearer"),
    ("", None),
    ("   ", None),
    ("Bearer a b", "a b"),              # left for the verifier to refuse
])
def test_authorization_values(value: str, token: str | None) -> None:
    assert bearer_token(value) == token


def test_header_wins_over_cookie() -> None:
    headers = asgi(("cookie", "__session=from.cookie.x"), ("authorization", "Bearer from.header.x"))
    assert find_token(headers, COOKIES) == "from.header.x"


def test_other_scheme_falls_back_to_the_cookie() -> None:
    headers = asgi(("authorization", "Basic dXNlcjpwYXNz"), ("cookie", "__session=from.cookie.x"))
    assert find_token(headers, COOKIES) == "from.cookie.x"


def test_first_authorization_header_counts() -> None:
    headers = asgi(("authorization", "Bearer first"), ("authorization", "Bearer second"))
    assert find_token(headers, COOKIES) == "first"


def test_suffixed_cookie_preferred_whatever_the_order() -> None:
    headers = asgi(("cookie", "__session=plain; __session_rVL_sWZr=suffixed"))
    assert find_token(headers, COOKIES) == "suffixed"
    assert find_token(headers, ["__session"]) == "plain"


def test_cookie_fallback_to_plain_session() -> None:
    headers = asgi(("cookie", "theme=dark; __session=plain; other=1"))
    assert find_token(headers, COOKIES) == "plain"


def test_several_cookie_headers() -> None:
    headers = asgi(("cookie", "a=1"), ("cookie", "__session=tok"))
    assert find_token(headers, COOKIES) == "tok"


@pytest.mark.parametrize(("header", "expected"), [
    ("__session=abc", "abc"),
    ("  __session = abc ;x=y", "abc"),
    ('__session="abc"', "abc"),
    ("__session=", None),
    ("__session=; __session=later", "later"),
    ("__session=first; __session=second", "first"),
    ("__session_other=abc", None),
    ("x__session=abc", None),
    ("__session", None),
    ("__session=a=b", "a=b"),
    ('bad"cookie; __session=abc', "abc"),     # http.cookies would drop the whole header here
    ("a=\\054; __session=abc", "abc"),
    (";;; ; __session=abc;", "abc"),
    ("", None),
])
def test_cookie_parsing(header: str, expected: str | None) -> None:
    assert cookie_value(header, ["__session"]) == expected


def test_no_cookie_names_means_no_cookie_lookup() -> None:
    assert find_token(asgi(("cookie", "__session=abc")), []) is None


def test_mapping_headers() -> None:
    assert find_token({"Authorization": "Bearer x.y.z"}, COOKIES) == "x.y.z"
    assert find_token({"cookie": "__session=c"}, COOKIES) == "c"
    assert find_token({b"authorization": b"Bearer b.y.z"}, COOKIES) == "b.y.z"


def test_header_names_are_matched_case_insensitively() -> None:
    assert find_token([(b"Authorization", b"Bearer x")], COOKIES) == "x"
    assert find_token([(b"COOKIE", b"__session=y")], COOKIES) == "y"


def test_non_ascii_bytes_do_not_raise() -> None:
    headers = [(b"authorization", b"Bearer \xff\xfe"), (b"cookie", b"__session=\xe9")]
    assert find_token(headers, COOKIES) == "\xff\xfe"
    assert find_token([(b"cookie", b"__session=\xe9")], COOKIES) == "\xe9"
