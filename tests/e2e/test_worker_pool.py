"""``GATEWAY_WORKERS`` > 1 end to end: every worker drains on SIGTERM, and SIGHUP reloads.

The pool (``clerk_gateway.supervisor``) binds one socket and runs the gateway's own server in each
worker. On SIGTERM every worker drains like a single process does; on SIGHUP the workers are
replaced one at a time, re-reading ``GATEWAY_CONFIG_FILE``, while requests in flight finish.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.e2e.conftest import Mint, bearer
from tests.support.gateway_process import ADMIN_SECRET, GatewayProcess, gateway_env, hasura_backend
from tests.support.jwks_server import JwksServer
from tests.support.ports import LOCALHOST
from tests.support.upstream import RecordingUpstream

GRAPHQL = "/hasura/v1/graphql"


def _worker_pids(parent: int) -> set[int]:
    """The pool's worker processes (multiprocessing's resource tracker is a child too, not a worker)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in command:
            pids.add(int(entry.name))
    return pids


def _in_flight(gateway: GatewayProcess, mint: Mint, count: int, mode: str, gate: str,
               results: dict[int, httpx.Response | BaseException]) -> list[threading.Thread]:
    """``count`` requests held by the upstream, each on its own connection (so on any worker)."""

    def call(index: int) -> None:
        try:
            with gateway.client(timeout=30) as client:
                results[index] = client.post(GRAPHQL, json={"query": "{ a }"},
                                             headers={**bearer(mint()), "x-test-mode": mode, "x-test-gate": gate})
        except BaseException as exc:  # the assertions say what happened
            results[index] = exc

    threads = [threading.Thread(target=call, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    return threads


def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _all_started(gateway: GatewayProcess, count: int = 2) -> None:
    """/healthz answers once one worker serves; a test that changes the settings waits for all."""
    assert _wait(lambda: gateway.stderr_text().count("Application startup complete") >= count, timeout=30), \
        gateway.stderr_text()[-2000:]


def _all_ok(results: dict[int, httpx.Response | BaseException], count: int) -> None:
    assert len(results) == count
    for index, response in results.items():
        assert isinstance(response, httpx.Response), f"request {index}: {response!r}"
        assert response.status_code == 200, f"request {index}: {response.status_code} {response.text[:200]}"


def _owner_of(connection: socket.socket, gateway_port: int, workers: set[int]) -> int | None:
    """Which worker accepted ``connection``: its server-side socket's inode, from /proc/net/tcp,
    among the workers' open file descriptors."""
    client_port = connection.getsockname()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, remote_port = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)
        if local_port == gateway_port and remote_port == client_port:
            inode = fields[9]
    if inode is None:
        return None
    for pid in workers:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == f"socket:[{inode}]":
                        return pid
    return None


def _accepted_by(connection: socket.socket, gateway_port: int, workers: set[int]) -> int:
    """:func:`_owner_of`, once a worker has accepted the connection (the kernel queues it until then)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        owner = _owner_of(connection, gateway_port, workers)
        if owner is not None:
            return owner
        time.sleep(0.01)
    raise AssertionError("no worker accepted the connection")


def _raw_request(token: str, mode: str, gate: str) -> bytes:
    body = b'{"query": "{ a }"}'
    return (f"POST {GRAPHQL} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nx-test-mode: {mode}\r\nx-test-gate: {gate}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _status_of_answer(connection: socket.socket) -> int:
    connection.settimeout(15)
    head = b""
    while b"\r\n" not in head:
        chunk = connection.recv(4096)
        if not chunk:
            raise AssertionError(f"the connection closed without an answer: {head!r}")
        head += chunk
    return int(head.split(b" ", 2)[1])


def test_sigterm_drains_every_worker_then_the_pool_exits_0(jwks_server: JwksServer, upstream: RecordingUpstream,
                                                           mint: Mint) -> None:
    env = gateway_env(jwks_server.url, {"hasura": hasura_backend(upstream.url, timeout_seconds=30)},
                      GATEWAY_WORKERS=2, GATEWAY_DRAIN_SECONDS=15)
    gateway = GatewayProcess(env, startup_timeout=30).start()
    connections: list[socket.socket] = []
    try:
        assert gateway._process is not None
        workers = _worker_pids(gateway._process.pid)
        assert len(workers) == 2
        gate = upstream.gate("slow")
        held: dict[int, int] = dict.fromkeys(workers, 0)
        for _ in range(60):  # until each worker holds a request in flight (the kernel picks the worker)
            if min(held.values()) >= 1:
                break
            connection = socket.create_connection((LOCALHOST, gateway.port), timeout=10)
            connection.sendall(_raw_request(mint(), "hang", "slow"))
            connections.append(connection)
            assert _wait(lambda: len(upstream.requests) == len(connections)), "a request never reached the upstream"
            held[_accepted_by(connection, gateway.port, workers)] += 1
        assert min(held.values()) >= 1, f"the kernel gave every connection to one worker: {held}"

        gateway._process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        for _ in range(4):  # whichever worker answers, it is draining
            with gateway.client() as client:
                ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["reason"] == "draining"
            assert ready.headers.get("connection") == "close"
        time.sleep(1.0)
        assert _worker_pids(gateway._process.pid) == workers, "a worker stopped with a request in flight"

        gate.release()
        assert [_status_of_answer(connection) for connection in connections] == [200] * len(connections)
        assert gateway._process.wait(timeout=15) == 0
        output = gateway.stderr_text()
        for pid in workers:
            assert f"Finished server process [{pid}]" in output
    finally:
        for connection in connections:
            connection.close()
        gateway.close()


def _config(path: Path, upstream: RecordingUpstream, secret: str) -> None:
    path.write_text(json.dumps({"gateway": {"backends": {"hasura": hasura_backend(
        upstream.url, admin_secret=secret, timeout_seconds=30)}}}))


def test_sighup_replaces_the_workers_with_the_new_configuration_without_dropping_requests(
        tmp_path: Path, jwks_server: JwksServer, upstream: RecordingUpstream, mint: Mint) -> None:
    config = tmp_path / "gateway.yaml"
    _config(config, upstream, ADMIN_SECRET)
    env = gateway_env(jwks_server.url, {}, GATEWAY_BACKENDS=None, GATEWAY_CONFIG_FILE=str(config),
                      GATEWAY_WORKERS=2, GATEWAY_DRAIN_SECONDS=15)
    gateway = GatewayProcess(env, startup_timeout=30).start()
    try:
        assert gateway._process is not None
        _all_started(gateway)
        before = _worker_pids(gateway._process.pid)
        gate = upstream.gate("slow")
        results: dict[int, httpx.Response | BaseException] = {}
        threads = _in_flight(gateway, mint, 4, "hang", "slow", results)
        assert _wait(lambda: len(upstream.requests) == 4)

        _config(config, upstream, "rotated-admin-secret")
        gateway._process.send_signal(signal.SIGHUP)
        assert _wait(lambda: "SIGHUP: every worker replaced" in gateway.stderr_text(), timeout=30), \
            gateway.stderr_text()[-2000:]
        after = _worker_pids(gateway._process.pid)
        assert len(after - before) == 2, "the new workers are not both running"

        upstream.reset()
        with gateway.client() as client:
            for _ in range(6):  # every worker now serving has the new secret
                assert client.post(GRAPHQL, json={"query": "{ a }"}, headers=bearer(mint())).status_code == 200
        assert {request.header("x-hasura-admin-secret") for request in upstream.requests} == {"rotated-admin-secret"}

        gate.release()
        for thread in threads:
            thread.join(15)
        _all_ok(results, 4)  # the requests the old workers held finished
        assert _wait(lambda: _worker_pids(gateway._process.pid) == after), "the old workers did not exit"
    finally:
        gateway.close()


def test_a_reload_with_a_bad_configuration_keeps_the_running_workers(tmp_path: Path, jwks_server: JwksServer,
                                                                     upstream: RecordingUpstream, mint: Mint) -> None:
    config = tmp_path / "gateway.yaml"
    _config(config, upstream, ADMIN_SECRET)
    env = gateway_env(jwks_server.url, {}, GATEWAY_BACKENDS=None, GATEWAY_CONFIG_FILE=str(config),
                      GATEWAY_WORKERS=2)
    with GatewayProcess(env, startup_timeout=30) as gateway:
        assert gateway._process is not None
        _all_started(gateway)
        before = _worker_pids(gateway._process.pid)
        config.write_text("gateway: {backends: {hasura: {url: 'not a url', auth_mode: mint}}}")
        os.kill(gateway._process.pid, signal.SIGHUP)
        assert _wait(lambda: "the reload stopped" in gateway.stderr_text(), timeout=30), gateway.stderr_text()[-2000:]
        assert _worker_pids(gateway._process.pid) == before
        with gateway.client() as client:
            response = client.post(GRAPHQL, json={"query": "{ a }"}, headers=bearer(mint()))
        assert response.status_code == 200
        assert upstream.last().header("x-hasura-admin-secret") == ADMIN_SECRET
        assert "Traceback" not in gateway.stderr_text()


def _metric(text: str, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_report_the_whole_pool_whichever_worker_answers(jwks_server: JwksServer,
                                                                upstream: RecordingUpstream, mint: Mint) -> None:
    env = gateway_env(jwks_server.url, {"hasura": hasura_backend(upstream.url)}, GATEWAY_WORKERS=2)
    with GatewayProcess(env, startup_timeout=30) as gateway:
        assert gateway._process is not None
        workers = _worker_pids(gateway._process.pid)
        served: dict[int, int] = dict.fromkeys(workers, 0)
        total = 0
        while min(served.values()) < 3 and total < 100:  # until both workers answered some requests
            connection = socket.create_connection((LOCALHOST, gateway.port), timeout=10)
            try:
                connection.sendall(_raw_request(mint(), "echo", "none"))
                owner = _accepted_by(connection, gateway.port, workers)
                assert _status_of_answer(connection) == 200
            finally:
                connection.close()
            served[owner] += 1
            total += 1
        assert min(served.values()) >= 3, served

        scraped_by: set[int] = set()
        for _ in range(30):
            connection = socket.create_connection((LOCALHOST, gateway.port), timeout=10)
            try:
                owner = _accepted_by(connection, gateway.port, workers)
                connection.sendall(b"GET /metrics HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
                connection.settimeout(10)
                data = b""
                while chunk := connection.recv(65536):
                    data += chunk
            finally:
                connection.close()
            text = data.split(b"\r\n\r\n", 1)[1].decode()
            assert _metric(text, "gateway_requests_total", backend="hasura", status="200") == total
            assert _metric(text, "gateway_jwks_keys", source="jwks") == 1
            age = _metric(text, "gateway_jwks_age_seconds", source="jwks")
            assert age is not None and 0 <= age < 60
            assert 'pid="' not in text, "a per-worker series leaked into the pool's metrics"
            scraped_by.add(owner)
            if scraped_by == workers:
                break
        assert scraped_by == workers, "every scrape reached the same worker; the sum was not shown to hold"
