"""Running the simulated platforms as real servers on 127.0.0.1 (Salesforce over TLS).

Used by ``bridge serve --sandbox`` (beside the bridge, in one process) and ``bridge sandbox``
(the simulators alone, for tests and benchmarks that run the bridge as a separate process).
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import trustme
import uvicorn

from bridge.sandbox._faults import QuietCuts
from bridge.sandbox._limits import RateWindow
from bridge.sandbox.cases import SANDBOX_ORG_ID, SANDBOX_OUTBOUND_NUMBER, sample_cases
from bridge.sandbox.ccai import CCAISimulator, create_ccai_app
from bridge.sandbox.chats import DEFAULT_LIFECYCLE, ChatBook, LifeStep
from bridge.sandbox.pubsub import KEEPALIVE_SECONDS, SMS_REQUEST_EVENT, PubSubServer, PubSubSimulator, sms_request_bus
from bridge.sandbox.salesforce import SANDBOX_ADMIN_TOKEN, SalesforceSimulator, create_salesforce_app
from bridge.sandbox.session_events import EventTarget
from bridge.sandbox.zendesk import ZendeskSimulator, sandbox_bridge_webhook
from bridge.sandbox.zendesk_account import SANDBOX_ADMIN_EMAIL, SANDBOX_API_TOKEN, sample_tickets, sample_users
from bridge.sandbox.zendesk_app import create_zendesk_app

SANDBOX_WEBHOOK_TOKEN = "sandbox-webhook-token"  # noqa: S105 - a well-known value for the local demo
SANDBOX_API_KEY = "sandbox-api-key"
SANDBOX_DASHBOARD_PASSWORD = "sandbox-dashboard"  # noqa: S105 - a well-known value, on 127.0.0.1 only
_CCAI_SUBDOMAIN = "sandbox"
_CCAI_TOKEN = "sandbox-api-token"  # noqa: S105
_SALESFORCE_TOKEN = "sandbox-access-token"  # noqa: S105
QUIET_CUTS = QuietCuts()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """A throw-away CA and a certificate for 127.0.0.1/localhost signed by it."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(
        ca=directory / "sandbox-ca.pem", cert=directory / "sandbox-cert.pem", key=directory / "sandbox-key.pem"
    )
    ca.cert_pem.write_to_path(str(files.ca))
    leaf.cert_chain_pems[0].write_to_path(str(files.cert))
    for blob in leaf.cert_chain_pems[1:]:
        blob.write_to_path(str(files.cert), append=True)
    leaf.private_key_pem.write_to_path(str(files.key))
    return files


class SideServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the main server of the process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Serving(Protocol):
    """A server the sandbox runs in its loop: uvicorn's, or the Pub/Sub API's gRPC server."""

    should_exit: bool

    async def serve(self) -> None: ...


@dataclass
class SimulatedCRM:
    """A CRM's simulator as the sandbox runs it: its server, and what the bridge needs to use it."""

    name: str  # as BRIDGE_CRM names the CRM
    url: str
    server: uvicorn.Server
    settings: Mapping[str, Any]  # the bridge's settings that point it here
    sample_ticket: str  # a ticket id for the banner's send API example
    try_it: Callable[[str, str], str]  # (the bridge's URL, the command) -> the banner's lines for this CRM
    side: tuple[Serving, ...] = ()  # more servers of its own (Salesforce's Pub/Sub API)


