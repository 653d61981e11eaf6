"""The simulated Salesforce org as a real TLS server on 127.0.0.1, and gateways that talk to it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter

from bridge.crm.salesforce.auth import SalesforceCredentials
from bridge.crm.salesforce.gateway import SalesforceGateway, TimeoutSession
from bridge.crm.salesforce.settings import SalesforceWriteback
from bridge.sandbox.salesforce import SalesforceSimulator, create_salesforce_app
from bridge.sandbox.servers import TlsFiles, free_port, make_tls_files
from tests._processes import wait_for


@dataclass
class Org:
    sim: SalesforceSimulator
    url: str
    tls: TlsFiles
    private_key: str
    opened: list[SalesforceGateway] = field(default_factory=list)

    def gateway(
        self, *, token: str = "good-token", ca: str | None = None, writeback: SalesforceWriteback | None = None
    ) -> SalesforceGateway:
        credentials = SalesforceCredentials(mode="token", instance_url=self.url, access_token=token)
        return self._opened(
            SalesforceGateway(
                credentials=credentials,
                api_version="61.0",
                timeout=5,
                writeback=writeback or SalesforceWriteback(),
                ca_bundle=ca or str(self.tls.ca),
            )
        )

    def login_gateway(self, credentials: SalesforceCredentials) -> SalesforceGateway:
        """A gateway whose *.salesforce.com login URLs reach this org (simple-salesforce builds them
        from the domain, so they are redirected at the HTTP layer)."""
        session = TimeoutSession(5, ca_bundle=str(self.tls.ca))
        session.mount("https://", RedirectAdapter(urlsplit(self.url).netloc))
        return self._opened(
            SalesforceGateway(
                credentials=credentials, api_version="61.0", timeout=5, writeback=SalesforceWriteback(), session=session
            )
        )

    def _opened(self, gateway: SalesforceGateway) -> SalesforceGateway:
        self.opened.append(gateway)
        return gateway

    def close_gateways(self) -> None:
        """Close every keep-alive connection, so that the server never waits for one at shutdown."""
        for gateway in self.opened:
            gateway.close()
        self.opened.clear()


class RedirectAdapter(HTTPAdapter):
    """Sends requests for *.salesforce.com to the local org instead."""

    def __init__(self, netloc: str) -> None:
        super().__init__()
        self.netloc = netloc

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        parts = urlsplit(request.url or "")
        if (parts.hostname or "").endswith(".salesforce.com"):
            request.url = urlunsplit(("https", self.netloc, parts.path, parts.query, ""))
        return super().send(request, *args, **kwargs)


def running_org(directory: Path) -> Iterator[Org]:
    """The org, served until the generator is closed (a fixture's body)."""
    tls = make_tls_files(directory)
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sim = SalesforceSimulator(
        access_token="good-token",
        clients={"client-id": "client-secret"},
        jwt_keys={
            "client-id": private_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
        },
        users={"bridge@acme.example": "password" + "securitytoken"},
    )
    port = free_port()
    config = uvicorn.Config(
        create_salesforce_app(sim),
        host="127.0.0.1",
        port=port,
        ssl_certfile=str(tls.cert),
        ssl_keyfile=str(tls.key),
        log_level="warning",
        lifespan="off",
        # Every gateway is closed after its test; this bounds the wait if one was not.
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="the simulated Salesforce")
    pem = private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    yield Org(sim=sim, url=f"https://127.0.0.1:{port}", tls=tls, private_key=pem)
    server.should_exit = True
    thread.join(timeout=10)
    assert not thread.is_alive()
