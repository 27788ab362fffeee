"""A throw-away PostgreSQL server for the tests: a fresh cluster in a private temporary directory, on 127.0.0.1.

The Hasura migrations (and the Clerk webhook sync that writes the ``users`` table) must be checked against a real
Postgres, not a parser: types, defaults and constraints are what the server makes of the SQL. The machines have
no container engine, so this runs Debian's own binaries (``/usr/lib/postgresql/<major>/bin``, installed by
``scripts/test-tools/postgres.sh``).

Postgres refuses to run as root, and the tests do run as root on CI: ``initdb`` and ``postgres`` are then started
as the ``postgres`` system user (created by the Debian package) through ``Popen(user=...)``, so that no ``su`` or
``runuser`` process sits between the test and the server and signals reach the server itself. The cluster directory
is created by :mod:`tempfile` (not pytest's ``tmp_path``, whose parents are private to root) and handed to that user.

Speed over durability: ``initdb --no-sync`` and ``fsync=off``; a cluster starts in about a second. Authentication
is ``trust``, which is safe only because the server listens on 127.0.0.1 and its socket directory is private.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.support.ports import LOCALHOST, free_port
from tests.support.processes import stop_process

__all__ = ["PostgresServer", "PostgresUnavailable", "PsqlError", "find_bin_dir", "unavailable_reason"]

DEBIAN_ROOT = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"
_TOOLS = ("initdb", "postgres", "psql")


class PostgresUnavailable(RuntimeError):
    """No server can be started here (no binaries, or root without a ``postgres`` user); the text says why."""


class PsqlError(RuntimeError):
    """``psql`` failed (an SQL error stops it: ``ON_ERROR_STOP``); the message is its stderr."""


def find_bin_dir() -> Path | None:
    """The newest Debian server directory that has initdb, postgres and psql, else the one holding ``initdb`` on
    PATH (other distributions), else None."""
    candidates: list[tuple[int, Path]] = []
    if DEBIAN_ROOT.is_dir():
        for child in DEBIAN_ROOT.iterdir():
            if child.name.isdigit() and all(os.access(child / "bin" / tool, os.X_OK) for tool in _TOOLS):
                candidates.append((int(child.name), child / "bin"))
    if candidates:
        return max(candidates)[1]
    initdb = shutil.which("initdb")
    if initdb and all(os.access(Path(initdb).parent / tool, os.X_OK) for tool in _TOOLS):
        return Path(initdb).parent
    return None


def _server_account() -> pwd.struct_passwd | None:
    """The account the server runs as: None to run as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam(SERVER_USER)


