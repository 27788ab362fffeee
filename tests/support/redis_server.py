"""A throw-away ``redis-server`` on 127.0.0.1 (Debian's package, installed by
``scripts/test-tools/redis.sh``): what gateway replicas share in the tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
from redis import Redis as SyncRedis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from .ports import LOCALHOST, free_port
from .processes import stop_process

__all__ = ["RedisServer", "running_redis"]


class RedisServer:
    """A throw-away ``redis-server``: no persistence, bound to 127.0.0.1, restartable on its port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://{LOCALHOST}:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        self._process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", LOCALHOST, "--save", "", "--appendonly", "no",
             "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        with SyncRedis(host=LOCALHOST, port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5,
                       retry=Retry(NoBackoff(), 0)) as probe:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise AssertionError(f"redis-server exited with {self._process.returncode}")
                try:
                    if probe.ping():
                        return
                except RedisError:
                    time.sleep(0.05)
        raise AssertionError("redis-server did not answer PING within 10 s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)

    def client(self) -> SyncRedis:
        return SyncRedis(host=LOCALHOST, port=self.port, socket_timeout=2)


@contextlib.contextmanager
def running_redis() -> Iterator[RedisServer]:
    """A started server for a test or fixture; skipped without ``redis-server`` (a failure under CI,
    which installs it)."""
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed (bash scripts/test-tools/redis.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
