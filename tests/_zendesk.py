"""The simulated Zendesk account as a real TLS server on 127.0.0.1, and gateways that talk to it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from bridge.crm.zendesk.client import ZendeskClient
from bridge.crm.zendesk.gateway import ZendeskGateway
from bridge.crm.zendesk.settings import ZendeskTable
from bridge.sandbox.servers import TlsFiles, free_port, make_tls_files
from bridge.sandbox.zendesk import ZendeskSimulator
from bridge.sandbox.zendesk_account import SANDBOX_ADMIN_EMAIL, SANDBOX_API_TOKEN
from bridge.sandbox.zendesk_app import create_zendesk_app
from tests._processes import wait_for

ADMIN_LOGIN = (f"{SANDBOX_ADMIN_EMAIL}/token", SANDBOX_API_TOKEN)


@dataclass
class Account:
    sim: ZendeskSimulator
    url: str
    tls: TlsFiles
    sleeps: list[float] = field(default_factory=list)
    opened: list[ZendeskGateway] = field(default_factory=list)

    def client(self, *, login: tuple[str, str] | str = ADMIN_LOGIN, max_retry_after: float = 30.0) -> ZendeskClient:
        # Waits are recorded, not slept: a test of Retry-After takes no time.
        sleep: Callable[[float], None] = self.sleeps.append
        return ZendeskClient(
            base_url=self.url,
            login=login,
            timeout=5,
            ca_bundle=str(self.tls.ca),
            max_retry_after=max_retry_after,
            sleep=sleep,
        )

    def gateway(self, **options: float | str | tuple[str, str]) -> ZendeskGateway:
        gateway = ZendeskGateway(client=self.client(**options), table=ZendeskTable())  # type: ignore[arg-type]
        self.opened.append(gateway)
        return gateway

    def reset(self) -> None:
        fresh = ZendeskSimulator.sample()
        for name in ("tickets", "users", "ticket_fields", "user_fields", "comments", "triggers"):
            setattr(self.sim, name, getattr(fresh, name))
        self.sim.webhooks.clear()
        self.sim.signing_secrets.clear()
        self.sim.calls.clear()
        self.sim.fail_next.clear()
        self.sim.conflict_next = self.sim.lose_update_answer = 0
        self.sim.api_tokens = dict(fresh.api_tokens)
        self.sleeps.clear()

    def close_gateways(self) -> None:
        for gateway in self.opened:
            gateway.close()
        self.opened.clear()


def running_account(directory: Path) -> Iterator[Account]:
    """The sample account over HTTPS with a throw-away CA, for the tests of a module."""
    tls = make_tls_files(directory)
    sim = ZendeskSimulator.sample()
    port = free_port()
    config = uvicorn.Config(
        create_zendesk_app(sim),
        host="127.0.0.1",
        port=port,
        ssl_certfile=str(tls.cert),
        ssl_keyfile=str(tls.key),
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="the simulated Zendesk")
    account = Account(sim=sim, url=f"https://127.0.0.1:{port}", tls=tls)
    yield account
    account.close_gateways()
    server.should_exit = True
    thread.join(timeout=10)
