"""The simulated Pub/Sub API on a loopback TLS port, and stand-ins for what the subscriber plugs into."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from bridge.crm.salesforce.pubsub import PubSubLogin, ResumePoint, StreamStatus, SubscriberOptions
from bridge.crm.salesforce.pubsub_events import PlatformEvent
from bridge.crm.salesforce.settings import SalesforceSettings
from bridge.errors import StoreUnavailable
from bridge.sandbox._eventbus import BusEvent, EventBus, Topic
from bridge.sandbox.cases import SANDBOX_ORG_ID
from bridge.sandbox.pubsub import SMS_REQUEST_EVENT, SMS_REQUEST_FIELDS, PubSubServer, PubSubSimulator
from bridge.sandbox.servers import TlsFiles, make_tls_files

INSTANCE_URL = "https://127.0.0.1:9"  # the org's instance URL the simulator expects in the metadata


class SandboxLogin:
    """A LoginSource whose sessions are tokens the simulator accepts; ``renew`` issues a new one."""

    def __init__(self, tokens: set[str], *, org_id: str = SANDBOX_ORG_ID) -> None:
        self.tokens = tokens
        self.org_id = org_id
        self.renewals = 0
        self.current = self._issue()

    def _issue(self) -> PubSubLogin:
        token = secrets.token_urlsafe(16)
        self.tokens.add(token)
        return PubSubLogin(access_token=token, instance_url=INSTANCE_URL, org_id=self.org_id)

    async def login(self) -> PubSubLogin:
        return self.current

    async def renew(self, refused: PubSubLogin) -> PubSubLogin:
        if refused == self.current:
            self.renewals += 1
            self.current = self._issue()
        return self.current


@dataclass
class MemorySink:
    """An EventSink in memory: events by EventUuid and the replay id committed with the last batch."""

    events: dict[str, PlatformEvent] = field(default_factory=dict)
    replay_id: bytes | None = None
    commits: list[int] = field(default_factory=list)  # the size of each batch committed
    checkpoints: list[bytes] = field(default_factory=list)
    fail_commits: int = 0  # the next N commits raise StoreUnavailable
    gate: anyio.Event | None = None  # when set, commits wait until the gate opens
    on_commit: Callable[[Sequence[PlatformEvent]], None] | None = None
    first_subscribed_at: float | None = None

    async def resume_point(self) -> ResumePoint:
        if self.first_subscribed_at is None:
            self.first_subscribed_at = time.time()
        return ResumePoint(self.replay_id, self.first_subscribed_at)

    async def commit(self, events: Sequence[PlatformEvent]) -> int:
        if self.on_commit is not None:
            self.on_commit(events)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_commits:
            self.fail_commits -= 1
            raise StoreUnavailable("The test store is down.")
        new = [e for e in events if e.uuid not in self.events]
        self.events.update((e.uuid, e) for e in new)
        self.replay_id = events[-1].replay_id
        self.commits.append(len(events))
        return len(new)

    async def checkpoint(self, replay_id: bytes) -> None:
        self.replay_id = replay_id
        self.checkpoints.append(replay_id)


@dataclass
class PubSubSandbox:
    bus: EventBus
    topic: Topic
    simulator: PubSubSimulator
    server: PubSubServer
    ca: bytes
    tokens: set[str]
    tls: TlsFiles

    def options(self, **overrides: Any) -> SubscriberOptions:
        values: dict[str, Any] = {
            "topic": self.topic.name,
            "target": self.server.target,
            "root_certificates": self.ca,
            "batch_size": 10,
            "dead_after": 5.0,
            "backoff_base": 0.05,
            "backoff_cap": 0.2,
            "call_timeout": 5.0,
            "start_margin": 0.0,
            **overrides,
        }
        return SubscriberOptions(**values)

    def login(self) -> SandboxLogin:
        return SandboxLogin(self.tokens)

    def salesforce_settings(self, **overrides: Any) -> SalesforceSettings:
        """Salesforce settings (an access token the simulator accepts) with the Pub/Sub trigger on."""
        token = self.login().current.access_token
        values: dict[str, Any] = {
            "instance_url": INSTANCE_URL,
            "access_token": token,
            "ca_bundle": str(self.tls.ca),
            "org_ids": SANDBOX_ORG_ID,
            "pubsub_topic": self.topic.name,
            "pubsub_endpoint": self.server.target,
            **overrides,
        }
        return SalesforceSettings(**values)

    def publish(self, count: int = 1, **values: Any) -> list[BusEvent]:
        return [
            self.bus.publish_values(self.topic, {"Case_Id__c": f"5005g00000SBX{n:02d}", **values}) for n in range(count)
        ]


@asynccontextmanager
async def pubsub_sandbox(
    directory: Path, *, bus: EventBus | None = None, **settings: Any
) -> AsyncIterator[PubSubSandbox]:
    tls = make_tls_files(directory)
    bus = bus or EventBus()
    topic = bus.add_platform_event(SMS_REQUEST_EVENT, SMS_REQUEST_FIELDS)
    tokens: set[str] = set()
    simulator = PubSubSimulator(
        bus=bus, org_id=SANDBOX_ORG_ID, instance_url=INSTANCE_URL, valid_tokens=tokens, **settings
    )
    server = PubSubServer(simulator, cert=tls.cert.read_bytes(), key=tls.key.read_bytes())
    await server.start()
    try:
        yield PubSubSandbox(
            bus=bus, topic=topic, simulator=simulator, server=server, ca=tls.ca.read_bytes(), tokens=tokens, tls=tls
        )
    finally:
        await server.stop()


async def wait_for(condition: Callable[[], bool], *, timeout: float = 15.0, what: str = "the condition") -> None:
    """Poll until ``condition`` holds (generous: the machine is shared), or fail naming ``what``."""
    with anyio.move_on_after(timeout):
        while not condition():
            await anyio.sleep(0.02)
        return
    raise AssertionError(f"Timed out after {timeout:.0f} s waiting for {what}")


def describe(status: StreamStatus) -> str:
    return f"{status.state}, {status.received} received, {status.committed} committed, problem {status.problem!r}"
