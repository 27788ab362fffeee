"""GraphQL document limits (``GATEWAY_GRAPHQL_*``): what the gateway refuses before Hasura sees it.

Hasura has no depth, alias or token limits of its own in the open-source edition, so one client
can send a document that costs the database far more than any real screen needs. The defaults are
in the range graphql-armor uses and leave room for real applications; every numeric limit can be
turned off with ``0``, and ``GATEWAY_GRAPHQL_LIMITS_ENABLED=false`` turns the whole check off.

Introspection (``__schema``, ``__type``; ``__typename`` is always allowed) is refused unless
``GATEWAY_GRAPHQL_ALLOW_INTROSPECTION=true`` or the request's ``x-hasura-role`` header names one of
``GATEWAY_GRAPHQL_INTROSPECTION_ROLES``. The check only reads the header: the role it names is
then validated against the caller's identity by the adapter (403 when the identity may not take
that role) or by Hasura itself, so asking for a role one does not hold gains nothing.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from .complex_values import SettingsBase, split_list


class GraphQLLimitSettings(SettingsBase):
    """Limits applied to every GraphQL route of every backend (POST bodies, batches, GET queries)."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_GRAPHQL_", env_file=".env", extra="ignore",
                                      use_attribute_docstrings=True)

    limits_enabled: bool = True
    """Master switch: ``false`` forwards every document unexamined."""

    max_depth: int = Field(default=12, ge=0)
    """Deepest nesting of fields (``{ a { b } }`` is 2), through fragments; introspection fields count 1."""

    max_aliases: int = Field(default=15, ge=0)
    """Aliased fields per operation, counted once per place a fragment is spread (alias batching)."""

    max_root_fields: int = Field(default=20, ge=0)
    """Top-level fields per operation (each one is a separate query to the database)."""

    max_tokens: int = Field(default=1000, ge=0)
    """Lexical tokens per document; counted before parsing, and counting stops at the limit."""

    max_operations: int = Field(default=3, ge=0)
    """Operation definitions per document (one of them runs, chosen by ``operationName``)."""

    max_batch: int = Field(default=10, ge=0)
    """Operations in one JSON-array (batched) request; 10 matches Apollo's BatchHttpLink default."""

    max_query_length: int = Field(default=20_000, ge=0)
    """Characters of all ``query`` strings of one request (a batch adds up), checked before any
    lexing: comments and long strings are not tokens, so this is what bounds the parsing time."""

    allow_introspection: bool = False
    """Allow ``__schema``/``__type`` for everybody (development)."""

    introspection_roles: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["admin"])
    """Comma-separated roles (``x-hasura-role`` header values) that may introspect."""

    cache_size: int = Field(default=1024, ge=0)
    """Analysed documents remembered (LRU, by digest of the text); ``0`` analyses every request."""

    _split = field_validator("introspection_roles", mode="before")(split_list)
