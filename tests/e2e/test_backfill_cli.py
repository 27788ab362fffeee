"""``clerk-gateway backfill`` as an operator runs it: the real command in a subprocess, Clerk's Backend API
(:class:`FakeClerkApi`, 1,203 users, a 429 in the middle) on one side, a Hasura stand-in that applies the
sync's guarded upserts (:class:`HasuraRecorder`) on the other, both on 127.0.0.1.

The environment is scrubbed as for the gateway process (no developer ``CLERK_*``/``GATEWAY_*`` variables,
no proxies, an empty working directory, so no ``.env``).
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clerk_gateway.webhooks.records import source_value
from tests.support.clerk_api import FakeClerkApi
from tests.support.gateway_process import ADMIN_SECRET, ISSUER, hasura_backend
from tests.support.hasura_recorder import HasuraRecorder
from tests.support.tokens import SigningKey

SECRET = "sk_test_" + "backfillE2eSecret" * 2
SRC = str(Path(__file__).resolve().parents[2] / "src")
COLUMNS = {"id": "id", "name": "name", "email": "email", "image_url": "image_url"}
_SCRUBBED = ("CLERK_", "GATEWAY_", "HASURA_", "OTEL_")
_PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def run_backfill(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    base = {name: value for name, value in os.environ.items()
            if not name.startswith(_SCRUBBED) and name not in _PROXIES}
    base.update(env)
    base.update({"PYTHONPATH": SRC, "PYTHONUNBUFFERED": "1", "NO_PROXY": "*"})
    return subprocess.run([sys.executable, "-m", "clerk_gateway", "backfill", *args], env=base, cwd=cwd,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def clerk() -> Iterator[FakeClerkApi]:
    with FakeClerkApi(SigningKey.ec("ins_backfill_e2e"), secret_key=SECRET, issuer=ISSUER) as api:
        yield api


@pytest.fixture(scope="module")
def hasura() -> Iterator[HasuraRecorder]:
    with HasuraRecorder(admin_secret=ADMIN_SECRET) as server:
        yield server


@pytest.fixture
def env(clerk: FakeClerkApi, hasura: HasuraRecorder) -> dict[str, str]:
    clerk.reset()
    clerk.clear_users()
    hasura.reset()
    return {
        "CLERK_ISSUER": ISSUER, "CLERK_SECRET_KEY": SECRET, "CLERK_API_URL": clerk.url,
        "GATEWAY_BACKENDS": json.dumps({"hasura": hasura_backend(hasura.url)}),
        "GATEWAY_USER_SYNC": json.dumps({"backend": "hasura", "columns": COLUMNS,
                                         "version_column": "clerk_updated_at"}),
    }


def expected_row(user: dict[str, Any]) -> dict[str, Any]:
    row = {column: source_value(user, source) for column, source in COLUMNS.items()}
    row["clerk_updated_at"] = user["updated_at"]
    return row


def test_backfill_of_1203_users_across_pages_with_a_429_in_the_middle(
        env: dict[str, str], clerk: FakeClerkApi, hasura: HasuraRecorder, tmp_path: Path) -> None:
    users = clerk.add_users(1203)
    clerk.throttle_users(offset=490, retry_after="1")
    # a webhook was faster for one user: the table already holds a newer version of it
    faster = dict(expected_row(users[700]), name="Changed By Webhook", clerk_updated_at=users[700]["updated_at"] + 1)
    hasura.put_row(faster)

    result = run_backfill(env, tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "backfill: 1,202 users applied, 1 unchanged, 0 skipped, 0 failed (3 pages, 1 rate-limit wait)"]
    assert "Traceback" not in result.stderr and "\r" not in result.stderr  # not a terminal: no progress line
    assert SECRET not in result.stdout + result.stderr and ADMIN_SECRET not in result.stdout + result.stderr

    requests = clerk.user_list_requests
    assert [(r.offset, r.status) for r in requests] == [(0, 200), (490, 429), (490, 200), (980, 200)]
    assert all(r.limit == 500 and r.order_by == "+created_at" and r.authorization == f"Bearer {SECRET}"
               for r in requests)

    mutations = hasura.mutations
    assert [m.field for m in mutations] == ["insert_users_one"] * 1203
    sent = [m.arguments["object"]["id"] for m in mutations]
    assert sorted(sent) == sorted(user["id"] for user in users) and len(set(sent)) == 1203  # each exactly once
    assert {(m.admin_secret, m.role) for m in mutations} == {(ADMIN_SECRET, None)}  # the admin, no role
    assert all(m.arguments["on_conflict"]["where"] for m in mutations)  # the version guard went with every write
    assert "cus_SECRET" not in json.dumps([m.arguments for m in mutations])  # private_metadata never sent

    rows = hasura.rows
    assert len(rows) == 1203
    for user in users:
        assert rows[user["id"]] == (faster if user is users[700] else expected_row(user))


def test_on_a_terminal_the_progress_is_one_updating_line(env: dict[str, str], clerk: FakeClerkApi,
                                                         tmp_path: Path) -> None:
    """Standard error is a pseudo-terminal here, as in an operator's shell; standard output is not."""
    clerk.add_users(1203)
    clerk.throttle_users(offset=490, retry_after="1")
    primary, secondary = pty.openpty()
    try:
        base = {name: value for name, value in os.environ.items()
                if not name.startswith(_SCRUBBED) and name not in _PROXIES}
        base.update(env, PYTHONPATH=SRC, NO_PROXY="*")
        process = subprocess.Popen([sys.executable, "-m", "clerk_gateway", "backfill"], env=base, cwd=tmp_path,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=secondary, text=True)
        os.close(secondary)
        stdout, _ = process.communicate(timeout=60)
        terminal = _read_all(primary)
    finally:
        os.close(primary)
    assert process.returncode == 0, stdout + terminal
    frames = [frame.strip() for frame in terminal.replace("\r\n", "\n").split("\r") if frame.strip()]
    assert frames[0] == "backfill: 500 users, page 1, 0 rate-limit waits"
    assert "backfill: 500 users, page 1, 1 rate-limit wait (rate limited, waiting 1 s)" in frames
    assert frames[-1] == "backfill: 1,203 users, page 3, 1 rate-limit wait"
    assert terminal.endswith("\n") and terminal.count("\n") == 1  # the line is ended once, before the summary
    assert stdout == "backfill: 1,203 users applied, 0 unchanged, 0 skipped, 0 failed (3 pages, 1 rate-limit wait)\n"


