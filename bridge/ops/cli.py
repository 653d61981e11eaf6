"""The ``bridge`` command line: serve, worker, migrate, the sandbox, sample messages; the operator
commands are registered from :mod:`bridge.admin`. Benchmarks are not here: see ``benchmarks/``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import shlex
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import anyio
import httpx
import uvicorn

from bridge import __version__
from bridge.app import create_app
from bridge.crm import CRMS
from bridge.crm.plugin import HasCommands, load_plugin
from bridge.errors import BridgeError, ConfigError, UsageError
from bridge.logs import configure_logging
from bridge.ops._help import commands as help_commands
from bridge.ops._help import document
from bridge.ops.admin import register
from bridge.ops.completion import script as completion_script
from bridge.ops.faults import DESCRIPTIONS, FAULTS, apply, control_body, control_url
from bridge.ops.setup_page import not_set_up_app
from bridge.sandbox.cases import SANDBOX_ORG_ID, outbound_message, sample_cases
from bridge.sandbox.ccai import consumer_number, parse_chat_list
from bridge.sandbox.chats import DEFAULT_LIFECYCLE, LifeStep, parse_lifecycle
from bridge.sandbox.publisher import PubSubTarget, publish_request
from bridge.sandbox.pubsub import KEEPALIVE_SECONDS
from bridge.sandbox.servers import SANDBOX_API_KEY, SANDBOX_DASHBOARD_PASSWORD, Platforms, Serving, build_platforms
from bridge.sandbox.session_events import EventTarget
from bridge.services import (
    Services,
    Shutdown,
    build_services,
    drain_worker,
    load_settings,
    problems_for_serving,
    start_worker,
)
from bridge.settings import Location, Settings
from bridge.store import Store
from bridge.store.migrations import latest_version

logger = logging.getLogger("bridge")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):  # bare `bridge`, or `bridge sends`: say what there is
        (args.parser if hasattr(args, "parser") else parser).print_help()
        return 2
    # Until a command has its settings: plain lines on stderr, so data printed to stdout stays clean.
    configure_logging("INFO", "text", stream=sys.stderr)
    try:
        result: int = args.handler(args)
        return result
    except ConfigError as exc:
        print(f"bridge: configuration error: {exc}", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return 2
    except BridgeError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridge",
        description="Salesforce Case events → CCAI Platform SMS.",
        epilog="`bridge COMMAND --help` gives a command's options, examples and exit statuses.",
    )
    parser.add_argument("--version", action="version", version=f"bridge {__version__}")
    commands = parser.add_subparsers(metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the web server with its embedded worker")
    serve.add_argument("--sandbox", action="store_true", help="run against simulated CCAI and Salesforce servers")
    serve.add_argument("--no-worker", action="store_true", help="do not run the embedded worker")
    serve.add_argument("--host", help="address to listen on (default 0.0.0.0, or HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000, or PORT)")
    serve.set_defaults(handler=_serve)

    worker = commands.add_parser("worker", help="run a worker alone (no web server); stops cleanly on SIGTERM")
    worker.set_defaults(handler=_worker)

    migrate = commands.add_parser("migrate", help="create or upgrade the store's schema")
    migrate.add_argument("--json", action="store_true", help="print the schema version as JSON")
    migrate.set_defaults(handler=_migrate)

    sandbox = commands.add_parser("sandbox", help="run only the simulated platforms (for tests and benchmarks)")
    sandbox.add_argument("--ccai-port", type=int, default=0)
    sandbox.add_argument("--salesforce-port", type=int, default=0)
    sandbox.add_argument("--latency", type=float, default=0.0, help="seconds the simulated CCAI takes to answer")
    sandbox.add_argument("--rate-limit", type=float, default=10.0, help="simulated CCAI requests per second")
    sandbox.add_argument(
        "--rate-window",
        choices=("bucket", "sliding"),
        default="bucket",
        help="how the limit counts: a token bucket, or a strict sliding one-second window",
    )
    sandbox.add_argument(
        "--jitter", type=float, default=0.0, help="up to this many seconds of random delay before a request counts"
    )
    sandbox.add_argument(
        "--chat-life",
        type=_chat_life,
        default=DEFAULT_LIFECYCLE,
        metavar="STEPS",
        help='how chats move, e.g. "selecting@0,assigned@5,finished@300" (or a JSON list of steps)',
    )
    sandbox.add_argument(
        "--chat-list",
        type=_chat_list,
        default=frozenset(),
        metavar="QUIRKS",
        help="the chat list's quirks: shift (rows move between pages), no-link (Total without Link), agent-string",
    )
    sandbox.add_argument(
        "--opted-out",
        type=_opted_out,
        action="append",
        default=[],
        metavar="NUMBER",
        help="a consumer number that opted out of SMS (repeatable)",
    )
    sandbox.add_argument("--session-events", metavar="URL", help="push CCAI-style session events to this URL")
    sandbox.add_argument(
        "--session-events-auth", default=":", metavar="USER:PASSWORD", help="Basic auth for --session-events"
    )
    sandbox.add_argument("--pubsub-port", type=int, default=0, help="the simulated Salesforce Pub/Sub API's port")
    sandbox.add_argument(
        "--pubsub-keepalive",
        type=float,
        default=KEEPALIVE_SECONDS,
        metavar="SECONDS",
        help="how soon the simulated Pub/Sub API answers an idle stream (Salesforce: within 270 s)",
    )
    sandbox.add_argument("--dir", type=Path, help="where to write the TLS files (default: a temporary folder)")
    sandbox.set_defaults(handler=_sandbox)
    actions = sandbox.add_subparsers(dest="sandbox_action", metavar="ACTION")
    publish = actions.add_parser(
        "publish", help="ask for an SMS as a Flow does: publish an SMS request platform event (Pub/Sub API)"
    )
    publish.add_argument("case", metavar="CASE", help="the Case id to text")
    publish.add_argument("--key", help="Idempotency_Key__c: requests with the same key for a Case make one SMS")
    publish.add_argument("--template", help="Template__c, the template name the request names")
    publish.add_argument("--ignore-send-window", action="store_true", help="tick Ignore_Send_Window__c")
    publish.add_argument("--json", action="store_true", help="print what was published as JSON")
    publish.set_defaults(handler=_sandbox_publish)
    fault = actions.add_parser("fault", help="make the running sandbox's simulated CCAI misbehave (or stop)")
    fault.add_argument("platform", choices=("ccai",), help="which simulated platform")
    fault.add_argument("fault", choices=FAULTS, help="; ".join(f"{k}: {v}" for k, v in DESCRIPTIONS.items()))
    fault.add_argument("--times", type=int, metavar="N", help="only the next N requests (default: until `off`)")
    fault.add_argument("--seconds", type=float, default=60.0, help="how long an outage lasts (default 60)")
    fault.add_argument("--url", help="the simulated CCAI's address (default: from CCAI_BASE_URL)")
    fault.set_defaults(handler=_fault)

    completion = commands.add_parser("completion", help="print shell completion for bash or zsh")
    completion.add_argument("shell", choices=("bash", "zsh"))
    completion.set_defaults(handler=_completion)

    sample = commands.add_parser("sample-message", help="print (or post) a sample Salesforce outbound message")
    sample.add_argument("--case", action="append", dest="cases", help="Case id (repeatable; default: 3 samples)")
    sample.add_argument("--org", default=SANDBOX_ORG_ID, help="OrganizationId to put in the message")
    sample.add_argument("--post", metavar="URL", help="post it to this URL and print the answer")
    sample.set_defaults(handler=_sample)
    register(commands)
    # A CRM's own commands (bridge salesforce setup), from every CRM the bridge knows.
    for name in CRMS:
        plugin = load_plugin(name)
        if isinstance(plugin, HasCommands):
            plugin.register_commands(commands, load_settings=load_settings)
    for _path, sub, _summary in help_commands(parser):
        sub.set_defaults(parser=sub)  # so that a bare `bridge sends` prints the help of `sends`
    document(parser)
    return parser


def _completion(args: argparse.Namespace) -> int:
    print(completion_script(_parser(), args.shell), end="")
    return 0


def _fault(args: argparse.Namespace) -> int:
    url = control_url(args.url)
    control = control_body(args.fault, times=args.times, seconds=args.seconds)
    apply(url, control)
    which = f"the next {args.times} request(s)" if args.times else "every request until `off`"
    print(
        "The simulated CCAI answers normally again."
        if args.fault == "off"
        else f"The simulated CCAI will {DESCRIPTIONS[args.fault]}: {which}."
    )
    return 0


class BridgeServer(uvicorn.Server):
    """uvicorn, with the bridge's shutdown started by the signal itself: the worker stops claiming
    and waiting API requests answer at once, instead of only after uvicorn has waited for them."""

    def __init__(self, config: uvicorn.Config, shutdown: Shutdown, on_signal: Callable[[], None]) -> None:
        super().__init__(config)
        self._shutdown = shutdown
        self._on_signal = on_signal

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._shutdown.begin()
        self._on_signal()
        super().handle_exit(sig, frame)


def _server(settings: Settings, services: Services) -> BridgeServer:
    # Behind Heroku's router (DYNO set) every request comes through the proxy, so trust its headers.
    trusted = settings.forwarded_allow_ips or ("*" if settings.dyno else "127.0.0.1")
    config = uvicorn.Config(
        create_app(services=services),
        host=settings.host,
        port=settings.port,
        access_log=False,
        log_config=None,
        proxy_headers=True,
        forwarded_allow_ips=trusted,
        # Open connections may take what the shutdown deadline allows; the worker drains within
        # the same deadline, so the process exits before Heroku's kill 30 s after SIGTERM.
        timeout_graceful_shutdown=math.floor(settings.bridge_shutdown_seconds),
    )
    worker = services.worker if services.run_worker else None
    return BridgeServer(config, services.shutdown, worker.stop if worker is not None else (lambda: None))


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
    problems = problems_for_serving(settings)
    try:
        settings.check_storage()
    except ConfigError as exc:
        if not settings.dyno:
            raise
        problems.append(str(exc))
    if problems and settings.dyno:
        return _serve_not_set_up(settings, problems)
    if problems:
        raise ConfigError(
            " ".join(problems)
            + " Set them in the environment or in .env (see README), or try `bridge serve --sandbox`."
        )
    _check_port(settings)
    services = build_services(settings)
    services.store.db.ping()  # one line naming the database and why, rather than a traceback at start-up
    _server(settings, services).run()
    return 0


def _serve_not_set_up(settings: Settings, problems: list[str]) -> int:
    """A web dyno deployed before its credentials were set: serve the page that says what is missing
    (:mod:`bridge.ops.setup_page`) rather than crash in a loop; Heroku restarts it when one is set."""
    logger.error(
        "The bridge is not set up: %s Serving only the page that says so (and 503 to every door) until "
        "the settings are complete.",
        " ".join(problems),
    )
    app = not_set_up_app(problems, dashboard_password=settings.bridge_dashboard_password.get_secret_value())
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, access_log=False, log_config=None, proxy_headers=True
    )
    uvicorn.Server(config).run()
    return 0


def _check_port(settings: Settings) -> None:
    """Fail before anything else is started, with one line, when the port is taken."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.host, settings.port))
        except OSError as exc:
            raise UsageError(
                f"Port {settings.port} on {settings.host} is in use ({exc.strerror}); choose another with --port."
            ) from None


