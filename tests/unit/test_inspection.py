"""``clerk-gateway inspect`` logic: decoding, the checks that run without settings, the report.

The offline checks must reach the verdicts the gateway itself reaches (they reuse its parser and
claim rules), and name, for each check they cannot run, the setting that would let it run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clerk_gateway.auth.verifier import CATEGORY_SESSION, CATEGORY_TEMPLATE
from clerk_gateway.inspection import (
    DecodedToken,
    OfflinePolicy,
    Report,
    UndecodableTokenError,
    decode_token,
    exit_code,
    inspect_with_settings,
    inspect_without_settings,
    offline_policy,
    print_report,
)
from clerk_gateway.settings import load_settings
from tests.support.tokens import SigningKey, b64url, clerk_claims

ISSUER = "https://clerk.example.com"
NOW = 1_700_000_000.0
KEY = SigningKey.rsa()
PROBLEMS = [("CLERK_PUBLISHABLE_KEY", "not set"), ("GATEWAY_BACKENDS", "no backend configured")]
NO_SETTINGS = OfflinePolicy()
RS256_HEADER = b64url(b'{"alg":"RS256"}')
DUPLICATE_ALG_HEADER = b64url(b'{"alg":"RS256","alg":"none"}')


@pytest.fixture(autouse=True)
def _clean_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CLERK_*/GATEWAY_* variable and no .env may leak into what the settings say."""
    import os

    for name in list(os.environ):
        if name.startswith(("CLERK_", "GATEWAY_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def token(*, header: dict[str, Any] | None = None, **claims: Any) -> str:
    claims.setdefault("now", NOW)
    return KEY.sign(clerk_claims(issuer=ISSUER, **claims), header=header)


def offline(text: str, policy: OfflinePolicy = NO_SETTINGS, now: float = NOW) -> Report:
    return inspect_without_settings(text, PROBLEMS, policy=policy, clock=lambda: now)


def statuses(report: Report) -> dict[str, str]:
    return {check.name: check.status for check in report.checks}


def check(report: Report, name: str) -> Any:
    return next(c for c in report.checks if c.name == name)


# -- decoding --------------------------------------------------------------------------------------


def test_decodes_header_and_claims_with_the_strict_parser() -> None:
    decoded = decode_token(token(header={"cat": CATEGORY_SESSION}))
    assert decoded.header == {"alg": "RS256", "kid": "ins_test", "typ": "JWT", "cat": CATEGORY_SESSION}
    assert decoded.claims["sub"] == "user_2abc" and decoded.claims["v"] == 2
    assert decoded.format_problem is None and decoded.header_problem is None


def test_a_bearer_prefix_and_surrounding_whitespace_are_accepted() -> None:
    text = token()
    assert decode_token(f"  Bearer {text}\n").token == text


@pytest.mark.parametrize(("text", "reason"), [
    ("", "no token was given"),
    ("   \n", "no token was given"),
    ("garbage", "three dot-separated parts"),
    ("a.b", "three dot-separated parts"),
    ("a.b.c.d.e", "encrypted tokens (JWE)"),
    ("Basic dXNlcjpwYXNz", "not a token"),
    ("!!!.e30.c2ln", "header is not base64url"),
    (f"{b64url(b'not json')}.e30.c2ln", "header is not valid UTF-8 JSON"),
    (f"{b64url(b'[1]')}.e30.c2ln", "header is not a JSON object"),
    (f"{RS256_HEADER}.{b64url(b'[]')}.c2ln", "payload is not a JSON object"),
    (f"{DUPLICATE_ALG_HEADER}.e30.c2ln", "without duplicate members"),
])
def test_an_undecodable_token_names_the_reason(text: str, reason: str) -> None:
    with pytest.raises(UndecodableTokenError) as caught:
        decode_token(text)
    assert reason in str(caught.value)
    report = offline(text)
    assert report.decoded is None and report.accepted is False and exit_code(report) == 1
    assert reason in report.text_lines()[0] and len(report.text_lines()) == 1


def test_a_non_canonical_signature_fails_the_format_check_but_the_claims_are_still_explained() -> None:
    signed = token()
    assert len(signed.rsplit(".", 1)[1]) % 4 == 2  # 256 bytes: the last character carries 4 unused bits
    text = signed[:-1] + "B"  # an unused bit set: no canonical base64url spelling
    decoded = decode_token(text)
    assert decoded.format_problem is not None and "signature" in decoded.format_problem
    report = offline(text)
    assert statuses(report)["token format"] == "failed"
    assert statuses(report)["validity period"] == "passed"
    assert exit_code(report) == 1


def test_a_refused_header_member_is_named_and_the_claims_are_still_checked() -> None:
    report = offline(token(header={"jku": "https://evil.example/jwks.json"}))
    assert check(report, "header policy").status == "failed"
    assert "'jku'" in check(report, "header policy").detail
    assert statuses(report)["token format"] == "passed"
    assert statuses(report)["claim types"] == "passed"
    assert report.accepted is False and exit_code(report) == 1


@pytest.mark.parametrize("header", [{"alg": "HS256"}, {"alg": "none"}, {"crit": ["exp"]}, {"x5c": ["MII"]},
                                    {"jwk": {"kty": "RSA"}}])
def test_the_header_policy_is_the_gateways(header: dict[str, Any]) -> None:
    assert statuses(offline(token(header=header)))["header policy"] == "failed"


def test_a_token_without_kid_fails_the_key_id_check() -> None:
    report = offline(token(header={"kid": None}))
    assert check(report, "key id").status == "failed"
    assert "CLERK_JWT_KEY" in check(report, "key id").detail


# -- checks without settings ----------------------------------------------------------------------


def test_a_valid_session_token_passes_every_runnable_check_and_names_the_settings_for_the_rest() -> None:
    report = offline(token(header={"cat": CATEGORY_SESSION}, azp="http://localhost:3000"))
    assert statuses(report) == {
        "token format": "passed", "header policy": "passed", "key id": "passed",
        "signing key": "not-run", "algorithm": "not-run", "signature": "not-run",
        "claim types": "passed", "validity period": "passed", "issuer": "not-run",
        "authorized party": "not-run", "session status": "passed", "token kind": "passed",
        "backend token kinds": "not-run",
    }
    for name in ("signing key", "algorithm", "signature"):
        setting = check(report, name).setting
        assert all(variable in setting for variable in ("CLERK_PUBLISHABLE_KEY", "CLERK_JWKS_URL", "CLERK_JWT_KEY"))
    assert "CLERK_ISSUER" in check(report, "issuer").setting
    assert ISSUER in check(report, "issuer").detail
    assert check(report, "authorized party").setting == "CLERK_AUTHORIZED_PARTIES"
    assert "http://localhost:3000" in check(report, "authorized party").detail
    assert check(report, "backend token kinds").setting == "GATEWAY_BACKENDS"
    assert all(c.setting is None for c in report.checks if c.status != "not-run")
    assert report.accepted is None and exit_code(report) == 0


def test_an_expired_token_fails_the_validity_check() -> None:
    report = offline(token(now=NOW - 3600))
    assert check(report, "validity period").status == "failed"
    assert "expired" in check(report, "validity period").detail
    assert report.accepted is False and exit_code(report) == 1
    exp = report.as_json()["times"]["exp"]
    assert exp["seconds_left"] == -3540
    assert any("expired 59 min 0 s ago" in line for line in report.text_lines())


def test_the_leeway_is_the_configured_one_or_the_default() -> None:
    text = token(lifetime=60, now=NOW - 63)  # expired 3 s ago
    assert statuses(offline(text))["validity period"] == "passed"  # default leeway 5 s
    assert statuses(offline(text, OfflinePolicy(clock_skew_seconds=0)))["validity period"] == "failed"


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_nbf_and_iat_in_the_future_fail(claim: str) -> None:
    report = offline(token(**{claim: int(NOW) + 60}))
    assert check(report, "validity period").status == "failed"
    assert f"'{claim}'" in check(report, "validity period").detail


def test_badly_typed_claims_fail_without_an_exception() -> None:
    report = offline(token(azp=["http://a.example"], exp="soon"),
                     OfflinePolicy(authorized_parties=frozenset({"http://a.example"})))
    assert check(report, "claim types").status == "failed"
    assert check(report, "authorized party").status == "failed"
    assert report.as_json()["times"]["exp"] is None
    assert exit_code(report) == 1


def test_a_pending_session_fails_unless_pending_sessions_are_allowed() -> None:
    text = token(sts="pending")
    report = offline(text)
    assert check(report, "session status").status == "failed"
    assert report.as_json()["details"]["sts"] == "pending"
    assert statuses(offline(text, OfflinePolicy(reject_pending=False)))["session status"] == "passed"


def test_a_template_token_is_described_as_such() -> None:
    report = offline(token(sid=None, v=None, fva=None, header={"cat": CATEGORY_TEMPLATE}))
    assert report.as_json()["kind"] == "template"
    assert report.as_json()["details"]["category"] == "JWT-template token"
    assert "forward" in check(report, "backend token kinds").detail
    assert report.text_lines()[0] == "token: JWT-template token (no 'sid': not tied to a session)"
    assert exit_code(report) == 0


def test_a_session_category_without_sid_fails_the_kind_check() -> None:
    report = offline(token(sid=None, header={"cat": CATEGORY_SESSION}))
    assert check(report, "token kind").status == "failed"
    assert report.as_json()["kind"] is None
    assert report.text_lines()[0].startswith("token: unclear: ")


def test_the_session_facts_and_the_active_organization_are_described() -> None:
    report = offline(token(o={"id": "org_1", "slg": "acme", "rol": "admin", "per": "read,manage"},
                           pla="u:free", fea="o:dashboard", sts="active"))
    details = report.as_json()["details"]
    assert details["organization"] == {"id": "org_1", "slug": "acme", "role": "admin",
                                       "permissions": ["read", "manage"]}
    assert details["version"] == 2 and details["sid"] == "sess_2abc" and details["sts"] == "active"
    assert details["plan"] == "u:free" and details["features"] == "o:dashboard"
    lines = report.text_lines()
    assert lines[0] == "token: session token (Clerk session token v2)"
    assert "  org: id org_1, slug acme, role admin, permissions read, manage" in lines
    assert "  sts: active" in lines


def test_v1_organization_claims_are_described_too() -> None:
    report = offline(token(v=None, org_id="org_1", org_slug="acme", org_role="admin", org_permissions=["a"]))
    assert report.as_json()["details"]["organization"] == {"id": "org_1", "slug": "acme", "role": "admin",
                                                          "permissions": ["a"]}
    assert "v1 session token" in report.text_lines()[0]


def test_times_are_given_in_unix_utc_and_local_time() -> None:
    times = offline(token()).as_json()["times"]
    assert times["iat"]["unix"] == int(NOW) and times["iat"]["utc"] == "2023-11-14T22:13:20Z"
    assert times["nbf"]["unix"] == int(NOW) - 10
    assert times["exp"]["seconds_left"] == 60
    assert times["now"]["unix"] == NOW
    for moment in (times["iat"], times["nbf"], times["exp"]):
        assert moment["local"][:4] == "2023" and moment["local"][-6] in "+-"


# -- what the incomplete settings still say ------------------------------------------------------


def test_the_settings_that_resolve_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLERK_ISSUER", ISSUER)
    monkeypatch.setenv("CLERK_AUTHORIZED_PARTIES", "https://app.example.com")
    monkeypatch.setenv("CLERK_CLOCK_SKEW_SECONDS", "60")
    monkeypatch.setenv("CLERK_REJECT_PENDING", "false")
    policy = offline_policy()
    assert policy == OfflinePolicy(issuer=ISSUER, authorized_parties=frozenset({"https://app.example.com"}),
                                   clock_skew_seconds=60, reject_pending=False, key_source=None)
    report = offline(token(azp="https://app.example.com", now=NOW - 100), policy)
    assert statuses(report)["issuer"] == "passed"
    assert statuses(report)["authorized party"] == "passed"
    assert statuses(report)["validity period"] == "passed"  # expired 40 s ago, within the 60 s leeway
    other = offline(token(iss="https://other.example.com", azp="https://evil.example.com"), policy)
    assert "expected https://clerk.example.com, the token says https://other.example.com" in \
        check(other, "issuer").detail
    assert "allows https://app.example.com" in check(other, "authorized party").detail
    assert exit_code(other) == 1


def test_the_issuer_and_the_key_source_are_derived_from_the_publishable_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLERK_PUBLISHABLE_KEY", "pk_test_ZGl2aW5lLWZveGhvdW5kLTIyLmNsZXJrLmFjY291bnRzLmRldiQ=")
    monkeypatch.setenv("CLERK_CLOCK_SKEW_SECONDS", "soon")  # invalid: the default applies
    policy = offline_policy()
    assert policy.issuer == "https://divine-foxhound-22.clerk.accounts.dev"
    assert policy.key_source == "the JWKS at https://divine-foxhound-22.clerk.accounts.dev/.well-known/jwks.json"
    assert policy.clock_skew_seconds == 5
    report = inspect_without_settings(token(), [("GATEWAY_BACKENDS", "no backend configured")], policy=policy,
                                      clock=lambda: NOW)
    assert check(report, "signing key").setting == "GATEWAY_BACKENDS"
    assert "divine-foxhound-22" in check(report, "signing key").detail


def test_a_static_key_is_a_key_source_even_without_an_issuer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLERK_JWT_KEY", KEY.public_pem())
    policy = offline_policy()
    assert policy.key_source == "CLERK_JWT_KEY" and policy.issuer is None


def test_a_config_file_is_read_as_load_settings_reads_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(f"clerk:\n  issuer: {ISSUER}\n")
    monkeypatch.setenv("GATEWAY_CONFIG_FILE", str(config))
    assert offline_policy().issuer == ISSUER


# -- the report -----------------------------------------------------------------------------------


def test_the_json_report_has_every_documented_key_and_never_the_signature() -> None:
    text = token(header={"cat": CATEGORY_SESSION})
    report = offline(text)
    data = report.as_json()
    assert list(data) == ["format", "configured", "error", "header", "claims", "kind", "details", "times",
                          "checks", "settings_problems", "backends", "accepted"]
    assert data["format"] == 1 and data["configured"] is False and data["error"] is None
    assert data["kind"] == "session" and data["accepted"] is None
    assert data["settings_problems"] == [{"variable": v, "message": m} for v, m in PROBLEMS]
    assert set(data["checks"][0]) == {"name", "status", "detail", "setting"}
    assert {c["status"] for c in data["checks"]} == {"passed", "not-run"}
    signature = text.rsplit(".", 1)[1]
    dumped = json.dumps(data)
    assert signature not in dumped and text not in dumped
    assert signature not in "\n".join(report.text_lines())


def test_terminal_control_characters_from_the_token_are_escaped() -> None:
    report = offline(token(sub="user_\x1b[2J\x9b", azp="\x07"))
    text = "\n".join(report.text_lines())
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    assert "\\u001b[2J" in text


def test_print_report_prints_one_line_for_an_undecodable_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert print_report(offline("not-a-token")) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "cannot be decoded" in err
    assert print_report(offline("not-a-token"), as_json=True) == 1
    out, _ = capsys.readouterr()
    data = json.loads(out)
    assert data["header"] is None and data["accepted"] is False and "three" in data["error"]


# -- with complete settings -------------------------------------------------------------------------


def settings(**clerk: Any) -> Any:
    overrides: dict[str, Any] = {"jwt_key": KEY.public_pem(), "issuer": ISSUER, **clerk}
    return load_settings(overrides, {"backends": {"hasura": {"url": "http://127.0.0.1:9"}}})


async def test_with_settings_the_verifier_explains_and_accepts() -> None:
    text = token(now=None)
    report = await inspect_with_settings(settings(), text)
    assert report.configured and report.accepted is True and exit_code(report) == 0
    assert {c.status for c in report.checks} == {"passed"}
    assert [c.name for c in report.checks][:4] == ["token format", "signing key", "algorithm", "signature"]
    assert report.as_json()["backends"] == {"hasura": {"token_kinds": ["session", "template"],
                                                       "accepts_token": True}}
    lines = report.text_lines()
    assert lines[-2] == "accepted" and lines[-1].startswith("backends and the token kinds they accept:")


async def test_with_settings_a_refused_token_is_rejected() -> None:
    report = await inspect_with_settings(settings(), token(now=NOW))
    assert report.accepted is False and exit_code(report) == 1
    assert any(c.name == "validity period" and c.status == "failed" for c in report.checks)
    assert report.text_lines()[-1] == "rejected"


async def test_with_settings_an_odd_claim_type_is_no_traceback() -> None:
    report = await inspect_with_settings(settings(authorized_parties="https://a.example"),
                                         token(now=None, azp=["https://a.example"]))
    assert report.accepted is False and exit_code(report) == 1


async def test_with_settings_an_undecodable_token_is_one_error() -> None:
    report = await inspect_with_settings(settings(), "nope")
    assert report.decoded is None and exit_code(report) == 1


def test_decoded_token_never_shows_the_token_in_its_repr() -> None:
    text = token()
    assert text not in repr(decode_token(text))
    assert isinstance(decode_token(text), DecodedToken)
