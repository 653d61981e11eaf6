"""The ``bridge`` command: serve, worker-less serve, migrate, the sandbox, sample messages."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shlex
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import uvicorn

from bridge import __version__
from bridge._schema import LATEST_VERSION
from bridge.app import build_services, create_app, drain_worker, start_worker
from bridge.bench.calls import run_calls
from bridge.bench.ingest import run_ingest
from bridge.bench.pipeline import run_pipeline
from bridge.console import add_commands
from bridge.errors import BridgeError, ConfigError
from bridge.logs import configure_logging
from bridge.sandbox.cases import SANDBOX_ORG_ID, outbound_message, sample_cases
from bridge.sandbox.servers import SANDBOX_API_KEY, SANDBOX_WEBHOOK_TOKEN, Platforms, build_platforms
from bridge.settings import Settings, load_settings
from bridge.store import Store
from bridge.worker import Worker

logger = logging.getLogger("bridge")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # Until a command has its settings: plain lines on stderr, so data printed to stdout stays clean.
    configure_logging("INFO", "text", stream=sys.stderr)
    try:
        result: int = args.handler(args)
        return result
    except ConfigError as exc:
        print(f"bridge: configuration error: {exc}", file=sys.stderr)
        return 2
    except BridgeError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridge", description="Salesforce Case events → CCAI Platform SMS.")
    parser.add_argument("--version", action="version", version=f"bridge {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the web server with its embedded worker")
    serve.add_argument("--sandbox", action="store_true", help="run against simulated CCAI and Salesforce servers")
    serve.add_argument("--no-worker", action="store_true", help="do not run the embedded worker")
    serve.add_argument("--host", help="address to listen on (default 0.0.0.0, or HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000, or PORT)")
    serve.set_defaults(handler=_serve)

    worker = commands.add_parser("worker", help="run a worker alone (no web server); stops cleanly on SIGTERM")
    worker.set_defaults(handler=_worker)

    migrate = commands.add_parser("migrate", help="create or upgrade the store's schema")
    migrate.set_defaults(handler=_migrate)

    sandbox = commands.add_parser("sandbox", help="run only the simulated platforms (for tests and benchmarks)")
    sandbox.add_argument("--ccai-port", type=int, default=0)
    sandbox.add_argument("--salesforce-port", type=int, default=0)
    sandbox.add_argument("--latency", type=float, default=0.0, help="seconds the simulated CCAI takes to answer")
    sandbox.add_argument("--rate-limit", type=float, default=10.0, help="simulated CCAI requests per second")
    sandbox.add_argument("--dir", type=Path, help="where to write the TLS files (default: a temporary folder)")
    sandbox.set_defaults(handler=_sandbox)

    bench = commands.add_parser("benchmark", help="measure the bridge against its ceilings (not a test)")
    scenarios = bench.add_subparsers(required=True, metavar="SCENARIO")
    pipeline = scenarios.add_parser("pipeline", help="queued events sent by worker processes on PostgreSQL")
    pipeline.add_argument("--database-url", required=True, help="a PostgreSQL URL; a throw-away schema is used")
    pipeline.add_argument("--events", type=int, default=1000)
    pipeline.add_argument("--workers", type=int, default=3)
    pipeline.add_argument("--latency", type=float, default=0.2, help="simulated CCAI latency in seconds")
    pipeline.add_argument("--rate", type=float, default=10.0, help="the simulated tenant's limit per second")
    pipeline.add_argument("--max-seconds", type=float, help="stop measuring after this long")
    pipeline.set_defaults(handler=_benchmark_pipeline)
    ingest = scenarios.add_parser("ingest", help="acks per second of one bridge serve on SQLite vs a bare ceiling")
    ingest.add_argument("--seconds", type=float, default=10.0, help="load duration per measurement")
    ingest.add_argument("--concurrency", type=int, default=16)
    ingest.add_argument("--grow", type=int, default=0, metavar="N", help="measure again with N finished records")
    ingest.set_defaults(handler=_benchmark_ingest)
    calls = scenarios.add_parser("calls", help="Salesforce API calls per SMS, counted at the simulated org")
    calls.add_argument("--burst", type=int, default=100)
    calls.set_defaults(handler=_benchmark_calls)

    sample = commands.add_parser("sample-message", help="print (or post) a sample Salesforce outbound message")
    sample.add_argument("--case", action="append", dest="cases", help="Case id (repeatable; default: 3 samples)")
    sample.add_argument("--org", default=SANDBOX_ORG_ID, help="OrganizationId to put in the message")
    sample.add_argument("--post", metavar="URL", help="post it to this URL and print the answer")
    sample.set_defaults(handler=_sample)
    add_commands(commands)
    return parser


def _uvicorn_config(app: Any, settings: Settings) -> uvicorn.Config:
    # Behind Heroku's router (DYNO set) every request comes through the proxy, so trust its headers.
    trusted = settings.forwarded_allow_ips or ("*" if settings.dyno else "127.0.0.1")
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        access_log=False,
        log_config=None,
        proxy_headers=True,
        forwarded_allow_ips=trusted,
        timeout_graceful_shutdown=20,
    )


def _server_logging(settings: Settings) -> None:
    """Long-running processes log to stdout, as JSON unless it is a terminal (or LOG_FORMAT says)."""
    configure_logging(settings.log_level, settings.log_format, stream=sys.stdout)


def _serve(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port:
        overrides["port"] = args.port
    if args.no_worker:
        overrides["bridge_embedded_worker"] = False
    if args.sandbox:
        return _serve_sandbox(overrides)
    settings = load_settings(**overrides)
    _server_logging(settings)
    settings.check_storage()
    problems = settings.problems_for_serving()
    if problems:
        raise ConfigError(
            " ".join(problems)
            + " Set them in the environment or in .env (see README), or try `bridge serve --sandbox`."
        )
    uvicorn.Server(_uvicorn_config(create_app(settings), settings)).run()
    return 0


def _serve_sandbox(overrides: dict[str, Any]) -> int:
    directory = Path(tempfile.mkdtemp(prefix="bridge-sandbox-"))
    platforms = build_platforms(directory)
    overrides = {**platforms.bridge_settings(), **overrides}
    if load_settings().database_url == Settings.model_fields["database_url"].default:
        # A fresh store for each sandbox run, so a demo never meets an earlier demo's loop guard.
        overrides["database_url"] = f"sqlite:///{directory / 'bridge-sandbox.db'}"
    settings = load_settings(**overrides)
    _server_logging(settings)
    main_server = uvicorn.Server(_uvicorn_config(create_app(settings), settings))
    _print_sandbox_banner(settings, platforms)
    asyncio.run(_run_servers(main_server, platforms.servers))
    return 0


async def _run_servers(main_server: uvicorn.Server, side_servers: Sequence[uvicorn.Server]) -> None:
    """Run servers in one loop; the main one handles signals and the others stop with it."""
    side = [asyncio.create_task(server.serve()) for server in side_servers]
    try:
        await main_server.serve()
    finally:
        for server in side_servers:
            server.should_exit = True
        await asyncio.gather(*side, return_exceptions=True)


def _print_sandbox_banner(settings: Settings, platforms: Platforms) -> None:
    bridge_url = f"http://127.0.0.1:{settings.port}"
    endpoint = f"{bridge_url}/salesforce/outbound-message?token={SANDBOX_WEBHOOK_TOKEN}"
    exe = shlex.quote(str(Path(sys.argv[0]).resolve())) if sys.argv and sys.argv[0].endswith("bridge") else "bridge"
    cases = "\n".join(
        f"    {c['Id']}  {c.get('ContactMobile') or c.get('ContactPhone') or '(no phone)':<18} owner: {c['Owner.Type']}"
        for c in sample_cases()
    )
    print(
        f"""
