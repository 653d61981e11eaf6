"""Running the simulated platforms as real servers on 127.0.0.1 (Salesforce over TLS).

Used by ``bridge serve --sandbox`` (beside the bridge, in one process) and ``bridge sandbox``
(the simulators alone, for tests and benchmarks that run the bridge as a separate process).
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
import uvicorn

from bridge.sandbox._faults import QuietCuts
from bridge.sandbox._limits import RateWindow
from bridge.sandbox.cases import SANDBOX_ORG_ID, SANDBOX_OUTBOUND_NUMBER, sample_cases
from bridge.sandbox.ccai import CCAISimulator, create_ccai_app
from bridge.sandbox.chats import DEFAULT_LIFECYCLE, ChatBook, LifeStep
from bridge.sandbox.salesforce import SalesforceSimulator, create_salesforce_app
from bridge.sandbox.session_events import EventTarget

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


@dataclass
class Platforms:
    """Both simulators, their servers and how to reach them."""

    ccai: CCAISimulator
    salesforce: SalesforceSimulator
    ccai_url: str
    salesforce_url: str
    tls: TlsFiles
    servers: list[uvicorn.Server]

    def bridge_settings(self) -> dict[str, Any]:
        """Settings that point a bridge at these simulators."""
        return {
            "ccai_subdomain": _CCAI_SUBDOMAIN,
            "ccai_domain": "sandbox.invalid",
            "ccai_api_token": _CCAI_TOKEN,
            "ccai_base_url": f"{self.ccai_url}/apps/api/v1",
            "ccai_outbound_number": SANDBOX_OUTBOUND_NUMBER,
            "salesforce_instance_url": self.salesforce_url,
            "salesforce_access_token": _SALESFORCE_TOKEN,
            "salesforce_ca_bundle": str(self.tls.ca),
            "salesforce_org_ids": SANDBOX_ORG_ID,
            "bridge_webhook_token": SANDBOX_WEBHOOK_TOKEN,
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
            "salesforce_url": self.salesforce_url,
            "ca_file": str(self.tls.ca),
            "ccai": self.ccai.settings(),
        }


def build_platforms(
    directory: Path,
    *,
    ccai_port: int = 0,
    salesforce_port: int = 0,
    latency: float = 0.0,
    rate_limit: float = 10.0,
    rate_window: RateWindow = "bucket",
    jitter: float = 0.0,
    chat_lifecycle: tuple[LifeStep, ...] = DEFAULT_LIFECYCLE,
    opted_out: Iterable[str] = (),
    session_events: EventTarget | None = None,
) -> Platforms:
    tls = make_tls_files(directory)
    ccai_port = ccai_port or free_port()
    salesforce_port = salesforce_port or free_port()
    ccai = CCAISimulator(
        subdomain=_CCAI_SUBDOMAIN,
        api_token=_CCAI_TOKEN,
        outbound_numbers={"+16285550199"},
        latency=latency,
        rate_limit=rate_limit,
        rate_window=rate_window,
        jitter=jitter,
        chats=ChatBook(lifecycle=chat_lifecycle),
        opted_out=set(opted_out),
        events_target=session_events,
    )
    salesforce = SalesforceSimulator(access_token=_SALESFORCE_TOKEN)
    salesforce.add_cases(sample_cases())
    # A stopping sandbox does not wait for clients' keep-alive connections: Ctrl-C returns at once.
    common: dict[str, Any] = {
        "host": "127.0.0.1",
        "log_level": "warning",
        "lifespan": "off",
        "timeout_graceful_shutdown": 1,
    }
    logging.getLogger("uvicorn.error").addFilter(QUIET_CUTS)
    servers: list[uvicorn.Server] = [
        SideServer(uvicorn.Config(create_ccai_app(ccai), port=ccai_port, **common)),
        SideServer(
            uvicorn.Config(
                create_salesforce_app(salesforce),
                port=salesforce_port,
                ssl_certfile=str(tls.cert),
                ssl_keyfile=str(tls.key),
                **common,
            )
        ),
    ]
    return Platforms(
        ccai=ccai,
        salesforce=salesforce,
        ccai_url=f"http://127.0.0.1:{ccai_port}",
        salesforce_url=f"https://127.0.0.1:{salesforce_port}",
        tls=tls,
        servers=servers,
    )