def _read_all(fd: int) -> str:
    """What the child wrote to the terminal (it has exited: read until the pty reports its end)."""
    chunks: list[bytes] = []
    while select.select([fd], [], [], 1.0)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


def test_a_second_run_finds_every_user_unchanged(env: dict[str, str], clerk: FakeClerkApi, hasura: HasuraRecorder,
                                                  tmp_path: Path) -> None:
    users = clerk.add_users(1203)
    first = run_backfill(env, tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    changed = clerk.update_user(users[5]["id"], first_name="Augusta")  # changed in Clerk since

    second = run_backfill(env, tmp_path, "--page-size", "400")

    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.splitlines() == [
        "backfill: 1 user applied, 1,202 unchanged, 0 skipped, 0 failed (4 pages, 0 rate-limit waits)"]
    assert hasura.rows[changed["id"]]["name"] == "Augusta Lovelace"
    assert len(hasura.mutations) == 2 * 1203


def test_missing_settings_are_named_and_exit_2(env: dict[str, str], tmp_path: Path) -> None:
    del env["GATEWAY_USER_SYNC"]
    env["CLERK_JWKS_URL"] = "http://127.0.0.1:9/jwks"  # a key source, so that only the backfill's own needs are missing
    del env["CLERK_SECRET_KEY"]
    result = run_backfill(env, tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "clerk-gateway: the settings have problems:",
        "  GATEWAY_USER_SYNC: not set: backfill writes the users where the webhook sync does (backend, table, columns)",
        "  CLERK_SECRET_KEY: not set: backfill lists the users with the instance's secret key (sk_live_… or sk_test_…)",
    ]
    assert result.stdout == ""


def test_a_refused_secret_key_is_one_line_and_exit_1(env: dict[str, str], clerk: FakeClerkApi,
                                                     hasura: HasuraRecorder, tmp_path: Path) -> None:
    clerk.add_users(3)
    env["CLERK_SECRET_KEY"] = "sk_test_revokedKeyDoNotPrint"
    result = run_backfill(env, tmp_path)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("clerk-gateway backfill: CLERK_SECRET_KEY was refused by Clerk's Backend API (HTTP 401")
    assert result.stdout.splitlines() == [
        "backfill: 0 users applied, 0 unchanged, 0 skipped, 0 failed (0 pages, 0 rate-limit waits)"]
    assert "revokedKeyDoNotPrint" not in result.stdout + result.stderr
    assert hasura.mutations == []
