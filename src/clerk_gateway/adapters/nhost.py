"""Nhost: Hasura behind Nhost's URLs, plus (optionally) Nhost Functions.

Nhost runs a stock Hasura, so identity works exactly as in :mod:`~clerk_gateway.adapters.hasura`
(the same four modes, the same ``x-hasura-admin-secret``, the same claim mapping and organization
variables); only the addresses and the defaults differ:

* the GraphQL endpoint is a URL of its own, ``https://<subdomain>.graphql.<region>.nhost.run/v1``
  (locally ``https://local.graphql.local.nhost.run/v1``), so ``/<name>/v1/graphql`` goes to that
  URL as it is, and nothing else of Hasura's (metadata, console, relay, REST) is reachable;
* the default roles are those of Clerk's Nhost JWT template: default ``user``, allowed ``me`` and
  ``user``;
* with ``functions: true``, ``/<name>/v1/functions/<path>`` goes to
  ``https://<subdomain>.functions.<region>.nhost.run/v1/<path>`` with the same identity headers
  the mode gives the GraphQL endpoint, so a function can trust the caller the same way.

It stays an ordinary adapter, registered under the ``clerk_gateway.adapters`` entry point like any
installed one.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar
from urllib.parse import quote

from pydantic import Field, field_validator, model_validator

from clerk_gateway.errors import MethodNotAllowedError, NotFoundError

from .base import BackendSettings, Route, http_url
from .hasura import HasuraAdapter, HasuraSettings

NHOST_ROLES = ("me", "user")
GRAPHQL_PATH = "/v1/graphql"
FUNCTIONS_PREFIX = "/v1/functions/"
FUNCTION_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# A DNS label: the subdomain and region end up in a host name, so nothing else may get in.
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Characters a function path keeps as they are; everything else is percent-encoded again (the ASGI
# path arrives decoded, and a decoded "?" or "#" must not become the upstream's query or fragment).
_PATH_SAFE = "/-._~!$&'()*+,;=:@"


def nhost_url(service: str, subdomain: str, region: str) -> str:
    """``https://<subdomain>.<service>.<region>.nhost.run/v1``, Nhost's address of a service."""
    return f"https://{subdomain}.{service}.{region}.nhost.run/v1"


class NhostSettings(HasuraSettings):
    """Hasura's fields, with the endpoint given either by ``subdomain`` + ``region`` or by ``url``
    (the GraphQL endpoint itself, for a self-hosted Nhost or a test double), never both."""

    adapter: str = "nhost"
    subdomain: str | None = None
    region: str | None = None
    allowed_roles: list[str] | None = Field(default_factory=lambda: list(NHOST_ROLES))
    functions: bool = False  # expose /<name>/v1/functions/*
    functions_url: str | None = None  # the functions endpoint (default: from subdomain + region)

    @model_validator(mode="before")
    @classmethod
    def _endpoint(cls, data: Any) -> Any:
        """Derive ``url`` before the fields are checked, so that the Hasura rules (an http(s) URL)
        apply to it either way and the contradictions are one line each."""
        if not isinstance(data, dict):
            return data
        subdomain, region, url = data.get("subdomain"), data.get("region"), data.get("url")
        if url is not None and (subdomain is not None or region is not None):
            raise ValueError("give either url (the GraphQL endpoint) or subdomain and region, not both")
        if url is not None:
            return data
        if subdomain is None and region is None:
            raise ValueError("needs subdomain and region (e.g. 'myapp' and 'eu-central-1'; 'local' and 'local' "
                             "for nhost up), or url (the GraphQL endpoint itself)")
        if subdomain is None or region is None:
            given, missing = ("subdomain", "region") if region is None else ("region", "subdomain")
            raise ValueError(f"{given} needs {missing} too (or give url, the GraphQL endpoint, instead)")
        if isinstance(subdomain, str) and isinstance(region, str):
            return {**data, "url": nhost_url("graphql", subdomain, region)}
        return data  # the field checks below report the wrong types

    @field_validator("subdomain", "region")
    @classmethod
    def _label(cls, value: str | None) -> str | None:
        if value is not None and not _LABEL.fullmatch(value):
            raise ValueError("must be a lower-case DNS label (letters, digits and '-'), as Nhost shows it")
        return value

    @field_validator("functions_url")
    @classmethod
    def _functions_url(cls, value: str | None) -> str | None:
        return http_url(value, "https://<subdomain>.functions.<region>.nhost.run/v1") if value is not None else None

    @model_validator(mode="after")
    def _nhost_consistent(self) -> NhostSettings:
        if self.expose_rest:
            raise ValueError("expose_rest is not available for Nhost: only /v1/graphql (and functions) are served")
        if self.functions_url is not None and not self.functions:
            raise ValueError("functions_url is set but functions is false; set functions: true to expose them")
        if self.functions and self.functions_endpoint() is None:
            raise ValueError("functions with an explicit url needs functions_url "
                             "(https://<subdomain>.functions.<region>.nhost.run/v1)")
        return self

    def functions_endpoint(self) -> str | None:
        """Where ``/<name>/v1/functions/*`` goes; ``None`` when it cannot be derived."""
        if self.functions_url is not None:
            return self.functions_url
        if self.subdomain is not None and self.region is not None:
            return nhost_url("functions", self.subdomain, self.region)
        return None


class NhostAdapter(HasuraAdapter):
    """The Hasura adapter with Nhost's addresses; identity, modes and caching are inherited."""

    settings_model: ClassVar[type[BackendSettings]] = NhostSettings
    graphql_paths: ClassVar[dict[str, tuple[str, ...]]] = {GRAPHQL_PATH: ("POST", "GET")}

    def __init__(self, name: str, settings: BackendSettings) -> None:
        assert isinstance(settings, NhostSettings)
        self.nhost: NhostSettings = settings
        super().__init__(name, settings)
        self._functions = settings.functions_endpoint() if settings.functions else None

    def upstream_url(self, path: str) -> str:
        """The GraphQL endpoint is ``url`` itself: Nhost serves Hasura's ``/v1/graphql`` there."""
        if path == GRAPHQL_PATH:
            return self.nhost.url
        raise NotFoundError()

    def match(self, method: str, path: str) -> Route:
        if self._functions is not None and path.startswith(FUNCTIONS_PREFIX):
            return self._function_route(method, path[len(FUNCTIONS_PREFIX) - 1:])
        return super().match(method, path)

    def _function_route(self, method: str, tail: str) -> Route:
        """A function's route: not GraphQL (errors are problem+json), and never a path that could
        step out of the functions endpoint or smuggle a query into it."""
        assert self._functions is not None
        if ".." in tail or "\\" in tail or any(ord(ch) < 0x20 or ch == "\x7f" for ch in tail):
            raise NotFoundError()
        if method not in FUNCTION_METHODS:
            raise MethodNotAllowedError(list(FUNCTION_METHODS))
        return Route(upstream_url=self._functions + quote(tail, safe=_PATH_SAFE), graphql=False)

    def probe_url(self) -> str | None:
        """A GET on the GraphQL endpoint: Nhost documents no health URL on it, and any answer
        below 500 (Hasura answers a query-less GET with a GraphQL error) shows that Nhost's
        ingress and Hasura behind it are up."""
        return self.nhost.url
