"""clerk-gateway's benchmark: the gateway against the bare upstream and two peer proxies.

Everything runs on this one machine, on 127.0.0.1 only: nginx as the upstream (and the "direct"
baseline), the gateway, the peers, and wrk as the load generator. Figures are reported as ratios
to direct measured *in the same run*, so that a reader's hardware (or a noisy neighbour) shifts
every row alike. docs/performance.md explains the method and how to read the tables.

Run it through ``bench/run.sh`` (installs nginx, wrk and the venv when missing); this file is the
orchestration: tokens → nginx → for each target: start, check it answers correctly, warm up,
measure under load (CPU and RSS of its process tree around the run), measure with one connection,
stop → optional memory run → markdown table in bench/results/<timestamp>.md, also printed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType

import make_tokens
import procs
import report
import targets
import wrkrun
from procs import Supervisor
from targets import KINDS, Target, TargetSpec

BENCH_DIR = Path(__file__).resolve().parent
WORK = BENCH_DIR / ".work"
RESULTS = BENCH_DIR / "results"
EXPECTED_ANSWER = json.loads(targets.UPSTREAM_BODY)
MAX_ERROR_SHARE = 0.01
KEEPALIVE_BODY_LIMIT = 1024 * 1024  # the gateway's default GATEWAY_MAX_BODY_BYTES


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _kinds(text: str) -> list[str]:
    kinds = _csv(text)
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(KINDS)} (got {text!r})")
    return kinds


def _workers(text: str) -> list[int]:
    try:
        values = [int(part) for part in _csv(text)]
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    if not values or any(value < 1 or value > 16 for value in values):
        raise argparse.ArgumentTypeError("worker counts are integers from 1 to 16")
    return values


def _duration(text: str) -> str:
    try:
        seconds = wrkrun.parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    if not 1 <= seconds <= 600:
        raise argparse.ArgumentTypeError("a duration from 1 s to 10 min")
    return text.strip()


_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def _assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not _ENV_NAME.match(name):
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _variant(text: str) -> tuple[str, dict[str, str]]:
    name, sep, rest = text.partition(":")
    if not sep or not re.match(r"^[A-Za-z0-9_.-]+$", name):
        raise argparse.ArgumentTypeError(f"expected NAME:VAR=VALUE[,VAR=VALUE…], got {text!r}")
    return name, dict(_assignment(item) for item in _csv(rest))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/run.sh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=_duration, default=None,
                        help="length of each measured wrk run (default 15s; 3s with --quick)")
    parser.add_argument("--warmup", type=_duration, default=None,
                        help="length of the warm-up run before each measured run (default 5s; 1s with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="short runs, no memory run, and skip the Node peer if it cannot be installed")
    parser.add_argument("--only", type=_kinds, default=list(KINDS),
                        help=f"comma-separated targets to measure, of {','.join(KINDS)} (default all); "
                             "nginx is started in any case, as the upstream")
    parser.add_argument("--workers", type=_workers, default=[1, 2],
                        help="gateway worker counts, one row each (default 1,2)")
    parser.add_argument("--memory-minutes", type=float, default=None,
                        help="length of the gateway memory run in minutes (default 5; 0 skips it)")
    parser.add_argument("--memory-interval", type=float, default=10.0, help="seconds between RSS samples")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections under load (default 64)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads under load (default 2)")
    parser.add_argument("--tokens", type=int, default=1000, help="distinct users / tokens (default 1000)")
    parser.add_argument("--no-single", action="store_true", help="skip the one-connection latency runs")
    parser.add_argument("--no-mint", action="store_true", help="skip the mint-mode gateway row")
    parser.add_argument("--no-tracing", action="store_true",
                        help="skip the interleaved tracing off vs on comparison")
    parser.add_argument("--paired-rounds", type=int, default=4, metavar="N",
                        help="rounds of 5 s slices in the interleaved comparisons (default 4; more rounds, less drift)")
    parser.add_argument("--no-documents", action="store_true",
                        help="skip the interleaved trusted documents off vs enforce comparison")
    parser.add_argument("--no-keepalive-check", action="store_true",
                        help="skip the check that no refusal leaves a client with a dead keep-alive connection")
    parser.add_argument("--gateway-env", type=_assignment, action="append", default=[], metavar="VAR=VALUE",
                        help="extra environment for every gateway run (repeatable)")
    parser.add_argument("--variant", type=_variant, action="append", default=[],
                        metavar="NAME:VAR=VALUE[,VAR=VALUE]",
                        help="an extra gateway row per worker count with these settings, e.g. "
                             "nocache:GATEWAY_VERIFIED_TOKEN_CACHE_SIZE=0 (repeatable)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--pids-file", type=Path, default=None, help=argparse.SUPPRESS)
    return parser


def plan(args: argparse.Namespace) -> list[TargetSpec]:
    """The rows to measure, in order: direct first (the baseline), then the gateways, then peers."""
    specs: list[TargetSpec] = []
    if "direct" in args.only:
        specs.append(TargetSpec("direct", "direct (nginx)"))
    if "gateway" in args.only:
        base_env = dict(args.gateway_env)
        variants: list[tuple[str, dict[str, str]]] = [("", {}), *args.variant]
        for name, env in variants:
            for workers in args.workers:
                label = f"gateway[{name}]" if name else "gateway"
                specs.append(TargetSpec("gateway", f"{label} w={workers}", workers, {**base_env, **env}))
        if not args.no_mint:
            # mint mode, bracketed by the admin_secret row measured again right after it: on a shared
            # VM the figures drift over a run, so mint is compared with the mean of its two neighbours.
            workers = args.workers[0]
            specs.append(TargetSpec("gateway", f"gateway[mint] w={workers}", workers,
                                    {**base_env, targets.AUTH_MODE_KEY: "mint"}))
            specs.append(TargetSpec("gateway", f"gateway w={workers} (again, after mint)", workers, base_env))
    if "naive" in args.only:
        specs.append(TargetSpec("naive", "naive FastAPI+httpx+jose"))
    if "node" in args.only:
        specs.append(TargetSpec("node", "node jose+undici"))
    return specs


class Interrupted(Exception):
    """Raised from the signal handler so that every ``finally`` (and the cleanup) runs."""


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    def handler(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Bench:
    """One benchmark run: owns the supervisor, the tokens and the collected results."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.duration: str = args.duration or ("3s" if args.quick else "15s")
        self.warmup: str = args.warmup or ("1s" if args.quick else "5s")
        minutes = args.memory_minutes
        self.memory_minutes: float = (0.0 if args.quick else 5.0) if minutes is None else minutes
        self.logs = WORK / "logs"
        self.supervisor = Supervisor(self.logs, args.pids_file)
        self.notes: list[str] = []
        self.results: list[report.TargetResult] = []
        self.memory: report.MemoryRun | None = None
        self.env = targets.clean_env()
        self.tokens: make_tokens.TokenSet | None = None
        self.direct: Target | None = None

    # -- setup -------------------------------------------------------------------------------------

    def preflight(self, specs: list[TargetSpec]) -> list[TargetSpec]:
        if sys.platform != "linux":
            raise SystemExit("bench: Linux only (CPU and memory are read from /proc)")
        if shutil.which("wrk") is None:
            raise SystemExit("bench: wrk is not installed (bench/run.sh installs it)")
        if targets.nginx_binary() is None:
            raise SystemExit("bench: nginx is not installed (bench/run.sh installs it)")
        if any(spec.kind == "node" for spec in specs):
            problem = targets.prepare_node(WORK)
            if problem is not None:
                if not self.args.quick:
                    raise SystemExit(f"bench: the Node peer cannot run: {problem} "
                                     "(use --only to leave it out, or --quick to skip it)")
                self.notes.append(f"Node peer skipped: {problem}.")
                specs = [spec for spec in specs if spec.kind != "node"]
        if any(spec.kind == "gateway" for spec in specs):
            check = subprocess.run([targets.venv_python(), "-c", "import clerk_gateway.cli"],
                                   capture_output=True, text=True, check=False)
            if check.returncode != 0:
                raise SystemExit(f"bench: clerk_gateway is not importable from the venv:\n{check.stderr[-800:]}")
        return specs

    def headers(self, token: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        return headers

    def check_answers(self, target: Target) -> None:
        """Before measuring: the target must answer 200 with the upstream's body for a valid token,
        and (proxies only) refuse a request without one — a fast 401 is not a benchmark result."""
        assert self.tokens is not None
        body = wrkrun.GRAPHQL_BODY.encode()
        reply = procs.wait_for_http(target.managed, target.url, body, self.headers(self.tokens.first_token()))
        tokens = self.tokens.tokens.read_text().split()
        for token in (tokens[0], tokens[len(tokens) // 2], tokens[-1]):
            reply = procs.http_post(target.url, body, self.headers(token))
            try:
                answer = json.loads(reply.body)
            except ValueError:
                answer = None
            if reply.status != 200 or answer != EXPECTED_ANSWER:
                raise RuntimeError(f"{target.label} answered {reply.status} {reply.body[:300]!r} to a valid "
                                   f"token; expected 200 {targets.UPSTREAM_BODY}\n{target.managed.log_tail()}")
        if target.spec.kind != "direct":
            reply = procs.http_post(target.url, body, self.headers(None))
            if reply.status != 401:
                raise RuntimeError(f"{target.label} answered {reply.status} without a token; expected 401")
        if target.spec.workers > 1:
            # The first worker can answer before the others have booted; measure all of them.
            wanted = target.spec.workers + 1
            if not procs.wait_until(lambda: len(target.managed.tree()) >= wanted, timeout=60):
                raise RuntimeError(f"{target.label}: fewer than {target.spec.workers} workers came up")
            procs.wait_for_http(target.managed, target.url, body, self.headers(tokens[0]))

    def start(self, spec: TargetSpec) -> Target:
        assert self.tokens is not None and self.direct is not None
        upstream = targets.upstream_base(self.direct)
        if spec.kind == "gateway":
            return targets.start_gateway(self.supervisor, WORK, spec, public_pem=self.tokens.public_pem(),
                                         upstream=upstream)
        if spec.kind == "naive":
            return targets.start_naive(self.supervisor, WORK, spec, pem_file=self.tokens.public_key,
                                       upstream=upstream)
        if spec.kind == "node":
            return targets.start_node(self.supervisor, WORK, spec, pem_file=self.tokens.public_key,
                                      upstream=upstream)
        raise ValueError(spec.kind)

    # -- measuring ---------------------------------------------------------------------------------

    def wrk(self, target: Target, *, connections: int, threads: int, duration: str, tag: str) -> wrkrun.WrkResult:
        assert self.tokens is not None
        name = f"{target.managed.name}.{tag}.wrk.txt"
        return wrkrun.run_wrk(target.url, self.tokens.tokens, threads=threads, connections=connections,
                              duration=duration, base_env=self.env, log_path=self.logs / name,
                              body=target.spec.env.get(targets.WRK_BODY_KEY))

    def measure(self, target: Target) -> report.TargetResult:
        args = self.args
        print(f"bench: {target.label}: warm-up {self.warmup}, then {self.duration} "
              f"at {args.connections} connections", file=sys.stderr, flush=True)
        self.wrk(target, connections=args.connections, threads=args.threads, duration=self.warmup, tag="warmup")
        tree = target.managed.tree()
        cpu_before = procs.cpu_seconds(tree)
        started = time.monotonic()
        load = self.wrk(target, connections=args.connections, threads=args.threads, duration=self.duration,
                        tag="load")
        wall = time.monotonic() - started
        tree = target.managed.tree()
        cpu = procs.cpu_seconds(tree) - cpu_before
        rss = sum(procs.rss_bytes(pid) for pid in tree)
        result = report.TargetResult(target.label, target.spec.kind, target.spec.workers, load, cpu, wall,
                                     rss, len(tree))
        self._flag_errors(target.label, "load", load)
        if not args.no_single and target.spec.kind in ("direct", "gateway"):
            self.wrk(target, connections=1, threads=1, duration=self.warmup, tag="single-warmup")
            result.single = self.wrk(target, connections=1, threads=1, duration=self.duration, tag="single")
            self._flag_errors(target.label, "one-connection", result.single)
        print(f"bench: {target.label}: {load.rps:,.0f} requests/s, p99 {report.ms(load.latency_us['p99'])} ms",
              file=sys.stderr, flush=True)
        return result

    def keepalive_check(self, target: Target) -> None:
        """After the load run: refusals of every kind mixed with accepted requests over keep-alive
        clients, and the defect's own single-client case; any transport error is a warning.

        A gateway that answers fast but leaves clients with dead connections after a 401 is not
        fast for its users (the next request fails), so the benchmark checks it on every run.
        """
        assert self.tokens is not None
        sys.path.insert(0, str(BENCH_DIR.parent))
        from tests.support.refusal_mix import run_mix, run_single_client_malformed

        kit = make_tokens.refusal_kit(self.tokens)
        base, _, path = target.url.partition("/hasura")

        requests = 1_000 if self.args.quick else 4_000
        print(f"bench: {target.label}: keep-alive check ({requests} mixed requests, then 3000 refusals "
              "on one client)", file=sys.stderr, flush=True)
        mix = run_mix(base, kit, requests=requests, clients=4, limit=KEEPALIVE_BODY_LIMIT, path="/hasura" + path)
        single = run_single_client_malformed(base, requests=3_000, body_bytes=20_000, path="/hasura" + path)
        for name, result in (("mixed refusals", mix), ("one client, 3 KB malformed token, 20 KB body", single)):
            line = f"keep-alive after refusals, {target.label}, {name}: {result.summary()}"
            if result.transport_errors or result.unexpected:
                line = "WARNING: " + line + "; " + "; ".join((result.errors + result.unexpected)[:3])
            self.notes.append(line)

    def paired_mint(self) -> None:
        """mint against admin_secret, interleaved (see :meth:`interleaved`)."""
        base_env = dict(self.args.gateway_env)
        self.interleaved("mint vs admin_secret", [("admin_secret", base_env),
                                                  ("mint", {**base_env, targets.AUTH_MODE_KEY: "mint"})])

    def paired_tracing(self) -> None:
        """Tracing off (the default) against on, interleaved: ``always_on`` records and exports every
        request (to nginx's sink; the worst case), ``parentbased_traceidratio`` 0.1 one in ten (what
        docs/deploy.md suggests for production) and 0.01; the rest are propagated but not recorded."""
        assert self.direct is not None
        base_env = dict(self.args.gateway_env)
        self.interleaved("tracing off vs on", [
            ("off", base_env),
            ("on, every request sampled", {**base_env, **targets.tracing_env(self.direct, sampler="always_on")}),
            ("on, 1 in 10 sampled", {**base_env, **targets.tracing_env(self.direct, ratio=0.1)}),
            ("on, 1 in 100 sampled", {**base_env, **targets.tracing_env(self.direct, ratio=0.01)}),
        ])

    def paired_documents(self) -> None:
        """Trusted documents' cost (issue 15: enforce with a 5,000-operation manifest within 5 % of
        off), interleaved: the same query sent as text (found by its text) and by id."""
        base_env = dict(self.args.gateway_env)
        manifest, own_id = targets.documents_manifest(WORK, operations=5000,
                                                       body=json.loads(wrkrun.GRAPHQL_BODY)["query"])
        enforce = json.dumps({"mode": "enforce", "manifests": [str(manifest)]})
        self.interleaved("trusted documents off vs enforce (5,000-operation manifest)", [
            ("off", base_env),
            ("enforce, text in the manifest", {**base_env, targets.DOCUMENTS_KEY: enforce}),
            ("enforce, by id", {**base_env, targets.DOCUMENTS_KEY: enforce,
                                targets.WRK_BODY_KEY: json.dumps({"documentId": own_id})}),
        ])

    def interleaved(self, title: str, variants: list[tuple[str, dict[str, str]]]) -> None:
        """Gateway variants measured *interleaved*: all up at once, the load alternating between them
        in short slices, so that the VM's drift over a run falls on every variant alike. Each is
        reported as a ratio to direct and to the first variant."""
        assert self.direct is not None
        workers = self.args.workers[0]
        specs = [TargetSpec("gateway", f"paired {name} w={workers}", workers, env) for name, env in variants]
        slices, length = (2, "3s") if self.args.quick else (self.args.paired_rounds, "5s")
        started = [self.start(spec) for spec in specs]
        try:
            totals = [[0, 0.0, 0.0] for _ in started]  # requests, seconds, CPU seconds
            for target in started:
                self.check_answers(target)
                self.wrk(target, connections=self.args.connections, threads=self.args.threads,
                         duration=self.warmup, tag="paired-warmup")
            print(f"bench: {title} interleaved, {slices} x {length} each", file=sys.stderr, flush=True)
            for n in range(slices):
                for index, target in enumerate(started):
                    tree = target.managed.tree()
                    cpu_before = procs.cpu_seconds(tree)
                    result = self.wrk(target, connections=self.args.connections, threads=self.args.threads,
                                      duration=length, tag=f"paired-{n}")
                    totals[index][0] += result.requests
                    totals[index][1] += result.duration_s
                    totals[index][2] += procs.cpu_seconds(target.managed.tree()) - cpu_before
                    self._flag_errors(target.label, f"paired slice {n}", result)
            direct_rps = next((r.load.rps for r in self.results if r.kind == "direct"), float("nan"))
            rates = [requests / seconds if seconds else float("nan") for requests, seconds, _ in totals]
            cpu = [cpu_s * 1e6 / requests if requests else float("nan") for requests, _, cpu_s in totals]
            parts = [f"{name} {rate:,.0f} req/s (ratio {rate / direct_rps:.3f}, {cpu_us:.0f} µs CPU/request"
                     + (f", {rate / rates[0]:.2f} x {variants[0][0]})" if index else ")")
                     for index, ((name, _), rate, cpu_us) in enumerate(zip(variants, rates, cpu, strict=True))]
            self.notes.append(f"{title}, interleaved ({slices} x {length} slices each, w={workers}): "
                              + "; ".join(parts))
        finally:
            for target in started:
                self.supervisor.stop(target.managed)

    def _flag_errors(self, label: str, run: str, result: wrkrun.WrkResult) -> None:
        if result.requests == 0 or result.error_count > MAX_ERROR_SHARE * result.requests:
            self.notes.append(f"WARNING: {label} ({run} run): {result.error_count} errors in "
                              f"{result.requests} requests — its figures are not comparable.")

    def memory_run(self, workers: int) -> report.MemoryRun:
        """The gateway under load for N minutes; RSS of each of its processes every interval."""
        assert self.tokens is not None
        args = self.args
        spec = TargetSpec("gateway", f"gateway w={workers} (memory run)", workers, dict(args.gateway_env))
        target = self.start(spec)
        try:
            self.check_answers(target)
            main_pid = target.managed.pid
            children = [pid for pid in target.managed.tree() if pid != main_pid]
            names = {main_pid: "gateway" if workers == 1 else "supervisor"}
            workers_seen = 0
            for pid in sorted(children):
                kind = procs.role(pid)
                if kind == "worker":
                    workers_seen += 1
                    kind = f"worker {workers_seen}"
                names[pid] = kind
            idle = {pid: procs.rss_bytes(pid) for pid in names}
            run = report.MemoryRun(spec.label, workers, self.memory_minutes, args.memory_interval, names, idle)
            seconds = max(1, round(self.memory_minutes * 60))
            print(f"bench: memory run: {seconds} s under load, RSS every {args.memory_interval:g} s",
                  file=sys.stderr, flush=True)
            argv = wrkrun.wrk_command(target.url, threads=args.threads, connections=args.connections,
                                      duration=f"{seconds}s")
            load = self.supervisor.start("memory.wrk", argv, env=wrkrun.wrk_env(self.env, self.tokens.tokens),
                                         cwd=WORK)
            started = time.monotonic()
            deadline = started + seconds + 60
            next_sample = started + args.memory_interval
            while load.alive() and time.monotonic() < deadline:
                time.sleep(min(1.0, max(0.0, next_sample - time.monotonic())))
                if time.monotonic() >= next_sample and load.alive():
                    run.samples.append((round(time.monotonic() - started, 1),
                                        {pid: procs.rss_bytes(pid) for pid in names}))
                    next_sample += args.memory_interval
            run.samples.append((round(time.monotonic() - started, 1), {pid: procs.rss_bytes(pid) for pid in names}))
            self.supervisor.stop(load)
            try:
                run.load = wrkrun.parse_output(load.log_path.read_text())
                self._flag_errors(spec.label, "memory", run.load)
            except RuntimeError as error:
                self.notes.append(f"memory run: no wrk summary ({error})")
            return run
        finally:
            self.supervisor.stop(target.managed)

    # -- the whole run -----------------------------------------------------------------------------

    def run(self) -> str:
        specs = self.preflight(plan(self.args))
        WORK.mkdir(parents=True, exist_ok=True)
        started = dt.datetime.now(dt.UTC)
        meta = self.metadata(started)
        self.tokens = make_tokens.generate(WORK / "tokens", count=self.args.tokens, issuer=targets.ISSUER)
        self.direct = targets.start_direct(self.supervisor, WORK)
        self.check_answers(self.direct)
        for spec in specs:
            if spec.kind == "direct":
                self.results.append(self.measure(self.direct))
                continue
            target = self.start(spec)
            try:
                self.check_answers(target)
                self.results.append(self.measure(target))
                if spec.kind == "gateway" and not self.args.no_keepalive_check:
                    self.keepalive_check(target)
            finally:
                self.supervisor.stop(target.managed)
        if "gateway" in self.args.only and not self.args.no_mint:
            self.paired_mint()
        if "gateway" in self.args.only and not self.args.no_tracing:
            self.paired_tracing()
        if "gateway" in self.args.only and not self.args.no_documents:
            self.paired_documents()
        if self.memory_minutes > 0 and "gateway" in self.args.only:
            self.memory = self.memory_run(max(self.args.workers))
        meta["finished"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        text = report.render(meta, self.results, self.memory, self.notes)
        self.save(started, text)
        return text

    def save(self, started: dt.datetime, text: str) -> None:
        results_dir: Path = self.args.results_dir
        results_dir.mkdir(parents=True, exist_ok=True)
        stamp = started.strftime("%Y%m%d-%H%M%S")
        (results_dir / f"{stamp}.md").write_text(text)
        data = {"results": [row.to_json() for row in self.results],
                "memory": self.memory.to_json() if self.memory else None, "notes": self.notes,
                "duration": self.duration, "warmup": self.warmup, "connections": self.args.connections,
                "threads": self.args.threads, "tokens": self.args.tokens}
        (results_dir / f"{stamp}.json").write_text(json.dumps(data, indent=2) + "\n")
        print(f"bench: wrote {results_dir / (stamp + '.md')}", file=sys.stderr)

    def metadata(self, started: dt.datetime) -> dict[str, str]:
        meta = {
            "started": started.strftime("%Y-%m-%d %H:%M:%S UTC"),
            "machine": f"{_cpu_model()}, {os.cpu_count()} logical CPUs, {_memory_total()}, "
                       f"Linux {platform.release()}",
            "load average at start": " ".join(f"{value:.2f}" for value in os.getloadavg()),
            "versions": _versions(),
            "duration": self.duration,
            "warm-up": self.warmup,
            "connections": str(self.args.connections),
            "threads": str(self.args.threads),
            "tokens": f"{self.args.tokens} distinct users, RS256 (RSA 2048), Clerk session-token shape",
            "upstream": "nginx, worker_processes 1, fixed JSON body on POST /v1/graphql",
        }
        if self.args.gateway_env:
            meta["gateway extra env"] = ", ".join(f"{name}={value}" for name, value in self.args.gateway_env)
        for name, env in self.args.variant:
            meta[f"variant {name}"] = ", ".join(f"{key}={value}" for key, value in env.items())
        return meta


def _first_line(argv: Sequence[str]) -> str:
    try:
        completed = subprocess.run(list(argv), capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    output = (completed.stdout or completed.stderr).strip().splitlines()
    return output[0].strip() if output else "?"


def _versions() -> str:
    python = targets.venv_python()
    gateway = _first_line([python, "-c", "import clerk_gateway, sys; print(clerk_gateway.__version__)"])
    libs = _first_line([python, "-c", "import importlib.metadata as m; print(' '.join(f'{p} ' + m.version(p) "
                                      "for p in ('uvicorn', 'fastapi', 'httpx', 'aiohttp', 'python-jose')))"])
    commit = _first_line(["git", "-C", str(BENCH_DIR), "rev-parse", "--short", "HEAD"])
    nginx = _first_line([targets.nginx_binary() or "nginx", "-v"]).replace("nginx version: ", "")
    wrk = " ".join(_first_line(["wrk", "--version"]).split()[:2])
    node = _first_line(["node", "--version"]) if shutil.which("node") else "absent"
    commit_text = commit if re.fullmatch(r"[0-9a-f]{4,40}", commit) else "uncommitted"
    return (f"clerk-gateway {gateway} ({commit_text}); Python {platform.python_version()}; {libs}; "
            f"{nginx}; {wrk}; node {node}")


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _memory_total() -> str:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
    return "? RAM"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bench = Bench(args)
    with signals_raise():
        try:
            text = bench.run()
        except Interrupted as stop:
            print(f"bench: interrupted ({stop}); stopping everything it started", file=sys.stderr)
            return 130
        except RuntimeError as error:
            print(f"bench: {error}", file=sys.stderr)
            return 1
        finally:
            bench.supervisor.stop_all()
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
