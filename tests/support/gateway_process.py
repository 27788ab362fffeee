"""Starts the real gateway (``python -m clerk_gateway serve``) as a subprocess on 127.0.0.1.

End-to-end tests go through everything a deployment goes through: settings parsed from the
environment, uvicorn, the lifespan start-up (the first JWKS fetch), real sockets both ways. The
process runs in an empty temporary directory with a scrubbed environment, so a developer's
``.env`` or exported ``CLERK_*``/``GATEWAY_*`` variables cannot change what a test sees. Its output
goes to a file (a pipe nobody reads could fill up and stall the gateway), which the tests read to
check what the gateway logs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn, Self

import httpx

from .ports import LOCALHOST, free_port
from .processes import stop_process

__all__ = ["ADMIN_SECRET", "ISSUER", "GatewayProcess", "gateway_env", "hasura_backend"]

ISSUER = "https://clerk.test.local"
ADMIN_SECRET = "test-admin-secret"
_SRC = Path(__file__).resolve().parents[2] / "src"
_SCRUBBED_PREFIXES = ("CLERK_", "GATEWAY_", "HASURA_", "OTEL_")


def hasura_backend(url: str, **fields: Any) -> dict[str, Any]:
    """A Hasura backend in ``admin_secret`` mode pointing at ``url`` (fields override)."""
    backend: dict[str, Any] = {"adapter": "hasura", "url": url, "auth_mode": "admin_secret",
                               "admin_secret": ADMIN_SECRET, "timeout_seconds": 10}
    backend.update(fields)
    return backend


def gateway_env(jwks_url: str, backends: Mapping[str, Mapping[str, Any]], **extra: Any) -> dict[str, str]:
    """The environment of a gateway verifying against ``jwks_url`` and serving ``backends``.

    ``extra`` adds or overrides variables (``CLERK_JWKS_COOLDOWN_SECONDS=10``); values are
    stringified, ``None`` removes a variable.
    """
    env: dict[str, Any] = {
        "CLERK_JWKS_URL": jwks_url,
        "CLERK_ISSUER": ISSUER,
        "CLERK_JWKS_COOLDOWN_SECONDS": 0,
        "GATEWAY_BACKENDS": json.dumps(backends),
        "GATEWAY_LOG_FORMAT": "json",
        "GATEWAY_LOG_LEVEL": "info",
    }
    env.update(extra)
    return {name: str(value) for name, value in env.items() if value is not None}


class GatewayProcess:
    """One gateway subprocess. Use as a context manager, or call :meth:`start`/:meth:`stop`."""

    def __init__(self, env: Mapping[str, str], *, startup_timeout: float = 20.0) -> None:
        self.port = free_port()
        self.url = f"http://{LOCALHOST}:{self.port}"
        self._startup_timeout = startup_timeout
        self._workdir = tempfile.TemporaryDirectory(prefix="clerk-gateway-e2e-")
        self._log_path = Path(self._workdir.name) / "gateway.log"
        self._env = self._environment(env)
        self._process: subprocess.Popen[bytes] | None = None

    def _environment(self, env: Mapping[str, str]) -> dict[str, str]:
        base = {name: value for name, value in os.environ.items() if not name.startswith(_SCRUBBED_PREFIXES)}
        base.update(env)
        base.update({
            "GATEWAY_HOST": LOCALHOST,
            "GATEWAY_PORT": str(self.port),
            "PYTHONUNBUFFERED": "1",
            # the checkout's src first; then what the test added (an installed plug-in), then the caller's
            "PYTHONPATH": os.pathsep.join(p for p in (str(_SRC), env.get("PYTHONPATH", ""),
                                                      os.environ.get("PYTHONPATH", "")) if p),
            "NO_PROXY": "*",
        })
        for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            base.pop(proxy, None)
        return base

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        log = self._log_path.open("wb")
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "clerk_gateway", "serve"],
                env=self._env, cwd=self._workdir.name, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self._startup_timeout
        last_error = "no answer yet"
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    self._fail(f"the gateway exited with code {self._process.returncode} during start-up")
                try:
                    response = client.get(f"{self.url}/healthz")
                except httpx.TransportError as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
                else:
                    if response.status_code == 200:
                        return
                    last_error = f"/healthz answered {response.status_code}"
                time.sleep(0.05)
        self._fail(f"the gateway did not become healthy within {self._startup_timeout:.0f} s ({last_error})")

    def _fail(self, message: str) -> NoReturn:
        self.stop()
        output = self.stderr_text()
        self._workdir.cleanup()  # start() raising means __exit__ never runs
        raise AssertionError(f"{message}\n--- gateway output ---\n{output}")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait for a graceful exit, then SIGKILL; returns the exit code."""
        process = self._process
        if process is None:
            return None
        return stop_process(process, timeout)

    def close(self) -> None:
        self.stop()
        self._workdir.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- what tests read -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stderr_text(self) -> str:
        """Everything the gateway wrote so far (stdout and stderr, interleaved as written)."""
        try:
            return self._log_path.read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def client(self, **kwargs: Any) -> httpx.Client:
        """A client for this gateway: no proxies from the environment, no redirects followed."""
        kwargs.setdefault("timeout", 10.0)
        return httpx.Client(base_url=self.url, trust_env=False, **kwargs)
