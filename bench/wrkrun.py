"""Running wrk with the token-rotating Lua script and reading back its numbers.

The Lua script's ``done()`` prints a ``BENCH_JSON`` line; that line, not wrk's human summary,
is what the figures come from, so a change in wrk's text output cannot silently skew them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LUA_SCRIPT = Path(__file__).resolve().parent / "wrk" / "tokens.lua"
GRAPHQL_BODY = '{"query":"query { viewer { id } }"}'
_MARKER = "BENCH_JSON "
_DURATION = re.compile(r"^(\d+)([smh]?)$")


def parse_duration(text: str) -> int:
    """wrk's duration syntax (``15s``, ``2m``, ``1h``, bare seconds) → seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 15s, 2m)")
    value, unit = int(match.group(1)), match.group(2)
    return value * {"": 1, "s": 1, "m": 60, "h": 3600}[unit]


@dataclass(frozen=True)
class WrkResult:
    """One wrk run, in the units wrk measures (microseconds)."""

    requests: int
    duration_s: float
    errors: dict[str, int]
    latency_us: dict[str, float]
    raw_output: str

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def error_count(self) -> int:
        """Socket errors plus non-2xx/3xx answers (``status``): all of them mean a broken run."""
        return sum(self.errors.values())

    def to_json(self) -> dict[str, Any]:
        return {"requests": self.requests, "duration_s": self.duration_s, "rps": self.rps,
                "errors": self.errors, "latency_us": self.latency_us}


def parse_output(output: str) -> WrkResult:
    for line in output.splitlines():
        if line.startswith(_MARKER):
            data = json.loads(line[len(_MARKER):])
            return WrkResult(
                requests=int(data["requests"]),
                duration_s=int(data["duration_us"]) / 1e6,
                errors={key: int(value) for key, value in data["errors"].items()},
                latency_us={key: float(value) for key, value in data["latency_us"].items()},
                raw_output=output,
            )
    raise RuntimeError(f"wrk printed no {_MARKER.strip()} line:\n{output[-2000:]}")


def wrk_command(url: str, *, threads: int, connections: int, duration: str,
                timeout: str = "5s") -> list[str]:
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"the benchmark only loads 127.0.0.1, not {url!r}")
    wrk = shutil.which("wrk") or "wrk"
    return [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}", f"--timeout={timeout}",
            "--latency", "-s", str(LUA_SCRIPT), url]


def wrk_env(base: dict[str, str], tokens_file: Path, body: str | None = None) -> dict[str, str]:
    env = dict(base)
    env["BENCH_TOKENS"] = str(tokens_file)
    env["BENCH_BODY"] = body or GRAPHQL_BODY
    return env


def run_wrk(url: str, tokens_file: Path, *, threads: int, connections: int, duration: str,
            base_env: dict[str, str], log_path: Path | None = None, body: str | None = None) -> WrkResult:
    """Run wrk to completion (bounded by its own ``-d`` plus a margin) and parse its result."""
    argv = wrk_command(url, threads=threads, connections=connections, duration=duration)
    completed = subprocess.run(
        argv, env=wrk_env(base_env, tokens_file, body), capture_output=True, text=True,
        timeout=parse_duration(duration) + 60, check=False,
    )
    output = completed.stdout + completed.stderr
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(" ".join(argv) + "\n\n" + output)
    if completed.returncode != 0:
        raise RuntimeError(f"wrk exited with {completed.returncode}:\n{output[-2000:]}")
    return parse_output(output)
