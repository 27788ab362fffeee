"""The ``clerk-gateway`` command: serve, demo, check, token, inspect, backfill, documents check."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clerk_gateway import __version__
from clerk_gateway.settings import Settings, SettingsError, load_settings


def _load_or_report() -> Settings | None:
    try:
        return load_settings()
    except SettingsError as error:
        print("clerk-gateway: the settings have problems:", file=sys.stderr)
        for variable, message in error.problems:
            print(f"  {variable}: {message}", file=sys.stderr)
        return None


def load_serve_settings() -> Settings | None:
    """The settings ``serve`` runs with, or None after printing every problem (one line each).
    A ``mint`` backend's key file is created here when missing, once, before any worker starts;
    a pool's new worker (a SIGHUP reload) calls this again, so a bad reload is reported the same way."""
    settings = _load_or_report()
    if settings is None:
        return None
    if any(getattr(backend, "auth_mode", None) == "mint" for backend in settings.backends.values()):
        from clerk_gateway.auth.minting import prepare_signing_keys

        problem = prepare_signing_keys(settings.gateway)
        if problem is not None:
            print(f"clerk-gateway: the settings have problems:\n  {problem}", file=sys.stderr)
            return None
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from clerk_gateway.edge.protocol import EdgeLimits, edge_http_protocol
    from clerk_gateway.observability.logging import configure_logging, uvicorn_log_config
    from clerk_gateway.server import GatewayServer, GatewayWebSocketProtocol

    settings = load_serve_settings()
    if settings is None:
        return 2
    gateway = settings.gateway
    configure_logging(gateway.log_level, gateway.log_format)
    options: dict[str, Any] = dict(
        host=gateway.host, port=gateway.port, workers=gateway.workers,
        loop="uvloop" if sys.platform != "win32" else "asyncio", http=edge_http_protocol(EdgeLimits(
            max_header_bytes=gateway.max_header_bytes, header_timeout=gateway.client_header_timeout_seconds)),
        log_config=uvicorn_log_config(gateway.log_level, gateway.log_format),
        # permessage-deflate keeps a zlib compressor and decompressor per socket (~40 KB, docs/performance.md)
        # for frames that are small anyway; the gateway-to-upstream leg is uncompressed too.
        ws=GatewayWebSocketProtocol, ws_max_size=gateway.ws_max_message_bytes, ws_per_message_deflate=False,
        access_log=False, server_header=False, date_header=False, proxy_headers=False, lifespan="on",
        timeout_keep_alive=gateway.keep_alive_timeout_seconds, timeout_graceful_shutdown=10,
    )
    if gateway.workers == 1:  # the settings just checked, not a second read that could differ
        from functools import partial

        from clerk_gateway.app import create_app

        config = uvicorn.Config(partial(create_app, settings), factory=True, **options)
        GatewayServer(config, drain_seconds=gateway.drain_seconds).run()
        return 0
    from clerk_gateway.supervisor import WorkerPool

    # each worker reads and checks the settings itself (a SIGHUP reload is a new worker reading them again)
    config = uvicorn.Config("clerk_gateway.app:create_app", factory=True, **options)
    return WorkerPool(config, workers=gateway.workers, drain_seconds=gateway.drain_seconds).run()


def cmd_demo(args: argparse.Namespace) -> int:
    from clerk_gateway.demo import run_demo

    try:
        asyncio.run(run_demo(args.host, args.port, args.backend_port))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from clerk_gateway.checks import run_check

    settings = _load_or_report()
    if settings is None:
        return 2
    return asyncio.run(run_check(settings))


def cmd_token(args: argparse.Namespace) -> int:
    from clerk_gateway.auth.dev_issuer import DevelopmentIssuer

    issuer = DevelopmentIssuer.load_or_create(Path(args.key_file), issuer=args.issuer)
    if args.jwks:
        import json

        print(json.dumps(issuer.jwks()))
        return 0
    if args.public_pem:
        print(issuer.public_pem().strip())
        return 0
    print(issuer.mint(args.sub, lifetime=args.lifetime, session=not args.template, azp=args.azp))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Inspect works without complete settings too: that is when "why is my token refused?" is asked."""
    from clerk_gateway.checks import run_inspect
    from clerk_gateway.inspection import inspect_without_settings, print_report

    from_stdin = args.token == "-"  # noqa: S105 - "-" means standard input, not a password
    text = sys.stdin.read() if from_stdin else args.token
    try:
        settings = load_settings()
    except SettingsError as error:
        return print_report(inspect_without_settings(text, error.problems), as_json=args.json)
    return asyncio.run(run_inspect(settings, text, as_json=args.json))



BACKFILL_HELP = """\
Copy every Clerk user into the backend's users table (GATEWAY_USER_SYNC) through the same guarded
upsert the webhook endpoint uses. The users are listed with CLERK_SECRET_KEY from Clerk's Backend
API (GET /v1/users, 500 a page, oldest first: order_by=+created_at); a 429 waits Retry-After
(at most 60 s) and asks for the same page again.

Safe to run while webhooks arrive, and to run again: users created meanwhile land on later pages
(ascending order), and a user a webhook updated meanwhile keeps the newer version (counted
unchanged) when GATEWAY_USER_SYNC has a version_column.

Progress goes to standard error (one updating line on a terminal). One summary line ends it, on
standard output:
  backfill: 1,234 users applied, 5 unchanged, 0 skipped, 0 failed (3 pages, 1 rate-limit wait)

