"""Starting, watching and stopping the benchmark's processes (Linux, via /proc).

Why /proc rather than psutil: the two numbers the benchmark needs — CPU time and resident memory of
a process *and all its children* (uvicorn's workers, nginx's workers) — are two fields of
``/proc/<pid>/stat`` and ``/proc/<pid>/statm``; reading them keeps bench.py on the standard library.

Every process is started in a new session (its own process group), so stopping a target ends that
target's whole tree and nothing else; the group ids are also written to a file that ``run.sh``
sweeps on exit, in case bench.py itself is killed without a chance to clean up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after ``comm`` (which may itself hold spaces or parentheses)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rindex(")") + 2:].split()


def children_map() -> dict[int, list[int]]:
    """parent pid -> child pids, for every process visible right now."""
    result: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None:
            continue
        result.setdefault(int(fields[1]), []).append(int(entry))
    return result


def process_tree(root: int) -> list[int]:
    """``root`` and all its living descendants (a uvicorn supervisor and its workers, say)."""
    tree = children_map()
    found: list[int] = []
    stack = [root]
    while stack:
        pid = stack.pop()
        if _stat_fields(pid) is None:
            continue
        found.append(pid)
        stack.extend(tree.get(pid, []))
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time of the given processes (dead ones count as zero)."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            # After comm: state(0) ppid(1) … utime(11) stime(12), i.e. fields 14 and 15 of stat(5).
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (0 when it is gone)."""
    try:
        resident_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
        return 0
    return resident_pages * PAGE_SIZE


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


def role(pid: int) -> str:
    """What a process in a uvicorn tree is: a worker, or multiprocessing's resource tracker."""
    line = command_line(pid)
    if "resource_tracker" in line:
        return "resource tracker"
    if "spawn_main" in line or "multiprocessing-fork" in line:
        return "worker"
    return line.split(" ", 1)[0].rsplit("/", 1)[-1] or "?"


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (the small race until the target binds it is acceptable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Managed:
    """One started process tree (a target), with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tree(self) -> list[int]:
        return process_tree(self.pid)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the whole process group, then SIGKILL after ``grace`` seconds."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=5)
        # Workers that outlived their parent are still in the group: end them too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


@dataclass
class Supervisor:
    """Everything bench.py started; ``stop_all`` is called on every way out."""

    log_dir: Path
    pids_file: Path | None = None
    running: list[Managed] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> Managed:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        managed = Managed(name, popen, log_path)
        self.running.append(managed)
        self._write_pids()
        return managed

    def stop(self, managed: Managed) -> None:
        managed.stop()
        if managed in self.running:
            self.running.remove(managed)
        self._write_pids()

    def stop_all(self) -> None:
        for managed in reversed(list(self.running)):
            self.stop(managed)

    def _write_pids(self) -> None:
        if self.pids_file is not None:
            self.pids_file.write_text("".join(f"{m.pid}\n" for m in self.running))


def wait_until(check: Callable[[], bool], *, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False


@dataclass(frozen=True)
class HttpReply:
    status: int
    body: bytes


def http_post(url: str, body: bytes, headers: Mapping[str, str], timeout: float = 5.0) -> HttpReply:
    """One POST with the standard library; only ever used against 127.0.0.1."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"the benchmark only talks to 127.0.0.1, not {url!r}")
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HttpReply(response.status, response.read())
    except urllib.error.HTTPError as error:
        return HttpReply(error.code, error.read())


def wait_for_http(managed: Managed, url: str, body: bytes, headers: Mapping[str, str],
                  timeout: float = 60.0) -> HttpReply:
    """Poll until the target answers at all (any HTTP status), or fail with its log tail."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if not managed.alive():
            raise RuntimeError(f"{managed.name} exited with code {managed.popen.returncode}:\n"
                               f"{managed.log_tail()}")
        try:
            return http_post(url, body, headers, timeout=2.0)
        except (OSError, urllib.error.URLError) as error:
            last_error = str(error)
        time.sleep(0.2)
    raise RuntimeError(f"{managed.name} did not answer within {timeout:.0f} s ({last_error}):\n"
                       f"{managed.log_tail()}")
