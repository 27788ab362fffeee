"""The Kubernetes manifests (deploy/kubernetes) are checked as they are applied, not only as they are written.

There is no cluster here, so each kustomization is rendered with kustomize (``kubectl kustomize``) and the
output is what gets checked: the Kubernetes API's schemas (kubernetes-validate, strict, at the oldest and the
newest Kubernetes we support), a policy scanner (checkov, zero failed checks, every skip justified in the
manifest), and what the gateway itself needs (probes, workers, drain timing, selectors, settings names).
The two checkers live in their own venv (scripts/test-tools/deploy-checkers.sh): checkov's pins would clash
with the project's dependencies.
"""

from __future__ import annotations

import copy
import importlib
import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml

from clerk_gateway.adapters.registry import adapter_classes
from clerk_gateway.auth.signing_keys import load_signing_keys
from clerk_gateway.settings import SettingsError, load_settings
from clerk_gateway.settings.clerk import ClerkSettings
from clerk_gateway.settings.gateway import GatewaySettings
from clerk_gateway.settings.graphql_limits import GraphQLLimitSettings
from clerk_gateway.settings.ratelimit import RateLimitSettings

Manifest = dict[str, Any]

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
TOOLS = ROOT / ".tools" / "deploy-checkers" / "bin"
SECRETS_EXAMPLE = KUBE / "secrets.example.yaml"
# The oldest Kubernetes the manifests support (lifecycle.preStop.sleep is on by default from 1.30) and the
# newest whose schemas kubernetes-validate ships: a field either version does not know fails the test.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
COMPONENTS = ("mint", "redis")
# What kustomize features the kustomizations may use: the standard, long-stable ones only.
KUSTOMIZATION_KEYS = {"apiVersion", "kind", "namespace", "resources", "components", "labels", "images",
                      "configMapGenerator", "patches"}
# Every checkov check skipped, by resource; the docs list them with their reasons (docs/deploy.md).
EXPECTED_SKIPS = {"Deployment.clerk-gateway.clerk-gateway": {"CKV_K8S_35"},
                  "Deployment.clerk-gateway.clerk-gateway-redis": {"CKV_K8S_43"}}
SKIP_ANNOTATION = re.compile(r"^checkov\.io/skip\d+$")
MODELS = [(ClerkSettings, "CLERK_"), (GatewaySettings, "GATEWAY_"), (GraphQLLimitSettings, "GATEWAY_GRAPHQL_"),
          (RateLimitSettings, "GATEWAY_RATE_LIMIT_")]