exit status: 0 every user was written or was already current, 1 a user failed or the run stopped
(a line on standard error says why), 2 the settings have problems.
"""


def _backfill_page_size(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 500:
        raise argparse.ArgumentTypeError("must be a whole number from 1 to 500 (Clerk's maximum limit)")
    return int(text)


def cmd_backfill(args: argparse.Namespace) -> int:
    from clerk_gateway.webhooks.backfill import run_backfill

    settings = _load_or_report()
    if settings is None:
        return 2
    missing = []
    if settings.user_sync is None:
        missing.append("GATEWAY_USER_SYNC: not set: backfill writes the users where the webhook sync does "
                       "(backend, table, columns)")
    if settings.clerk.secret_key is None:
        missing.append("CLERK_SECRET_KEY: not set: backfill lists the users with the instance's secret key "
                       "(sk_live_… or sk_test_…)")
    if missing:
        print("clerk-gateway: the settings have problems:", *(f"  {line}" for line in missing), sep="\n",
              file=sys.stderr)
        return 2
    try:
        return asyncio.run(run_backfill(settings, page_size=args.page_size, dry_run=args.dry_run))
    except KeyboardInterrupt:
        print("\nclerk-gateway backfill: interrupted; running it again is safe", file=sys.stderr)
        return 130

INSPECT_HELP = """\
Decode a token (header and claims; never the signature) and explain, check by check, whether
the settings accept it. The token may be given as 'Bearer <token>', or as - to read it from
standard input.

With complete settings the keys are loaded and the gateway's own verifier runs every check.
Without them (while setting up) every check that needs no key or backend still runs: token
format, header policy, claim types, validity period (with CLERK_CLOCK_SKEW_SECONDS or the
default 5 s), session status, token class, and the issuer and authorized party when
CLERK_ISSUER/CLERK_PUBLISHABLE_KEY and CLERK_AUTHORIZED_PARTIES are set. Each check that could
not run is listed with the setting that would let it run.

exit status:
  complete settings:    0 the settings accept the token, 1 they refuse it
  incomplete settings:  0 every check that could run passed, 1 one of them failed
  undecodable token:    1, with one line on standard error naming the reason

--json prints one JSON object instead (format 1): header, claims, kind, details, times
(now/iat/nbf/exp as unix, utc and local; exp with seconds_left), checks (name, status
passed|failed|not-run, detail, setting), settings_problems, backends and accepted
(true/false, or null when nothing failed but not every check could run).
"""


def cmd_documents_check(args: argparse.Namespace) -> int:
    from clerk_gateway.documents.check import check_manifests

    return check_manifests(args.files)


DOCUMENTS_HELP = """\
Validate trusted-document manifests before a deploy: Apollo persisted query manifests
(@apollo/generate-persisted-query-manifest) and flat {"<id>": "<document>"} maps (GraphQL Codegen's
persisted-documents.json, Relay's persisted_queries.json). Each file must be readable and in one of
those formats, every document must parse, an id may not name two documents, and no document may
break the GraphQL limits (GATEWAY_GRAPHQL_* when set, else the defaults). No other setting is needed.

exit status: 0 every file is usable, 1 a problem (one line each on standard error).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clerk-gateway", description=__doc__)
    parser.add_argument("--version", action="version", version=f"clerk-gateway {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the gateway from the settings").set_defaults(func=cmd_serve)
    demo = commands.add_parser("demo", help="run a self-contained demo (dev issuer + echo backend)")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--backend-port", type=int, default=8001)
    demo.set_defaults(func=cmd_demo)
    commands.add_parser("check", help="validate settings, fetch keys, probe backends").set_defaults(
        func=cmd_check)
    token = commands.add_parser("token", help="mint a development token with the development key")
    token.add_argument("--sub", default="user_dev")
    token.add_argument("--lifetime", type=int, default=3600)
    token.add_argument("--azp", default=None)
    token.add_argument("--template", action="store_true", help="a JWT-template token (no sid)")
    token.add_argument("--issuer", default="http://127.0.0.1:8001")
    token.add_argument("--key-file", default=".clerk-gateway/dev-key.pem")
    token.add_argument("--jwks", action="store_true", help="print the development JWKS instead")
    token.add_argument("--public-pem", action="store_true", help="print the public key (for CLERK_JWT_KEY)")
    token.set_defaults(func=cmd_token)
    inspect = commands.add_parser("inspect", help="explain whether the settings accept a token",
                                  description=INSPECT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    inspect.add_argument("token", help="the token, or - to read it from standard input")
    inspect.add_argument("--json", action="store_true", help="print one JSON object (for scripts)")
    inspect.set_defaults(func=cmd_inspect)
    documents = commands.add_parser("documents", help="trusted documents: check manifests")
    documents_commands = documents.add_subparsers(dest="documents_command", required=True)
    check = documents_commands.add_parser("check", help="validate manifest files", description=DOCUMENTS_HELP,
                                          formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("files", nargs="+", metavar="FILE", help="manifest files")
    check.set_defaults(func=cmd_documents_check)
    backfill = commands.add_parser("backfill", help="copy every Clerk user into the users table (safe while "
                                   "webhooks arrive)", description=BACKFILL_HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    backfill.add_argument("--page-size", type=_backfill_page_size, default=500, metavar="N",
                          help="users per request, 1..500 (default 500, the fewest requests)")
    backfill.add_argument("--dry-run", action="store_true",
                          help="list and map every user and print the counts; write nothing")
    backfill.set_defaults(func=cmd_backfill)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
