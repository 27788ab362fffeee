"""Settings are parsed and validated once, at start-up, into typed objects.

Sources, strongest first: explicit overrides (the CLI, tests), environment variables, ``.env``,
the file named by ``GATEWAY_CONFIG_FILE``, defaults. Every problem is collected and reported as
one line naming the variable, so an operator fixes them all in one go.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from .clerk import ClerkConfig, ClerkSettings, resolve_clerk
from .complex_values import problem_message
from .gateway import GatewaySettings
from .graphql_limits import GraphQLLimitSettings
from .problems import Problems, SettingsError
from .ratelimit import RateLimitSettings, check_rate_limit
from .sources import ConfigFileError, read_config_file
from .tracing import TracingConfig, read_tracing
from .user_sync import UserSyncSettings

__all__ = ["ClerkConfig", "ClerkSettings", "GatewaySettings", "Settings", "SettingsError", "load_settings"]


@dataclass(frozen=True, slots=True)
class Settings:
    clerk: ClerkConfig
    gateway: GatewaySettings
    backends: Mapping[str, Any]  # name → validated adapter settings (see adapters.registry)
    graphql: GraphQLLimitSettings
    rate_limit: RateLimitSettings
    #: None: tracing is off (the default; see :mod:`.tracing`).
    tracing: TracingConfig | None = None
    #: GATEWAY_USER_SYNC: where the webhooks and ``backfill`` write Clerk users (None: no sync).
    user_sync: UserSyncSettings | None = None
    #: Each GraphQL backend's loaded manifests (``documents`` in log/enforce mode), read once here.
    manifests: Mapping[str, Any] = field(default_factory=dict)


def _model_problems(prefix: str, error: ValidationError, problems: Problems) -> None:
    for item in error.errors():
        path = "__".join(str(part).upper() for part in item["loc"])
        # a whole-model problem of a nested setting names the setting itself (GATEWAY_USER_SYNC)
        problems.add(f"{prefix}{path}" if path or not prefix.endswith("__") else prefix[:-2], problem_message(item))


def validate_section(model: type[Any], values: dict[str, Any], prefix: str, problems: Problems) -> Any:
    """Build the model; a field that fails is reported and replaced by its default, so that the
    remaining fields (and everything that depends on them) are still checked in the same run.

    A dict default goes in read-only (a mapping, not a ``dict``): pydantic-settings deep-merges a ``dict``
    given here with the environment's, so a bad nested ``GATEWAY_BACKENDS__X`` would survive the
    substitution and fail again on every attempt; any other value replaces the environment's whole."""
    values = dict(values)
    for _ in range(len(model.model_fields) + 1):
        try:
            return model(**values)
        except ValidationError as exc:
            _model_problems(prefix, exc, problems)
            for item in exc.errors():
                name = str(item["loc"][0]) if item["loc"] else ""
                field = model.model_fields.get(name)
                if field is None:
                    return None
                default = field.get_default(call_default_factory=True)
                values[name] = MappingProxyType(default) if isinstance(default, dict) else default
    return None


