"""Several worker processes on one listening socket, each one draining on SIGTERM.

uvicorn's own supervisor builds a plain ``uvicorn.Server`` in each worker, so with
``GATEWAY_WORKERS`` > 1 the workers would stop with uvicorn's short graceful shutdown instead of
the gateway's drain (:mod:`clerk_gateway.drain`). This pool runs :class:`GatewayServer` in every
worker instead, and keeps the supervisor's other duties small and explicit:

- **SIGTERM**: passed on to every worker; each drains (``/readyz`` 503, ``Connection: close``,
  WebSockets 1001, in-flight work finishes within ``GATEWAY_DRAIN_SECONDS``). The pool exits 0
  once every worker has, or kills what is left after the drain and uvicorn's graceful shutdown.
- **SIGINT**: passed on; the workers stop at once (uvicorn's graceful shutdown, no drain).
- **SIGHUP**: a reload without dropping anything. Workers are replaced one at a time: a new one
  starts (reading ``.env``, ``GATEWAY_CONFIG_FILE`` and the key files again), and only once it
  serves is the old one retired (``SIGUSR1``: it stops accepting, then drains). A new worker that
  cannot start — a bad setting, say — is stopped and the old workers keep serving.
- A worker that dies is replaced; one that fails during start-up stops the pool (status 3), because
  every replacement would fail the same way.
- ``/metrics`` speaks for the whole pool: the workers share a ``PROMETHEUS_MULTIPROC_DIR``
  (:mod:`clerk_gateway.observability.metrics`), the operator's or a fresh one in ``/dev/shm`` (a
  tmpfs even under a read-only root file system) or the temporary directory; a dead worker's live
  gauges are dropped from it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event
from pathlib import Path
from types import FrameType

import uvicorn

from clerk_gateway.server import GatewayServer

__all__ = ["STARTUP_FAILURE", "WorkerPool"]

log = logging.getLogger("clerk_gateway.supervisor")

#: uvicorn's exit status for a server that could not start (and the pool's, then).
STARTUP_FAILURE = 3
#: How long a new worker may take to start serving during a reload.
READY_TIMEOUT_SECONDS = 60.0
#: After the drain, uvicorn's graceful shutdown (``timeout_graceful_shutdown``) and this margin.
_STOP_MARGIN_SECONDS = 5.0

_SPAWN = multiprocessing.get_context("spawn")
_METRICS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def _run_worker(config: uvicorn.Config, sockets: list[socket.socket], drain_seconds: float, ready: Event) -> None:
    """A worker process's whole life (module level: a spawned process imports it by name)."""
    config.configure_logging()
    from clerk_gateway.cli import load_serve_settings

    settings = load_serve_settings()
    if settings is None:  # the settings changed under a reload: one line each, no traceback
        sys.exit(STARTUP_FAILURE)
    from clerk_gateway.app import create_app

    config.app = functools.partial(create_app, settings)  # the settings just checked, not a second read
    with contextlib.suppress(KeyboardInterrupt):
        GatewayServer(config, drain_seconds=drain_seconds, on_started=ready.set).run(sockets=sockets)


@dataclass(frozen=True)
class _MetricsDirectory:
    path: str
    owned: bool  # made by the pool, so removed by it


def _shared_metrics_directory() -> _MetricsDirectory | None:
    """Point every worker at one metrics directory, emptied of what a previous run left."""
    given = os.environ.get(_METRICS_VARIABLE, "")
    if given:
        with contextlib.suppress(OSError):
            for stale in Path(given).glob("*.db"):
                stale.unlink()
        return _MetricsDirectory(given, owned=False)
    for parent in ("/dev/shm", tempfile.gettempdir()):  # noqa: S108 - mkdtemp: a fresh 0700 directory
        try:
            path = tempfile.mkdtemp(prefix="clerk-gateway-metrics-", dir=parent)
        except OSError:
            continue
        os.environ[_METRICS_VARIABLE] = path  # inherited by every worker spawned from now on
        return _MetricsDirectory(path, owned=True)
    log.warning("no writable directory for the workers' shared metrics (/dev/shm or %s): /metrics reports "
                "only the worker that answers; set %s to a writable directory", tempfile.gettempdir(),
                _METRICS_VARIABLE)
    return None


def _forget_metrics_of(pid: int) -> None:
    """A dead worker's ``live*`` gauges (open sockets, cached keys) no longer count."""
    if not os.environ.get(_METRICS_VARIABLE):
        return
    from prometheus_client import multiprocess

    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class _Worker:
    def __init__(self, config: uvicorn.Config, sock: socket.socket, drain_seconds: float) -> None:
        self.ready: Event = _SPAWN.Event()
        self.process: SpawnProcess = _SPAWN.Process(target=_run_worker, args=(config, [sock], drain_seconds,
                                                                              self.ready), daemon=False)
        self.process.start()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def signal(self, sig: int) -> None:
        if self.process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)