GATEWAY_UID = 10001  # the Dockerfile's USER
CHECKER_ENV = {**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"}  # no PyPI call on every run


# -- rendering ---------------------------------------------------------------------------------------------------

def _kustomize_command() -> list[str]:
    """`kustomize build`, or kubectl's built-in kustomize; v5 at least (components, `labels`)."""
    if shutil.which("kustomize"):
        result = subprocess.run(["kustomize", "version"], capture_output=True, text=True, timeout=30, check=False)
        command, version = ["kustomize", "build"], result.stdout.strip()
    elif shutil.which("kubectl"):
        result = subprocess.run(["kubectl", "version", "--client", "-o", "json"], capture_output=True, text=True,
                                timeout=30, check=False)
        command = ["kubectl", "kustomize"]
        version = json.loads(result.stdout or "{}").get("kustomizeVersion", "") if result.returncode == 0 else ""
    else:
        pytest.skip("neither kustomize nor kubectl is on PATH: the Kubernetes manifests cannot be rendered")
    match = re.search(r"v(\d+)\.", version)
    if not match or int(match.group(1)) < 5:
        pytest.skip(f"{' '.join(command)} has kustomize {version or '(unknown)'}; these manifests need v5")
    return command


def _render(command: list[str], target: Path) -> str:
    result = subprocess.run([*command, str(target)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"{' '.join(command)} {target} failed:\n{result.stderr}"
    return result.stdout


@dataclass(frozen=True)
class Renders:
    """Every way the manifests are meant to be applied, rendered: the base alone, the base with each
    component, and the example overlay (both components)."""

    command: list[str]
    tree: Path  # a copy of deploy/kubernetes, with one overlay per component added
    directory: Path  # <name>.yaml for each render
    docs: dict[str, list[Manifest]]


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> Renders:
    command = _kustomize_command()
    work = tmp_path_factory.mktemp("kubernetes")
    tree = work / "kubernetes"
    shutil.copytree(KUBE, tree)
    targets = {"base": tree / "base", "example": tree / "overlays" / "example"}
    for component in COMPONENTS:
        overlay = tree / "overlays" / f"ci-{component}"
        overlay.mkdir()
        (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "resources": ["../../base"], "components": [f"../../components/{component}"]}))
        targets[component] = overlay
    directory = work / "renders"
    directory.mkdir()
    docs: dict[str, list[Manifest]] = {}
    for name, target in targets.items():
        text = _render(command, target)
        (directory / f"{name}.yaml").write_text(text)
        docs[name] = [doc for doc in yaml.safe_load_all(text) if doc]
    return Renders(command, tree, directory, docs)


@pytest.fixture(scope="module")
def tools() -> Path:
    for tool in ("kubernetes-validate", "checkov"):
        if not (TOOLS / tool).exists():
            pytest.skip(f"{TOOLS / tool} is missing: run bash scripts/test-tools/deploy-checkers.sh "
                        "(scripts/test.sh does)")
    return TOOLS


def _load(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _kustomizations() -> dict[Path, Manifest]:
    return {path: yaml.safe_load(path.read_text()) for path in sorted(KUBE.rglob("kustomization.yaml"))}


def _resource_files() -> list[Path]:
    """The complete manifests that some kustomization lists (patches are checked through the renders)."""
    files = []
    for path, kustomization in _kustomizations().items():
        for entry in kustomization.get("resources", []):
            target = (path.parent / entry).resolve()
            if target.is_file():
                files.append(target)
    return files


def _find(docs: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [doc for doc in docs if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)]


def _one(docs: list[Manifest], kind: str, name: str) -> Manifest:
    found = _find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def _gateway(docs: list[Manifest]) -> tuple[Manifest, Manifest]:
    """The gateway's Deployment and its container."""
    deployment = _one(docs, "Deployment", "clerk-gateway")
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "gateway"]
    return deployment, container


def _cpu(quantity: str | int) -> Fraction:
    text = str(quantity)
    return Fraction(int(text[:-1]), 1000) if text.endswith("m") else Fraction(text)


def _secret_values() -> dict[tuple[str, str], str]:
    """(Secret name, key) → placeholder value, from secrets.example.yaml: the Secrets' documented shape."""
    values = {}
    for secret in _load(SECRETS_EXAMPLE):
        assert secret["kind"] == "Secret"
        for key, value in secret.get("stringData", {}).items():
            values[(secret["metadata"]["name"], key)] = value
    return values


def _environment(docs: list[Manifest], container: Manifest) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom first, then env (which wins). Secrets
    come from secrets.example.yaml, except optional keys, which are left out as a default install does (the
    example's placeholder for CLERK_SECRET_KEY is one the gateway refuses on purpose); the downward API is
    resolved from the container's own resources."""
    secrets = _secret_values()
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, "only ConfigMaps are imported whole; Secrets are named key by key"
        env.update(_one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        name, source = item["name"], item.get("valueFrom", {})
        if "value" in item:
            env[name] = item["value"]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            assert (ref["name"], ref["key"]) in secrets, f"{name}: {ref} is not in secrets.example.yaml"
            if not ref.get("optional", False):
                env[name] = secrets[(ref["name"], ref["key"])]
        elif "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            kind, resource = ref["resource"].split(".")
            amount = _cpu(container["resources"][kind][resource]) / _cpu(ref.get("divisor", "1"))
            env[name] = str(math.ceil(amount))  # the kubelet rounds CPU up to whole divisors
        else:
            pytest.fail(f"{name}: unexpected source {source}")
    return env


def _variable_names(docs: list[Manifest], container: Manifest) -> set[str]:
    """Every variable the manifests can set, optional ones included."""
    names = {item["name"] for item in container.get("env", [])}
    for source in container.get("envFrom", []):
        names |= set(_one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    return names


# -- the files ---------------------------------------------------------------------------------------------------

def test_every_file_is_listed_by_a_kustomization_and_no_secret_is_applied(renders: Renders) -> None:
    """Nothing in deploy/kubernetes escapes the checks: each YAML file is a kustomization, a resource or a
    patch one of them lists, or the Secrets' example; and `apply -k` never creates a Secret (yours stay)."""
    listed: set[Path] = set()
    for path, kustomization in _kustomizations().items():
        assert set(kustomization) <= KUSTOMIZATION_KEYS, f"{path}: {set(kustomization) - KUSTOMIZATION_KEYS}"
        for entry in kustomization.get("resources", []) + [p["path"] for p in kustomization.get("patches", [])]:
            listed.add((path.parent / entry).resolve())
        for generator in kustomization.get("configMapGenerator", []):
            for env_file in generator.get("envs", []):
                assert (path.parent / env_file).is_file(), f"{path}: {env_file} is missing"
        assert "secretGenerator" not in kustomization
    for path in sorted(KUBE.rglob("*.yaml")):
        if path.name == "kustomization.yaml" or path == SECRETS_EXAMPLE:
            continue
        assert path.resolve() in listed, f"{path.relative_to(ROOT)} is in no kustomization, so nothing checks it"
    assert SECRETS_EXAMPLE.resolve() not in listed
    for name, docs in renders.docs.items():
        assert not _find(docs, "Secret"), f"{name}: a Secret would be created (and overwritten) by apply -k"


def test_every_checkov_skip_names_a_check_and_says_why(renders: Renders) -> None:
    """A skip is an annotation on the resource it concerns, with its reason next to it. checkov splits the
    value at every '=', so a reason containing one would crash it: refused here with a clear message."""
    found: dict[str, set[str]] = {}
    sources = [doc for path in _resource_files() for doc in _load(path)]
    sources += [doc for docs in renders.docs.values() for doc in docs]
    for doc in sources:
        for key, value in (doc["metadata"].get("annotations") or {}).items():
            if not key.startswith("checkov.io/"):
                continue
            assert SKIP_ANNOTATION.match(key), f"{key}: checkov reads checkov.io/skip<N> only"
            check, _, reason = value.partition("=")
            assert re.fullmatch(r"CKV2?_K8S_\d+", check), f"{key}: {value!r} does not start with a check id"
            assert len(reason.strip()) >= 40, f"{key}: {check} needs a real justification, not {reason!r}"
            assert "=" not in reason, f"{key}: checkov cannot parse a justification containing '='"
            resource = f"{doc['kind']}.{doc['metadata'].get('namespace', 'clerk-gateway')}.{doc['metadata']['name']}"
            found.setdefault(resource, set()).add(check)
    assert found == EXPECTED_SKIPS, "a new skip needs its reason in docs/deploy.md and in EXPECTED_SKIPS"


# -- the schemas -------------------------------------------------------------------------------------------------

def _validate(tools: Path, files: list[Path], version: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tools / "kubernetes-validate"), "--strict", "--quiet", "-k", version,
                           *map(str, files)], capture_output=True, text=True, timeout=120, check=False, env=CHECKER_ENV)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_manifests_and_every_render_match_the_kubernetes_schemas(tools: Path, renders: Renders,
                                                                     version: str) -> None:
    files = [*_resource_files(), SECRETS_EXAMPLE, *sorted(renders.directory.glob("*.yaml"))]
    result = _validate(tools, files, version)
    assert result.returncode == 0 and "ERROR" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_strict_validation_refuses_a_misspelt_field(tools: Path, renders: Renders, tmp_path: Path) -> None:
    """Without --strict a misspelt field is silently dropped by the API server; with it, the check fails."""
    docs = copy.deepcopy(renders.docs["base"])
    _deployment, container = _gateway(docs)
    container["securityContext"]["readOnlyRootFilesytem"] = container["securityContext"].pop("readOnlyRootFilesystem")
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump_all(docs))
    result = _validate(tools, [broken], KUBERNETES_VERSIONS[-1])
    assert result.returncode != 0 and "readOnlyRootFilesytem" in result.stdout + result.stderr


# -- the policy scanner ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkov_report(tools: Path, renders: Renders, tmp_path_factory: pytest.TempPathFactory) -> list[Manifest]:
    """One checkov run (it takes seconds to start) over every render plus one deliberately broken copy of
    the base, which proves the scanner still flags what it should."""
    scan = tmp_path_factory.mktemp("checkov")
    shutil.copytree(renders.directory, scan / "renders")
    docs = copy.deepcopy(renders.docs["base"])
    _deployment, container = _gateway(docs)
    del container["securityContext"]["readOnlyRootFilesystem"]
    (scan / "broken").mkdir()
    (scan / "broken" / "writable-root.yaml").write_text(yaml.safe_dump_all(docs))
    result = subprocess.run([str(tools / "checkov"), "-d", str(scan), "--framework", "kubernetes", "--skip-download",
                             "-o", "json"], capture_output=True, text=True, timeout=180, check=False, cwd=scan,
                            env=CHECKER_ENV)
    assert result.stdout.strip(), f"checkov printed no report:\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout)
    reports: list[Manifest] = report if isinstance(report, list) else [report]
    for part in reports:
        assert part["summary"]["parsing_errors"] == 0, part["summary"]
    return reports


def _checks(reports: list[Manifest], outcome: str, folder: str) -> Iterator[Manifest]:
    for part in reports:
        for check in part["results"][f"{outcome}_checks"]:
            if Path(check["file_path"]).parent.name == folder:
                yield check


def test_checkov_fails_no_check_on_any_render(checkov_report: list[Manifest], renders: Renders) -> None:
    failed = [f"{Path(c['file_path']).name}: {c['check_id']} {c['resource']} ({c['check_name']})"
              for c in _checks(checkov_report, "failed", "renders")]
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
    skipped: dict[str, set[str]] = {}
    for check in _checks(checkov_report, "skipped", "renders"):
        assert check["check_result"].get("suppress_comment"), check["check_id"]
        skipped.setdefault(check["resource"], set()).add(check["check_id"])
    assert skipped == EXPECTED_SKIPS
    # The scan did look at every Deployment of every render: the core container checks passed on each.
    passed = {(Path(c["file_path"]).stem, c["resource"], c["check_id"])
              for c in _checks(checkov_report, "passed", "renders")}
    for name, docs in renders.docs.items():
        for deployment in _find(docs, "Deployment"):
            resource = f"Deployment.{deployment['metadata']['namespace']}.{deployment['metadata']['name']}"
            for check in ("CKV_K8S_8", "CKV_K8S_9", "CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_28", "CKV_K8S_31",
                          "CKV_K8S_37", "CKV_K8S_38", "CKV_K8S_40"):
                assert (name, resource, check) in passed, f"{name}: {check} did not pass on {resource}"


def test_checkov_flags_a_container_with_a_writable_root_file_system(checkov_report: list[Manifest]) -> None:
    failed = {(c["resource"], c["check_id"]) for c in _checks(checkov_report, "failed", "broken")}
    assert failed == {("Deployment.clerk-gateway.clerk-gateway", "CKV_K8S_22")}


# -- what the gateway needs --------------------------------------------------------------------------------------

RENDER_NAMES = ("base", "example", *COMPONENTS)


@pytest.mark.parametrize("name", RENDER_NAMES)
def test_probes_and_ports_match_the_port_the_gateway_listens_on(renders: Renders, name: str) -> None:
    docs = renders.docs[name]
    deployment, container = _gateway(docs)
    env = _environment(docs, container)
    (port,) = container["ports"]
    assert port["containerPort"] == int(env["GATEWAY_PORT"])
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == env["GATEWAY_PORT"]
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["startupProbe"]["path"] == probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert all(probe["port"] in (port["name"], port["containerPort"]) for probe in probes.values())
    # the readiness timeout outlasts the backend probes /readyz makes (2 s each, clerk_gateway.readiness)
    assert container["readinessProbe"]["timeoutSeconds"] > 2
    (service,) = [s for s in _find(docs, "Service") if s["metadata"]["name"] == "clerk-gateway"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [port["name"]]


@pytest.mark.parametrize("name", RENDER_NAMES)
def test_workers_follow_the_cpu_limit(renders: Renders, name: str) -> None:
    """GATEWAY_WORKERS is read from limits.cpu by the downward API, so changing the limit changes the
    workers; the limit is a whole number of CPUs (the kubelet would round 1500m up to 2 workers)."""
    docs = renders.docs[name]
    _deployment, container = _gateway(docs)
    (workers,) = [item for item in container["env"] if item["name"] == "GATEWAY_WORKERS"]
    ref = workers["valueFrom"]["resourceFieldRef"]
    assert ref == {"containerName": container["name"], "resource": "limits.cpu", "divisor": "1"}
    limit = _cpu(container["resources"]["limits"]["cpu"])
    assert limit.denominator == 1 and _cpu(container["resources"]["requests"]["cpu"]) == limit
    env = _environment(docs, container)
    assert int(env["GATEWAY_WORKERS"]) == limit
    assert GatewaySettings(workers=env["GATEWAY_WORKERS"]).workers == limit  # the int setting takes the text
    config = _one(docs, "ConfigMap", container["envFrom"][0]["configMapRef"]["name"])
    assert not {"GATEWAY_WORKERS", "GATEWAY_PORT"} & set(config["data"]), "the pod spec owns these"


@pytest.mark.parametrize("name", RENDER_NAMES)
def test_a_pod_is_never_killed_while_it_drains(renders: Renders, name: str) -> None:
    """Grace period > preStop sleep + GATEWAY_DRAIN_SECONDS + uvicorn's graceful shutdown (cli.py), plus the
    worker pool's stop margin when there are several workers; and a rollout starts a new pod before it stops
    an old one."""
    docs = renders.docs[name]
    deployment, container = _gateway(docs)
    env = _environment(docs, container)
    drain = float(env.get("GATEWAY_DRAIN_SECONDS", GatewaySettings.model_fields["drain_seconds"].default))
    graceful = re.search(r"timeout_graceful_shutdown=(\d+)", (ROOT / "src/clerk_gateway/cli.py").read_text())
    assert graceful, "cli.py no longer sets uvicorn's timeout_graceful_shutdown: update this test"
    margin = 0.0
    if int(env["GATEWAY_WORKERS"]) > 1:  # the pool kills what is left this long after drain + graceful
        margin = float(importlib.import_module("clerk_gateway.supervisor")._STOP_MARGIN_SECONDS)
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop >= 5
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + drain + int(graceful.group(1)) + margin
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] in (0, "0%") and strategy["rollingUpdate"]["maxSurge"] >= 1


@pytest.mark.parametrize("name", RENDER_NAMES)
def test_selectors_find_their_pods(renders: Renders, name: str) -> None:
    """A selector that matches nothing is valid YAML and a silent outage: every Service, PDB, NetworkPolicy
    and spread constraint must select pods of a Deployment in the same render, and the HPA its Deployment."""
    docs = renders.docs[name]
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in _find(docs, "Deployment")}
    for deployment in _find(docs, "Deployment"):
        labels = pods[deployment["metadata"]["name"]]
        assert _selects(deployment["spec"]["selector"]["matchLabels"], labels)
        for spread in deployment["spec"]["template"]["spec"].get("topologySpreadConstraints", []):
            assert _selects(spread["labelSelector"]["matchLabels"], labels)
    for service in _find(docs, "Service"):
        assert any(_selects(service["spec"]["selector"], labels) for labels in pods.values()), service["metadata"]
    for budget in _find(docs, "PodDisruptionBudget"):
        assert any(_selects(budget["spec"]["selector"]["matchLabels"], labels) for labels in pods.values())
    for policy in _find(docs, "NetworkPolicy"):
        assert any(_selects(policy["spec"]["podSelector"]["matchLabels"], labels) for labels in pods.values())
        for rule in policy["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                assert any(_selects(peer["podSelector"]["matchLabels"], labels) for labels in pods.values())
    gateway, _container = _gateway(docs)
    assert "replicas" not in gateway["spec"], "the HPA owns the count; apply -k would reset a fixed one"
    (hpa,) = _find(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "clerk-gateway"}
    assert hpa["spec"]["minReplicas"] >= 2, "with one replica the PDB could never let a node drain"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    (budget,) = [b for b in _find(docs, "PodDisruptionBudget") if b["metadata"]["name"] == "clerk-gateway"]
    assert budget["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("name", RENDER_NAMES)
def test_every_pod_is_restricted_and_writes_nowhere(renders: Renders, name: str) -> None:
    docs = renders.docs[name]
    namespaces = {doc["metadata"].get("namespace") for doc in docs if doc["kind"] != "Namespace"}
    (namespace,) = _find(docs, "Namespace")
    assert namespaces == {namespace["metadata"]["name"]}, "every object belongs in the gateway's namespace"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    accounts = {a["metadata"]["name"]: a for a in _find(docs, "ServiceAccount")}
    for deployment in _find(docs, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
        assert accounts[pod["serviceAccountName"]]["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["runAsNonRoot"] is True and context["runAsUser"] >= 10000
    gateway, container = _gateway(docs)
    pod = gateway["spec"]["template"]["spec"]
    assert container["securityContext"]["runAsUser"] == pod["securityContext"]["runAsUser"] == GATEWAY_UID
    assert pod["securityContext"]["fsGroup"] == GATEWAY_UID  # what makes the Secret volumes readable
    # the gateway has no writable volume at all: mounts are read-only Secrets
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        assert mount["readOnly"] is True and "secret" in volumes[mount["name"]]


def _setting_names() -> set[str]:
    return {f"{prefix}{field.upper()}" for model, prefix in MODELS for field in model.model_fields}


@pytest.mark.parametrize("name", RENDER_NAMES)
def test_every_variable_is_a_gateway_setting_and_the_gateway_accepts_them(renders: Renders, name: str,
                                                                           monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Path) -> None:
    """An unknown CLERK_*/GATEWAY_* name is silently ignored by the settings (extra="ignore"), so a typo would
    deploy a default: every name must be a field, and GATEWAY_BACKENDS__<NAME>__<FIELD> a field of that
    backend's adapter. Then the whole environment goes through load_settings, as `serve` does."""
    docs = renders.docs[name]
    _deployment, container = _gateway(docs)
    env = _environment(docs, container)
    settings = _setting_names()
    backends = json.loads(env["GATEWAY_BACKENDS"])
    classes = adapter_classes()
    for variable in sorted(_variable_names(docs, container)):
        nested = re.fullmatch(r"GATEWAY_BACKENDS__([A-Z0-9_-]+?)__([A-Z0-9_]+)", variable)
        if nested:
            backend = nested.group(1).lower()
            assert backend in backends, f"{variable}: no backend {backend!r} in GATEWAY_BACKENDS"
            model = classes[backends[backend].get("adapter", backend)].settings_model
            assert nested.group(2).lower() in model.model_fields, f"{variable}: not a field of {model.__name__}"
        else:
            assert variable in settings, f"{variable} is not a gateway setting"
    monkeypatch.chdir(tmp_path)  # no .env
    for variable in [v for v in os.environ if v.startswith(("CLERK_", "GATEWAY_"))]:
        monkeypatch.delenv(variable)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    try:
        loaded = load_settings()
    except SettingsError as error:  # pragma: no cover - the message is the assertion
        pytest.fail(f"the gateway refuses the {name} settings: {error}")
    assert loaded.gateway.port == container["ports"][0]["containerPort"]
    mode = getattr(loaded.backends["hasura"], "auth_mode", None)
    assert mode == ("mint" if name in ("mint", "example") else "admin_secret")
    assert loaded.rate_limit.backend == ("redis" if name in ("redis", "example") else "memory")


def test_every_secret_reference_is_in_the_example_and_the_example_has_nothing_else(renders: Renders) -> None:
    example = set(_secret_values())
    used: set[tuple[str, str]] = set()
    for docs in renders.docs.values():
        for deployment in _find(docs, "Deployment"):
            pod = deployment["spec"]["template"]["spec"]
            for container in pod["containers"]:
                for item in container.get("env", []):
                    ref = item.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        used.add((ref["name"], ref["key"]))
            for volume in pod.get("volumes", []):
                if "secret" in volume:
                    secret = volume["secret"]
                    keys = [item["key"] for item in secret.get("items", [])] or [
                        key for (name, key) in example if name == secret["secretName"]]
                    used |= {(secret["secretName"], key) for key in keys}
    assert used == example


def test_mint_mounts_the_shared_key_read_only_where_the_settings_look(renders: Renders) -> None:
    for name in ("mint", "example"):
        docs = renders.docs[name]
        deployment, container = _gateway(docs)
        env = _environment(docs, container)
        listed = [path for path in env.get("GATEWAY_SIGNING_KEY_FILES", "").split(",") if path]
        paths = listed or [env["GATEWAY_SIGNING_KEY_FILE"]]
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        for path in map(Path, paths):
            mount = mounts[str(path.parent)]
            secret = volumes[mount["name"]]["secret"]
            assert mount["readOnly"] is True and secret["defaultMode"] == 0o440
            assert (secret["secretName"], path.name) in _secret_values()
        assert "GATEWAY_BACKENDS__HASURA__ADMIN_SECRET" not in env, "mint mode sends no admin secret"


def test_redis_is_private_unpersisted_and_reached_through_its_service(renders: Renders) -> None:
    docs = renders.docs["redis"]
    redis = _one(docs, "Deployment", "clerk-gateway-redis")
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--save") + 1] == "" and args[args.index("--appendonly") + 1] == "no"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert Path(args[0]).parent.as_posix() in mounts and "/data" in mounts
    _deployment, gateway = _gateway(docs)
    url = _environment(docs, gateway)["GATEWAY_REDIS_URL"]
    match = re.fullmatch(r"redis://:[^@]+@([a-z0-9-]+):(\d+)/\d+", url)
    assert match, url
    service = _one(docs, "Service", match.group(1))
    assert [p["port"] for p in service["spec"]["ports"]] == [int(match.group(2))]
    (policy,) = [p for p in _find(docs, "NetworkPolicy") if p["metadata"]["name"] == "clerk-gateway-redis"]
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"} and not policy["spec"].get("egress")


def test_a_configuration_change_rolls_the_pods(renders: Renders, tmp_path: Path) -> None:
    """The rolling-restart story: the ConfigMap's generated name hashes its content, so editing gateway.env
    changes the pod template, and `kubectl apply -k` starts a rollout (maxUnavailable 0) by itself."""
    tree = tmp_path / "kubernetes"
    shutil.copytree(KUBE, tree)
    before, _ = _gateway([d for d in yaml.safe_load_all(_render(renders.command, tree / "base")) if d])
    env_file = tree / "base" / "gateway.env"
    env_file.write_text(env_file.read_text().replace("GATEWAY_DRAIN_SECONDS=20", "GATEWAY_DRAIN_SECONDS=15"))
    after, _ = _gateway([d for d in yaml.safe_load_all(_render(renders.command, tree / "base")) if d])
    assert before["spec"]["template"] != after["spec"]["template"]


def test_the_images_are_pinned_by_digest_in_the_example_overlay(renders: Renders) -> None:
    for deployment in _find(renders.docs["example"], "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert re.search(r"@sha256:[0-9a-f]{64}$", container["image"]), container["image"]


# -- the signing key loader on a Secret volume -------------------------------------------------------------------

def _openssl_key(path: Path, *algorithm: str) -> None:
    """The key as docs/deploy.md tells operators to make it (openssl), or the same PKCS#8 PEM without it."""
    if shutil.which("openssl"):
        subprocess.run(["openssl", "genpkey", *algorithm, "-out", str(path)], check=True, capture_output=True,
                       timeout=60)
        return
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    key = (ed25519.Ed25519PrivateKey.generate() if "ed25519" in algorithm
           else rsa.generate_private_key(public_exponent=65537, key_size=2048))
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def test_the_signing_key_loader_reads_a_secret_volume_and_writes_nothing(tmp_path: Path) -> None:
    """The kubelet's layout of a Secret volume: the files sit in a timestamped directory, `..data` links to
    it and each key name links through `..data`; files are 0440 and the volume is read-only. The loader
    must follow the links, read the keys (the first signs) and create nothing."""
    volume = tmp_path / "keys"
    data = volume / "..2026_01_01_00_00_00.000000001"
    data.mkdir(parents=True)
    _openssl_key(data / "signing-key.pem", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048")
    _openssl_key(data / "next.pem", "-algorithm", "ed25519")
    (volume / "..data").symlink_to(data.name)
    for key in ("signing-key.pem", "next.pem"):
        (data / key).chmod(0o440)
        (volume / key).symlink_to(f"..data/{key}")
    data.chmod(0o555)
    volume.chmod(0o555)
    before = sorted(str(p.relative_to(volume)) for p in volume.rglob("*"))
    try:
        keys = load_signing_keys([str(volume / "signing-key.pem"), str(volume / "next.pem")])
        after = sorted(str(p.relative_to(volume)) for p in volume.rglob("*"))
    finally:
        volume.chmod(0o755)
        data.chmod(0o755)
    assert [key.alg for key in keys] == ["RS256", "EdDSA"]
    assert after == before
