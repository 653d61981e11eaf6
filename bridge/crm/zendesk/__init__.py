"""Zendesk as the bridge's CRM: tickets are tickets, internal comments are notes, and a signed
webhook (called by a trigger or an automation) is its push door.

Everything Zendesk is in this folder: its settings, the REST client, the gateway, ticket ids, the
webhook door, ``bridge zendesk setup`` and its ``bridge check`` items. :data:`plugin` is what
:data:`bridge.crm.CRMS` names.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import anyio.to_thread
from starlette.routing import BaseRoute, Route

from bridge.crm import CRMGateway, Words
from bridge.crm.plugin import CheckContext, DoorContext, InputContext, NamedInput
from bridge.crm.zendesk.check import check_account
from bridge.crm.zendesk.client import ZendeskClient
from bridge.crm.zendesk.gateway import ZendeskGateway
from bridge.crm.zendesk.ids import normalize_ticket_id
from bridge.crm.zendesk.settings import ZendeskSettings
from bridge.crm.zendesk.setup import WEBHOOK_PATH, set_up
from bridge.crm.zendesk.webhook import WebhookEndpoint
from bridge.errors import ConfigError, UsageError
from bridge.metrics import Metrics
from bridge.model import Finding
from bridge.settings import CRMSettings, Settings


class ZendeskPlugin:
    """Implements :class:`bridge.crm.plugin.CRMPlugin` (and its commands, ``bridge zendesk ...``)."""

    name = "zendesk"
    words = Words(
        crm="Zendesk",
        ticket="ticket",
        note="internal note",
        ticket_id="ticket id (a whole number)",
        ticket_id_example="1001",
    )
    settings_model = ZendeskSettings
    default_config = Path("config/zendesk.toml")
    sandbox = "zendesk"

    def ticket_ids(self, raw: str) -> str:
        return normalize_ticket_id(raw)

    def ticket_url(self, settings: CRMSettings, ticket_id: str) -> str | None:
        own = _own(settings)
        return f"{own.base_url()}/agent/tickets/{ticket_id}" if own.url or own.subdomain else None

    def client(self, settings: CRMSettings) -> ZendeskClient:
        own = _own(settings)
        return ZendeskClient(
            base_url=own.base_url(),
            login=own.login(),
            timeout=own.timeout_seconds,
            ca_bundle=own.ca_bundle or None,
            max_retry_after=own.max_retry_after_seconds,
        )

    def gateway(self, settings: CRMSettings, *, metrics: Metrics | None) -> CRMGateway:
        return ZendeskGateway(client=self.client(settings), table=_own(settings).zendesk)

    def problems(self, settings: CRMSettings, *, web: bool) -> tuple[list[str], list[str]]:
        return _own(settings).problems(web=web)

    def describe(self, settings: CRMSettings) -> str:
        own = _own(settings)
        how = "OAuth token" if own.oauth_token.get_secret_value() else f"API token of {own.email}"
        return f"Zendesk account {own.base_url()} ({how})"

    def routes(self, settings: CRMSettings, doors: DoorContext) -> list[BaseRoute]:
        own = _own(settings)
        door = WebhookEndpoint(secrets=own.secrets(), tolerance=own.webhook_tolerance_seconds, doors=doors)
        return [Route(WEBHOOK_PATH, door.endpoint, methods=["POST"])]

    def inputs(self, settings: CRMSettings, context: InputContext) -> list[NamedInput]:
        return []

    async def checks(self, settings: CRMSettings, context: CheckContext) -> list[Finding]:
        own = _own(settings)
        try:
            client = self.client(own)
        except ConfigError:
            return []  # already reported by the settings check
        try:
            return await anyio.to_thread.run_sync(check_account, own, client, context)
        finally:
            client.close()

    def register_commands(
        self,
        commands: argparse._SubParsersAction[argparse.ArgumentParser],
        *,
        load_settings: Callable[[], Settings],
    ) -> None:
        """``bridge zendesk setup``: see :mod:`bridge.crm.zendesk.setup`."""
        zendesk = commands.add_parser("zendesk", help="Zendesk set-up: ticket fields, the webhook, an example trigger")
        actions = zendesk.add_subparsers(required=True, metavar="ACTION")
        setup = actions.add_parser(
            "setup",
            help="create the ticket fields, the webhook and an inactive example trigger (an admin's token)",
            description="Run with an admin's API token (ZENDESK_EMAIL, ZENDESK_API_TOKEN). Every step reads first "
            "and creates only what is missing, so it can run again.",
        )
        setup.add_argument("--url", help="the bridge's public base URL (default: ZENDESK_WEBHOOK_URL)")
        setup.add_argument("--env-file", type=Path, help="also write ZENDESK_WEBHOOK_SECRET into this file")
        setup.add_argument("--json", action="store_true", help="print the steps (and the secret) as JSON")
        setup.set_defaults(handler=self._setup_command)

    def _setup_command(self, args: argparse.Namespace) -> int:
        settings = ZendeskSettings()
        bridge_url = args.url or settings.webhook_url
        if not bridge_url:
            raise UsageError("bridge zendesk setup needs the bridge's public URL: --url or ZENDESK_WEBHOOK_URL.")
        client = self.client(settings)
        try:
            report = set_up(client, settings.zendesk, bridge_url=bridge_url)
        finally:
            client.close()
        if args.env_file:
            _write_env(args.env_file, "ZENDESK_WEBHOOK_SECRET", report.secret)
        if args.json:
            written = {"env_file": str(args.env_file)} if args.env_file else {"webhook_secret": report.secret}
            print(json.dumps({"steps": list(report.lines), **written}, indent=2))
            return 0
        for line in report.lines:
            print(line)
        if args.env_file:
            print(f"ZENDESK_WEBHOOK_SECRET written to {args.env_file}.")
        else:
            print("Give the bridge the webhook's signing secret:")
            print(f"ZENDESK_WEBHOOK_SECRET={report.secret}")
        print(
            "Then adapt and activate the trigger (Admin Center › Objects and rules › Triggers), and run bridge check."
        )
        return 0


def _write_env(path: Path, name: str, value: str) -> None:
    """Set ``name`` in a dotenv file, keeping its other lines."""
    lines = path.read_text().splitlines() if path.exists() else []
    kept = [line for line in lines if not line.startswith(f"{name}=")]
    path.write_text("\n".join([*kept, f"{name}={value}"]) + "\n")


def _own(settings: CRMSettings) -> ZendeskSettings:
    if not isinstance(settings, ZendeskSettings):
        raise ConfigError("BRIDGE_CRM is zendesk, but the settings given are not Zendesk's.")
    return settings


plugin = ZendeskPlugin()
