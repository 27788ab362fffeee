"""``OTEL_*`` at start-up: off unless asked for, and a bad value is one line naming the variable."""

from __future__ import annotations

import pytest

from clerk_gateway.settings.problems import Problems
from clerk_gateway.settings.tracing import TracingConfig, read_tracing


def _read(**env: str) -> tuple[TracingConfig | None, list[tuple[str, str]]]:
    problems = Problems()
    return read_tracing(problems, env), problems.items


@pytest.mark.parametrize("env", [
    {},
    {"OTEL_SERVICE_NAME": "gw"},  # naming the service alone does not turn tracing on
    {"OTEL_TRACES_EXPORTER": "none"},
    {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"},
    {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "TRUE"},
])
def test_tracing_is_off_unless_an_exporter_or_endpoint_is_named(env: dict[str, str]) -> None:
    assert _read(**env) == (None, [])


@pytest.mark.parametrize(("env", "exporters"), [
    ({"OTEL_TRACES_EXPORTER": "otlp"}, ("otlp",)),
    ({"OTEL_TRACES_EXPORTER": " OTLP , console,otlp"}, ("otlp", "console")),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ("otlp",)),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://collector/v1/traces"}, ("otlp",)),
    ({"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
      "OTEL_TRACES_SAMPLER_ARG": "0.25"}, ("console",)),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, ("otlp",)),
])
def test_tracing_is_on_with_the_named_exporters(env: dict[str, str], exporters: tuple[str, ...]) -> None:
    assert _read(**env) == (TracingConfig(exporters=exporters), [])


@pytest.mark.parametrize(("env", "variable", "words"), [
    ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER", "'zipkin' is not supported"),
    ({"OTEL_TRACES_EXPORTER": "none,otlp"}, "OTEL_TRACES_EXPORTER", "cannot be combined"),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL",
     "'grpc' is not supported"),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
     "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "'http/json' is not supported"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT", "http:// or https://"),
    ({"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER",
     "'sometimes' is not a sampler"),
    ({"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
     "OTEL_TRACES_SAMPLER_ARG", "between 0 and 1"),
    ({"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "x"},
     "OTEL_TRACES_SAMPLER_ARG", "between 0 and 1"),
])
def test_a_bad_value_is_one_problem_naming_its_variable(env: dict[str, str], variable: str, words: str) -> None:
    _, problems = _read(**env)
    assert len(problems) == 1
    assert problems[0][0] == variable and words in problems[0][1]
    assert "\n" not in problems[0][1]


def test_the_loader_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert read_tracing(Problems()) == TracingConfig(exporters=("console",))
    monkeypatch.delenv("OTEL_TRACES_EXPORTER")
    assert read_tracing(Problems()) is None
