"""Gateway settings (``GATEWAY_*``): where to listen, the backends, limits, logging."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from .complex_values import SettingsBase, split_list


class GatewaySettings(SettingsBase):
    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_", env_file=".env", env_nested_delimiter="__", extra="ignore"
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=256)
    backends: dict[str, dict[str, Any]] = Field(default_factory=dict)
    default_backend: str | None = None
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = Field(default=1024 * 1024, ge=0)
    max_header_bytes: int = Field(default=32 * 1024, ge=1024, le=1024 * 1024)
    client_header_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    client_body_timeout_seconds: float = Field(default=30.0, ge=0, le=3600)
    keep_alive_timeout_seconds: int = Field(default=30, ge=1, le=3600)
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    log_format: Literal["json", "console"] = "json"
    access_log: bool = False
    upstream_client: Literal["http1", "httpx"] = "http1"
    verified_token_cache_size: int = Field(default=10_000, ge=0)
    signing_key_file: str | None = None
    signing_key_files: Annotated[list[str], NoDecode] = Field(default_factory=list)
    issuer: str = "clerk-gateway"
    jwks_max_age_seconds: int = Field(default=300, ge=0, le=86400)
    ws_init_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    drain_seconds: float = Field(default=20.0, ge=0, le=3600)
    ws_max_message_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    ws_max_subscriptions: int = Field(default=100, ge=1, le=100_000)
    config_file: str | None = None
    #: The one Redis that replicas share: rate limits, webhook delivery ids, session revocations.
    redis_url: SecretStr | None = None
    #: GATEWAY_USER_SYNC (JSON or nested variables): validated into UserSyncSettings by the loader.
    user_sync: dict[str, Any] | None = None
    #: Largest accepted webhook body (POST /webhooks/clerk), apart from GATEWAY_MAX_BODY_BYTES.
    webhook_max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)

    _split = field_validator("cors_origins", "signing_key_files", mode="before")(split_list)

    @field_validator("log_level", "log_format", "upstream_client", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value
