"""``clerk-gateway inspect``: what a token is, and why the gateway accepts or refuses it.

"Why is my token refused?" is asked while the gateway is being set up, that is exactly while the
settings are still incomplete. So inspect works in two modes:

- **With complete settings** it asks the real verifier (:meth:`TokenVerifier.explain`, with the
  keys loaded as ``serve`` loads them), so the answer is the gateway's own.
- **Without them** (``load_settings`` raised :class:`SettingsError`) it still decodes the token
  and runs every check that needs no key and no backend: the strict parser of
  :mod:`clerk_gateway.auth.jws_parsing` (structure, canonical base64url, strict JSON, header
  policy) and the verifier's own claim rules (types, validity period with the configured or
  default leeway, session status, token class), so the verdicts are the ones the gateway would
  reach. Whatever Clerk settings do resolve (``CLERK_ISSUER``, ``CLERK_AUTHORIZED_PARTIES``,
  ``CLERK_CLOCK_SKEW_SECONDS``, ``CLERK_REJECT_PENDING``) are used; every check that still cannot
  run is reported as ``not-run`` together with the setting that would let it run.

Nothing here prints the signature or the token itself: the header and the claims are what the
token's holder can read anyway, the signature is what makes the token a credential. Values taken
from the token are escaped before they reach a terminal.

Exit status (:func:`exit_code`): with complete settings 0 when the settings accept the token and
1 when they do not (as before); without them 0 when every check that could run passed and 1 when
one failed; 1 for a token that cannot even be decoded.

``--json`` prints one JSON object (format 1; new keys may be added, existing ones keep their
meaning)::

    {
      "format": 1,
      "configured": bool,          # the settings were complete, so every check could run
      "error": str | null,         # why the token could not be decoded (header/claims are then null)
                                   # or explained; the exit status is then 1
      "header": {...} | null,      # the decoded JOSE header
      "claims": {...} | null,      # the decoded claims (never the signature)
      "kind": "session" | "template" | null,   # null: the header "cat" and "sid" disagree
      "details": {"cat", "category", "sid", "azp", "sts", "version",
                  "organization": {"id", "slug", "role", "permissions": [...]} | null,
                  "plan", "features", "actor"} | null,   # absent claims are null
      "times": {"now": T, "iat": T | null, "nbf": T | null, "exp": T | null},
               # T = {"unix": number, "utc": "YYYY-MM-DDThh:mm:ssZ", "local": ISO 8601 with offset}
               # "exp" also has "seconds_left" (negative once expired)
      "checks": [{"name": str, "status": "passed" | "failed" | "not-run", "detail": str,
                  "setting": str | null}],      # "setting": what would let a not-run check run
      "settings_problems": [{"variable": str, "message": str}],
      "backends": {"<name>": {"token_kinds": [...], "accepts_token": bool}},   # complete settings only
      "accepted": bool | null      # null: nothing failed, but not every check could run
    }
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

from clerk_gateway.auth.jws_parsing import (
    DEFAULT_MAX_TOKEN_BYTES,
    ParsedJws,
    ParsedJwt,
    check_header,
    decode_json_object,
    decode_segment,
    parse_jwt,
)
from clerk_gateway.auth.token_sources import bearer_token
from clerk_gateway.auth.verifier import (
    CATEGORY_IGNORE,
    CATEGORY_SESSION,
    CATEGORY_TEMPLATE,
    Check,
    ClaimRules,
    VerifierPolicy,
    token_kind,
)
from clerk_gateway.checks import wait_for_keys
from clerk_gateway.errors import AuthenticationError, GatewayError
from clerk_gateway.settings import Settings

__all__ = [
    "DecodedToken",
    "InspectionCheck",
    "OfflinePolicy",
    "Report",
    "UndecodableTokenError",
    "decode_token",
    "exit_code",
    "inspect_with_settings",
    "inspect_without_settings",
    "offline_policy",
    "print_report",
]

Status = Literal["passed", "failed", "not-run"]

#: Clerk's machine-to-machine class (REFERENCE.md §1.2); the gateway accepts no such token.
CATEGORY_M2M = "cl_B7d4PD333AAA"
_CATEGORIES = {
    CATEGORY_SESSION: "session token",
    CATEGORY_TEMPLATE: "JWT-template token",
    CATEGORY_IGNORE: "no class ('ignore')",
    CATEGORY_M2M: "machine-to-machine token (not accepted)",
}
#: Larger input is not even decoded: no real token comes near it, and stdin could be anything.
MAX_DECODE_BYTES = 1 << 20
KEY_SETTINGS = "CLERK_PUBLISHABLE_KEY, CLERK_FRONTEND_API, CLERK_JWKS_URL, CLERK_SECRET_KEY or CLERK_JWT_KEY"
ISSUER_SETTINGS = "CLERK_PUBLISHABLE_KEY, CLERK_FRONTEND_API or CLERK_ISSUER"
_REFUSED_SHOWN = ("crit", "jwk", "jku", "x5c")
_STATUS_TAGS: dict[Status, str] = {"passed": "ok", "failed": "FAIL", "not-run": "not run"}


class UndecodableTokenError(ValueError):
    """The text is not a token whose header and claims can be read; the message says why."""


@dataclass(frozen=True, slots=True)
class InspectionCheck:
    """One line of the verdict; ``setting`` names what would let a ``not-run`` check run."""

    name: str
    status: Status
    detail: str
    setting: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "setting": self.setting}


@dataclass(frozen=True, slots=True)
class DecodedToken:
    """Header and claims read with the strict parser's own primitives, plus what it refused.

    ``parsed`` is what the verifier's claim rules take. When the strict parser accepted the token
    it is its result; otherwise it is built from the same primitives, and ``format_problem`` /
    ``header_problem`` say what the parser refused, so the claims can still be explained.
    """

    token: str = field(repr=False)
    parsed: ParsedJwt = field(repr=False)
    format_problem: str | None = None
    header_problem: str | None = None

    @property
    def header(self) -> dict[str, Any]:
        return self.parsed.header

    @property
    def claims(self) -> dict[str, Any]:
        return self.parsed.claims


@dataclass(frozen=True, slots=True)
class OfflinePolicy:
    """What incomplete settings still say about tokens: each value as configured, or the default."""

    issuer: str | None = None
    authorized_parties: frozenset[str] = frozenset()
    clock_skew_seconds: float = 5.0
    reject_pending: bool = True
    #: A description of the configured key source, when there is one (the keys are not fetched).
    key_source: str | None = None


@dataclass(frozen=True, slots=True)
class Report:
    """Everything inspect found, rendered by :meth:`text_lines` or :meth:`as_json`."""

    configured: bool
    now: float
    decoded: DecodedToken | None = None
    error: str | None = None
    checks: tuple[InspectionCheck, ...] = ()
    settings_problems: tuple[tuple[str, str], ...] = ()
    backends: Mapping[str, frozenset[str]] = field(default_factory=dict)
    accepted: bool | None = None

    # -- JSON -----------------------------------------------------------------------------------

    def as_json(self) -> dict[str, Any]:
        """The ``--json`` object documented in the module docstring."""
        decoded = self.decoded
        kind = None if decoded is None else _kind(decoded)
        return {
            "format": 1,
            "configured": self.configured,
            "error": self.error,
            "header": None if decoded is None else decoded.header,
            "claims": None if decoded is None else decoded.claims,
            "kind": kind,
            "details": None if decoded is None else describe(decoded),
            "times": _times(None if decoded is None else decoded.claims, self.now),
            "checks": [check.as_json() for check in self.checks],
            "settings_problems": [{"variable": variable, "message": message}
                                  for variable, message in self.settings_problems],
            "backends": {name: {"token_kinds": sorted(kinds), "accepts_token": kind in kinds}
                         for name, kinds in self.backends.items()},
            "accepted": self.accepted,
        }

    # -- text -----------------------------------------------------------------------------------

    def text_lines(self) -> list[str]:
        """The human-readable report; every value that came from the token is escaped."""
        decoded = self.decoded
        if decoded is None:
            return [f"clerk-gateway inspect: the token cannot be decoded: {self.error}"]
        lines = _description_lines(decoded, self.now)
        lines.append("checks:" if self.configured else "checks (the settings are incomplete):")
        if self.configured:
            # The lines of the original ``inspect``, unchanged, so that scripts reading them still work.
            lines += [f"[{_STATUS_TAGS[check.status]}] {check.name}: {check.detail}" for check in self.checks]
            if self.error is not None:
                lines.append(f"error: {self.error}")
            lines.append("accepted" if self.accepted else "rejected")
            if self.accepted:
                kinds = {name: sorted(kinds) for name, kinds in self.backends.items()}
                lines.append(f"backends and the token kinds they accept: {kinds}")
            return [_printable(line) for line in lines]
        for check in self.checks:
            line = f"[{_STATUS_TAGS[check.status]}] {check.name}: {check.detail}"
            lines.append(line if check.setting is None else f"{line} -> needs {check.setting}")
        not_run = sum(check.status == "not-run" for check in self.checks)
        failed = sum(check.status == "failed" for check in self.checks)
        if self.settings_problems:
            lines.append(f"note: {not_run} check(s) could not run because the settings are incomplete:")
            lines += [f"  {variable}: {message}" for variable, message in self.settings_problems]
        if failed:
            lines.append(f"rejected: {failed} check(s) failed")
        else:
            lines.append(f"no check failed ({not_run} could not run without complete settings)")
        return [_printable(line) for line in lines]


# -- decoding -------------------------------------------------------------------------------------


def decode_token(text: str) -> DecodedToken:
    """Read the header and claims of ``text`` (a token, or ``Bearer <token>``).

    The strict parser is the authority: a token it accepts is used as it parsed it. A token it
    refuses is taken apart with the same primitives so that the refusal can be named while the
    header and claims are still shown; only when those two cannot be read is the token
    undecodable (:class:`UndecodableTokenError`, with the parser's own message).
    """
    stripped = text.strip()
    if not stripped:
        raise UndecodableTokenError("no token was given")
    token = bearer_token(stripped)
    if token is None:
        raise UndecodableTokenError("the value is not a token: expected the token itself or 'Bearer <token>'")
    try:
        return DecodedToken(token, parse_jwt(token, max_token_bytes=DEFAULT_MAX_TOKEN_BYTES))
    except AuthenticationError as exc:
        verdict = exc.message
    if len(token) > MAX_DECODE_BYTES:
        raise UndecodableTokenError(f"the token is larger than {MAX_DECODE_BYTES} bytes")
    segments = token.split(".")
    if len(segments) != 3:
        raise UndecodableTokenError(verdict)
    header_segment, payload_segment, signature_segment = segments
    try:
        header = decode_json_object(decode_segment(header_segment, "header"), "header")
        payload = decode_segment(payload_segment, "payload")
        claims = decode_json_object(payload, "payload")
    except AuthenticationError as exc:
        raise UndecodableTokenError(exc.message) from None
    format_problem: str | None = None
    if len(token) > DEFAULT_MAX_TOKEN_BYTES:
        format_problem = f"the token is larger than {DEFAULT_MAX_TOKEN_BYTES} bytes"
    signature = b""
    try:
        signature = decode_segment(signature_segment, "signature")
    except AuthenticationError as exc:
        format_problem = format_problem or exc.message
    header_problem: str | None = None
    try:
        check_header(header)
    except AuthenticationError as exc:
        header_problem = exc.message
    if format_problem is None and header_problem is None:  # the parser found something we did not
        format_problem = verdict
    jws = ParsedJws(token, header, payload, f"{header_segment}.{payload_segment}".encode("ascii"), signature)
    return DecodedToken(token, ParsedJwt(jws, claims), format_problem, header_problem)


# -- description ------------------------------------------------------------------------------------


def _kind(decoded: DecodedToken) -> str | None:
    try:
        return token_kind(decoded.header, decoded.claims).value
    except AuthenticationError:
        return None


def describe(decoded: DecodedToken) -> dict[str, Any]:
    """The Clerk-specific facts about the token (REFERENCE.md §1.1-1.2); absent claims are ``None``."""
    header, claims = decoded.header, decoded.claims
    cat = header.get("cat")
    actor = claims.get("act")
    return {
        "cat": cat,
        "category": _category(cat),
        "sid": claims.get("sid"),
        "azp": claims.get("azp"),
        "sts": claims.get("sts"),
        "version": claims.get("v"),
        "organization": _organization(claims),
        "plan": claims.get("pla"),
        "features": claims.get("fea"),
        "actor": actor.get("sub") if isinstance(actor, dict) else actor,
    }


def _category(cat: Any) -> str | None:
    """What the header ``cat`` says; any value Clerk does not define is "unknown" (and refused)."""
    if cat is None:
        return None
    return _CATEGORIES.get(cat, "unknown") if isinstance(cat, str) else "unknown"


def _organization(claims: Mapping[str, Any]) -> dict[str, Any] | None:
    """The active organization: ``o`` in v2 tokens, the ``org_*`` claims in v1 tokens."""
    org = claims.get("o")
    if isinstance(org, dict):
        values = {"id": org.get("id"), "slug": org.get("slg"), "role": org.get("rol"), "permissions": org.get("per")}
    elif org is not None:
        return {"id": None, "slug": None, "role": None, "permissions": None, "raw": org}
    elif "org_id" in claims:
        values = {"id": claims.get("org_id"), "slug": claims.get("org_slug"), "role": claims.get("org_role"),
                  "permissions": claims.get("org_permissions")}
    else:
        return None
    permissions = values["permissions"]
    if isinstance(permissions, str):  # v2 packs them as one comma-separated string
        values["permissions"] = [part for part in permissions.split(",") if part]
    return values


def _kind_line(decoded: DecodedToken) -> str:
    kind = _kind(decoded)
    claims = decoded.claims
    if kind == "session":
        version = claims.get("v")
        if version is None:
            return "session token (no 'v' claim: a v1 session token, deprecated by Clerk since 2025-04-14)"
        return f"session token (Clerk session token v{_show(version)})"
    if kind == "template":
        return "JWT-template token (no 'sid': not tied to a session)"
    try:
        token_kind(decoded.header, claims)
    except AuthenticationError as exc:
        return f"unclear: {exc.message}"
    return "unclear"  # pragma: no cover - token_kind either returns a kind or raises


def _description_lines(decoded: DecodedToken, now: float) -> list[str]:
    details = describe(decoded)
    lines = [f"token: {_kind_line(decoded)}"]
    cat = details["cat"]
    lines.append("  cat: (absent)" if cat is None else f"  cat: {_show(cat)} ({details['category']})")
    for name in ("sub", "sid", "azp", "sts", "v"):
        value = decoded.claims.get(name)
        lines.append(f"  {name}: {'(absent)' if value is None else _show(value)}")
    org = details["organization"]
    if org is None:
        lines.append("  org: (no active organization)")
    elif "raw" in org:
        lines.append(f"  org: {_show(org['raw'])} (not an object)")
    else:
        permissions = org["permissions"]
        shown = ", ".join(_show(p) for p in permissions) if isinstance(permissions, list) else _show(permissions)
        lines.append(f"  org: id {_show(org['id'])}, slug {_show(org['slug'])}, role {_show(org['role'])}, "
                     f"permissions {shown or '(none)'}")
    for label, key in (("plan", "plan"), ("features", "features"), ("impersonated by", "actor")):
        if details[key] is not None:
            lines.append(f"  {label}: {_show(details[key])}")
    lines.append("header: " + json.dumps(decoded.header, ensure_ascii=False))
    lines.append("claims:" if decoded.claims else "claims: (none)")
    lines += [f"  {json.dumps(name, ensure_ascii=False)}: {json.dumps(value, ensure_ascii=False)}"
              for name, value in decoded.claims.items()]
    times = _times(decoded.claims, now)
    lines.append(f"times (now {times['now']['utc']}):")
    for name in ("iat", "nbf", "exp"):
        moment = times[name]
        if moment is None:
            value = decoded.claims.get(name)
            lines.append(f"  {name}: {'(absent)' if value is None else _show(value) + ' (not a timestamp)'}")
            continue
        lines.append(f"  {name}: {moment['utc'] or moment['unix']} UTC, {moment['local'] or '?'} local "
                     f"({_relative(moment['unix'] - now, name)})")
    return lines


def _times(claims: Mapping[str, Any] | None, now: float) -> dict[str, Any]:
    times: dict[str, Any] = {"now": _instant(now)}
    for name in ("iat", "nbf", "exp"):
        times[name] = None if claims is None else _instant(claims.get(name))
    if times["exp"] is not None:
        times["exp"]["seconds_left"] = round(times["exp"]["unix"] - now)
    return times


def _instant(value: Any) -> dict[str, Any] | None:
    """``{unix, utc, local}`` for a NumericDate; ``utc``/``local`` are ``None`` beyond the calendar."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    utc: str | None = None
    local: str | None = None
    try:
        moment = datetime.fromtimestamp(value, tz=UTC)
        utc = moment.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
        local = moment.astimezone().isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        pass
    return {"unix": value, "utc": utc, "local": local}


def _relative(seconds: float, name: str) -> str:
    span = _span(seconds)
    if name == "exp":
        return f"expires in {span}" if seconds > 0 else f"expired {span} ago"
    return f"in {span}, in the future" if seconds > 0 else f"{span} ago"


def _span(seconds: float) -> str:
    total = round(abs(seconds))
    if total < 60:
        return f"{total} s"
    if total < 3600:
        return f"{total // 60} min {total % 60} s"
    if total < 86400:
        return f"{total // 3600} h {total % 3600 // 60} min"
    return f"{total // 86400} d {total % 86400 // 3600} h"


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _printable(text: str) -> str:
    """Escape what a terminal would interpret (ANSI sequences, other control characters)."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() or char == "\n" else f"\\u{ord(char):04x}" for char in text)


# -- checks without settings ------------------------------------------------------------------------


def offline_policy() -> OfflinePolicy:
    """The Clerk settings that do resolve, read from the same sources as :func:`load_settings`.

    A value that fails validation falls back to its default (its problem is already among the
    settings problems). The issuer is derived exactly as ``serve`` derives it, even when no key
    source is configured yet: the key source plays no part in that derivation.
    """
    from clerk_gateway.settings import file_defaults, validate_section
    from clerk_gateway.settings.clerk import ClerkSettings, resolve_clerk
    from clerk_gateway.settings.problems import Problems
    from clerk_gateway.settings.sources import ConfigFileError, read_config_file

    try:
        section = read_config_file().get("clerk") or {}
    except ConfigFileError:
        section = {}
    values = file_defaults(ClerkSettings, section if isinstance(section, Mapping) else {}, "CLERK_")
    loaded = validate_section(ClerkSettings, values, "CLERK_", Problems())
    if not isinstance(loaded, ClerkSettings):
        return OfflinePolicy()
    # Each derivation is the real one; a placeholder stands in for whichever of the issuer and
    # the key source is missing, since neither plays a part in deriving the other.
    with_issuer = loaded if loaded.issuer else loaded.model_copy(update={"issuer": "https://issuer.invalid"})
    keyed = resolve_clerk(with_issuer, Problems())
    key_source: str | None = None
    if keyed is not None:
        if keyed.jwt_key_pem:
            key_source = "CLERK_JWT_KEY"
        elif keyed.jwks_url:
            key_source = f"the JWKS at {keyed.jwks_url}"
        elif keyed.backend_api_jwks_url:
            key_source = f"the Backend API JWKS at {keyed.backend_api_jwks_url}"
    with_keys = loaded.model_copy(update={"jwks_url": loaded.jwks_url or "https://key-source.invalid"})
    issued = resolve_clerk(with_keys, Problems())
    return OfflinePolicy(
        issuer=None if issued is None else issued.issuer,
        authorized_parties=frozenset(loaded.authorized_parties),
        clock_skew_seconds=loaded.clock_skew_seconds,
        reject_pending=loaded.reject_pending,
        key_source=key_source,
    )


def inspect_without_settings(text: str, problems: Sequence[tuple[str, str]], *,
                             policy: OfflinePolicy | None = None,
                             clock: Callable[[], float] = time.time) -> Report:
    """Decode ``text`` and run every check that needs neither a key nor a backend."""
    now = clock()
    problems = tuple(problems)
    try:
        decoded = decode_token(text)
    except UndecodableTokenError as exc:
        return Report(configured=False, now=now, error=str(exc), settings_problems=problems, accepted=False)
    checks = offline_checks(decoded, policy if policy is not None else offline_policy(), problems, now)
    failed = any(check.status == "failed" for check in checks)
    return Report(configured=False, now=now, decoded=decoded, checks=tuple(checks), settings_problems=problems,
                  accepted=False if failed else None)


def offline_checks(decoded: DecodedToken, policy: OfflinePolicy, problems: Sequence[tuple[str, str]],
                   now: float) -> list[InspectionCheck]:
    """The checks in the verifier's order; the claim rules are the verifier's own."""
    header = decoded.header
    alg = header.get("alg")
    kid = header.get("kid")
    checks = [
        _verdict("token format", decoded.format_problem,
                 f"three base64url parts, strict JSON header and claims, {len(decoded.token)} bytes"),
        _verdict("header policy", decoded.header_problem,
                 f"alg {_show(alg)} is accepted; no {', '.join(_REFUSED_SHOWN)} or other refused member"),
        _verdict("key id", None if kid is not None else (
            "the header names no key id ('kid'); Clerk always sets one (the instance id), and only "
            "CLERK_JWT_KEY or a key set with a single key without kid could verify such a token"),
            f"kid {_show(kid)}"),
    ]
    checks += _key_checks_not_run(kid, alg, policy, problems)
    rules = ClaimRules(VerifierPolicy(
        issuer=policy.issuer or "", authorized_parties=policy.authorized_parties,
        clock_skew_seconds=policy.clock_skew_seconds, reject_pending=policy.reject_pending,
    ))
    claims = decoded.claims
    for name, rule in rules.checks:
        if name == "issuer" and policy.issuer is None:
            iss = claims.get("iss")
            said = "the token names no issuer" if iss is None else f"the token says iss {_show(iss)}"
            checks.append(InspectionCheck(name, "not-run", f"no expected issuer is configured; {said}",
                                          ISSUER_SETTINGS))
        elif name == "authorized party" and not policy.authorized_parties:
            azp = claims.get("azp")
            said = "the token names no azp" if azp is None else f"the token says azp {_show(azp)}"
            checks.append(InspectionCheck(
                name, "not-run", f"no authorized parties are configured, so azp is not checked; {said}",
                "CLERK_AUTHORIZED_PARTIES"))
        else:
            checks.append(_explained(_run(name, partial(rule, decoded.parsed, now)), claims, policy))
    checks.append(_backend_check_not_run(_kind(decoded), problems))
    return checks


def _blocking(problems: Sequence[tuple[str, str]]) -> str:
    """The variables whose problems keep the gateway from starting, for a ``not-run`` check's setting."""
    return ", ".join(sorted({variable for variable, _ in problems})) or "the settings"


def _backend_check_not_run(kind: str | None, problems: Sequence[tuple[str, str]]) -> InspectionCheck:
    if kind == "template":
        accepted_by = "only by a backend in forward mode or with token_kinds including template"
    elif kind == "session":
        accepted_by = "by every backend unless its token_kinds exclude session tokens"
    else:
        accepted_by = "by no backend, since its class is unclear"
    if any(variable.startswith("GATEWAY_BACKENDS") for variable, _ in problems):
        why, setting = "no usable backend is configured", "GATEWAY_BACKENDS"
    else:
        why, setting = "the backends are only built once the settings are complete", _blocking(problems)
    return InspectionCheck("backend token kinds", "not-run",
                           f"{why}; a {kind or 'token'} token like this one is accepted {accepted_by}", setting)


def _key_checks_not_run(kid: Any, alg: Any, policy: OfflinePolicy,
                        problems: Sequence[tuple[str, str]]) -> list[InspectionCheck]:
    """Signing key, algorithm and signature need a key; say which setting provides one."""
    wanted = f"key {_show(kid)}" if kid is not None else "a key without kid"
    if policy.key_source is None:
        why, setting = f"no key source is configured; the token asks for {wanted} ({_show(alg)})", KEY_SETTINGS
    else:
        why = (f"a key source is configured ({policy.key_source}), but the keys are only fetched once the "
               "settings are complete")
        setting = _blocking(problems)
    return [
        InspectionCheck("signing key", "not-run", why, setting),
        InspectionCheck("algorithm", "not-run", "needs the signing key", setting),
        InspectionCheck("signature", "not-run", "needs the signing key", setting),
    ]


def _explained(check: InspectionCheck, claims: Mapping[str, Any], policy: OfflinePolicy) -> InspectionCheck:
    """Add what the operator needs to a refusal whose message is written for clients (and so vague)."""
    if check.status != "failed":
        return check
    if check.name == "issuer" and policy.issuer is not None:
        return replace(check, detail=f"{check.detail}: expected {policy.issuer}, the token says "
                                     f"{_show(claims.get('iss'))}")
    if check.name == "authorized party" and policy.authorized_parties:
        allowed = ", ".join(sorted(policy.authorized_parties))
        return replace(check, detail=f"{check.detail}; CLERK_AUTHORIZED_PARTIES allows {allowed}")
    return check


def _verdict(name: str, problem: str | None, passed: str) -> InspectionCheck:
    return InspectionCheck(name, "passed", passed) if problem is None else InspectionCheck(name, "failed", problem)


def _run(name: str, rule: Callable[[], str]) -> InspectionCheck:
    try:
        return InspectionCheck(name, "passed", rule())
    except GatewayError as exc:
        return InspectionCheck(name, "failed", exc.message)
    except Exception:  # a claim of an unexpected type (the gateway refuses it in "claim types")
        return InspectionCheck(name, "failed", "cannot be checked: a claim it reads has an unexpected type")


# -- checks with settings ---------------------------------------------------------------------------


async def inspect_with_settings(settings: Settings, text: str, *,
                                clock: Callable[[], float] = time.time) -> Report:
    """What ``inspect`` always did: the real verifier's explanation, with the keys loaded."""
    from clerk_gateway.runtime import Runtime

    now = clock()
    try:
        decoded = decode_token(text)
    except UndecodableTokenError as exc:
        return Report(configured=True, now=now, error=str(exc), accepted=False)
    runtime = Runtime.build(settings)
    error: str | None = None
    try:
        await wait_for_keys(runtime)
        try:
            explained = await runtime.verifier.explain(decoded.token)
        except Exception as exc:  # explain() runs each rule on its own; one can trip on an odd claim type
            error = f"the verifier could not explain this token ({type(exc).__name__}: a claim has an odd type)"
            explained = []
    finally:
        await runtime.aclose()
    checks = tuple(_from_verifier(check) for check in explained)
    accepted = error is None and bool(checks) and all(check.status == "passed" for check in checks)
    backends = {name: frozenset(kind.value for kind in adapter.accepted_kinds)
                for name, adapter in runtime.adapters.items()}
    return Report(configured=True, now=now, decoded=decoded, error=error, checks=checks, backends=backends,
                  accepted=accepted)


def _from_verifier(check: Check) -> InspectionCheck:
    return InspectionCheck(check.name, "passed" if check.passed else "failed", check.detail)


# -- output -------------------------------------------------------------------------------------------


def exit_code(report: Report) -> int:
    """0 accepted (complete settings) or nothing failed (incomplete settings); 1 otherwise."""
    if report.decoded is None or report.error is not None:
        return 1
    if report.configured:
        return 0 if report.accepted else 1
    return 1 if any(check.status == "failed" for check in report.checks) else 0


def print_report(report: Report, *, as_json: bool = False) -> int:
    """Print the report (text, or the ``--json`` object) and return the exit status."""
    import sys

    if report.decoded is None:
        print(report.text_lines()[0], file=sys.stderr)
    if as_json:
        print(json.dumps(report.as_json(), indent=2))
    elif report.decoded is not None:
        print("\n".join(report.text_lines()))
    return exit_code(report)