def _serve_sandbox(overrides: dict[str, Any]) -> int:
    overrides = {"host": "127.0.0.1", **overrides}  # the sandbox is for this machine only
    directory = Path(tempfile.mkdtemp(prefix="bridge-sandbox-"))
    try:
        platforms = build_platforms(directory, crm=load_plugin(Location().bridge_crm).sandbox)
        user = load_settings()
        overrides = {**sandbox_settings(platforms.bridge_settings(), chosen=user.model_fields_set), **overrides}
        if user.database_url == Settings.model_fields["database_url"].default:
            # A fresh store for each sandbox run, so a demo never meets an earlier demo's loop guard.
            overrides["database_url"] = f"sqlite:///{directory / 'bridge-sandbox.db'}"
        settings = load_settings(**overrides)
        _check_port(settings)
        _server_logging(settings)
        env_file = directory / "sandbox.env"
        env_file.write_text(_env_lines(settings, platforms))
        main_server = _server(settings, build_services(settings))
        _print_sandbox_banner(settings, platforms, env_file)
        asyncio.run(_run_servers(main_server, [platforms.servers[0], *platforms.side_servers]))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


# What the sandbox sets for a demo but the person running it may choose (in the environment or
# .env): everything else points the bridge at the simulators, and must, whatever .env says.
SANDBOX_PREFERENCES = frozenset({"bridge_send_window", "bridge_chat_sync_seconds"})