def file_defaults(settings_cls: type[Any], section: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Keys from the config file that no environment variable overrides."""
    import os

    return {
        key: value for key, value in section.items()
        if f"{prefix}{key.upper()}" not in os.environ
        and not any(name.startswith(f"{prefix}{key.upper()}__") for name in os.environ)
    }


def _check_identity_modes(backends: Mapping[str, Any], gateway: GatewaySettings, clerk: ClerkConfig | None,
                          problems: Problems) -> None:
    """What the ``mint`` and ``exchange`` modes need beyond their backend's own fields."""
    for name, backend in backends.items():
        mode = getattr(backend, "auth_mode", None)
        where = f"GATEWAY_BACKENDS__{name.upper()}__AUTH_MODE"
        if mode == "mint" and (gateway.signing_key_file and gateway.signing_key_files
                               and gateway.signing_key_file not in gateway.signing_key_files):
            problems.add("GATEWAY_SIGNING_KEY_FILE", "is not one of GATEWAY_SIGNING_KEY_FILES; with both set, "
                         "the list is the keys (the first signs), so list this file in it or unset it")
        if mode == "mint" and not (gateway.signing_key_file or gateway.signing_key_files):
            problems.add("GATEWAY_SIGNING_KEY_FILE", f"required by {where}=mint: a path on a volume, such as "
                         "/var/lib/clerk-gateway/signing-key.pem (created there when missing)")
        if mode == "exchange" and clerk is not None and not clerk.secret_key:
            problems.add("CLERK_SECRET_KEY", f"required by {where}=exchange: the gateway asks Clerk's "
                         "Backend API for the session's template token")


def _shared_redis(rate_limit: RateLimitSettings, gateway: GatewaySettings | None) -> RateLimitSettings:
    """``GATEWAY_REDIS_URL`` is the Redis replicas share: with it, the rate limits are shared too
    unless ``GATEWAY_RATE_LIMIT_BACKEND`` says otherwise, and ``GATEWAY_RATE_LIMIT_REDIS_URL``
    stays an override (a separate Redis for the limiter)."""
    if gateway is None or gateway.redis_url is None:
        return rate_limit
    update: dict[str, Any] = {}
    if rate_limit.redis_url is None:
        update["redis_url"] = gateway.redis_url
    if "backend" not in rate_limit.model_fields_set:
        update["backend"] = "redis"
    return rate_limit.model_copy(update=update) if update else rate_limit


_SYNC_ADAPTERS = ("hasura", "nhost", "fauna")


def _user_sync(gateway: GatewaySettings, backends: Mapping[str, Any], problems: Problems) -> UserSyncSettings | None:
    """GATEWAY_USER_SYNC, checked against the backend it names (which must be able to take the writes)."""
    if gateway.user_sync is None:
        return None
    sync: UserSyncSettings | None = validate_section(UserSyncSettings, dict(gateway.user_sync),
                                                     "GATEWAY_USER_SYNC__", problems)
    if sync is None:
        return None
    backend = backends.get(sync.backend)
    if backend is None:
        if sync.backend not in gateway.backends:
            problems.add("GATEWAY_USER_SYNC__BACKEND", f"'{sync.backend}' is not one of GATEWAY_BACKENDS")
        return None
    adapter = getattr(backend, "adapter", "")
    if adapter not in _SYNC_ADAPTERS:
        problems.add("GATEWAY_USER_SYNC__BACKEND", f"'{sync.backend}' uses the {adapter} adapter; the sync writes "
                     "to hasura, nhost or fauna backends")
    elif adapter == "fauna" and sync.secret is None:
        problems.add("GATEWAY_USER_SYNC__SECRET", f"required for the Fauna backend '{sync.backend}': a Fauna key "
                     "(role server) that may read and write the collection")
    elif adapter != "fauna" and sync.secret is None and getattr(backend, "admin_secret", None) is None:
        problems.add("GATEWAY_USER_SYNC__SECRET", f"the backend '{sync.backend}' has no admin_secret (its mode is "
                     f"{getattr(backend, 'auth_mode', '?')}); the sync writes with the admin secret, so set it here")
    return sync


def _manifests(backends: Mapping[str, Any], problems: Problems) -> dict[str, Any]:
    """Read every GraphQL backend's manifests now: an unreadable one stops start-up with one line."""
    from clerk_gateway.documents.manifests import ManifestError, load_manifests

    loaded: dict[str, Any] = {}
    for name, backend in backends.items():
        documents = getattr(backend, "documents", None)
        if documents is None:
            continue
        where = f"GATEWAY_BACKENDS__{name.upper()}__DOCUMENTS__MANIFESTS"
        if documents.mode in ("log", "enforce"):
            if not documents.manifests:
                problems.add(where, f"required by documents mode {documents.mode}: the manifest files your "
                             "frontend's build writes (docs/documents.md)")
                continue
            try:
                loaded[name] = load_manifests(documents.manifests)
            except ManifestError as exc:
                problems.add(where, str(exc))
        elif documents.manifests:
            problems.add(where, f"manifests are read in the log and enforce modes, not in {documents.mode}")
    return loaded


def load_settings(
    clerk_overrides: Mapping[str, Any] | None = None,
    gateway_overrides: Mapping[str, Any] | None = None,
    *,
    config_file: str | None = None,
) -> Settings:
    """Read and validate every setting; raise :class:`SettingsError` listing each problem."""
    from clerk_gateway.adapters.registry import build_backend_settings
    from clerk_gateway.edge.cors import normalize_origin

    problems = Problems()
    try:
        file_data = read_config_file(config_file)
    except ConfigFileError as exc:
        problems.add("GATEWAY_CONFIG_FILE", str(exc))
        file_data = {}

    values = file_defaults(ClerkSettings, file_data.get("clerk") or {}, "CLERK_")
    values.update(clerk_overrides or {})
    clerk_settings = validate_section(ClerkSettings, values, "CLERK_", problems)
    values = file_defaults(GatewaySettings, file_data.get("gateway") or {}, "GATEWAY_")
    values.update(gateway_overrides or {})
    gateway_settings = validate_section(GatewaySettings, values, "GATEWAY_", problems)
    values = file_defaults(GraphQLLimitSettings, file_data.get("graphql") or {}, "GATEWAY_GRAPHQL_")
    graphql_settings = validate_section(GraphQLLimitSettings, values, "GATEWAY_GRAPHQL_", problems)
    values = file_defaults(RateLimitSettings, file_data.get("rate_limit") or {}, "GATEWAY_RATE_LIMIT_")
    rate_limit = validate_section(RateLimitSettings, values, "GATEWAY_RATE_LIMIT_", problems)
    if rate_limit is not None:
        rate_limit = _shared_redis(rate_limit, gateway_settings)
        check_rate_limit(rate_limit, problems)

    clerk = resolve_clerk(clerk_settings, problems) if clerk_settings is not None else None
    backends: Mapping[str, Any] = {}
    if gateway_settings is not None:
        # a GATEWAY_BACKENDS already reported as malformed is not also "missing" or "without the default"
        backends_malformed = problems.names("GATEWAY_BACKENDS")
        backends = build_backend_settings(gateway_settings.backends, problems)
        if not gateway_settings.backends and not backends_malformed:
            problems.add("GATEWAY_BACKENDS", "no backend configured: set GATEWAY_BACKENDS to "
                         '{"hasura": {"url": "http://hasura:8080", "auth_mode": "admin_secret", …}}')
        _check_identity_modes(backends, gateway_settings, clerk, problems)
        default = gateway_settings.default_backend
        if default and default not in gateway_settings.backends and not backends_malformed:
            problems.add("GATEWAY_DEFAULT_BACKEND", f"'{default}' is not one of GATEWAY_BACKENDS")
        if "*" in gateway_settings.cors_origins:
            problems.add("GATEWAY_CORS_ORIGINS", "'*' is refused because credentials are allowed; "
                         "list the exact origins")
        else:
            for origin in gateway_settings.cors_origins:
                try:
                    normalize_origin(origin)
                except ValueError as exc:
                    problems.add("GATEWAY_CORS_ORIGINS", str(exc))
    user_sync = _user_sync(gateway_settings, backends, problems) if gateway_settings is not None else None
    manifests = _manifests(backends, problems)
    if clerk_settings is not None and clerk_settings.webhook_signing_secret and gateway_settings is not None \
            and "webhooks" in gateway_settings.backends:
        problems.add("GATEWAY_BACKENDS", "a backend named 'webhooks' would shadow POST /webhooks/clerk; rename it")
    tracing = read_tracing(problems)
    problems.raise_if_any()
    assert clerk is not None and gateway_settings is not None
    assert graphql_settings is not None and rate_limit is not None
    return Settings(clerk=clerk, gateway=gateway_settings, backends=backends, graphql=graphql_settings,
                    rate_limit=rate_limit, tracing=tracing, user_sync=user_sync,
                    manifests=MappingProxyType(manifests))
