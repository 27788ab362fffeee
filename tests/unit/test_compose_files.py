"""Every compose variant, loaded by Docker Compose v2 itself, then checked for what compose cannot know.

``docker-compose config`` (v2.40.3, installed by ``scripts/test-tools/compose.sh``; it needs no Docker engine) does
what ``docker compose up`` does before it creates anything: it interpolates ``${...}`` (failing on ``:?``), validates
each file against the Compose Specification schema, merges the override files with compose's rules, resolves
relative paths and ``env_file``, and refuses an undefined service, volume or a dependency cycle. Its JSON output is
the merged model; :func:`stack_problems` then checks what makes the stack *work*: the gateway's environment passes
the gateway's own settings loader, Hasura's admin secret or JWT secret matches the gateway's mode, Hasura is not
published, the Hasura project is mounted where the cli-migrations-v3 image applies it, the database URL matches the
Postgres service and the metadata's ``from_env``, and every ``service_healthy`` dependency has a health check.

The project is copied into a temporary directory and compose runs with an empty environment, so neither a
developer's ``.env`` nor the shell's variables leak in. Without the binary these tests skip (fail under CI);
``tests/unit/test_deploy_files.py`` still reads the files statically.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from clerk_gateway.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]
JWKS_URL = "https://divine-foxhound-22.clerk.accounts.dev/.well-known/jwks.json"
#: decodes to divine-foxhound-22.clerk.accounts.dev, the host of JWKS_URL
PUBLISHABLE_KEY = "pk_test_ZGl2aW5lLWZveGhvdW5kLTIyLmNsZXJrLmFjY291bnRzLmRldiQ="
HASURA_IMAGE = "hasura/graphql-engine:v2.48.10.cli-migrations-v3"
BASE = "docker-compose.yml"
OVERRIDES = {"admin_secret": [], "mint": ["docker-compose.mint.yml"], "forward": ["docker-compose.forward.yml"]}
CONSOLE = "docker-compose.console.yml"
#: What each mode needs from .env for interpolation (forward: Clerk's JWKS for Hasura and the gateway).
MODE_ENV = {"admin_secret": {}, "mint": {}, "forward": {"CLERK_JWKS_URL": JWKS_URL}}


def compose_binary() -> Path | None:
    """Compose v2 from the venv (compose.sh puts it there), else from PATH; Compose v1 does not count."""
    for candidate in (Path(sys.executable).parent / "docker-compose", shutil.which("docker-compose")):
        if candidate and Path(candidate).is_file():
            result = subprocess.run([str(candidate), "version", "--short"], capture_output=True, text=True,
                                    timeout=30, check=False)
            if result.returncode == 0 and result.stdout.strip().lstrip("v").startswith("2."):
                return Path(candidate)
    return None


@pytest.fixture(scope="module")
def compose() -> Path:
    binary = compose_binary()
    if binary is None:
        message = "Docker Compose v2 is not installed (bash scripts/test-tools/compose.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The files compose reads, and nothing else (no .env): docker-compose*.yml, the Dockerfile, hasura/."""
    target = tmp_path / "clerk-gateway"
    target.mkdir()
    for path in ROOT.glob("docker-compose*.yml"):
        shutil.copy(path, target / path.name)
    shutil.copy(ROOT / "Dockerfile", target / "Dockerfile")
    shutil.copytree(ROOT / "hasura", target / "hasura")
    return target


@dataclass
class Config:
    returncode: int
    model: dict[str, Any]
    stderr: str


def compose_config(compose: Path, project: Path, files: list[str], env: dict[str, str] | None = None) -> Config:
    """``docker-compose -f ... config --format json`` in ``project``, with only ``env`` in the environment."""
    argv = [str(compose), "--project-directory", str(project), "-p", "clerk-gateway"]
    for name in files:
        argv += ["-f", str(project / name)]
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(project), "DOCKER_CONFIG": str(project / ".docker"),
                   **(env or {})}
    result = subprocess.run([*argv, "config", "--format", "json"], cwd=project, env=environment,
                            capture_output=True, text=True, timeout=60, check=False)
    model = json.loads(result.stdout) if result.returncode == 0 else {}
    return Config(result.returncode, model, result.stderr.strip())


def variant(compose: Path, project: Path, mode: str, *, console: bool = False) -> dict[str, Any]:
    files = [BASE, *OVERRIDES[mode], *([CONSOLE] if console else [])]
    config = compose_config(compose, project, files, MODE_ENV[mode])
    assert config.returncode == 0, f"docker-compose {' -f '.join(['', *files])} config refused it:\n{config.stderr}"
    return config.model


