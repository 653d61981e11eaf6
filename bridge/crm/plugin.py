"""A CRM as the rest of the bridge plugs it in: chosen by ``BRIDGE_CRM``, looked up in
:data:`bridge.crm.CRMS` (as Uvicorn picks its HTTP protocol by name, or outpost its destinations).

A plugin brings everything shaped like its CRM: its settings, its gateway, its push doors (routes)
and long-running inputs, its ticket-id rule, the words people read, its ``bridge check`` items, and
the simulator ``bridge serve --sandbox`` runs it against.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from starlette.routing import BaseRoute

from bridge.crm import CRMS, CRMGateway, Words
from bridge.errors import ConfigError
from bridge.message_templates import TemplateBook
from bridge.metrics import Metrics
from bridge.model import Finding, NewSend, StreamCommit, StreamLease
from bridge.settings import CRMSettings, Settings


class Inbox(Protocol):
    """Where doors and inputs put what they receive (:meth:`bridge.store.sends.Sends.ingest`)."""

    def ingest(self, new: Sequence[NewSend]) -> int:
        """Store every send durably, in one transaction; returns how many were new."""


class Memory(Protocol):
    """Small records an input keeps across restarts, such as a stream's replay position
    (:class:`bridge.store.status.StatusBoard`)."""

    def get(self, key: str) -> tuple[dict[str, Any], float] | None: ...

    def put(self, key: str, value: Mapping[str, Any]) -> None: ...


class StreamStore(Protocol):
    """Where a stream's events become sends, with its position, in one transaction
    (:class:`bridge.store.streams.Streams`)."""

    def resume(self, stream: str) -> tuple[bytes | None, float]: ...

    def commit(
        self,
        stream: str,
        events: Sequence[tuple[str, NewSend]],
        position: bytes,
        *,
        lease: StreamLease | None = None,
    ) -> StreamCommit: ...

    def checkpoint(self, stream: str, position: bytes, *, lease: StreamLease | None = None) -> None: ...


# The status-board key under which a CRM's push door notes when it last delivered (``bridge status``
# and the dashboard show it, so a wrong endpoint or token shows as silence within minutes).
LAST_PUSH_KEY = "crm.last_push"


@dataclass(frozen=True)
class DoorContext:
    """What a push door needs besides its CRM's settings."""

    inbox: Inbox
    metrics: Metrics
    wake: Callable[[], None]  # a send was stored: the worker looks for work now
    max_body_bytes: int
    memory: Memory | None = None  # where a door notes what operators see (when it last heard from its CRM)
    templates: TemplateBook | None = None  # which template a CRM rule sends (e.g. an outbound message's ActionId)


@dataclass(frozen=True)
class InputContext:
    """What a long-running input needs besides its CRM's settings."""

    inbox: Inbox
    memory: Memory
    metrics: Metrics
    wake: Callable[[], None]
    streams: StreamStore
    owner: str  # the worker running the inputs: their leases name it


Input = Callable[[], Awaitable[None]]
"""A long-running input: runs until cancelled, raises when it fails (the worker restarts it)."""


@dataclass(frozen=True)
class NamedInput:
    name: str  # unique among inputs: the name of its lease (one process runs it at a time)
    run: Input


@dataclass(frozen=True)
class CheckContext:
    """What ``bridge check`` asks of the CRM besides its own settings."""

    ticket_fields: Sequence[str]  # the fields the mapping and the consent check read
    block_if_true: Sequence[str]
    create_notes: bool
    templates: TemplateBook | None = None  # every template, with the fields each reads
    public_url: str = ""  # BRIDGE_PUBLIC_URL: where the CRM's push door should point


class CRMPlugin(Protocol):
    @property
    def name(self) -> str:
        """As ``BRIDGE_CRM`` names it."""

    @property
    def words(self) -> Words: ...

    @property
    def settings_model(self) -> type[CRMSettings]:
        """Its settings (``SALESFORCE_*`` and its keys of the mapping file), read like the core's."""

    @property
    def default_config(self) -> Path:
        """The mapping file read when ``BRIDGE_CONFIG`` is not set: the core's defaults name
        Salesforce fields, so another CRM's file says what its tickets call them."""

    @property
    def sandbox(self) -> str:
        """The simulator ``bridge serve --sandbox`` runs it against (:mod:`bridge.sandbox.servers`)."""

    def ticket_ids(self, raw: str) -> str:
        """A ticket id as callers give it, normalised; ``ValueError`` saying why it is not one."""

    def ticket_url(self, settings: CRMSettings, ticket_id: str) -> str | None:
        """Where people open the ticket in the CRM, when the settings say (the dashboard links to it)."""

    def gateway(self, settings: CRMSettings, *, metrics: Metrics | None) -> CRMGateway:
        """The gateway, logged in on first use."""

    def problems(self, settings: CRMSettings, *, web: bool) -> tuple[list[str], list[str]]:
        """What a real deployment lacks: (missing settings by name, other problems as sentences)."""

    def describe(self, settings: CRMSettings) -> str:
        """How it is set up, in a few words for ``bridge check`` (complete settings only)."""

    def routes(self, settings: CRMSettings, doors: DoorContext) -> list[BaseRoute]:
        """Its push doors (webhooks the CRM calls)."""

    def inputs(self, settings: CRMSettings, context: InputContext) -> list[NamedInput]:
        """Its long-running inputs (streams the bridge holds open), run by the worker."""

    async def checks(self, settings: CRMSettings, context: CheckContext) -> list[Finding]:
        """Its ``bridge check`` items: is the CRM set up the way the configuration says?"""


@runtime_checkable
class HasCommands(Protocol):
    """A plugin with commands of its own (``bridge salesforce setup``), added to the command line."""

    def register_commands(
        self,
        commands: argparse._SubParsersAction[argparse.ArgumentParser],
        *,
        load_settings: Callable[[], Settings],
    ) -> None: ...


def load_plugin(name: str) -> CRMPlugin:
    """The plugin for ``BRIDGE_CRM``; a :class:`ConfigError` naming the known ones otherwise."""
    if name not in CRMS:
        raise ConfigError(f"BRIDGE_CRM: {name!r} is not a CRM the bridge knows ({', '.join(sorted(CRMS))}).")
    plugin: CRMPlugin = importlib.import_module(CRMS[name]).plugin
    return plugin
