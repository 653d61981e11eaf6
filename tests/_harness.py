"""The worker in-process: a real store, the simulated CCAI through httpx's ASGI transport, an
in-memory CRM and a hand-moved clock, wired as :func:`bridge.services.build_worker` wires them."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from bridge.ccai.client import CCAIClient
from bridge.ccai.pacing import LocalRateLimiter, RateLimiter
from bridge.chatsync import ChatSync, SyncOptions
from bridge.crm.salesforce import plugin as salesforce
from bridge.holdings import Holdings
from bridge.metrics import Metrics
from bridge.model import NewSend, Origin, Overrides, SendRecord
from bridge.sandbox.ccai import CCAISimulator, create_ccai_app
from bridge.services import build_worker
from bridge.settings import Settings
from bridge.store import Store
from bridge.worker import StepContext, Worker
from tests._clock import Clock
from tests._fakes import FakeGateway
from tests._sends import prove_lookup

MOBILE_CASE = "5005g00000SBX01AAH"
QUEUE_CASE = "5005g00000SBX02AAH"
NO_PHONE_CASE = "5005g00000SBX03AAH"
MOBILE_NUMBER = "+14155550100"
CASES: dict[str, dict[str, Any]] = {
    MOBILE_CASE: {
        "Id": MOBILE_CASE,
        "CaseNumber": "00001001",
        "ContactMobile": "+1 415-555-0100",
        "Owner.Type": "User",
        "Owner.Email": "ana@example.com",
    },
    QUEUE_CASE: {
        "Id": QUEUE_CASE,
        "CaseNumber": "00001002",
        "ContactPhone": "(212) 555-0142",
        "Owner.Type": "Queue",
        "Owner.Email": None,
    },
    NO_PHONE_CASE: {"Id": NO_PHONE_CASE, "CaseNumber": "00001003", "Owner.Type": "User", "Owner.Email": "a@b.c"},
}


def harness_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ccai_subdomain": "acme",
        "ccai_api_token": "token",
        "ccai_base_url": "http://ccai.test/apps/api/v1",
        "ccai_outbound_number": "+16285550199",
        "ccai_timeout_seconds": 2,
        "ccai_retry_for_seconds": 600,
        "bridge_lease_seconds": 30,
        "bridge_send_window": "off",  # tests of the window set one
        "bridge_config": "/nonexistent/bridge.toml",  # the built-in defaults, whatever the working directory
        **overrides,
    }
    return Settings(**values)


@dataclass
class Harness:
    store: Store
    gateway: FakeGateway
    sim: CCAISimulator
    worker: Worker
    clock: Clock
    ccai: CCAIClient
    metrics: Metrics

    def ingest(
        self, *case_ids: str, origin: Origin = "crm_event", source: str | None = None, **overrides: Any
    ) -> list[int]:
        """Sends as a door would store them: by default events the CRM fired (an outbound message)."""
        door = source or ("outbound_message" if origin == "crm_event" else "api")
        sends = [
            NewSend(
                dedupe_key=f"om:x:{uuid.uuid4().hex}",
                source=door,
                origin=origin,
                ticket_id=c,
                overrides=Overrides(**overrides),
            )
            for c in case_ids
        ]
        return [self.store.sends.create(s).id for s in sends]

    async def drain(self, *, advance: float = 0.0, rounds: int = 30) -> None:
        """Run the worker until nothing is due; ``advance`` moves the clock between rounds (retries)."""
        for _ in range(rounds):
            if not await self.worker.run_once():
                if not advance:
                    return
                self.clock.advance(advance)

    def chat_sync(self, options: SyncOptions, *, owner: str = "sync", **wiring: Any) -> ChatSync:
        """A chat sync of another worker (``owner``) on this harness's store, CCAI and CRM."""
        return ChatSync(
            context=self.context(owner),
            chats=self.store.chats,
            events=self.store.session_events,
            board=self.store.status,
            ccai=self.ccai,
            gateway=self.gateway,
            options=options,
            **wiring,
        )

    def context(self, owner: str) -> StepContext:
        """What a step of another worker (``owner``) would share, for a step built by hand."""
        return StepContext(
            owner=owner,
            holdings=Holdings(),
            stopping=lambda: False,
            metrics=self.metrics,
            rng=random.Random(1),
            words=salesforce.words,
        )

    def lookups(self, result: str) -> float:
        return self.metrics.registry.get_sample_value("bridge_ccai_chat_lookups_total", {"result": result}) or 0.0

    def row(self, case_id: str) -> SendRecord:
        """The newest send for the ticket."""
        return self.store.history.find(ticket_id=case_id, limit=1)[0]


def make_harness(
    store: Store,
    clock: Clock,
    transport: httpx.AsyncBaseTransport | None = None,
    *,
    wrap: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
    limiter: RateLimiter | None = None,
    ccai_url: str = "http://ccai.test/apps/api/v1",
    sim: CCAISimulator | None = None,
    lookup_proven: bool = True,
    **settings: Any,
) -> Harness:
    """``transport`` replaces the simulated CCAI; ``wrap`` puts a stand-in in front of it (faults).
    ``lookup_proven``: the tenant has shown its chat list carries the bridge's ticket ids (the
    lost-answer lookup's proof, :mod:`bridge.lookup_proof`), as a bridge that ran a while has."""
    if lookup_proven:
        prove_lookup(store)
    sim = sim or CCAISimulator(
        subdomain="acme", api_token="token", outbound_numbers={"+16285550199"}, rate_limit=1000, clock=clock
    )
    gateway = FakeGateway(cases={k: dict(v) for k, v in CASES.items()})
    metrics = Metrics()
    wire = transport or httpx.ASGITransport(app=create_ccai_app(sim))
    if wrap is not None:
        wire = wrap(wire)
    ccai = CCAIClient(
        base_url=ccai_url,
        subdomain="acme",
        api_token="token",
        timeout=2,
        limiter=limiter or LocalRateLimiter(1000),
        transport=wire,
        metrics=metrics,
    )
    worker = build_worker(
        harness_settings(**settings),
        store=store,
        gateway=gateway,
        ccai=ccai,
        metrics=metrics,
        words=salesforce.words,
        rng=random.Random(1),
    )
    return Harness(store=store, gateway=gateway, sim=sim, worker=worker, clock=clock, ccai=ccai, metrics=metrics)