def simulated_salesforce(
    tls: TlsFiles,
    *,
    port: int,
    common: Mapping[str, Any],
    pubsub_port: int = 0,
    pubsub_keepalive: float = KEEPALIVE_SECONDS,
) -> SimulatedCRM:
    """The Salesforce org (REST over TLS) with the sample Cases, and its Pub/Sub API (gRPC over TLS)
    carrying the SMS request platform event, which the bridge subscribes to."""
    salesforce = SalesforceSimulator(access_token=_SALESFORCE_TOKEN)
    salesforce.add_cases(sample_cases())
    url = f"https://127.0.0.1:{port}"
    simulator = PubSubSimulator(
        bus=sms_request_bus(),
        org_id=SANDBOX_ORG_ID,
        instance_url=url,
        valid_tokens=salesforce.valid_tokens,
        keepalive_seconds=pubsub_keepalive,
    )
    pubsub = PubSubServer(
        simulator, cert=tls.cert.read_bytes(), key=tls.key.read_bytes(), port=pubsub_port or free_port()
    )
    config = uvicorn.Config(
        create_salesforce_app(salesforce, pubsub=pubsub),
        port=port,
        ssl_certfile=str(tls.cert),
        ssl_keyfile=str(tls.key),
        **common,
    )
    settings = {
        "salesforce_instance_url": url,
        "salesforce_access_token": _SALESFORCE_TOKEN,
        "salesforce_ca_bundle": str(tls.ca),
        "salesforce_org_ids": SANDBOX_ORG_ID,
        "bridge_webhook_token": SANDBOX_WEBHOOK_TOKEN,
        "salesforce_pubsub_topic": f"/event/{SMS_REQUEST_EVENT}",
        "salesforce_pubsub_endpoint": pubsub.target,
        # The admin's own session, for `bridge salesforce setup` against the sandbox org.
        "salesforce_admin_access_token": SANDBOX_ADMIN_TOKEN,
    }
    return SimulatedCRM(
        "salesforce", url, SideServer(config), settings, sample_cases()[4]["Id"], _salesforce_try_it, side=(pubsub,)
    )


def _salesforce_try_it(bridge_url: str, exe: str) -> str:
    endpoint = f"{bridge_url}/salesforce/outbound-message?token={SANDBOX_WEBHOOK_TOKEN}"
    cases = "\n".join(
        f"    {c['Id']}  {c.get('ContactMobile') or c.get('ContactPhone') or '(no phone)':<18} owner: {c['Owner.Type']}"
        for c in sample_cases()
    )
    return f"""  Sample Cases:
{cases}

Then ask for an SMS the way a Flow does, with a platform event on the Pub/Sub API:

  {exe} sandbox publish {sample_cases()[0]["Id"]}

or post an outbound message about the first three Cases:

  {exe} sample-message --post '{endpoint}'

(or with curl: {exe} sample-message | curl -sS -H 'Content-Type: text/xml' --data-binary @- '{endpoint}')"""


# The mapping file for Zendesk beside the package (a source checkout, or the image's /app/config).
ZENDESK_MAPPING = Path(__file__).resolve().parents[2] / "config" / "zendesk.toml"


def simulated_zendesk(tls: TlsFiles, *, port: int, common: Mapping[str, Any], **_other: Any) -> SimulatedCRM:
    """The Zendesk account (REST over TLS) as after `bridge zendesk setup`, its example trigger active.
    ``_other``: `bridge sandbox` options for other CRMs' simulators (the Pub/Sub API's port), unused here."""
    zendesk = ZendeskSimulator.sample()
    webhook = sandbox_bridge_webhook(zendesk)
    config = uvicorn.Config(
        create_zendesk_app(zendesk), port=port, ssl_certfile=str(tls.cert), ssl_keyfile=str(tls.key), **common
    )
    url = f"https://127.0.0.1:{port}"
    settings = {
        "bridge_config": str(ZENDESK_MAPPING),
        "zendesk_url": url,
        "zendesk_email": SANDBOX_ADMIN_EMAIL,
        "zendesk_api_token": SANDBOX_API_TOKEN,
        "zendesk_ca_bundle": str(tls.ca),
        "zendesk_webhook_secret": zendesk.signing_secrets[webhook],
    }

    def try_it(bridge_url: str, exe: str) -> str:
        # The bridge's URL is known now: the sandbox's webhook calls it, as `bridge zendesk setup` would set.
        zendesk.webhooks[webhook]["endpoint"] = f"{bridge_url}/zendesk/webhook"
        users = {u["id"]: u for u in sample_users()}
        tickets = "\n".join(
            f"    {t['id']}  {users[t['requester_id']].get('phone') or '(no phone)':<18} {t['subject']}"
            for t in sample_tickets()
        )
        return f"""  Sample tickets:
{tickets}

Then ask for a text as an agent would (the trigger fires the signed webhook):

  curl -sS --cacert {tls.ca} -H 'Content-Type: application/json' -d '{{"additional_tags": ["ccai_text_customer"]}}' \\
       {url}/_sandbox/tickets/1001"""

    return SimulatedCRM("zendesk", url, SideServer(config), settings, str(sample_tickets()[1]["id"]), try_it)