def sandbox_settings(defaults: Mapping[str, Any], *, chosen: Collection[str]) -> dict[str, Any]:
    """The sandbox's settings, less the preferences the environment already chose: the environment wins."""
    return {name: value for name, value in defaults.items() if not (name in SANDBOX_PREFERENCES and name in chosen)}


def _env_lines(settings: Settings, platforms: Platforms) -> str:
    """The sandbox's settings as shell lines, so that other commands can point at it."""
    values = {**platforms.bridge_settings(), "database_url": settings.database_url}
    return "".join(f"{name.upper()}={shlex.quote(str(value))}\n" for name, value in values.items())


async def _run_servers(main_server: uvicorn.Server, side_servers: Sequence[Serving]) -> None:
    """Run servers in one loop; the main one handles signals and the others stop with it."""
    side = [asyncio.create_task(server.serve()) for server in side_servers]
    try:
        await main_server.serve()
    finally:
        for server in side_servers:
            server.should_exit = True
        await asyncio.gather(*side, return_exceptions=True)


def _print_sandbox_banner(settings: Settings, platforms: Platforms, env_file: Path) -> None:
    bridge_url = f"http://127.0.0.1:{settings.port}"
    exe = shlex.quote(str(Path(sys.argv[0]).resolve())) if sys.argv and sys.argv[0].endswith("bridge") else "bridge"
    words = load_plugin(settings.bridge_crm).words
    crm = platforms.crm
    print(
        f"""
Sandbox ready: the bridge on {bridge_url}, with simulated platforms on 127.0.0.1.
  Simulated CCAI Platform: {platforms.ccai_url}        (what it received: {platforms.ccai_url}/_sandbox/state)
  Simulated {words.crm + ":":<14} {crm.url}  ({words.ticket}s: {crm.url}/_sandbox/state)

In another terminal, load the sandbox's settings first: every command below then works against it.

  set -a; . {shlex.quote(str(env_file))}; set +a

{crm.try_it(bridge_url, exe)}

This terminal then shows each SMS reaching the simulated CCAI and the chat id landing on the {words.ticket};
the chats then move on their own (assigned after 5 s, finished after 5 minutes) and the {words.ticket}s follow.
The dashboard shows it all: {bridge_url}/dashboard (user operator, password {SANDBOX_DASHBOARD_PASSWORD}).

Or send as an agent's button would, through the send API:

  curl -sS '{bridge_url}/api/v1/sends?wait=10' -H 'Authorization: Bearer {SANDBOX_API_KEY}' \\
       -H 'Content-Type: application/json' -d '{{"ticket_id": "{crm.sample_ticket}"}}'

With its settings loaded, the operator commands work against this sandbox too:

  {exe} sends list
  {exe} check

See what an operator sees when CCAI misbehaves (the dashboard's verdict, `{exe} status`):

  {exe} sandbox fault ccai 429        (then: {exe} sandbox fault ccai off)

(The send window is off in the sandbox unless the environment sets one: start it with
BRIDGE_SEND_WINDOW=08:00-21:00 to try it.)
Stop with Ctrl-C; the sandbox's temporary files go with it.
""",
        flush=True,
    )


