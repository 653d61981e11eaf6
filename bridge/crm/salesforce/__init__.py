"""Salesforce as the bridge's CRM: Cases are tickets, Tasks are notes, an outbound message (SOAP,
fired by the Flow the ``salesforce/`` project deploys) is its push door, and a platform event read
over the Pub/Sub API (``SALESFORCE_PUBSUB_TOPIC``) is its long-running input.

Everything Salesforce is in this folder: its settings, its login (shared by the gateway and any
input that streams from the org), the gateway, record ids, the outbound-message door, the Pub/Sub
subscriber and its ``bridge check`` items. :data:`plugin` is what :data:`bridge.crm.CRMS` names.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import anyio.to_thread
from starlette.routing import BaseRoute, Route

from bridge.crm import CRMGateway, Words
from bridge.crm.plugin import CheckContext, DoorContext, InputContext, NamedInput
from bridge.crm.salesforce.check import check_org
from bridge.crm.salesforce.gateway import SalesforceGateway
from bridge.crm.salesforce.ids import normalize_case_id
from bridge.crm.salesforce.outbound_message import OutboundMessageEndpoint
from bridge.crm.salesforce.pubsub_input import INPUT_NAME, PubSubInput, check_topic
from bridge.crm.salesforce.settings import SalesforceSettings
from bridge.crm.salesforce.setup import register as register_setup
from bridge.errors import ConfigError
from bridge.metrics import Metrics
from bridge.model import Finding
from bridge.settings import CRMSettings, Settings

OUTBOUND_MESSAGE_PATH = "/salesforce/outbound-message"


class SalesforcePlugin:
    """Implements :class:`bridge.crm.plugin.CRMPlugin`."""

    name = "salesforce"
    words = Words(
        crm="Salesforce",
        ticket="Case",
        note="Task",
        ticket_id="Case id (15 or 18 characters)",
        ticket_id_example="500…",
        ticket_number="CaseNumber",
    )
    settings_model = SalesforceSettings
    default_config = Path("config/bridge.toml")
    sandbox = "salesforce"

    def ticket_ids(self, raw: str) -> str:
        return normalize_case_id(raw)

    def ticket_url(self, settings: CRMSettings, ticket_id: str) -> str | None:
        instance = _own(settings).instance()
        # The record's short URL: Salesforce opens it in Lightning or Classic, whichever the user has.
        return f"{instance}/{ticket_id}" if instance else None

    def gateway(self, settings: CRMSettings, *, metrics: Metrics | None) -> CRMGateway:
        return self.salesforce_gateway(settings, metrics=metrics)

    def salesforce_gateway(self, settings: CRMSettings, *, metrics: Metrics | None = None) -> SalesforceGateway:
        """The gateway with what only Salesforce's offers (``bridge check`` reads Setup through it)."""
        own = _own(settings)
        return SalesforceGateway(
            metrics=metrics,
            credentials=own.credentials(),
            api_version=own.api_version,
            timeout=own.timeout_seconds,
            writeback=own.writeback,
            opt_out_field=own.consent.record_field,
            ca_bundle=own.ca_bundle or None,
        )

    def problems(self, settings: CRMSettings, *, web: bool) -> tuple[list[str], list[str]]:
        return _own(settings).problems(web=web)

    def describe(self, settings: CRMSettings) -> str:
        return f"Salesforce login: {_own(settings).credentials().mode}"

    def routes(self, settings: CRMSettings, doors: DoorContext) -> list[BaseRoute]:
        own = _own(settings)
        door = OutboundMessageEndpoint(
            tokens=[token.get_secret_value() for token in own.webhook_token], org_ids=own.org_ids, doors=doors
        )
        return [Route(OUTBOUND_MESSAGE_PATH, door.endpoint, methods=["POST"])]

    def inputs(self, settings: CRMSettings, context: InputContext) -> list[NamedInput]:
        own = _own(settings)
        if not own.pubsub_topic:
            return []
        return [NamedInput(name=INPUT_NAME, run=PubSubInput(own, context).run)]

    def register_commands(
        self,
        commands: argparse._SubParsersAction[argparse.ArgumentParser],
        *,
        load_settings: Callable[[], Settings],
    ) -> None:
        register_setup(commands, load_settings=load_settings)

    async def checks(self, settings: CRMSettings, context: CheckContext) -> list[Finding]:
        own = _own(settings)
        try:
            own.credentials()
        except ConfigError:
            return []  # already reported by the settings check
        gateway = self.salesforce_gateway(own)
        try:
            findings = await anyio.to_thread.run_sync(check_org, own, gateway, context)
        finally:
            gateway.close()
        if own.pubsub_topic and len(own.org_ids) == 1:
            findings.append(await check_topic(own))
        return findings


def _own(settings: CRMSettings) -> SalesforceSettings:
    if not isinstance(settings, SalesforceSettings):
        raise ConfigError("BRIDGE_CRM is salesforce, but the settings given are not Salesforce's.")
    return settings


plugin = SalesforcePlugin()