# BRIDGE_CRM's sandbox (bridge.crm.plugin.CRMPlugin.sandbox) -> how to run its simulator.
CRM_SIMULATORS: Mapping[str, Callable[..., SimulatedCRM]] = {
    "salesforce": simulated_salesforce,
    "zendesk": simulated_zendesk,
}


@dataclass
class Platforms:
    """The simulators (CCAI and the CRM), their servers and how to reach them."""

    ccai: CCAISimulator
    crm: SimulatedCRM
    ccai_url: str
    tls: TlsFiles
    servers: list[uvicorn.Server]

    @property
    def side_servers(self) -> list[Serving]:
        """Every server but the first (CCAI's): the CRM's, and any of its own."""
        return [*self.servers[1:], *self.crm.side]

    def bridge_settings(self) -> dict[str, Any]:
        """Settings that point a bridge at these simulators."""
        return {
            "ccai_subdomain": _CCAI_SUBDOMAIN,
            "ccai_domain": "sandbox.invalid",
            "ccai_api_token": _CCAI_TOKEN,
            "ccai_base_url": f"{self.ccai_url}/apps/api/v1",
            "ccai_outbound_number": SANDBOX_OUTBOUND_NUMBER,
            "bridge_crm": self.crm.name,
            **self.crm.settings,
            "bridge_api_key": SANDBOX_API_KEY,
            "bridge_dashboard_password": SANDBOX_DASHBOARD_PASSWORD,
            # Demos and tests run at any hour; the send window is tried by setting it explicitly.
            "bridge_send_window": "off",
            # Chats move within seconds in the sandbox: follow them closely enough to see it.
            "bridge_chat_sync_seconds": 5,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "ccai_url": self.ccai_url,
            "ccai_manager_url": f"{self.ccai_url}/manager/api/v1",
            f"{self.crm.name}_url": self.crm.url,
            "ca_file": str(self.tls.ca),
            "ccai": self.ccai.settings(),
        }


def build_platforms(
    directory: Path,
    *,
    crm: str = "salesforce",
    ccai_port: int = 0,
    crm_port: int = 0,
    latency: float = 0.0,
    rate_limit: float = 10.0,
    rate_window: RateWindow = "bucket",
    jitter: float = 0.0,
    chat_lifecycle: tuple[LifeStep, ...] = DEFAULT_LIFECYCLE,
    chat_list: frozenset[str] = frozenset(),
    opted_out: Iterable[str] = (),
    session_events: EventTarget | None = None,
    crm_options: Mapping[str, Any] | None = None,
) -> Platforms:
    tls = make_tls_files(directory)
    ccai_port = ccai_port or free_port()
    ccai = CCAISimulator(
        subdomain=_CCAI_SUBDOMAIN,
        api_token=_CCAI_TOKEN,
        outbound_numbers={"+16285550199"},
        latency=latency,
        rate_limit=rate_limit,
        rate_window=rate_window,
        jitter=jitter,
        chats=ChatBook(lifecycle=chat_lifecycle),
        chat_list=chat_list,
        opted_out=set(opted_out),
        events_target=session_events,
    )
    # A stopping sandbox does not wait for clients' keep-alive connections: Ctrl-C returns at once.
    common: dict[str, Any] = {
        "host": "127.0.0.1",
        "log_level": "warning",
        "lifespan": "off",
        "timeout_graceful_shutdown": 1,
    }
    logging.getLogger("uvicorn.error").addFilter(QUIET_CUTS)
    simulated = CRM_SIMULATORS[crm](tls, port=crm_port or free_port(), common=common, **(crm_options or {}))
    servers: list[uvicorn.Server] = [
        SideServer(uvicorn.Config(create_ccai_app(ccai), port=ccai_port, **common)),
        simulated.server,
    ]
    return Platforms(ccai=ccai, crm=simulated, ccai_url=f"http://127.0.0.1:{ccai_port}", tls=tls, servers=servers)