def unavailable_reason() -> str | None:
    """Why :class:`PostgresServer` cannot start here, or None when it can."""
    if find_bin_dir() is None:
        return ("no PostgreSQL server binaries (initdb, postgres, psql) under /usr/lib/postgresql/*/bin or on PATH "
                "(bash scripts/test-tools/postgres.sh)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root, and there is no '{SERVER_USER}' user to run the server as (Postgres refuses root)"
    return None


class PostgresServer:
    """One cluster, one server process: :meth:`start`, :meth:`psql`, :meth:`stop` (or ``with PostgresServer() as pg``).

    The superuser is ``postgres`` with no password; :attr:`dsn` is what a driver or Hasura would be given.
    """

    def __init__(self, *, bin_dir: Path | None = None, database: str = "postgres",
                 startup_timeout: float = 30.0) -> None:
        self.bin_dir = bin_dir or find_bin_dir()
        self.host = LOCALHOST
        self.port = free_port()
        self.user = SERVER_USER
        self.database = database
        self.startup_timeout = startup_timeout
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def dsn(self) -> str:
        return self.dsn_for(self.database)

    def dsn_for(self, database: str) -> str:
        """The URL of another database of this server (``postgresql://postgres@127.0.0.1:<port>/<database>``)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path | None:
        return self._dir / "postgres.log" if self._dir else None

    def start(self) -> None:
        """initdb a new cluster and start the server; returns once it answers a query."""
        if self._process is not None:
            return
        if self.bin_dir is None:
            raise PostgresUnavailable(unavailable_reason() or "no PostgreSQL binaries")
        try:
            account = _server_account()
        except KeyError:
            raise PostgresUnavailable(unavailable_reason() or f"no '{SERVER_USER}' user") from None
        self._dir = Path(tempfile.mkdtemp(prefix="clerk-gateway-pg-"))
        sockets = self._dir / "sockets"
        sockets.mkdir(mode=0o700)
        if account is not None:
            for path in (self._dir, sockets):
                os.chown(path, account.pw_uid, account.pw_gid)
        try:
            self._initdb(account)
            self._launch(account, sockets)
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Fast shutdown (SIGINT: clients are disconnected, nothing waits), then the directory is removed."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                stop_process(process)
        directory, self._dir = self._dir, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    # -- queries -----------------------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """A new, empty database (one per test keeps tests independent); returns its DSN."""
        if not name.isidentifier() or name.lower() != name:
            raise ValueError(f"{name!r}: use a lower-case identifier, so that it needs no quoting")
        self.psql(f"CREATE DATABASE {name}")
        return self.dsn_for(name)

    def drop_database(self, name: str) -> None:
        """Drop it even while sessions are still connected to it."""
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def psql(self, sql: str, *, database: str | None = None, single_transaction: bool = False,
             timeout: float = 30.0) -> str:
        """Run ``sql`` (any number of statements) with psql and return what it printed: unaligned, tuples only,
        fields separated by ``|``, one row a line, no trailing newline. Raises :class:`PsqlError` on any error."""
        assert self.bin_dir is not None
        argv = [str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", database or self.database, "-f", "-"]
        if single_transaction:
            argv.insert(1, "--single-transaction")
        result = subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=timeout, check=False,
                                env=self._environment())
        if result.returncode != 0:
            raise PsqlError(result.stderr.strip() or f"psql exited with {result.returncode}")
        return result.stdout.rstrip("\n")

    # -- internals ---------------------------------------------------------------------------------

    @staticmethod
    def _environment() -> dict[str, str]:
        """Nothing from the caller's PG* variables or locale: the cluster is the same on every machine."""
        return {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "TZ": "UTC", "PGCONNECT_TIMEOUT": "2"}

    def _initdb(self, account: pwd.struct_passwd | None) -> None:
        assert self.bin_dir is not None and self._dir is not None
        argv = [str(self.bin_dir / "initdb"), "-D", str(self._dir / "data"), "-U", self.user, "--auth=trust",
                "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"]
        result = subprocess.run(argv, cwd=self._dir, env=self._environment(), capture_output=True, text=True,
                                timeout=120, check=False, user=account.pw_uid if account else None,
                                group=account.pw_gid if account else None, extra_groups=[] if account else None)
        if result.returncode != 0:
            raise PostgresUnavailable(f"initdb failed ({result.returncode}): {result.stderr.strip()[-2000:]}")

    def _launch(self, account: pwd.struct_passwd | None, sockets: Path) -> None:
        assert self.bin_dir is not None and self._dir is not None
        argv = [str(self.bin_dir / "postgres"), "-D", str(self._dir / "data"), "-h", self.host, "-p", str(self.port),
                "-k", str(sockets), "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "max_connections=20", "-c", "log_min_messages=warning"]
        with (self._dir / "postgres.log").open("wb") as log:
            self._process = subprocess.Popen(
                argv, cwd=self._dir, env=self._environment(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, user=account.pw_uid if account else None,
                group=account.pw_gid if account else None, extra_groups=[] if account else None)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last_error = ""
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise PostgresUnavailable(f"postgres exited with {self._process.returncode}:\n{self._log_tail()}")
            try:
                if self.psql("SELECT 1", timeout=5) == "1":
                    return
            except (PsqlError, subprocess.TimeoutExpired) as error:
                last_error = str(error)
            time.sleep(0.05)
        raise PostgresUnavailable(f"postgres did not answer within {self.startup_timeout} s ({last_error}):\n"
                                  f"{self._log_tail()}")

    def _log_tail(self) -> str:
        path = self.log_path
        return path.read_text(errors="replace")[-3000:] if path and path.exists() else ""