def _worker(_args: argparse.Namespace) -> int:
    settings = load_settings()
    _server_logging(settings)
    settings.check_storage()
    problems = problems_for_serving(settings, web=False)
    if problems:
        raise ConfigError(" ".join(problems) + " Set them in the environment or in .env (see README).")
    services = build_services(settings, run_worker=True)
    try:
        if not services.store.schema_version() >= latest_version():
            raise ConfigError("The store's schema is not up to date: run `bridge migrate` first.")
        anyio.run(_run_worker, services)
    finally:
        services.store.close()
    return 0


async def _run_worker(services: Services) -> None:
    """Run until SIGTERM or SIGINT, then drain (Heroku sends SIGKILL 30 s after SIGTERM)."""
    worker = services.worker
    assert worker is not None
    async with anyio.create_task_group() as group:
        stopped = await start_worker(group, worker)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for received in signals:
                logger.info("Received %s; stopping the worker", signal.Signals(received).name)
                break
        await drain_worker(worker, stopped, services.shutdown)
        group.cancel_scope.cancel()
    await services.aclose()


def _migrate(args: argparse.Namespace) -> int:
    settings = load_settings()
    settings.check_storage()
    store = Store.from_url(settings.database_url, timeout=settings.bridge_store_timeout_seconds)
    try:
        version = store.migrate()
    finally:
        store.close()
    print(json.dumps({"schema_version": version}) if args.json else f"Store schema is at version {version}.")
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    directory = args.dir or Path(tempfile.mkdtemp(prefix="bridge-sandbox-"))
    directory.mkdir(parents=True, exist_ok=True)
    try:
        return _run_sandbox(args, directory)
    finally:
        if args.dir is None:  # a folder it made itself goes with it
            shutil.rmtree(directory, ignore_errors=True)