class WorkerPool:
    """``workers`` processes of :class:`GatewayServer` behind one socket bound by this process."""

    def __init__(self, config: uvicorn.Config, *, workers: int, drain_seconds: float) -> None:
        self.config = config
        self.size = workers
        self.drain_seconds = drain_seconds
        self._signals: list[int] = []
        self._wake = threading.Event()
        self._workers: list[_Worker] = []
        self._retiring: list[_Worker] = []

    def run(self) -> int:
        sock = self.config.bind_socket()
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        metrics_dir = _shared_metrics_directory()
        try:
            self._workers = [self._spawn(sock) for _ in range(self.size)]
            log.info("started %d worker processes", self.size, extra={"pids": [w.pid for w in self._workers]})
            while True:
                self._wake.wait(0.5)
                self._wake.clear()
                while self._signals:
                    sig = self._signals.pop(0)
                    if sig in (signal.SIGTERM, signal.SIGINT):
                        return self._stop(sig)
                    self._reload(sock)
                failed = self._replace_dead(sock)
                if failed:
                    self._stop(signal.SIGTERM)
                    return STARTUP_FAILURE
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            sock.close()
            if metrics_dir is not None and metrics_dir.owned:
                shutil.rmtree(metrics_dir.path, ignore_errors=True)

    # -- signals ---------------------------------------------------------------------------------

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self._signals.append(sig)
        self._wake.set()

    def _spawn(self, sock: socket.socket) -> _Worker:
        return _Worker(self.config, sock, self.drain_seconds)

    def _stop(self, sig: int) -> int:
        """Pass ``sig`` on to every worker and wait for them; a later signal is passed on too."""
        workers = [*self._workers, *self._retiring]
        name = signal.Signals(sig).name
        log.info("%s: stopping %d worker processes", name, len(workers))
        for worker in workers:
            worker.signal(sig)
        graceful = self.config.timeout_graceful_shutdown or 0
        deadline = time.monotonic() + (self.drain_seconds if sig == signal.SIGTERM else 0) + graceful \
            + _STOP_MARGIN_SECONDS
        while any(worker.process.is_alive() for worker in workers) and time.monotonic() < deadline:
            self._wake.wait(0.1)
            self._wake.clear()
            while self._signals:
                again = self._signals.pop(0)
                if again != signal.SIGHUP:
                    for worker in workers:
                        worker.signal(again)
        for worker in workers:
            if worker.process.is_alive():
                log.warning("worker %d did not stop in time; killed", worker.pid)
                worker.process.kill()
            worker.process.join()
        codes = [worker.process.exitcode for worker in workers]
        return 0 if all(code == 0 for code in codes) else 1

    def _reload(self, sock: socket.socket) -> None:
        """Replace every worker, one at a time, each only once its successor serves."""
        log.info("SIGHUP: replacing %d worker processes one by one", len(self._workers))
        for index, old in enumerate(list(self._workers)):
            new = self._spawn(sock)
            if not self._wait_ready(new):
                new.process.kill()
                new.process.join()
                log.error("SIGHUP: a new worker did not start (exit status %s); the running workers keep "
                          "serving and the reload stopped (see the worker's log lines above)", new.process.exitcode)
                return
            self._workers[index] = new
            old.signal(signal.SIGUSR1)
            self._retiring.append(old)
        log.info("SIGHUP: every worker replaced")

    def _wait_ready(self, worker: _Worker) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if worker.ready.wait(0.1):
                return True
            if not worker.process.is_alive():
                return False
            if any(sig != signal.SIGHUP for sig in self._signals):
                return False  # stopping wins over reloading
        return False

    def _replace_dead(self, sock: socket.socket) -> bool:
        """Reap retired workers and replace dead ones; True when one failed during start-up."""
        for worker in list(self._retiring):
            if not worker.process.is_alive():
                worker.process.join()
                _forget_metrics_of(worker.pid)
                self._retiring.remove(worker)
        for index, worker in enumerate(self._workers):
            if worker.process.is_alive():
                continue
            worker.process.join()
            _forget_metrics_of(worker.pid)
            if not worker.ready.is_set():
                log.error("worker %d failed during start-up (exit status %s); stopping", worker.pid,
                          worker.process.exitcode)
                return True
            log.warning("worker %d died (exit status %s); starting a new one", worker.pid, worker.process.exitcode)
            self._workers[index] = self._spawn(sock)
        return False
