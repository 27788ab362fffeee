"""The benchmark's results: what was measured per target, and the markdown written from it.

Kept apart from the orchestration so the table layout (which docs/performance.md explains column
by column) lives in one place and can be read without the process handling around it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wrkrun import WrkResult

MB = 1024 * 1024


@dataclass
class TargetResult:
    """One target's figures: the 64-connection load run, and optionally the 1-connection run."""

    label: str
    kind: str
    workers: int
    load: WrkResult
    cpu_seconds: float
    wall_seconds: float
    rss_bytes: int
    processes: int
    single: WrkResult | None = None

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_seconds * 1e6 / self.load.requests if self.load.requests else float("nan")

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu_seconds / self.wall_seconds if self.wall_seconds else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label, "kind": self.kind, "workers": self.workers,
            "load": self.load.to_json(), "cpu_seconds": self.cpu_seconds,
            "wall_seconds": self.wall_seconds, "cpu_us_per_request": self.cpu_us_per_request,
            "cpu_percent": self.cpu_percent, "rss_bytes": self.rss_bytes, "processes": self.processes,
            "single_connection": self.single.to_json() if self.single else None,
        }


@dataclass
class MemoryRun:
    """RSS of each gateway process, sampled while the gateway is under load."""

    label: str
    workers: int
    minutes: float
    interval_s: float
    names: dict[int, str]
    idle: dict[int, int]
    samples: list[tuple[float, dict[int, int]]] = field(default_factory=list)
    load: WrkResult | None = None

    def series(self, pid: int) -> list[int]:
        return [sample[pid] for _, sample in self.samples if sample.get(pid)]

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label, "workers": self.workers, "minutes": self.minutes,
            "interval_s": self.interval_s, "processes": {str(pid): name for pid, name in self.names.items()},
            "idle_rss_bytes": {str(pid): rss for pid, rss in self.idle.items()},
            "samples": [{"t": t, "rss_bytes": {str(pid): rss for pid, rss in sample.items()}}
                        for t, sample in self.samples],
            "load": self.load.to_json() if self.load else None,
        }


def ms(microseconds: float) -> str:
    """Milliseconds with a precision that suits the size (0.043, 1.27, 23.4)."""
    value = microseconds / 1000.0
    if value < 1:
        return f"{value:.3f}"
    if value < 10:
        return f"{value:.2f}"
    return f"{value:.1f}"


def _errors(result: WrkResult) -> str:
    if not result.error_count:
        return "0"
    parts = [f"{name} {count}" for name, count in result.errors.items() if count]
    share = 100.0 * result.error_count / max(result.requests, 1)
    return f"**{result.error_count}** ({share:.2f} %: {', '.join(parts)})"


def _rss(row: TargetResult) -> str:
    text = f"{row.rss_bytes / MB:.1f}"
    return text if row.processes == 1 else f"{text} ({row.processes} processes)"


def load_table(rows: Sequence[TargetResult], direct: TargetResult | None) -> str:
    lines = [
        "| target | workers | requests/s | ratio to direct | p50 ms | p99 ms | CPU µs/request "
        "| CPU % | RSS MB (end) | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        ratio = f"{row.load.rps / direct.load.rps:.3f}" if direct and direct.load.rps else "n/a"
        if row is direct:
            ratio = "1.000"
        lines.append(
            f"| {row.label} | {row.workers} | {row.load.rps:,.0f} | {ratio} "
            f"| {ms(row.load.latency_us['p50'])} | {ms(row.load.latency_us['p99'])} "
            f"| {row.cpu_us_per_request:,.0f} | {row.cpu_percent:.0f} "
            f"| {_rss(row)} | {_errors(row.load)} |")
    return "\n".join(lines)


def latency_table(rows: Sequence[TargetResult], direct: TargetResult | None) -> str:
    base = direct.single if direct else None
    lines = [
        "| target | workers | requests/s | p50 ms | p99 ms | added p50 ms (minus direct) "
        "| added p99 ms (minus direct) | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        single = row.single
        if single is None:
            continue
        if base is not None and row is not direct:
            added50 = ms(single.latency_us["p50"] - base.latency_us["p50"])
            added99 = ms(single.latency_us["p99"] - base.latency_us["p99"])
        else:
            added50 = added99 = "—"
        lines.append(
            f"| {row.label} | {row.workers} | {single.rps:,.0f} | {ms(single.latency_us['p50'])} "
            f"| {ms(single.latency_us['p99'])} | {added50} | {added99} | {_errors(single)} |")
    return "\n".join(lines)


def memory_table(run: MemoryRun) -> str:
    lines = [
        "| process | idle MB | start MB | max MB | end MB | end - start MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for pid, name in run.names.items():
        series = run.series(pid)
        if not series:
            continue
        start, peak, end = series[0], max(series), series[-1]
        lines.append(
            f"| {name} (pid {pid}) | {run.idle.get(pid, 0) / MB:.1f} | {start / MB:.1f} | {peak / MB:.1f} "
            f"| {end / MB:.1f} | {(end - start) / MB:+.1f} |")
    return "\n".join(lines)


def render(meta: Mapping[str, str], rows: Sequence[TargetResult], memory: MemoryRun | None,
           notes: Sequence[str]) -> str:
    direct = next((row for row in rows if row.kind == "direct"), None)
    out = [f"# clerk-gateway benchmark — {meta.get('started', '')}", ""]
    out += [f"- **{key}**: {value}" for key, value in meta.items() if key != "started"]
    out.append("")
    if notes:
        out += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    if rows:
        out += ["## Throughput under load", "",
                f"wrk `-t{meta.get('threads', '?')} -c{meta.get('connections', '?')} "
                f"-d{meta.get('duration', '?')}`; ratios are to direct (nginx) in this same run.", "",
                load_table(rows, direct), ""]
    if any(row.single for row in rows):
        out += ["## Added latency, one connection", "",
                f"wrk `-t1 -c1 -d{meta.get('duration', '?')}`: one request at a time, so the figures are "
                "the time each hop adds rather than queueing.", "", latency_table(rows, direct), ""]
    if memory is not None:
        summary = ""
        if memory.load is not None:
            summary = (f" Load: {memory.load.rps:,.0f} requests/s, p99 {ms(memory.load.latency_us['p99'])} ms, "
                       f"errors {_errors(memory.load)}.")
        out += ["## Memory under sustained load", "",
                f"{memory.label}, {memory.minutes:g} min of wrk `-t{meta.get('threads', '?')} "
                f"-c{meta.get('connections', '?')}`, RSS sampled every {memory.interval_s:g} s; idle = before "
                f"the load, start = first sample under load.{summary}", "", memory_table(memory), ""]
    return "\n".join(out)