# -- what compose cannot check ---------------------------------------------------------------------------------------

def _gateway_settings(environment: dict[str, str]) -> Any:
    """The gateway's own settings loader on exactly the container's environment (plus the publishable key a real
    .env gives), in an empty directory: returns the settings or the loader's error text."""
    with tempfile.TemporaryDirectory() as empty, pytest.MonkeyPatch.context() as patch:
        patch.chdir(empty)
        for name in [n for n in os.environ if n.startswith(("CLERK_", "GATEWAY_", "OTEL_"))]:
            patch.delenv(name)
        for name, value in environment.items():
            patch.setenv(name, value)
        if not environment.get("CLERK_PUBLISHABLE_KEY"):
            patch.setenv("CLERK_PUBLISHABLE_KEY", PUBLISHABLE_KEY)
        try:
            return load_settings()
        except SettingsError as error:
            return str(error)


def _has_healthcheck(service: dict[str, Any]) -> bool:
    """A compose healthcheck, or (built from a Dockerfile) the image's own HEALTHCHECK."""
    check = service.get("healthcheck")
    if check is not None:
        return not check.get("disable") and check.get("test") not in (None, ["NONE"])
    build = service.get("build")
    if build:
        dockerfile = Path(build["context"]) / build.get("dockerfile", "Dockerfile")
        text = dockerfile.read_text() if dockerfile.is_file() else ""
        return re.search(r"^HEALTHCHECK\s+(?!NONE)", text, re.M) is not None
    return False


def _depends_on_problems(services: dict[str, Any], problems: list[str]) -> None:
    for name, service in services.items():
        for target, how in (service.get("depends_on") or {}).items():
            if target not in services:
                problems.append(f"{name} depends on {target}, which is not a service")
            elif how.get("condition") == "service_healthy" and not _has_healthcheck(services[target]):
                problems.append(f"{name} waits for {target} to be healthy, but {target} has no health check")


def _hasura_problems(project: Path, services: dict[str, Any], console: bool, problems: list[str]) -> None:
    hasura = services["hasura"]
    env = hasura.get("environment") or {}
    if hasura.get("image") != HASURA_IMAGE:
        problems.append(f"hasura runs {hasura.get('image')!r}, not {HASURA_IMAGE} (which applies hasura/ on start)")
    mounts = {v["target"]: v for v in hasura.get("volumes") or [] if v.get("type") == "bind"}
    for directory, target in (("migrations", "/hasura-migrations"), ("metadata", "/hasura-metadata")):
        mount = mounts.get(target)
        source = project / "hasura" / directory
        if mount is None or Path(mount["source"]) != source:
            problems.append(f"hasura does not mount ./hasura/{directory} at {target}")
        elif not source.is_dir() or not mount.get("read_only"):
            problems.append(f"hasura's {target} mount must be the existing ./hasura/{directory}, read-only")
    databases = yaml.safe_load((project / "hasura/metadata/databases/databases.yaml").read_text())
    for source in databases:
        variable = source["configuration"]["connection_info"]["database_url"].get("from_env")
        if variable and not env.get(variable):
            problems.append(f"the metadata's source {source['name']} reads {variable}, which hasura does not have")
    url = urlsplit(env.get("HASURA_GRAPHQL_DATABASE_URL", ""))
    postgres = services.get(url.hostname or "", {})
    pg_env = postgres.get("environment") or {}
    expected = (pg_env.get("POSTGRES_USER", "postgres"), pg_env.get("POSTGRES_PASSWORD"),
                "/" + pg_env.get("POSTGRES_DB", pg_env.get("POSTGRES_USER", "postgres")))
    if not postgres or (url.username, url.password, url.path) != expected:
        problems.append("HASURA_GRAPHQL_DATABASE_URL does not match the postgres service's user, password and "
                        "database")
    if not env.get("HASURA_GRAPHQL_ADMIN_SECRET"):
        problems.append("hasura has no HASURA_GRAPHQL_ADMIN_SECRET (JWT mode requires one; it also guards metadata)")
    if env.get("HASURA_GRAPHQL_DEV_MODE") != "false":
        problems.append("HASURA_GRAPHQL_DEV_MODE must be false (dev mode puts internal errors in responses)")
    ports = hasura.get("ports") or []
    if console:
        if env.get("HASURA_GRAPHQL_ENABLE_CONSOLE") != "true":
            problems.append("the console override must enable the console")
        if not ports or any(port.get("host_ip") != "127.0.0.1" for port in ports):
            problems.append("the console override may publish Hasura on 127.0.0.1 only")
    else:
        if ports:
            problems.append("hasura is published on the host: it must be reachable only through the gateway")
        if env.get("HASURA_GRAPHQL_ENABLE_CONSOLE") != "false":
            problems.append("Hasura's console must be off outside the console override")


