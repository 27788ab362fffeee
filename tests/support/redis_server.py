"""A throw-away ``redis-server`` on 127.0.0.1 (Debian's package, installed by
``scripts/test-tools/redis.sh``): what gateway replicas share in the tests."""

from __future__ import annotations

import shutil
import subprocess
import time

from redis import Redis as SyncRedis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from .ports import LOCALHOST, free_port
from .processes import stop_process

__all__ = ["RedisServer"]


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
