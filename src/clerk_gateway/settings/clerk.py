"""Clerk settings (``CLERK_*``) and what they resolve to: issuer, key sources, cookie name."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from .complex_values import SettingsBase, split_list
from .problems import Problems
from .publishable_key import (
    PublishableKeyError,
    frontend_api_host,
    issuer_for,
    jwks_url_for,
    parse_publishable_key,
)


class ClerkSettings(SettingsBase):
    model_config = SettingsConfigDict(env_prefix="CLERK_", env_file=".env", extra="ignore")

    publishable_key: str | None = None
    frontend_api: str | None = None
    jwks_url: str | None = None
    issuer: str | None = None
    secret_key: SecretStr | None = None
    api_url: str = "https://api.clerk.com"
    jwt_key: SecretStr | None = None
    authorized_parties: Annotated[list[str], NoDecode] = Field(default_factory=list)
    clock_skew_seconds: float = Field(default=5, ge=0, le=300)
    reject_pending: bool = True
    jwks_cooldown_seconds: float = Field(default=10, ge=0, le=3600)
    jwks_max_stale_seconds: float = Field(default=86400, ge=0)
    #: Svix signing secrets (whsec_…), several during a rotation: enables POST /webhooks/clerk.
    webhook_signing_secret: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)

    _split = field_validator("authorized_parties", "webhook_signing_secret", mode="before")(split_list)

    @field_validator("webhook_signing_secret")
    @classmethod
    def _whsec(cls, value: list[SecretStr]) -> list[SecretStr]:
        for secret in value:
            text = secret.get_secret_value()
            body = text.removeprefix("whsec_")
            try:
                decoded = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
            except (binascii.Error, ValueError):
                decoded = b""
            if not text.startswith("whsec_") or len(decoded) < 16:
                raise ValueError("each secret must be the endpoint's whsec_… signing secret from the Clerk Dashboard "
                                 "(base64 after whsec_)")
        return value


@dataclass(frozen=True, slots=True)
class ClerkConfig:
    """Resolved Clerk settings: every derivation done once, at start-up."""

    issuer: str
    jwks_url: str | None
    backend_api_jwks_url: str | None
    secret_key: str | None
    api_url: str
    jwt_key_pem: str | None
    authorized_parties: frozenset[str]
    clock_skew_seconds: float
    reject_pending: bool
    jwks_cooldown_seconds: float
    jwks_max_stale_seconds: float
    session_cookie_names: tuple[str, ...]
    #: whsec_… secrets of the webhook endpoint; empty: no POST /webhooks/clerk.
    webhook_signing_secrets: tuple[str, ...] = ()


def resolve_clerk(settings: ClerkSettings, problems: Problems) -> ClerkConfig | None:
    host: str | None = None
    cookie_names: list[str] = []
    if settings.publishable_key:
        try:
            key = parse_publishable_key(settings.publishable_key)
        except PublishableKeyError as exc:
            problems.add("CLERK_PUBLISHABLE_KEY", str(exc))
        else:
            host = key.frontend_api
            cookie_names.append(f"__session_{key.cookie_suffix}")
    if settings.frontend_api:
        try:
            api_host = frontend_api_host(settings.frontend_api)
        except ValueError as exc:
            problems.add("CLERK_FRONTEND_API", str(exc))
        else:
            if host is not None and host != api_host:
                problems.add("CLERK_FRONTEND_API",
                             f"'{api_host}' contradicts CLERK_PUBLISHABLE_KEY, which names '{host}'")
            host = host or api_host
    cookie_names.append("__session")

    issuer = settings.issuer.rstrip("/") if settings.issuer else (issuer_for(host) if host else None)
    if settings.issuer and not settings.issuer.startswith(("https://", "http://")):
        problems.add("CLERK_ISSUER", "must be a URL such as https://clerk.example.com")
    jwks_url = settings.jwks_url or (jwks_url_for(host) if host else None)
    if settings.jwks_url and not settings.jwks_url.startswith(("https://", "http://")):
        problems.add("CLERK_JWKS_URL", "must be an http(s) URL")
    jwt_key = settings.jwt_key.get_secret_value() if settings.jwt_key else None
    if jwt_key is not None:
        jwt_key = jwt_key.replace("\\n", "\n").strip()
        if "-----BEGIN PUBLIC KEY-----" not in jwt_key:
            problems.add("CLERK_JWT_KEY", "must be a PEM public key (-----BEGIN PUBLIC KEY-----)")
        else:
            from clerk_gateway.auth.jwk import UnusableKeyError, load_pem

            try:
                load_pem(jwt_key)
            except UnusableKeyError as exc:
                problems.add("CLERK_JWT_KEY", f"the key is not usable ({exc.reason})")
    secret = settings.secret_key.get_secret_value() if settings.secret_key else None
    if secret is not None and not secret.startswith(("sk_test_", "sk_live_")):
        problems.add("CLERK_SECRET_KEY", "must start with sk_test_ or sk_live_")
    api_url = settings.api_url.rstrip("/")
    backend_jwks = f"{api_url}/v1/jwks" if secret else None

    if issuer is None:
        problems.add("CLERK_PUBLISHABLE_KEY",
                     "not set: set CLERK_PUBLISHABLE_KEY, CLERK_FRONTEND_API or CLERK_ISSUER "
                     "so tokens can be checked against their issuer")
    if jwt_key is None and jwks_url is None and backend_jwks is None:
        problems.add("CLERK_JWKS_URL",
                     "no key source: set CLERK_PUBLISHABLE_KEY, CLERK_FRONTEND_API, CLERK_JWKS_URL, "
                     "CLERK_SECRET_KEY or CLERK_JWT_KEY")
    for party in settings.authorized_parties:
        if "://" not in party or party.endswith("/"):
            problems.add("CLERK_AUTHORIZED_PARTIES",
                         f"'{party}' is not an origin such as https://app.example.com")
    if issuer is None or (jwt_key is None and jwks_url is None and backend_jwks is None):
        return None
    return ClerkConfig(
        issuer=issuer,
        jwks_url=None if jwt_key else jwks_url,
        backend_api_jwks_url=None if jwt_key else backend_jwks,
        secret_key=secret,
        api_url=api_url,
        jwt_key_pem=jwt_key,
        authorized_parties=frozenset(settings.authorized_parties),
        clock_skew_seconds=settings.clock_skew_seconds,
        reject_pending=settings.reject_pending,
        jwks_cooldown_seconds=settings.jwks_cooldown_seconds,
        jwks_max_stale_seconds=settings.jwks_max_stale_seconds,
        session_cookie_names=tuple(cookie_names),
        webhook_signing_secrets=tuple(secret.get_secret_value() for secret in settings.webhook_signing_secret),
    )