def _mode_problems(mode: str, services: dict[str, Any], settings: Any, problems: list[str]) -> None:
    gateway_env = services["gateway"].get("environment") or {}
    hasura_env = services["hasura"].get("environment") or {}
    backend = settings.backends.get("hasura")
    if backend is None:
        problems.append("the gateway has no backend named hasura")
        return
    jwt_secret = json.loads(hasura_env["HASURA_GRAPHQL_JWT_SECRET"]) if "HASURA_GRAPHQL_JWT_SECRET" in hasura_env \
        else None
    if backend.auth_mode != mode:
        problems.append(f"the gateway's hasura backend runs auth_mode {backend.auth_mode}, not {mode}")
    url = urlsplit(backend.url)
    if url.hostname not in services or str(url.port) not in [str(p) for p in services["hasura"].get("expose", [])]:
        problems.append(f"the gateway's hasura url {backend.url} is not the hasura service's exposed port")
    if mode == "admin_secret":
        secret = backend.admin_secret.get_secret_value() if backend.admin_secret else None
        if secret != hasura_env.get("HASURA_GRAPHQL_ADMIN_SECRET"):
            problems.append("the gateway's admin_secret is not Hasura's HASURA_GRAPHQL_ADMIN_SECRET")
        if jwt_secret is not None:
            problems.append("admin_secret mode sets no HASURA_GRAPHQL_JWT_SECRET")
        return
    if backend.admin_secret is not None:
        problems.append(f"in {mode} mode the gateway must not hold Hasura's admin secret")
    if jwt_secret is None:
        problems.append(f"{mode} mode needs HASURA_GRAPHQL_JWT_SECRET")
        return
    if mode == "mint":
        port = settings.gateway.port
        expected = f"http://gateway:{port}/.well-known/jwks.json"
        if jwt_secret.get("jwk_url") != expected:
            problems.append(f"Hasura's jwk_url is {jwt_secret.get('jwk_url')!r}, not the gateway's JWKS {expected}")
        if jwt_secret.get("issuer") != settings.gateway.issuer:
            problems.append("Hasura's JWT issuer is not the gateway's GATEWAY_ISSUER")
        if jwt_secret.get("audience") != (backend.audience or "hasura"):
            problems.append("Hasura's JWT audience is not the minted aud (the backend's name)")
        key_dir = str(Path(settings.gateway.signing_key_file or "").parent)
        if not any(v.get("type") == "volume" and v.get("target") == key_dir
                   for v in services["gateway"].get("volumes") or []):
            problems.append(f"the signing key's directory {key_dir} is not on a named volume: a new key each start")
        waits = (services["hasura"].get("depends_on") or {}).get("gateway", {}).get("condition")
        if waits != "service_healthy":
            problems.append("hasura must wait for a healthy gateway: it exits when its first JWKS fetch fails")
    if mode == "forward":
        if jwt_secret.get("jwk_url") != gateway_env.get("CLERK_JWKS_URL"):
            problems.append("Hasura and the gateway must verify against the same CLERK_JWKS_URL")
        if not str(jwt_secret.get("jwk_url", "")).startswith("https://"):
            problems.append("Hasura's jwk_url must be Clerk's https JWKS")


