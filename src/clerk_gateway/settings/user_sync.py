"""``GATEWAY_USER_SYNC``: which backend keeps the users table and how a Clerk user maps onto it.

Validated at start-up like every other setting (one line per problem, naming the variable), so a
typo in a column name is found before the first webhook arrives rather than as a 503 loop.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

#: What a column can be filled from (PRODUCT.md, "Clerk webhooks").
Source = Literal["id", "name", "email", "first_name", "last_name", "username", "image_url", "public_metadata",
                 "created_at", "updated_at"]
SOURCES: tuple[str, ...] = Source.__args__  # type: ignore[attr-defined]

_DEFAULT_COLUMNS: dict[str, Source] = {"id": "id", "name": "name"}
_GRAPHQL_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,62}$")


class UserSyncSettings(BaseModel):
    """The sync's own fields; ``backend`` names one of ``GATEWAY_BACKENDS``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str
    #: Hasura / Nhost: the tracked table (its GraphQL root fields are ``insert_<table>_one`` …).
    table: str = "users"
    #: Hasura / Nhost: the primary-key constraint the upsert's ``on_conflict`` names; default ``<table>_pkey``,
    #: which is Postgres's own name for it unless the table was created with another, or its GraphQL name was
    #: customised (then the Postgres name and the GraphQL ``table`` differ).
    constraint: str | None = None
    #: Fauna: the collection, holding a unique ``clerk_id`` field.
    collection: str = "users"
    columns: dict[str, Source] = Field(default_factory=lambda: dict(_DEFAULT_COLUMNS))
    #: A column holding Clerk's ``updated_at`` (ms): an older event never overwrites a newer one.
    version_column: str | None = None
    delete: Literal["hard", "soft"] = "hard"
    #: With ``delete: soft``: a timestamptz (Hasura) / time (Fauna) column set when the user is deleted.
    deleted_column: str | None = None
    #: Hasura / Nhost: overrides the backend's ``admin_secret``. Fauna: the key the sync writes with.
    secret: SecretStr | None = None
    #: Seconds one write may take (Svix gives a delivery 15 s in all).
    timeout_seconds: float = Field(default=10.0, gt=0, le=14)

    @field_validator("table", "constraint", "collection", "version_column", "deleted_column")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _GRAPHQL_NAME.match(value):
            raise ValueError(f"'{value}' is not a plain name (letters, digits, _; not starting with a digit)")
        return value

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: dict[str, str]) -> dict[str, str]:
        for column in value:
            if not _GRAPHQL_NAME.match(column):
                raise ValueError(f"column '{column}' is not a plain name (letters, digits, _)")
        if list(value.values()).count("id") != 1:
            raise ValueError("exactly one column must come from 'id' (the Clerk user id, the primary key)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> UserSyncSettings:
        if self.delete == "soft" and not self.deleted_column:
            raise ValueError("delete 'soft' needs deleted_column (the column set when the user is deleted)")
        if self.delete == "hard" and self.deleted_column:
            raise ValueError("deleted_column is only used with delete 'soft'")
        taken = set(self.columns)
        for extra in (self.version_column, self.deleted_column):
            if extra is not None and extra in taken:
                raise ValueError(f"column '{extra}' is both mapped in columns and a version/deleted column")
        return self

    @property
    def id_column(self) -> str:
        return next(column for column, source in self.columns.items() if source == "id")

    @property
    def constraint_name(self) -> str:
        """The ``on_conflict`` constraint: the configured one, else Postgres's default primary-key name."""
        return self.constraint or f"{self.table}_pkey"