Sandbox ready: the bridge on {bridge_url}, with simulated platforms on 127.0.0.1.
  Simulated CCAI Platform: {platforms.ccai_url}        (what it received: {platforms.ccai_url}/_sandbox/state)
  Simulated Salesforce:    {platforms.salesforce_url}  (Cases: {platforms.salesforce_url}/_sandbox/state)
  Sample Cases:
{cases}

In another terminal, post an outbound message about the first three Cases:

  {exe} sample-message --post '{endpoint}'

(or with curl: {exe} sample-message | curl -sS -H 'Content-Type: text/xml' --data-binary @- '{endpoint}')

This terminal then shows each SMS reaching the simulated CCAI and the chat id landing on the Case.

Or send as an agent's button would, through the send API:

  curl -sS '{bridge_url}/api/v1/sends?wait=10' -H 'Authorization: Bearer {SANDBOX_API_KEY}' \\
       -H 'Content-Type: application/json' -d '{{"ticket_id": "{sample_cases()[1]["Id"]}"}}'

and look at the sends with: {exe} sends list   (with DATABASE_URL={settings.database_url})

Stop with Ctrl-C.
""",
        flush=True,
    )


def _worker(_args: argparse.Namespace) -> int:
    settings = load_settings()
    _server_logging(settings)
    settings.check_storage()
    problems = settings.problems_for_serving(web=False)
    if problems:
        raise ConfigError(" ".join(problems) + " Set them in the environment or in .env (see README).")
    services = build_services(settings, run_worker=True)
    if not services.store.schema_version() >= LATEST_VERSION:
        raise ConfigError("The store's schema is not up to date: run `bridge migrate` first.")
    assert services.worker is not None
    anyio.run(_run_worker, services.worker, settings.bridge_shutdown_seconds)
    return 0


async def _run_worker(worker: Worker, shutdown_seconds: float) -> None:
    """Run until SIGTERM or SIGINT, then drain (Heroku sends SIGKILL 30 s after SIGTERM)."""
    async with anyio.create_task_group() as group:
        stopped = await start_worker(group, worker)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for received in signals:
                logger.info("Received %s; stopping the worker", signal.Signals(received).name)
                break
        await drain_worker(worker, stopped, shutdown_seconds)
        group.cancel_scope.cancel()


def _migrate(_args: argparse.Namespace) -> int:
    settings = load_settings()
    settings.check_storage()
    store = Store.from_url(settings.database_url)
    try:
        version = store.migrate()
    finally:
        store.close()
    print(f"Store schema is at version {version}.")
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    directory = args.dir or Path(tempfile.mkdtemp(prefix="bridge-sandbox-"))
    directory.mkdir(parents=True, exist_ok=True)
    platforms = build_platforms(
        directory,
        ccai_port=args.ccai_port,
        salesforce_port=args.salesforce_port,
        latency=args.latency,
        rate_limit=args.rate_limit,
    )
    print(json.dumps({**platforms.describe(), "settings": platforms.bridge_settings()}), flush=True)
    # The CCAI simulator's server takes over signal handling for the process.
    main_server = uvicorn.Server(platforms.servers[0].config)
    asyncio.run(_run_servers(main_server, platforms.servers[1:]))
    return 0


def _benchmark_pipeline(args: argparse.Namespace) -> int:
    return _print_figures(
        run_pipeline(
            database_url=args.database_url,
            events=args.events,
            workers=args.workers,
            latency=args.latency,
            rate=args.rate,
            max_seconds=args.max_seconds,
        )
    )


def _benchmark_ingest(args: argparse.Namespace) -> int:
    return _print_figures(run_ingest(seconds=args.seconds, concurrency=args.concurrency, grow=args.grow))


def _benchmark_calls(args: argparse.Namespace) -> int:
    return _print_figures(run_calls(burst=args.burst))


def _print_figures(figures: dict[str, Any]) -> int:
    width = max(len(k) for k in figures)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in figures.items()))
    return 0


def _sample(args: argparse.Namespace) -> int:
    case_ids = args.cases or [case["Id"] for case in sample_cases()[:3]]
    body = outbound_message(case_ids, org_id=args.org)
    if not args.post:
        sys.stdout.write(body.decode())
        return 0
    response = httpx.post(
        args.post, content=body, headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}, timeout=30
    )
    print(f"HTTP {response.status_code}\n{response.text}")
    return 0 if response.status_code == 200 else 1
