"""JWKS lifetime from response headers: Hasura's table (REFERENCE.md §2.7) row by row, then ours."""

from __future__ import annotations

import math
from email.utils import formatdate

import httpx
import pytest

from clerk_gateway.auth.cache_lifetime import clamp_lifetime, lifetime_from_headers

NOW = 1_750_000_000.0


def http_date(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)


# -- Hasura's JWTSpec table ------------------------------------------------------------------------


@pytest.mark.parametrize("cache_control", ["max-age=10, no-cache", "must-revalidate", "max-age=10, no-store"])
def test_hasura_rows_that_mean_refetch_now(cache_control: str) -> None:
    assert lifetime_from_headers({"Cache-Control": cache_control}, NOW) == 0


@pytest.mark.parametrize("cache_control", ["max-age=10, must-revalidate", "public, max-age=10", "s-maxage=10"])
def test_hasura_rows_with_a_max_age(cache_control: str) -> None:
    assert lifetime_from_headers({"Cache-Control": cache_control}, NOW) == 10


def test_hasura_row_public_plus_expires() -> None:
    headers = {"Cache-Control": "public", "Expires": http_date(NOW + 60)}
    assert lifetime_from_headers(headers, NOW) == 60


def test_hasura_row_expires_only() -> None:
    assert lifetime_from_headers({"Expires": http_date(NOW + 60)}, NOW) == 60


@pytest.mark.parametrize("headers", [{}, {"Cache-Control": "public"}, {"Content-Type": "application/json"}])
def test_hasura_row_none_of_these(headers: dict[str, str]) -> None:
    assert lifetime_from_headers(headers, NOW) is None


@pytest.mark.parametrize("headers", [
    {"Cache-Control": "max-age=abc"},
    {"Cache-Control": "max-age=-5"},
    {"Cache-Control": "max-age="},
    {"Cache-Control": "max-age=1.5"},
    {"Cache-Control": "max-age=10 junk"},
    {"Expires": "not a date"},
    {"Expires": "0"},
    {"Cache-Control": "public", "Expires": "yesterday"},
])
def test_hasura_row_corrupt_values_give_none(headers: dict[str, str]) -> None:
    assert lifetime_from_headers(headers, NOW) is None


# -- precedence and details ------------------------------------------------------------------------


def test_cache_control_beats_expires() -> None:
    headers = {"Cache-Control": "max-age=10", "Expires": http_date(NOW + 3600)}
    assert lifetime_from_headers(headers, NOW) == 10


def test_no_cache_beats_expires() -> None:
    headers = {"Cache-Control": "no-cache", "Expires": http_date(NOW + 3600)}
    assert lifetime_from_headers(headers, NOW) == 0


def test_max_age_is_preferred_to_s_maxage() -> None:
    assert lifetime_from_headers({"Cache-Control": "s-maxage=20, max-age=10"}, NOW) == 10


def test_expires_in_the_past_is_zero() -> None:
    assert lifetime_from_headers({"Expires": http_date(NOW - 600)}, NOW) == 0


def test_expires_is_measured_from_the_date_header_when_present() -> None:
    # The server's clock says it is NOW - 1000: the response is fresh for 60 s of *its* time.
    headers = {"Date": http_date(NOW - 1000), "Expires": http_date(NOW - 940)}
    assert lifetime_from_headers(headers, NOW) == 60


def test_a_corrupt_date_header_falls_back_to_now() -> None:
    headers = {"Date": "garbage", "Expires": http_date(NOW + 60)}
    assert lifetime_from_headers(headers, NOW) == 60


def test_age_from_a_shared_cache_is_subtracted() -> None:
    assert lifetime_from_headers({"Cache-Control": "max-age=300", "Age": "100"}, NOW) == 200
    assert lifetime_from_headers({"Cache-Control": "max-age=300", "Age": "900"}, NOW) == 0
    assert lifetime_from_headers({"Cache-Control": "max-age=300", "Age": "bogus"}, NOW) == 300


def test_directive_names_and_header_names_are_case_insensitive() -> None:
    assert lifetime_from_headers({"cache-control": "Max-Age=42"}, NOW) == 42
    assert lifetime_from_headers({"CACHE-CONTROL": "NO-STORE"}, NOW) == 0


def test_quoted_values_and_qualified_no_cache() -> None:
    assert lifetime_from_headers({"Cache-Control": 'max-age="42"'}, NOW) == 42
    assert lifetime_from_headers({"Cache-Control": 'no-cache="Set-Cookie, X", max-age=5'}, NOW) == 0


def test_first_occurrence_of_a_directive_wins() -> None:
    assert lifetime_from_headers({"Cache-Control": "max-age=5, max-age=50"}, NOW) == 5


def test_httpx_headers_with_repeated_cache_control_lines() -> None:
    headers = httpx.Headers([("cache-control", "public"), ("cache-control", "max-age=77")])
    assert lifetime_from_headers(headers, NOW) == 77


def test_stray_commas_and_whitespace_are_tolerated() -> None:
    assert lifetime_from_headers({"Cache-Control": " , public ,, max-age = 12 , "}, NOW) == 12


# -- clamp -------------------------------------------------------------------------------------------


def test_clamp_defaults() -> None:
    assert clamp_lifetime(None) == 300
    assert clamp_lifetime(0) == 30
    assert clamp_lifetime(10) == 30
    assert clamp_lifetime(600) == 600
    assert clamp_lifetime(10**9) == 86400
    assert clamp_lifetime(math.nan) == 300


def test_clamp_with_explicit_bounds() -> None:
    assert clamp_lifetime(None, default=60) == 60
    assert clamp_lifetime(1, minimum=5, maximum=10) == 5
    assert clamp_lifetime(50, minimum=5, maximum=10) == 10