def _seconds(duration: str) -> float:
    """A compose duration (``35s``, ``1m30s``, ``500ms``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts, f"not a duration: {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def stack_problems(model: dict[str, Any], mode: str, project: Path, *, console: bool = False) -> list[str]:
    """Everything wrong with a merged compose model (``config --format json``) for one identity mode."""
    problems: list[str] = []
    services = model.get("services") or {}
    missing = {"postgres", "hasura", "gateway"} - set(services)
    if missing:
        return [f"services missing: {sorted(missing)}"]
    _depends_on_problems(services, problems)
    for name, service in services.items():
        if name not in ("gateway", "hasura") and service.get("ports"):
            problems.append(f"{name} is published on the host")
    gateway = services["gateway"]
    if Path((gateway.get("build") or {}).get("context", "/nonexistent")) != project:
        problems.append("the gateway must be built from the repository (build: .)")
    _hasura_problems(project, services, console, problems)
    settings = _gateway_settings({k: str(v) for k, v in (gateway.get("environment") or {}).items()})
    if isinstance(settings, str):
        return [*problems, f"the gateway's settings loader refuses its environment: {settings}"]
    published = [p for p in gateway.get("ports") or [] if p.get("target") == settings.gateway.port]
    if not published or settings.gateway.host != "0.0.0.0":
        problems.append("the gateway must listen on 0.0.0.0 and publish its GATEWAY_PORT")
    if settings.gateway.default_backend != "hasura":
        problems.append("GATEWAY_DEFAULT_BACKEND must be hasura (the seeds' app calls /graphql)")
    grace = _seconds(str(gateway.get("stop_grace_period") or "10s"))  # Docker's default is 10 s
    if grace <= settings.gateway.drain_seconds + 10:
        problems.append(f"the gateway's stop_grace_period ({grace:g} s) must exceed GATEWAY_DRAIN_SECONDS "
                        f"({settings.gateway.drain_seconds:g}) + uvicorn's 10 s graceful shutdown, or docker kills "
                        "the drain")
    _mode_problems(mode, services, settings, problems)
    return problems


# -- the variants ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", sorted(OVERRIDES))
def test_every_variant_is_a_valid_compose_project_that_works(compose: Path, project: Path, mode: str) -> None:
    model = variant(compose, project, mode)
    assert stack_problems(model, mode, project) == []


@pytest.mark.parametrize("mode", sorted(OVERRIDES))
def test_the_console_override_publishes_hasura_on_loopback_only(compose: Path, project: Path, mode: str) -> None:
    model = variant(compose, project, mode, console=True)
    assert stack_problems(model, mode, project, console=True) == []
    assert model["services"]["hasura"]["ports"] == [
        {"mode": "ingress", "host_ip": "127.0.0.1", "target": 8080, "published": "8080", "protocol": "tcp"}]


@pytest.mark.parametrize("mode", sorted(OVERRIDES))
def test_a_dotenv_copied_from_the_example_feeds_the_gateway_but_cannot_change_the_mode(
        compose: Path, project: Path, mode: str) -> None:
    """`cp .env.example .env`: compose reads it (env_file and interpolation); compose's own GATEWAY_BACKENDS wins
    over the example's, and Hasura does not get the gateway's settings."""
    text = (ROOT / ".env.example").read_text()
    if mode == "forward":
        text += f"\nCLERK_JWKS_URL={JWKS_URL}\n"
    text += "CLERK_AUTHORIZED_PARTIES=https://app.example.com\n"
    (project / ".env").write_text(text)
    config = compose_config(compose, project, [BASE, *OVERRIDES[mode]])
    assert config.returncode == 0, config.stderr
    services = config.model["services"]
    assert services["gateway"]["environment"]["CLERK_AUTHORIZED_PARTIES"] == "https://app.example.com"
    assert all(name.startswith("HASURA_GRAPHQL_") for name in services["hasura"]["environment"])
    assert json.loads(services["gateway"]["environment"]["GATEWAY_BACKENDS"])["hasura"]["auth_mode"] == mode
    assert stack_problems(config.model, mode, project) == []


def test_forward_mode_refuses_to_start_without_clerks_jwks_url(compose: Path, project: Path) -> None:
    config = compose_config(compose, project, [BASE, *OVERRIDES["forward"]])
    assert config.returncode != 0
    assert "CLERK_JWKS_URL" in config.stderr and "/.well-known/jwks.json" in config.stderr


@pytest.mark.parametrize(("override", "expected"), [
    ("services:\n  hasura:\n    enviroment:\n      X: y\n", "additional properties 'enviroment' not allowed"),
    ("services:\n  gateway:\n    depends_on: [hasura]\n", "dependency cycle detected"),
    ("services:\n  hasura:\n    depends_on: [redis]\n", "redis"),
    ("services:\n  gateway:\n    volumes:\n      - keys:/var/lib/clerk-gateway\n", "undefined volume keys"),
    ("services:\n  gateway:\n    ports: ['8000:eight']\n", "invalid"),
], ids=["schema-typo", "dependency-cycle", "unknown-service", "undefined-volume", "bad-port"])
def test_compose_refuses_a_broken_override(compose: Path, project: Path, override: str, expected: str) -> None:
    """The tool's own checks: schema, unknown dependency, cycle (with mint, where Hasura waits for the gateway)."""
    (project / "docker-compose.broken.yml").write_text(override)
    config = compose_config(compose, project, [BASE, *OVERRIDES["mint"], "docker-compose.broken.yml"])
    assert config.returncode != 0 and expected in config.stderr, config.stderr


