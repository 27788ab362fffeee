"""Clerk organizations in Hasura's terms (shared by the Hasura and Nhost adapters).

A Clerk session token carries the user's active organization in ``o`` (``id``, ``slg``, ``rol``,
``per``, ``fpm``). :class:`OrgPolicy` lays that organization over an identity that
:mod:`~clerk_gateway.adapters.claims` already derived, whichever way it was derived (the claims
namespace or the defaults plus ``claims_map``):

* session variables ``x-hasura-org-id``, ``-org-slug``, ``-org-role`` and, when asked for,
  ``-org-permissions`` — only added when the identity does not already have a variable of that
  name, so that a ``claims_map`` entry or a namespace claim the user wrote on purpose wins;
* ``org_roles``: an organization role can make a Hasura role the default, and every role that
  ``org_roles`` maps to is *reserved* — withheld from every token whose organization role does not
  map to it. Otherwise a plain member could simply ask for ``x-hasura-role: org_admin``.

It is a module of its own because it is a policy over identities, not a way to read claims; the
adapters apply it once per token and cache the result with the identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clerk_gateway.errors import ForbiddenError

from .claims import ClaimsError, HasuraIdentity, session_value

ORG_ID = "x-hasura-org-id"
ORG_SLUG = "x-hasura-org-slug"
ORG_ROLE = "x-hasura-org-role"
ORG_PERMISSIONS = "x-hasura-org-permissions"
ORG_VARIABLES = (ORG_ID, ORG_SLUG, ORG_ROLE, ORG_PERMISSIONS)

_ROLE_PREFIX = "org:"


def bare_org_role(role: str) -> str:
    """Clerk's role key without the ``org:`` prefix: session token v2 sends ``admin``, the
    Dashboard, v1 tokens and the SDKs say ``org:admin``; both name the same role."""
    return role.removeprefix(_ROLE_PREFIX)


@dataclass(frozen=True, slots=True)
class ActiveOrganization:
    """The ``o`` claim, read and checked once."""

    id: str
    slug: str | None
    role: str | None  # bare, see :func:`bare_org_role`
    permissions: tuple[str, ...]


def active_organization(claims: Mapping[str, Any], *, permissions: bool = True) -> ActiveOrganization | None:
    """The token's active organization, or ``None`` when it has none (``permissions=False``
    leaves ``o.per`` unread, for backends that do not send it).

    An ``o`` without an ``id`` counts as no organization (fewer privileges, never more); an ``o``
    whose members have the wrong types is refused like any other malformed claim (401
    ``jwt-invalid-claims``), since Clerk never sends one and guessing could grant too much.
    """
    org = claims.get("o")
    if org is None:
        return None
    if not isinstance(org, Mapping):
        raise ClaimsError("jwt-invalid-claims", "invalid-claims", "invalid o; should be an object")
    org_id = _text(org, "id")
    if not org_id:
        return None
    role = _text(org, "rol")
    return ActiveOrganization(id=org_id, slug=_text(org, "slg") or None,
                              role=bare_org_role(role) if role else None,
                              permissions=organization_permissions(org, claims.get("fea")) if permissions else ())


def organization_permissions(org: Mapping[str, Any], features: Any = None) -> tuple[str, ...]:
    """The member's permission keys from ``o.per``.

    ``per`` is a list, or comma-separated text as in session token v2. When ``o.fpm`` is present
    (v2's compact form: ``per`` lists permission names, ``fpm`` one bit mask per organization
    feature of the ``fea`` claim), the keys are expanded the way Clerk's SDKs do
    (``@clerk/shared`` ``jwtPayloadParser``) into ``org:<feature>:<permission>``, the keys Clerk's
    Dashboard and ``has({permission})`` use.
    """
    raw = org.get("per")
    if raw is None:
        names: list[str] = []
    elif isinstance(raw, str):
        names = [part.strip() for part in raw.split(",") if part.strip()]
    elif isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        names = [item.strip() for item in raw if item.strip()]
    else:
        raise ClaimsError("jwt-invalid-claims", "invalid-claims",
                          "invalid o.per; should be a list or comma-separated text")
    masks = org.get("fpm")
    if masks is None:
        return tuple(names)
    return _expand_feature_permissions(names, masks, features)


def _expand_feature_permissions(names: list[str], masks: Any, features: Any) -> tuple[str, ...]:
    if not isinstance(masks, str | int) or isinstance(masks, bool) or (
            features is not None and not isinstance(features, str)):
        raise ClaimsError("jwt-invalid-claims", "invalid-claims",
                          "invalid o.fpm or fea; should be comma-separated text")
    org_features = []
    for entry in (features or "").split(","):
        scope, _, feature = entry.strip().partition(":")
        if feature and "o" in scope:  # "o:feature" (organization) or "uo:feature" (both)
            org_features.append(feature)
    keys: list[str] = []
    for feature, mask_text in zip(org_features, str(masks).split(","), strict=False):
        try:
            mask = int(mask_text.strip())
        except ValueError:
            raise ClaimsError("jwt-invalid-claims", "invalid-claims",
                              "invalid o.fpm; should be comma-separated numbers") from None
        bits = format(mask, "b").zfill(len(names)) if mask >= 0 else ""
        keys.extend(f"org:{feature}:{names[index]}" for index, bit in enumerate(bits)
                    if bit == "1" and index < len(names))
    return tuple(keys)


def _text(org: Mapping[str, Any], key: str) -> str | None:
    value = org.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ClaimsError("jwt-invalid-claims", "invalid-claims", f"invalid o.{key}; should be a string")
    return value


class OrgPolicy:
    """A backend's organization settings (``org_claims``, ``org_permissions``, ``org_roles``)."""

    __slots__ = ("permissions", "reserved", "roles", "variables")

    def __init__(self, *, variables: bool = True, permissions: bool = False,
                 roles: Mapping[str, str] | None = None) -> None:
        self.variables = variables
        self.permissions = permissions
        #: Organization role (bare) → Hasura role.
        self.roles: dict[str, str] = {bare_org_role(key): value for key, value in (roles or {}).items()}
        #: The roles only a token with a matching organization role may use.
        self.reserved: frozenset[str] = frozenset(self.roles.values())

    def apply(self, identity: HasuraIdentity, claims: Mapping[str, Any]) -> HasuraIdentity:
        """``identity`` with the token's organization laid over it (the same object when nothing
        changes, so tokens without an organization cost one dictionary lookup)."""
        if not self.variables and not self.reserved:
            return identity  # the backend ignores organizations: a malformed o cannot matter
        org = active_organization(claims, permissions=self.permissions)
        if org is None and not self.reserved:
            return identity
        variables = identity.session_variables
        if org is not None and self.variables:
            present = {name for name, _ in variables}
            variables += tuple((name, value) for name, value in self._variables(org) if name not in present)
        default, allowed, withheld = identity.default_role, identity.allowed_roles, identity.withheld_roles
        if self.reserved:
            granted = self.roles.get(org.role) if org is not None and org.role else None
            default, allowed, withheld = self._roles(identity, org, granted)
        if variables is identity.session_variables and allowed is identity.allowed_roles \
                and default == identity.default_role:
            return identity
        return HasuraIdentity(default, allowed, variables, withheld_roles=withheld)

    def check_passed_role(self, requested: str, claims: Mapping[str, Any]) -> None:
        """For a role the gateway passes on unchecked (``forward`` without the claims namespace,
        ``exchange``: the backend checks it against the forwarded token's own claims), still
        refuse a reserved role the token's organization role does not map to."""
        if requested not in self.reserved:
            return
        org = active_organization(claims, permissions=False)
        if org is None or not org.role or self.roles.get(org.role) != requested:
            raise ForbiddenError("role-reserved", f"the role '{requested}' is reserved for organization roles "
                                 "that map to it")

    def _variables(self, org: ActiveOrganization) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = [(ORG_ID, session_value(ORG_ID, org.id))]
        if org.slug is not None:
            found.append((ORG_SLUG, session_value(ORG_SLUG, org.slug)))
        if org.role is not None:
            found.append((ORG_ROLE, session_value(ORG_ROLE, org.role)))
        if self.permissions:
            found.append((ORG_PERMISSIONS, session_value(ORG_PERMISSIONS, list(org.permissions))))
        return found

    def _roles(self, identity: HasuraIdentity, org: ActiveOrganization | None,
               granted: str | None) -> tuple[str, tuple[str, ...], frozenset[str]]:
        """Default role, allowed roles and withheld roles once ``org_roles`` applies.

        The mapped role must already be allowed (by ``allowed_roles``, ``claims_map`` or the
        namespace): ``org_roles`` picks among the allowed roles, it never widens them.
        """
        if granted is not None and granted not in identity.allowed_roles:
            role = org.role if org is not None else ""
            raise ForbiddenError("org-role-not-allowed",
                                 f"the organization role '{role}' maps to the role '{granted}', "
                                 "which is not in allowed roles")
        allowed = tuple(role for role in identity.allowed_roles if role not in self.reserved or role == granted)
        withheld = identity.withheld_roles | (frozenset(identity.allowed_roles) - frozenset(allowed))
        default = granted or identity.default_role
        if default not in allowed:
            raise ForbiddenError("role-reserved",
                                 f"the default role '{default}' is reserved for organization roles that map to it")
        return default, allowed, withheld