def _run_sandbox(args: argparse.Namespace, directory: Path) -> int:
    user, _, password = args.session_events_auth.partition(":")
    platforms = build_platforms(
        directory,
        crm=load_plugin(Location().bridge_crm).sandbox,
        ccai_port=args.ccai_port,
        crm_port=args.salesforce_port,
        latency=args.latency,
        rate_limit=args.rate_limit,
        rate_window=args.rate_window,
        jitter=args.jitter,
        chat_lifecycle=args.chat_life,
        chat_list=args.chat_list,
        opted_out=args.opted_out,
        session_events=EventTarget(args.session_events, user, password) if args.session_events else None,
        crm_options={"pubsub_port": args.pubsub_port, "pubsub_keepalive": args.pubsub_keepalive},
    )
    settings = {name.upper(): value for name, value in platforms.bridge_settings().items()}  # as environment variables
    print(json.dumps({**platforms.describe(), "settings": settings}), flush=True)
    # The CCAI simulator's server takes over signal handling for the process.
    main_server = uvicorn.Server(platforms.servers[0].config)
    asyncio.run(_run_servers(main_server, platforms.side_servers))
    return 0


def _sandbox_publish(args: argparse.Namespace) -> int:
    crm = load_settings().crm
    if not isinstance(crm, PubSubTarget):
        raise UsageError("bridge sandbox publish needs BRIDGE_CRM=salesforce (the sandbox's settings).")
    published = asyncio.run(
        publish_request(
            crm, args.case, idempotency_key=args.key, template=args.template, ignore_send_window=args.ignore_send_window
        )
    )
    if args.json:
        print(
            json.dumps({"topic": published.topic, "event_uuid": published.event_uuid, "replay_id": published.replay_id})
        )
        return 0
    print(f"Published to {published.topic}: EventUuid {published.event_uuid}, replay id {published.replay_id}")
    return 0


def _chat_list(text: str) -> frozenset[str]:
    try:
        return parse_chat_list(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _chat_life(text: str) -> tuple[LifeStep, ...]:
    try:
        return parse_lifecycle(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _opted_out(text: str) -> str:
    try:
        return consumer_number(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
