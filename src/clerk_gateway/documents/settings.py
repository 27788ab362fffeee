"""A GraphQL backend's ``documents`` field (PRODUCT.md, "Trusted documents")."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from clerk_gateway.settings.complex_values import split_list

Mode = Literal["off", "apq", "log", "enforce"]


class DocumentsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Mode = "off"
    #: Manifest files (Apollo persisted query manifests, or flat ``{id: document}`` maps).
    manifests: list[str] = Field(default_factory=list)
    #: enforce: refuse full text even when it is in a manifest (clients must send ids).
    require_id: bool = False
    #: Hasura roles (``x-hasura-role``) that may send any document, e.g. an internal admin tool.
    bypass_roles: list[str] = Field(default_factory=list)
    #: apq: how many registered documents one process keeps (least recently used go first).
    apq_cache_size: int = Field(default=10_000, ge=1, le=1_000_000)
    #: apq: largest document the store takes (a hash over a bigger one is refused, not stored).
    apq_max_document_bytes: int = Field(default=64 * 1024, ge=1024, le=4 * 1024 * 1024)

    _lists = field_validator("manifests", "bypass_roles", mode="before")(split_list)

    @field_validator("mode", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value
