"""Hasura session variables from verified Clerk claims (shared by the Hasura and Nhost adapters).

Two sources, as Hasura itself reads them: the claims namespace when the token carries it (a Clerk
JWT template or a customised session token), else the backend's defaults plus ``claims_map``.
Values are sent as Hasura reads them: strings, and arrays as Postgres literals ``{a,b}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clerk_gateway.errors import AuthenticationError, ForbiddenError

DEFAULT_ROLE = "x-hasura-default-role"
ALLOWED_ROLES = "x-hasura-allowed-roles"
USER_ID = "x-hasura-user-id"
_PATH_STEP = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


class ClaimsError(AuthenticationError):
    """The token verified but does not carry usable Hasura claims (Hasura's own codes)."""

    def __init__(self, code: str, reason: str, message: str) -> None:
        super().__init__(reason, message)
        self.code = code


@dataclass(frozen=True, slots=True)
class HasuraIdentity:
    """Who the request runs as in Hasura: the roles it may use and its session variables.

    ``withheld_roles`` are roles the backend would otherwise allow but this token may not use
    (roles reserved by ``org_roles`` for other organization roles, see
    :mod:`~clerk_gateway.adapters.orgs`); they are already left out of ``allowed_roles`` and only
    make the refusal say why.
    """

    default_role: str
    allowed_roles: tuple[str, ...]
    session_variables: tuple[tuple[str, str], ...]  # lower-case names, excluding the role claims
    withheld_roles: frozenset[str] = frozenset()
    header_bytes: tuple[tuple[bytes, bytes], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        encoded = tuple((name.encode(), value.encode()) for name, value in self.session_variables)
        object.__setattr__(self, "header_bytes", encoded)

    def as_claims(self) -> dict[str, Any]:
        """The identity as the Hasura claims namespace of a minted token (Hasura's own rules:
        ``x-hasura-default-role``, a non-empty ``x-hasura-allowed-roles``, the session variables)."""
        claims: dict[str, Any] = {DEFAULT_ROLE: self.default_role, ALLOWED_ROLES: list(self.allowed_roles)}
        claims.update(self.session_variables)
        return claims

    def select_role(self, requested: str | None) -> str:
        """The role for this request: the requested one when allowed, else the default."""
        if requested is None:
            return self.default_role
        if requested not in self.allowed_roles:
            if requested in self.withheld_roles:
                raise ForbiddenError("role-reserved", f"the role '{requested}' is reserved for members "
                                     "whose organization role maps to it")
            raise ForbiddenError("role-not-allowed", "Your requested role is not in allowed roles")
        return requested


def postgres_array(values: list[Any]) -> str:
    """Hasura reads array session variables as Postgres array literals."""
    items = []
    for value in values:
        text = value if isinstance(value, str) else json.dumps(value)
        if text == "" or any(ch in text for ch in ',{}"\\ ') or text.upper() == "NULL":
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        items.append(text)
    return "{" + ",".join(items) + "}"


def session_value(name: str, value: Any) -> str:
    text = _session_text(name, value)
    if any(ch in text for ch in "\r\n\x00"):
        raise ClaimsError("jwt-invalid-claims", "invalid-claims",
                          f"invalid {name}; session variables cannot contain line breaks")
    return text


def _session_text(name: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str | int | float) and not isinstance(item, bool)
                                       for item in value):
        return postgres_array(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    raise ClaimsError("jwt-invalid-claims", "invalid-claims",
                      f"invalid {name}; session variables must be strings or lists of strings")


def json_path(document: Any, path: str) -> tuple[bool, Any]:
    """Resolve the small JSONPath subset Hasura's ``claims_map`` uses: ``$.a.b[0]['c-d']``."""
    if not path.startswith("$"):
        return False, None
    position, current = 1, document
    while position < len(path):
        step = _PATH_STEP.match(path, position)
        if step is None:
            return False, None
        key, index, quoted, double = step.groups()
        name = key if key is not None else quoted if quoted is not None else double
        if name is not None:
            if not isinstance(current, Mapping) or name not in current:
                return False, None
            current = current[name]
        else:
            if not isinstance(current, list) or int(index) >= len(current):
                return False, None
            current = current[int(index)]
        position = step.end()
    return True, current


def _roles(claims: Mapping[str, Any], where: str) -> tuple[str, tuple[str, ...]]:
    default = claims.get(DEFAULT_ROLE)
    allowed = claims.get(ALLOWED_ROLES)
    if allowed is None:
        raise ClaimsError("jwt-missing-role-claims", "missing-role-claims",
                          f"{where} does not contain x-hasura-allowed-roles")
    if default is None:
        raise ClaimsError("jwt-missing-role-claims", "missing-role-claims",
                          f"{where} does not contain x-hasura-default-role")
    if not isinstance(allowed, list) or not allowed or not all(isinstance(r, str) and r for r in allowed):
        raise ClaimsError("jwt-invalid-claims", "invalid-claims",
                          "invalid x-hasura-allowed-roles; should be a non-empty list of roles")
    if not isinstance(default, str) or not default:
        raise ClaimsError("jwt-invalid-claims", "invalid-claims",
                          "invalid x-hasura-default-role; should be a single role name")
    return default, tuple(allowed)


def identity_from_namespace(namespace: Any) -> HasuraIdentity:
    if isinstance(namespace, str):
        try:
            namespace = json.loads(namespace)
        except ValueError:
            namespace = None
    if not isinstance(namespace, Mapping):
        raise ClaimsError("jwt-invalid-claims", "invalid-claims", "the Hasura claims namespace is not an object")
    lowered = {str(key).lower(): value for key, value in namespace.items()}
    default, allowed = _roles(lowered, "JWT claim")
    variables = tuple(
        (name, session_value(name, value)) for name, value in lowered.items()
        if name.startswith("x-hasura-") and name not in (DEFAULT_ROLE, ALLOWED_ROLES, "x-hasura-role")
    )
    return HasuraIdentity(default, allowed, variables)


def identity_from_map(
    claims: Mapping[str, Any], subject: str, default_role: str, allowed_roles: tuple[str, ...],
    claims_map: Mapping[str, Any],
) -> HasuraIdentity:
    values: dict[str, Any] = {USER_ID: subject, DEFAULT_ROLE: default_role, ALLOWED_ROLES: list(allowed_roles)}
    for name, rule in claims_map.items():
        if isinstance(rule, Mapping) and "path" in rule:
            found, value = json_path(claims, str(rule["path"]))
            if not found or value is None:
                if "default" not in rule:
                    raise ForbiddenError("claims-map-missing",
                                         f"JWT claim from claims_map, {name} not found")
                value = rule["default"]
            values[name] = value
        else:
            values[name] = rule
    default, allowed = _roles(values, "claims_map")
    variables = tuple(
        (name, session_value(name, value)) for name, value in values.items()
        if name not in (DEFAULT_ROLE, ALLOWED_ROLES, "x-hasura-role")
    )
    return HasuraIdentity(default, allowed, variables)
