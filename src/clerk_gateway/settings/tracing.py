"""Whether traces are on, read from the standard ``OTEL_*`` variables and checked at start-up.

Tracing is off unless the operator asks for it, by naming an exporter (``OTEL_TRACES_EXPORTER``)
or an OTLP endpoint. The OpenTelemetry SDK reads the remaining variables itself (service name,
resource attributes, sampler, batch processor, exporter headers and timeout) once it is on; but
the SDK answers a bad value with a warning and a silent fallback, so the values an operator is
most likely to get wrong are checked here and refused with one line naming the variable, like
every other setting. The ``OTEL_*`` variables come from the process environment only (not from
``.env`` or the config file), because that is where the SDK looks for them too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .problems import Problems

EXPORTERS = ("otlp", "console")
_SAMPLERS = frozenset({"always_on", "always_off", "traceidratio", "parentbased_always_on",
                       "parentbased_always_off", "parentbased_traceidratio"})
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")


@dataclass(frozen=True, slots=True)
class TracingConfig:
    """Traces are on: where they go. Everything else stays in the environment for the SDK."""

    exporters: tuple[str, ...]


def read_tracing(problems: Problems, environ: Mapping[str, str] | None = None) -> TracingConfig | None:
    """The tracing configuration, or None when tracing is off (the default)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    named = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint_set = any(env.get(name, "").strip() for name in _ENDPOINTS)
    if not named:
        if not endpoint_set:
            return None
        named = "otlp"  # an endpoint alone is a clear enough request for the OTLP exporter
    exporters = tuple(dict.fromkeys(part.strip() for part in named.split(",") if part.strip()))
    if "none" in exporters:
        if len(exporters) > 1:
            problems.add("OTEL_TRACES_EXPORTER", "'none' cannot be combined with other exporters")
        return None
    unknown = [name for name in exporters if name not in EXPORTERS]
    if unknown:
        problems.add("OTEL_TRACES_EXPORTER", f"{', '.join(repr(name) for name in unknown)} is not supported: "
                     "use otlp (OTLP over HTTP), console or none")
    if "otlp" in exporters:
        _check_otlp(env, problems)
    _check_sampler(env, problems)
    return TracingConfig(exporters=tuple(name for name in exporters if name in EXPORTERS))


def _check_otlp(env: Mapping[str, str], problems: Problems) -> None:
    for name in _PROTOCOLS:
        protocol = env.get(name, "").strip().lower()
        if protocol and protocol != "http/protobuf":
            problems.add(name, f"'{protocol}' is not supported: the gateway exports OTLP over HTTP "
                         "(http/protobuf, a collector's port 4318)")
    for name in _ENDPOINTS:
        endpoint = env.get(name, "").strip()
        if endpoint and not endpoint.startswith(("http://", "https://")):
            problems.add(name, "must be an http:// or https:// URL, e.g. http://otel-collector:4318")


def _check_sampler(env: Mapping[str, str], problems: Problems) -> None:
    sampler = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if sampler and sampler not in _SAMPLERS:
        problems.add("OTEL_TRACES_SAMPLER", f"'{sampler}' is not a sampler: use one of "
                     f"{', '.join(sorted(_SAMPLERS))}")
    argument = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    if argument and sampler.endswith("traceidratio"):
        try:
            ratio = float(argument)
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            problems.add("OTEL_TRACES_SAMPLER_ARG", "must be a ratio between 0 and 1, e.g. 0.1")
