"""WebSocket scale check: thousands of authenticated subscription sockets on one gateway worker.

What it measures (issue item 8), for the gateway and — in the same run, with the same clients —
for the upstream WebSocket server directly:

* **RSS per socket**: the gateway worker's resident memory (``/proc/<pid>/statm``) after a small
  warm-up and before the run, and again once all N sockets are connected *and* subscribed;
  (after - before) ÷ N. Target: under 50 KB. (Direct has no gateway process; the upstream's own
  RSS per socket is shown for both phases as a reference.)
* **Accept time**: the first ``--accept`` sockets connect with ``--concurrency`` in flight (split
  over the client processes); each opens the WebSocket, sends ``connection_init`` with
  ``payload.headers.Authorization: Bearer <token>`` (one token per simulated user) and waits for
  ``connection_ack``, then subscribes. Reported: the time from the first connect to the last ack,
  and the per-socket connect → ack latency.
* **Fan-out latency**: the upstream publishes one ``next`` event to every subscription
  (``--events`` rounds); the event carries the publish time ``t0`` and the time its own frame was
  written (``sent_at``); every client stamps the arrival with ``time.time()`` (one machine, one
  clock). Reported: p50/p99/max of arrival - ``t0`` over all sockets and rounds (what one event
  fanned out to every socket costs), the time until the last socket had it, and the per-frame
  relay latency (arrival - ``sent_at``).

Processes (each its own process group, all on 127.0.0.1, all stopped on exit, Ctrl-C, SIGTERM or
the overall ``--timeout``):

* the upstream: this file with ``--serve-upstream PORT`` — a ``graphql-transport-ws`` server on the
  ``websockets`` library standing in for Hasura's ``/v1/graphql`` socket: acks ``connection_init``
  (and counts which ones carried the gateway's admin-secret identity), records ``subscribe``s,
  answers ``ping``; plain HTTP on the same port: ``GET /healthz``, ``GET /stats``,
  ``GET /publish?round=N`` (publishes one event to every subscription, answers when all are sent);
* the gateway: ``python -m clerk_gateway serve``, ``GATEWAY_WORKERS=1``, ``CLERK_JWT_KEY`` (a fresh
  RSA key, tokens from ``make_tokens.py``), one ``hasura`` backend in ``admin_secret`` mode pointing
  at the upstream, ``GATEWAY_RATE_LIMIT_ENABLED=false`` (thousands of connects from 127.0.0.1),
  ``GATEWAY_LOG_LEVEL=warning``; everything else at its defaults;
* ``--clients`` load processes: this file with ``--client``, each holding its share of the sockets
  (asyncio + ``websockets``), driven over stdin/stdout with JSON lines.

Usage::

    .venv/bin/python bench/ws_scale.py                      # 2000 sockets, accept 1000, 5 events
    .venv/bin/python bench/ws_scale.py --sockets 500 --accept 250 --events 3
    .venv/bin/python bench/ws_scale.py --compression none   # clients that do not offer permessage-deflate
    bash bench/run.sh --ws-scale [the same flags]

``--compression deflate`` (the default) makes the clients offer ``permessage-deflate`` as browsers
do; the gateway (uvicorn) accepts it, the upstream — like Hasura by default — does not. The report
is printed and written to ``bench/results/<UTC timestamp>-ws-scale.md`` with the raw figures in
``…-ws-scale.json``; process logs are in ``bench/.work/logs/ws-*.log``. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import select
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
WORK = BENCH_DIR / ".work"
RESULTS = BENCH_DIR / "results"
ISSUER = "https://clerk.bench.local"
ADMIN_SECRET = "bench"
SUBPROTOCOL = "graphql-transport-ws"
SUBSCRIPTION = "subscription { events { round t0 sent_at } }"
RSS_TARGET_KB = 50.0
WARMUP_SOCKETS = 50


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raise RLIMIT_NOFILE's soft limit towards the hard one; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _loads(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _install_uvloop() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


# ================================================================================================
# The upstream: a graphql-transport-ws server standing in for Hasura's /v1/graphql socket.
# ================================================================================================


class Upstream:
    def __init__(self) -> None:
        self.connections = 0
        self.inits_admin = 0  # connection_init carrying the gateway's admin-secret identity
        self.inits_bearer = 0  # connection_init carrying the client's own bearer token (direct)
        self.inits_other = 0
        self.subscriptions: dict[tuple[Any, str], None] = {}
        self.published = 0

    def stats(self) -> dict[str, Any]:
        return {"connections": self.connections, "subscriptions": len(self.subscriptions),
                "inits_admin": self.inits_admin, "inits_bearer": self.inits_bearer,
                "inits_other": self.inits_other, "published": self.published}

    def classify(self, payload: Any) -> None:
        headers = payload.get("headers") if isinstance(payload, dict) else None
        headers = {str(k).lower(): v for k, v in headers.items()} if isinstance(headers, dict) else {}
        if headers.get("x-hasura-admin-secret") == ADMIN_SECRET and headers.get("x-hasura-user-id") \
                and headers.get("x-hasura-role"):
            self.inits_admin += 1
        elif str(headers.get("authorization", "")).startswith("Bearer "):
            self.inits_bearer += 1
        else:
            self.inits_other += 1

    async def handler(self, conn: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        self.connections += 1
        mine: list[tuple[Any, str]] = []
        try:
            try:
                first = await asyncio.wait_for(conn.recv(), 30)
            except TimeoutError:
                await conn.close(4408, "Connection initialisation timeout")
                return
            message = _loads(first)
            if not isinstance(message, dict) or message.get("type") != "connection_init":
                await conn.close(4400, "expected connection_init")
                return
            self.classify(message.get("payload"))
            await conn.send('{"type":"connection_ack"}')
            async for raw in conn:
                message = _loads(raw)
                if not isinstance(message, dict):
                    continue
                kind = message.get("type")
                if kind == "subscribe" and isinstance(message.get("id"), str):
                    key = (conn, message["id"])
                    self.subscriptions[key] = None
                    mine.append(key)
                elif kind == "complete" and isinstance(message.get("id"), str):
                    self.subscriptions.pop((conn, message["id"]), None)
                elif kind == "ping":
                    await conn.send('{"type":"pong"}')
        except ConnectionClosed:
            pass
        finally:
            for key in mine:
                self.subscriptions.pop(key, None)
            self.connections -= 1

    async def publish(self, round_no: int) -> dict[str, Any]:
        """One ``next`` to every subscription, each frame stamped with the time it is written."""
        from websockets.exceptions import ConnectionClosed

        targets = list(self.subscriptions)
        t0 = time.time()
        sent = failed = 0
        for conn, operation in targets:
            frame = (f'{{"id":{json.dumps(operation)},"type":"next","payload":{{"data":{{"events":'
                     f'{{"round":{round_no},"t0":{t0!r},"sent_at":{time.time()!r}}}}}}}}}')
            try:
                await conn.send(frame)
                sent += 1
            except ConnectionClosed:
                failed += 1
        self.published += 1
        return {"round": round_no, "t0": t0, "t_end": time.time(), "sent": sent, "failed": failed}

    async def process_request(self, conn: Any, request: Any) -> Any:
        from http import HTTPStatus

        path, _, query = request.path.partition("?")
        if path == "/healthz":
            return conn.respond(HTTPStatus.OK, "ok\n")
        if path == "/stats":
            return conn.respond(HTTPStatus.OK, json.dumps(self.stats()) + "\n")
        if path == "/publish":
            params = dict(part.partition("=")[::2] for part in query.split("&") if part)
            result = await self.publish(int(params.get("round", "0") or 0))
            return conn.respond(HTTPStatus.OK, json.dumps(result) + "\n")
        if path in ("/v1/graphql", "/v1alpha1/graphql"):
            return None
        return conn.respond(HTTPStatus.NOT_FOUND, "not found\n")


async def serve_upstream(port: int) -> None:
    from websockets.asyncio.server import serve

    upstream = Upstream()
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def stopping() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stopping)
    async with serve(upstream.handler, "127.0.0.1", port, subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                     process_request=upstream.process_request, ping_interval=None, compression=None,
                     max_size=1024 * 1024, backlog=4096, server_header=None, open_timeout=60):
        print(f"upstream: listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        await stop


# ================================================================================================
# A load process: holds many client sockets, driven by JSON lines on stdin/stdout.
# ================================================================================================


class ClientSocket:
    __slots__ = ("closed", "conn", "index", "received")

    def __init__(self, index: int) -> None:
        self.index = index
        self.conn: Any = None
        self.received: list[tuple[int, float, float, float]] = []  # round, arrival, t0, sent_at
        self.closed: str | None = None


class LoadClient:
    def __init__(self, compression: str) -> None:
        self.compression = compression
        self.sockets: list[ClientSocket] = []
        self.readers: list[asyncio.Task[None]] = []
        self.counts: dict[int, int] = {}
        self.unexpected_closes: dict[str, int] = {}

    async def _open(self, url: str, token: str, index: int, timeout: float) -> tuple[ClientSocket, float, float]:
        from websockets.asyncio.client import connect

        sock = ClientSocket(index)
        started = time.time()
        conn = await asyncio.wait_for(connect(
            url, subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            compression="deflate" if self.compression == "deflate" else None,
            open_timeout=timeout, ping_interval=None, close_timeout=5, max_size=1024 * 1024,
            user_agent_header=None), timeout)
        sock.conn = conn
        try:
            await conn.send(json.dumps({"type": "connection_init",
                                        "payload": {"headers": {"Authorization": f"Bearer {token}"}}}))
            while True:
                raw = await asyncio.wait_for(conn.recv(), timeout)
                message = _loads(raw)
                if isinstance(message, dict) and message.get("type") == "connection_ack":
                    break
            acked = time.time()
            await conn.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION}}))
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)
            raise
        return sock, started, acked

    async def _read(self, sock: ClientSocket) -> None:
        from websockets.exceptions import ConnectionClosed

        conn = sock.conn
        try:
            async for raw in conn:
                arrival = time.time()
                message = _loads(raw)
                if not isinstance(message, dict) or message.get("type") != "next":
                    continue
                try:
                    event = message["payload"]["data"]["events"]
                    round_no = int(event["round"])
                    sock.received.append((round_no, arrival, float(event["t0"]), float(event["sent_at"])))
                except (KeyError, TypeError, ValueError):
                    continue
                self.counts[round_no] = self.counts.get(round_no, 0) + 1
        except ConnectionClosed:
            pass
        if sock.closed is None:
            code = conn.close_code
            reason = conn.close_reason or ""
            sock.closed = f"closed {code} {reason}".strip()
            self.unexpected_closes[sock.closed] = self.unexpected_closes.get(sock.closed, 0) + 1

    async def connect(self, command: dict[str, Any]) -> dict[str, Any]:
        url: str = command["url"]
        tokens: list[str] = command["tokens"]
        first: int = command["first_index"]
        timeout = float(command.get("timeout", 30.0))
        gate = asyncio.Semaphore(max(1, int(command["concurrency"])))
        errors: dict[str, int] = {}
        extensions: dict[str, int] = {}
        starts: list[float] = []
        acks: list[float] = []
        latencies: list[float] = []

        async def one(offset: int, token: str) -> None:
            async with gate:
                try:
                    sock, started, acked = await self._open(url, token, first + offset, timeout)
                except Exception as exc:  # a failed connection is a result, not a crash
                    name = type(exc).__name__
                    code = getattr(getattr(exc, "rcvd", None), "code", None)  # a close frame
                    if code is None:
                        code = getattr(getattr(exc, "response", None), "status_code", None)  # HTTP refusal
                    key = f"{name} {code}" if code is not None else f"{name} {exc}"[:120]
                    errors[key] = errors.get(key, 0) + 1
                    return
            self.sockets.append(sock)
            self.readers.append(asyncio.create_task(self._read(sock)))
            starts.append(started)
            acks.append(acked)
            latencies.append(acked - started)
            negotiated = ",".join(ext.name for ext in sock.conn.protocol.extensions) or "none"
            extensions[negotiated] = extensions.get(negotiated, 0) + 1

        phase_start = time.time()
        await asyncio.gather(*(one(offset, token) for offset, token in enumerate(tokens)))
        return {"ok": len(acks), "failed": sum(errors.values()), "errors": errors, "phase_start": phase_start,
                "first_start": min(starts) if starts else None, "first_ack": min(acks) if acks else None,
                "last_ack": max(acks) if acks else None, "latencies": latencies,
                "extensions": extensions}

    def report(self) -> dict[str, Any]:
        rounds: dict[str, list[list[float]]] = {}
        for sock in self.sockets:
            for round_no, arrival, t0, sent_at in sock.received:
                rounds.setdefault(str(round_no), []).append([arrival - t0, arrival - sent_at, arrival])
        return {"rounds": rounds, "open": sum(1 for s in self.sockets if s.closed is None),
                "unexpected_closes": self.unexpected_closes}

    async def close(self, concurrency: int = 200) -> dict[str, Any]:
        gate = asyncio.Semaphore(concurrency)

        async def one(sock: ClientSocket) -> None:
            if sock.closed is None:
                sock.closed = "closed by client"
            async with gate:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(sock.conn.close(), 10)

        await asyncio.gather(*(one(sock) for sock in self.sockets))
        for task in self.readers:
            task.cancel()
        closed = len(self.sockets)
        self.sockets.clear()
        self.readers.clear()
        self.counts.clear()
        return {"closed": closed}


async def run_client(compression: str) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    client = LoadClient(compression)

    def answer(value: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()

    answer({"ready": True, "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0]})
    while True:
        line = await reader.readline()
        if not line:
            break
        command = json.loads(line)
        kind = command.get("cmd")
        if kind == "connect":
            answer(await client.connect(command))
        elif kind == "count":
            answer({"received": client.counts.get(int(command["round"]), 0),
                    "open": sum(1 for s in client.sockets if s.closed is None)})
        elif kind == "report":
            answer(client.report())
        elif kind == "close":
            answer(await client.close())
        elif kind == "exit":
            answer({"bye": True})
            break
        else:
            answer({"error": f"unknown command {kind!r}"})


# ================================================================================================
# The orchestrator.
# ================================================================================================


class Interrupted(Exception):
    pass


class ClientProcess:
    """One load process and its JSON-lines channel (reads with a deadline, never a hang)."""

    def __init__(self, managed: Any) -> None:
        self.managed = managed
        self.popen: subprocess.Popen[bytes] = managed.popen
        self._buffer = b""

    def send(self, command: dict[str, Any]) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write((json.dumps(command) + "\n").encode())
        self.popen.stdin.flush()

    def recv(self, timeout: float) -> dict[str, Any]:
        assert self.popen.stdout is not None
        fd = self.popen.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"{self.managed.name} did not answer within {timeout:.0f} s:\n"
                                   f"{self.managed.log_tail()}")
            ready, _, _ = select.select([fd], [], [], min(remaining, 1.0))
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"{self.managed.name} exited ({self.popen.poll()}):\n"
                                       f"{self.managed.log_tail()}")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        value: dict[str, Any] = json.loads(line)
        return value

    def ask(self, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.send(command)
        return self.recv(timeout)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"the benchmark only talks to 127.0.0.1, not {url!r}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_http(managed: Any, url: str, timeout: float, want: int | None = 200) -> int:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not managed.alive():
            raise RuntimeError(f"{managed.name} exited with code {managed.popen.returncode}:\n{managed.log_tail()}")
        try:
            status, _ = http_get(url, timeout=2.0)
            if want is None or status == want:
                return status
            last = f"HTTP {status}"
        except (OSError, urllib.error.URLError) as error:
            last = str(error)
        time.sleep(0.2)
    raise RuntimeError(f"{managed.name}: {url} not {want} within {timeout:.0f} s ({last}):\n{managed.log_tail()}")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def _python() -> str:
    candidate = ROOT / ".venv" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


class Scale:
    def __init__(self, args: argparse.Namespace) -> None:
        sys.path.insert(0, str(BENCH_DIR))
        import procs
        import targets

        self.procs = procs
        self.targets = targets
        self.args = args
        self.logs = WORK / "logs"
        self.supervisor = procs.Supervisor(self.logs, args.pids_file)
        self.notes: list[str] = []
        self.phases: dict[str, dict[str, Any]] = {}
        self.env = targets.clean_env()
        self.tokens: list[str] = []
        self.public_pem = ""

    # -- processes ---------------------------------------------------------------------------------

    def start_upstream(self, label: str) -> tuple[Any, int]:
        port = self.procs.free_port()
        managed = self.supervisor.start(f"ws-upstream-{label}", [_python(), __file__, "--serve-upstream", str(port)],
                                        env=self.env, cwd=WORK)
        wait_http(managed, f"http://127.0.0.1:{port}/healthz", 30)
        return managed, port

    def start_gateway(self, upstream_port: int) -> tuple[Any, int]:
        port = self.procs.free_port()
        env = dict(self.env)
        env.update({
            "CLERK_JWT_KEY": self.public_pem,
            "CLERK_ISSUER": ISSUER,
            "GATEWAY_BACKENDS": json.dumps({"hasura": {"url": f"http://127.0.0.1:{upstream_port}",
                                                       "auth_mode": "admin_secret", "admin_secret": ADMIN_SECRET}}),
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(port),
            "GATEWAY_WORKERS": "1",
            "GATEWAY_RATE_LIMIT_ENABLED": "false",
            "GATEWAY_LOG_LEVEL": "warning",
        })
        env.update(dict(self.args.gateway_env))
        # cwd bench/.work: a developer's .env in the repository root is not read.
        managed = self.supervisor.start("ws-gateway", [_python(), "-m", "clerk_gateway", "serve"], env=env, cwd=WORK)
        wait_http(managed, f"http://127.0.0.1:{port}/healthz", 60)
        try:
            wait_http(managed, f"http://127.0.0.1:{port}/readyz", 30)
        except RuntimeError as error:
            self.notes.append(f"WARNING: the gateway's /readyz did not answer 200: {str(error).splitlines()[0]}")
        return managed, port

    def start_clients(self, label: str) -> list[ClientProcess]:
        clients: list[ClientProcess] = []
        for number in range(self.args.clients):
            log_path = self.logs / f"ws-client-{label}-{number}.log"
            self.logs.mkdir(parents=True, exist_ok=True)
            with log_path.open("wb") as log:
                popen = subprocess.Popen(
                    [_python(), __file__, "--client", "--compression", self.args.compression],
                    env=self.env, cwd=WORK, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                    start_new_session=True)
            managed = self.procs.Managed(f"ws-client-{label}-{number}", popen, log_path)
            self.supervisor.running.append(managed)
            self.supervisor._write_pids()
            client = ClientProcess(managed)
            hello = client.recv(30)
            if not hello.get("ready"):
                raise RuntimeError(f"{managed.name}: unexpected greeting {hello!r}")
            clients.append(client)
        return clients

    def stop_clients(self, clients: list[ClientProcess]) -> None:
        for client in clients:
            with contextlib.suppress(Exception):
                client.ask({"cmd": "close"}, 60)
            with contextlib.suppress(Exception):
                client.ask({"cmd": "exit"}, 10)
            self.supervisor.stop(client.managed)

    # -- steps -------------------------------------------------------------------------------------

    def connect(self, clients: list[ClientProcess], url: str, tokens: list[str], first_index: int,
                concurrency: int) -> dict[str, Any]:
        """Connect ``tokens`` (one socket each), split evenly over the clients, all at once."""
        share = -(-len(tokens) // len(clients))
        asked: list[ClientProcess] = []
        for number, client in enumerate(clients):
            part = tokens[number * share:(number + 1) * share]
            if not part:
                continue
            client.send({"cmd": "connect", "url": url, "tokens": part, "first_index": first_index + number * share,
                         "concurrency": max(1, concurrency // len(clients)), "timeout": self.args.connect_timeout})
            asked.append(client)
        budget = self.args.connect_timeout * (len(tokens) / max(1, concurrency) + 2) + 60
        answers = [client.recv(budget) for client in asked]
        errors: dict[str, int] = {}
        extensions: dict[str, int] = {}
        for answer in answers:
            for key, count in answer["errors"].items():
                errors[key] = errors.get(key, 0) + count
            for key, count in answer["extensions"].items():
                extensions[key] = extensions.get(key, 0) + count
        firsts = [a["first_start"] for a in answers if a["first_start"] is not None]
        lasts = [a["last_ack"] for a in answers if a["last_ack"] is not None]
        latencies = [value for a in answers for value in a["latencies"]]
        return {
            "asked": len(tokens), "ok": sum(a["ok"] for a in answers), "failed": sum(a["failed"] for a in answers),
            "errors": errors, "extensions": extensions, "concurrency": max(1, concurrency // len(clients)) * len(asked),
            "seconds": (max(lasts) - min(a["phase_start"] for a in answers)) if lasts else float("nan"),
            "first_to_last_ack": (max(lasts) - min(a["first_ack"] for a in answers if a["first_ack"])) if lasts
            else float("nan"),
            "first_start": min(firsts) if firsts else None,
            "ack_p50_ms": percentile(latencies, 50) * 1e3, "ack_p99_ms": percentile(latencies, 99) * 1e3,
            "ack_max_ms": max(latencies) * 1e3 if latencies else float("nan"),
        }

    def upstream_stats(self, port: int) -> dict[str, Any]:
        status, body = http_get(f"http://127.0.0.1:{port}/stats", timeout=10)
        if status != 200:
            raise RuntimeError(f"upstream /stats answered {status}")
        value: dict[str, Any] = json.loads(body)
        return value

    def wait_subscriptions(self, port: int, wanted: int, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        stats = self.upstream_stats(port)
        while stats["subscriptions"] < wanted and time.monotonic() < deadline:
            time.sleep(0.2)
            stats = self.upstream_stats(port)
        return stats

    def wait_connections(self, port: int, at_most: int, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        stats = self.upstream_stats(port)
        while stats["connections"] > at_most and time.monotonic() < deadline:
            time.sleep(0.2)
            stats = self.upstream_stats(port)
        return stats

    def fan_out(self, clients: list[ClientProcess], upstream_port: int, label: str, round_no: int,
                gateway: Any | None) -> dict[str, Any]:
        cpu_before = self.procs.cpu_seconds(gateway.tree()) if gateway is not None else 0.0
        status, body = http_get(f"http://127.0.0.1:{upstream_port}/publish?round={round_no}", timeout=120)
        if status != 200:
            raise RuntimeError(f"upstream /publish answered {status}")
        published: dict[str, Any] = json.loads(body)
        deadline = time.monotonic() + self.args.event_timeout
        received = 0
        while time.monotonic() < deadline:
            received = sum(client.ask({"cmd": "count", "round": round_no}, 30)["received"] for client in clients)
            if received >= published["sent"]:
                break
            time.sleep(0.05)
        published["received"] = received
        if gateway is not None:
            published["gateway_cpu_s"] = self.procs.cpu_seconds(gateway.tree()) - cpu_before
        if received < published["sent"]:
            self.notes.append(f"WARNING: {label} round {round_no}: {published['sent'] - received} of "
                              f"{published['sent']} events did not arrive within {self.args.event_timeout:g} s")
        return published

    def phase(self, label: str) -> dict[str, Any]:
        args = self.args
        procs = self.procs
        print(f"ws_scale: {label}: starting", file=sys.stderr, flush=True)
        upstream, upstream_port = self.start_upstream(label)
        gateway = None
        result: dict[str, Any] = {"label": label}
        clients: list[ClientProcess] = []
        try:
            if label == "gateway":
                gateway, gateway_port = self.start_gateway(upstream_port)
                url = f"ws://127.0.0.1:{gateway_port}/hasura/v1/graphql"
                if len(gateway.tree()) != 1:
                    self.notes.append(f"WARNING: the gateway runs {len(gateway.tree())} processes; expected 1")
            else:
                url = f"ws://127.0.0.1:{upstream_port}/v1/graphql"
            clients = self.start_clients(label)
            pid = gateway.pid if gateway is not None else None
            result["rss_idle"] = procs.rss_bytes(pid) if pid else None
            result["upstream_rss_idle"] = procs.rss_bytes(upstream.pid)

            # Warm-up: a few sockets through the whole path (and one event), closed again, so that
            # one-time costs (lazy imports, first allocations) are not charged to the run's sockets.
            warm_tokens = self.tokens[:WARMUP_SOCKETS]
            warm = self.connect(clients[:1], url, warm_tokens, 0, min(args.concurrency, WARMUP_SOCKETS))
            self.wait_subscriptions(upstream_port, warm["ok"], 30)
            self.fan_out(clients[:1], upstream_port, f"{label} warm-up", 0, None)
            clients[0].ask({"cmd": "close"}, 60)
            self.wait_connections(upstream_port, 0)
            time.sleep(1.0)
            result["rss_before"] = procs.rss_bytes(pid) if pid else None
            result["upstream_rss_before"] = procs.rss_bytes(upstream.pid)
            if warm["failed"]:
                self.notes.append(f"WARNING: {label} warm-up: {warm['failed']} of {len(warm_tokens)} "
                                  f"sockets failed ({warm['errors']})")

            run_tokens = self.tokens[WARMUP_SOCKETS:WARMUP_SOCKETS + args.sockets]
            accept_n = min(args.accept, args.sockets)
            print(f"ws_scale: {label}: accepting {accept_n} sockets ({args.concurrency} in flight)",
                  file=sys.stderr, flush=True)
            cpu0 = procs.cpu_seconds(gateway.tree()) if gateway is not None else 0.0
            accept = self.connect(clients, url, run_tokens[:accept_n], WARMUP_SOCKETS, args.concurrency)
            if gateway is not None:
                accept["gateway_cpu_s"] = procs.cpu_seconds(gateway.tree()) - cpu0
            result["accept"] = accept
            rest_tokens = run_tokens[accept_n:]
            if rest_tokens:
                print(f"ws_scale: {label}: connecting the other {len(rest_tokens)}", file=sys.stderr, flush=True)
                rest = self.connect(clients, url, rest_tokens, WARMUP_SOCKETS + accept_n, args.concurrency)
            else:
                rest = {"asked": 0, "ok": 0, "failed": 0, "errors": {}}
            result["rest"] = rest
            connected = accept["ok"] + rest["ok"]
            result["connected"] = connected
            result["failed"] = accept["failed"] + rest["failed"]
            errors = dict(accept["errors"])
            for key, count in rest["errors"].items():
                errors[key] = errors.get(key, 0) + count
            result["errors"] = errors
            stats = self.wait_subscriptions(upstream_port, connected)
            result["upstream_stats"] = stats
            if stats["subscriptions"] < connected:
                self.notes.append(f"WARNING: {label}: only {stats['subscriptions']} of {connected} subscriptions "
                                  "reached the upstream within 60 s")
            time.sleep(2.0)  # let the last writes and frees settle
            result["rss_after"] = procs.rss_bytes(pid) if pid else None
            result["upstream_rss_after"] = procs.rss_bytes(upstream.pid)
            result["client_rss"] = [procs.rss_bytes(client.popen.pid) for client in clients]
            if gateway is not None:
                result["gateway_fds"] = len(os.listdir(f"/proc/{gateway.pid}/fd"))
            result["upstream_fds"] = len(os.listdir(f"/proc/{upstream.pid}/fd"))
            print(f"ws_scale: {label}: {connected} sockets connected and subscribed "
                  f"({result['failed']} failed); fan-out, {args.events} events", file=sys.stderr, flush=True)

            rounds = []
            for round_no in range(1, args.events + 1):
                time.sleep(args.event_pause)
                rounds.append(self.fan_out(clients, upstream_port, label, round_no, gateway))
            result["rounds"] = rounds
            result["rss_after_fanout"] = procs.rss_bytes(pid) if pid else None
            reports = [client.ask({"cmd": "report"}, 120) for client in clients]
            self._latencies(result, reports)
            result["open_at_end"] = sum(r["open"] for r in reports)
            closes: dict[str, int] = {}
            for report_ in reports:
                for key, count in report_["unexpected_closes"].items():
                    closes[key] = closes.get(key, 0) + count
            result["unexpected_closes"] = closes
            if closes:
                self.notes.append(f"WARNING: {label}: sockets closed during the run: {closes}")
            if gateway is not None and not gateway.alive():
                self.notes.append(f"WARNING: the gateway exited during the run:\n{gateway.log_tail()}")
            if gateway is not None:
                result["gateway_log_tail"] = gateway.log_tail(10)
        finally:
            self.stop_clients(clients)
            if gateway is not None:
                self.supervisor.stop(gateway)
            self.supervisor.stop(upstream)
        return result

    @staticmethod
    def _latencies(result: dict[str, Any], reports: list[dict[str, Any]]) -> None:
        from_t0: list[float] = []
        per_frame: list[float] = []
        last_socket: list[float] = []
        per_round: list[dict[str, float]] = []
        for published in result["rounds"]:
            key = str(published["round"])
            rows = [row for report_ in reports for row in report_["rounds"].get(key, [])]
            if not rows:
                continue
            lat = [row[0] for row in rows]
            from_t0 += lat
            per_frame += [row[1] for row in rows]
            last_socket.append(max(row[2] for row in rows) - published["t0"])
            per_round.append({"round": published["round"], "p50_ms": percentile(lat, 50) * 1e3,
                              "p99_ms": percentile(lat, 99) * 1e3, "max_ms": max(lat) * 1e3,
                              "received": len(rows), "publish_ms": (published["t_end"] - published["t0"]) * 1e3})
        result["latency"] = {
            "p50_ms": percentile(from_t0, 50) * 1e3, "p99_ms": percentile(from_t0, 99) * 1e3,
            "max_ms": max(from_t0) * 1e3 if from_t0 else float("nan"),
            "last_socket_ms": statistics.median(last_socket) * 1e3 if last_socket else float("nan"),
            "frame_p50_ms": percentile(per_frame, 50) * 1e3, "frame_p99_ms": percentile(per_frame, 99) * 1e3,
            "samples": len(from_t0), "per_round": per_round,
        }

    # -- the run -----------------------------------------------------------------------------------

    def run(self) -> str:
        import make_tokens

        args = self.args
        fd_limit = raise_fd_limit()
        needed = 2 * (args.sockets + WARMUP_SOCKETS) + 200
        if fd_limit < needed:
            self.notes.append(f"WARNING: RLIMIT_NOFILE is {fd_limit}, the gateway needs about {needed}")
        WORK.mkdir(parents=True, exist_ok=True)
        started = dt.datetime.now(dt.UTC)
        print(f"ws_scale: minting {args.sockets + WARMUP_SOCKETS} tokens", file=sys.stderr, flush=True)
        tokens = make_tokens.generate(WORK / "ws-tokens", count=args.sockets + WARMUP_SOCKETS, issuer=ISSUER,
                                      lifetime=max(2 * 3600, int(args.timeout) + 600))
        self.tokens = tokens.tokens.read_text().split()
        self.public_pem = tokens.public_pem()
        meta = {
            "started": started.strftime("%Y-%m-%d %H:%M:%S UTC"),
            "machine": f"{_cpu_model()}, {os.cpu_count()} logical CPUs, Linux {platform.release()}",
            "load average at start": " ".join(f"{value:.2f}" for value in os.getloadavg()),
            "versions": _versions(),
            "sockets": str(args.sockets), "accept": str(min(args.accept, args.sockets)),
            "concurrency": str(args.concurrency), "client processes": str(args.clients),
            "events": str(args.events), "client compression": args.compression, "fd limit": str(fd_limit),
        }
        for label in args.only:
            self.phases[label] = self.phase(label)
        meta["finished"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        self.check_identities()
        text = render(meta, self.phases, self.notes)
        self.save(started, meta, text)
        return text

    def check_identities(self) -> None:
        gateway = self.phases.get("gateway")
        if gateway is not None:
            stats = gateway["upstream_stats"]
            if stats["inits_bearer"] or stats["inits_other"]:
                self.notes.append(f"WARNING: through the gateway the upstream saw {stats['inits_bearer']} bearer and "
                                  f"{stats['inits_other']} other connection_init payloads (expected admin-secret only)")
            else:
                self.notes.append(f"Identity check: every connection_init the upstream received through the gateway "
                                  f"carried the admin secret, a role and a user id ({stats['inits_admin']} in all, "
                                  "warm-up included).")

    def save(self, started: dt.datetime, meta: dict[str, str], text: str) -> None:
        results_dir: Path = self.args.results_dir
        results_dir.mkdir(parents=True, exist_ok=True)
        stamp = started.strftime("%Y%m%d-%H%M%S")
        (results_dir / f"{stamp}-ws-scale.md").write_text(text)
        (results_dir / f"{stamp}-ws-scale.json").write_text(
            json.dumps({"meta": meta, "phases": self.phases, "notes": self.notes}, indent=2, default=str) + "\n")
        print(f"ws_scale: wrote {results_dir / (stamp + '-ws-scale.md')}", file=sys.stderr)


# -- report -----------------------------------------------------------------------------------------


def _f(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    return f"{value:,.{digits}f}"


def _ratio(a: Any, b: Any) -> str:
    if not a or not b or a != a or b != b:
        return "—"
    return f"{a / b:.2f}x"


def _kb_per_socket(before: Any, after: Any, sockets: int) -> float | None:
    if before is None or after is None or not sockets:
        return None
    return float((after - before) / sockets / 1024)


def render(meta: dict[str, str], phases: dict[str, dict[str, Any]], notes: list[str]) -> str:
    lines = ["# WebSocket scale check (bench/ws_scale.py)", ""]
    lines += [f"- {key}: {value}" for key, value in meta.items()]
    lines.append("")
    g = phases.get("gateway", {})
    d = phases.get("direct", {})
    ga, da = g.get("accept", {}), d.get("accept", {})
    gl, dl = g.get("latency", {}), d.get("latency", {})
    accept_n = meta.get("accept", "?")
    lines += ["| measure | gateway (1 worker) | direct (upstream) | gateway / direct |", "|---|---:|---:|---:|"]

    def row(name: str, gv: Any, dv: Any, digits: int = 1, ratio: bool = True) -> None:
        lines.append(f"| {name} | {_f(gv, digits)} | {_f(dv, digits)} | {_ratio(gv, dv) if ratio else '—'} |")

    lines.append(f"| sockets connected and subscribed (failed) | {g.get('connected', '—')} ({g.get('failed', '—')}) | "
                 f"{d.get('connected', '—')} ({d.get('failed', '—')}) | — |")

    def negotiated(phase: dict[str, Any]) -> str:
        counts: dict[str, int] = {}
        for step in ("accept", "rest"):
            for key, count in phase.get(step, {}).get("extensions", {}).items():
                counts[key] = counts.get(key, 0) + count
        return ", ".join(f"{key}: {count}" for key, count in sorted(counts.items())) or "—"

    lines.append(f"| WebSocket extensions negotiated with the clients | {negotiated(g)} | {negotiated(d)} | — |")
    row(f"accept {accept_n} connection_inits, first connect → last ack (s)", ga.get("seconds"), da.get("seconds"), 2)
    row("  connect → ack per socket, p50 (ms)", ga.get("ack_p50_ms"), da.get("ack_p50_ms"), 1)
    row("  connect → ack per socket, p99 (ms)", ga.get("ack_p99_ms"), da.get("ack_p99_ms"), 1)
    row("fan-out latency, publish → arrival, p50 (ms)", gl.get("p50_ms"), dl.get("p50_ms"), 1)
    row("fan-out latency, publish → arrival, p99 (ms)", gl.get("p99_ms"), dl.get("p99_ms"), 1)
    row("fan-out latency, max (ms)", gl.get("max_ms"), dl.get("max_ms"), 1)
    row("last socket reached, median over rounds (ms)", gl.get("last_socket_ms"), dl.get("last_socket_ms"), 1)
    row("per-frame relay latency (arrival - frame written), p50 (ms)", gl.get("frame_p50_ms"),
        dl.get("frame_p50_ms"), 1)
    row("per-frame relay latency, p99 (ms)", gl.get("frame_p99_ms"), dl.get("frame_p99_ms"), 1)
    sockets = g.get("connected") or 0
    per_socket = _kb_per_socket(g.get("rss_before"), g.get("rss_after"), sockets)
    per_socket_idle = _kb_per_socket(g.get("rss_idle"), g.get("rss_after"), sockets)
    verdict = "—" if per_socket is None else ("under" if per_socket < RSS_TARGET_KB else "OVER")
    lines.append(f"| gateway RSS per socket (after - before) ÷ sockets (KB) | **{_f(per_socket, 1)}** | — | "
                 f"target < {RSS_TARGET_KB:.0f} KB: {verdict} |")
    lines.append(f"| gateway RSS per socket counted from the fresh process (KB) | {_f(per_socket_idle, 1)} | — | — |")
    mb = 1024 * 1024
    lines.append(f"| gateway RSS fresh / before / after / after fan-out (MB) | "
                 f"{_f((g.get('rss_idle') or 0) / mb)} / {_f((g.get('rss_before') or 0) / mb)} / "
                 f"{_f((g.get('rss_after') or 0) / mb)} / {_f((g.get('rss_after_fanout') or 0) / mb)} | — | — |")
    up_g = _kb_per_socket(g.get("upstream_rss_before"), g.get("upstream_rss_after"), sockets)
    up_d = _kb_per_socket(d.get("upstream_rss_before"), d.get("upstream_rss_after"), d.get("connected") or 0)
    row("upstream RSS per socket, for reference (KB)", up_g, up_d, 1)
    if ga.get("gateway_cpu_s") is not None and ga.get("ok"):
        per_accept = ga["gateway_cpu_s"] * 1e3 / ga["ok"]
        lines.append(f"| gateway CPU per accepted socket (ms) | {_f(per_accept, 2)} | — | — |")
    frames = sum(r.get("received", 0) for r in g.get("rounds", []))
    cpu = sum(r.get("gateway_cpu_s", 0.0) for r in g.get("rounds", []))
    if frames:
        lines.append(f"| gateway CPU per relayed event (µs) | {_f(cpu * 1e6 / frames, 0)} | — | — |")
    if g.get("gateway_fds") is not None:
        lines.append(f"| gateway open file descriptors with all sockets up | {g['gateway_fds']} | — | — |")
    lines.append("")
    for label, phase in phases.items():
        per_round = phase.get("latency", {}).get("per_round", [])
        if per_round:
            lines.append(f"Rounds, {label}: " + "; ".join(
                f"#{r['round']} p50 {r['p50_ms']:.1f} / p99 {r['p99_ms']:.1f} / max {r['max_ms']:.1f} ms "
                f"({r['received']} received, upstream wrote them in {r['publish_ms']:.1f} ms)" for r in per_round))
            lines.append("")
        if phase.get("errors"):
            lines.append(f"Failed connections, {label}: {phase['errors']}")
            lines.append("")
    if notes:
        lines += ["Notes:", ""] + [f"- {note}" for note in notes] + [""]
    return "\n".join(lines)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _versions() -> str:
    try:
        completed = subprocess.run(
            [_python(), "-c", "import importlib.metadata as m; print(' '.join(f'{p} ' + m.version(p) for p in "
                              "('clerk-gateway', 'uvicorn', 'websockets', 'uvloop')))"],
            capture_output=True, text=True, timeout=30, check=False)
        libs = completed.stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        libs = "?"
    return f"Python {platform.python_version()}; {libs}"


# -- entry point ------------------------------------------------------------------------------------


def _only(text: str) -> list[str]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or set(parts) - {"gateway", "direct"}:
        raise argparse.ArgumentTypeError("choose from gateway,direct")
    return parts


def _assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench/ws_scale.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=2000, help="concurrent subscribed sockets (default 2000)")
    parser.add_argument("--accept", type=int, default=1000, help="the timed first connects (default 1000)")
    parser.add_argument("--events", type=int, default=5, help="fan-out rounds, one event each (default 5)")
    parser.add_argument("--concurrency", type=int, default=100, help="connects in flight, all clients (default 100)")
    parser.add_argument("--clients", type=int, default=2, help="load processes (default 2)")
    parser.add_argument("--compression", choices=("deflate", "none"), default="deflate",
                        help="whether clients offer permessage-deflate, as browsers do (default deflate)")
    parser.add_argument("--only", type=_only, default=["gateway", "direct"],
                        help="phases, in order (default gateway,direct)")
    parser.add_argument("--connect-timeout", type=float, default=30.0, help="per socket: open and ack (s)")
    parser.add_argument("--event-timeout", type=float, default=60.0, help="per round: all events arrive (s)")
    parser.add_argument("--event-pause", type=float, default=1.0, help="idle seconds before each round")
    parser.add_argument("--timeout", type=float, default=1200.0, help="the whole run, then stop (default 1200 s)")
    parser.add_argument("--gateway-env", type=_assignment, action="append", default=[], metavar="VAR=VALUE",
                        help="extra environment for the gateway (repeatable)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--pids-file", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--serve-upstream", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.serve_upstream is not None:
        raise_fd_limit()
        _install_uvloop()
        asyncio.run(serve_upstream(args.serve_upstream))
        return 0
    if args.client:
        raise_fd_limit()
        _install_uvloop()
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_client(args.compression))
        return 0
    if sys.platform != "linux":
        print("ws_scale: Linux only (memory is read from /proc)", file=sys.stderr)
        return 2
    if args.sockets < 1 or args.accept < 1 or args.events < 1 or args.clients < 1 or args.concurrency < 1:
        print("ws_scale: --sockets, --accept, --events, --clients and --concurrency must be at least 1",
              file=sys.stderr)
        return 2

    def handler(signum: int, _frame: FrameType | None) -> None:
        name = "overall timeout" if signum == signal.SIGALRM else signal.Signals(signum).name
        raise Interrupted(name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, handler)
    signal.alarm(max(1, int(args.timeout)))
    scale = Scale(args)
    try:
        text = scale.run()
    except Interrupted as stop:
        print(f"ws_scale: interrupted ({stop}); stopping everything it started", file=sys.stderr)
        return 130
    except RuntimeError as error:
        print(f"ws_scale: {error}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        scale.supervisor.stop_all()
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
