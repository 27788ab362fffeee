import pytest

from clerk_gateway.settings.publishable_key import (
    PublishableKeyError,
    frontend_api_host,
    parse_publishable_key,
)

EXAMPLE = "pk_test_ZGl2aW5lLWZveGhvdW5kLTIyLmNsZXJrLmFjY291bnRzLmRldiQ="


def test_decodes_frontend_api_host() -> None:
    key = parse_publishable_key(EXAMPLE)
    assert key.frontend_api == "divine-foxhound-22.clerk.accounts.dev"
    assert key.instance_type == "development"


def test_cookie_suffix_matches_clerk() -> None:
    assert parse_publishable_key(EXAMPLE).cookie_suffix == "rVL_sWZr"


@pytest.mark.parametrize(
    "text",
    ["sk_test_abc", "pk_test_!!!", "pk_live_" + "aG9zdA==", "pk_test_" + "YS5iJGMk"],
)
def test_rejects_what_is_not_a_publishable_key(text: str) -> None:
    with pytest.raises(PublishableKeyError):
        parse_publishable_key(text)


@pytest.mark.parametrize(
    ("text", "host"),
    [("clerk.example.com", "clerk.example.com"), ("https://clerk.example.com/", "clerk.example.com"),
     ("http://127.0.0.1:9000", "127.0.0.1:9000")],
)
def test_frontend_api_accepts_host_or_origin(text: str, host: str) -> None:
    assert frontend_api_host(text) == host
