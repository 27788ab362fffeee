"""Rate-limit settings (``GATEWAY_RATE_LIMIT_*``).

On by default, with budgets no person at a browser reaches: the per-user limit keeps one runaway
client (a render loop, a retry storm) from starving the backend for everybody, and the
auth-failure limit slows retry storms of bad tokens and forged-token floods. The auth-failure
limit is keyed on the client's address, so it runs only where that address can be trusted: a
``client_ip_header`` a proxy sets, or ``trust_peer_address`` when clients connect directly.
Behind a load balancer the socket's peer is the balancer, and one bad client would otherwise
spend everyone's budget. A gateway that lets one
client exhaust the backend is not one its users can trust; a limit a real user trips is not
either, hence the generous numbers. Each process keeps its own buckets with the ``memory``
backend (so N workers allow N times the rate); ``redis`` shares one limit across every worker and
replica.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from .complex_values import SettingsBase
from .problems import Problems

__all__ = ["RateLimitSettings", "check_rate_limit"]

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class RateLimitSettings(SettingsBase):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_RATE_LIMIT_", env_file=".env", extra="ignore")

    enabled: bool = True
    per_user_rate: float = Field(default=20.0, ge=0, le=1_000_000)
    per_user_burst: int = Field(default=200, ge=1, le=10_000_000)
    auth_failures_rate: float = Field(default=1.0, ge=0, le=1_000_000)
    auth_failures_burst: int = Field(default=100, ge=1, le=10_000_000)
    backend: Literal["memory", "redis"] = "memory"
    redis_url: SecretStr | None = None
    redis_key_prefix: str = Field(default="clerk-gateway:ratelimit:", max_length=200)
    redis_timeout_seconds: float = Field(default=0.25, gt=0, le=10)
    memory_max_keys: int = Field(default=100_000, ge=1, le=100_000_000)
    client_ip_header: str | None = None
    trust_peer_address: bool = False

    @field_validator("backend", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("client_ip_header", mode="before")
    @classmethod
    def _header_name(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().lower()
            if not value:
                return None
            if not all(ch.isalnum() or ch == "-" for ch in value):
                raise ValueError("must be a header name such as x-forwarded-for")
        return value


def check_rate_limit(settings: RateLimitSettings, problems: Problems) -> None:
    """Problems that span fields (reported like every other settings problem, one line each)."""
    if not settings.enabled or settings.backend != "redis":
        return
    url = settings.redis_url.get_secret_value() if settings.redis_url else ""
    if not url:
        problems.add("GATEWAY_RATE_LIMIT_REDIS_URL", "required when GATEWAY_RATE_LIMIT_BACKEND is redis, "
                     "e.g. redis://redis:6379/0")
    elif not url.startswith(_REDIS_SCHEMES):
        problems.add("GATEWAY_RATE_LIMIT_REDIS_URL", "must be a redis://, rediss:// or unix:// URL")