def _break(model: dict[str, Any], breakage: str) -> dict[str, Any]:
    broken = copy.deepcopy(model)
    services = broken["services"]
    hasura_env = services["hasura"]["environment"]
    if breakage == "jwks_port":
        hasura_env["HASURA_GRAPHQL_JWT_SECRET"] = hasura_env["HASURA_GRAPHQL_JWT_SECRET"].replace(":8000/", ":8001/")
    elif breakage == "no_wait":
        del services["hasura"]["depends_on"]["gateway"]
    elif breakage == "published":
        services["hasura"]["ports"] = [{"target": 8080, "published": "8080", "protocol": "tcp"}]
    elif breakage == "database_password":
        hasura_env["HASURA_GRAPHQL_DATABASE_URL"] = "postgres://postgres:other@postgres:5432/postgres"
    elif breakage == "key_not_on_volume":
        services["gateway"]["volumes"] = []
    elif breakage == "no_migrations":
        services["hasura"]["volumes"] = services["hasura"]["volumes"][1:]
    elif breakage == "plain_image":
        services["hasura"]["image"] = "hasura/graphql-engine:v2.48.10"
    elif breakage == "bad_gateway_settings":
        services["gateway"]["environment"]["GATEWAY_BACKENDS"] = '{"hasura": {"url": "http://hasura:8080"'
    elif breakage == "default_stop_grace":
        services["gateway"].pop("stop_grace_period", None)
    elif breakage == "unhealthy_wait":
        services["hasura"]["depends_on"]["postgres"]["condition"] = "service_healthy"
        del services["postgres"]["healthcheck"]
    return broken


@pytest.mark.parametrize(("breakage", "expected"), [
    ("jwks_port", "not the gateway's JWKS http://gateway:8000/.well-known/jwks.json"),
    ("no_wait", "hasura must wait for a healthy gateway"),
    ("published", "hasura is published on the host"),
    ("database_password", "HASURA_GRAPHQL_DATABASE_URL does not match"),
    ("key_not_on_volume", "is not on a named volume"),
    ("no_migrations", "does not mount ./hasura/migrations"),
    ("plain_image", "not hasura/graphql-engine:v2.48.10.cli-migrations-v3"),
    ("bad_gateway_settings", "the gateway's settings loader refuses its environment"),
    ("unhealthy_wait", "postgres has no health check"),
    ("default_stop_grace", "stop_grace_period (10 s) must exceed GATEWAY_DRAIN_SECONDS"),
])
def test_the_semantic_checks_refuse_a_stack_that_would_not_work(compose: Path, project: Path, breakage: str,
                                                                expected: str) -> None:
    """Valid compose, broken stack: each check can fail (here on the mint variant, the one with the most wiring)."""
    model = variant(compose, project, "mint")
    problems = stack_problems(_break(model, breakage), "mint", project)
    assert any(expected in problem for problem in problems), problems


def test_admin_secret_and_forward_checks_can_fail_too(compose: Path, project: Path) -> None:
    admin = variant(compose, project, "admin_secret")
    admin["services"]["hasura"]["environment"]["HASURA_GRAPHQL_ADMIN_SECRET"] = "another-secret"
    assert "the gateway's admin_secret is not Hasura's HASURA_GRAPHQL_ADMIN_SECRET" in \
        stack_problems(admin, "admin_secret", project)
    forward = variant(compose, project, "forward")
    forward["services"]["gateway"]["environment"]["CLERK_JWKS_URL"] = JWKS_URL.replace("divine", "other")
    assert "Hasura and the gateway must verify against the same CLERK_JWKS_URL" in \
        stack_problems(forward, "forward", project)
    assert any("auth_mode forward, not mint" in p for p in stack_problems(forward, "mint", project))


def test_the_compose_files_name_only_variables_that_env_example_documents() -> None:
    """Every ${VARIABLE} a compose file interpolates is in .env.example with a comment above it."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    names = set()
    for path in ROOT.glob("docker-compose*.yml"):
        names |= set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", path.read_text()))
    assert names >= {"HASURA_ADMIN_SECRET", "CLERK_JWKS_URL"}
    for name in sorted(names):
        found = [i for i, line in enumerate(lines) if re.match(rf"#? ?{name}=", line)]
        assert found, f"{name} is interpolated by a compose file but not in .env.example"
        assert lines[found[0] - 1].startswith("#"), f"{name} has no comment line above it in .env.example"
