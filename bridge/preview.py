"""What a send for a ticket would do right now, without sending: for the agent's "Send SMS" action.

It reads the ticket fresh and applies the same mapping and the same consent and send-window check
as the send step, so what the agent is shown is what would happen.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from bridge import send_window
from bridge.consent import Block, ConsentCheck
from bridge.crm import CRMGateway, Words
from bridge.errors import NotFound
from bridge.mapping import Composed, TicketMapper
from bridge.message_templates import TemplateBook
from bridge.model import Outcome
from bridge.phones import mask
from bridge.segments import SegmentCount, count_segments
from bridge.send_window import WindowRules


@dataclass(frozen=True)
class WindowState:
    open: bool
    window: str
    time_zone: str
    local_time: str
    opens_at: float | None
    reason: str | None


class LiveChats(Protocol):
    """The chats the bridge follows (:class:`bridge.store.chats.Chats`)."""

    def live_chat(self, ticket_id: str) -> tuple[str, str | None] | None: ...


@dataclass(frozen=True)
class LiveChat:
    """A chat with the customer that has not ended: CCAI refuses a second SMS while it is open."""

    chat_id: str
    status: str | None


@dataclass(frozen=True)
class TemplateUsed:
    name: str
    version: str
    language: str | None  # the language variant used; None: the template's main text


@dataclass(frozen=True)
class Preview:
    ticket_id: str
    end_user_number: str | None  # masked
    message: str | None
    segments: SegmentCount | None
    max_segments: int
    blocked: tuple[str, str] | None  # (status, reason) when it cannot be sent at all
    window: WindowState | None  # None when no send window applies
    template: TemplateUsed | None = None  # the template the message was rendered from
    live_chat: LiveChat | None = None  # the customer is already in a chat the bridge started

    @property
    def can_send(self) -> bool:
        return self.blocked is None and self.message is not None


class Previewer:
    def __init__(
        self,
        *,
        gateway: CRMGateway,
        mapper: TicketMapper,
        consent: ConsentCheck,
        rules: WindowRules,
        max_segments: int,
        words: Words,
        chats: LiveChats | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._chats = chats
        self._gateway = gateway
        self._words = words
        self._mapper = mapper
        self._consent = consent
        self._rules = rules
        self._max_segments = max_segments
        self._clock = clock

    @property
    def templates(self) -> TemplateBook:
        return self._mapper.templates

    def preview(self, ticket_id: str, template: str | None = None) -> Preview:
        """Synchronous (it reads the CRM): run it in a worker thread. ``template``: the one asked for
        by name (the Send SMS action's picker); None: chosen as a send would choose it."""
        tickets = self._gateway.read_tickets([ticket_id], (*self._mapper.fields, *self._consent.fields))
        ticket = tickets.get(ticket_id)
        if ticket is None:
            words = self._words
            raise NotFound(
                f"{words.ticket} {ticket_id} was not found in {words.crm} (or is not visible to the bridge's user)."
            )
        number = self._mapper.number(ticket)
        message = self._mapper.compose(ticket, template=template)
        text, used = (message.text, _used(message)) if isinstance(message, Composed) else (None, None)
        base = Preview(
            ticket_id=ticket_id,
            end_user_number=None if isinstance(number, Outcome) else mask(number),
            message=text,
            segments=count_segments(text) if text is not None else None,
            max_segments=self._max_segments,
            blocked=None,
            window=None,
            template=used,
            live_chat=self._live_chat(ticket_id),
        )
        if isinstance(number, Outcome):
            return _blocked(base, number.status, number.reason)
        now = self._clock()
        verdict = self._consent.check(ticket, number, now=now)
        zone_field = ticket.get(self._rules.timezone_field) if self._rules.timezone_field else None
        base = replace(base, window=self._window(zone_field, number, now))
        if isinstance(verdict, Block):
            return _blocked(base, verdict.status, verdict.reason)
        if isinstance(message, Outcome):
            return _blocked(base, message.status, message.reason)
        # Allowed, or held: a held send can still be asked for (it goes out when the window opens).
        return base

    def _live_chat(self, ticket_id: str) -> LiveChat | None:
        found = self._chats.live_chat(ticket_id) if self._chats is not None else None
        return None if found is None else LiveChat(chat_id=found[0], status=found[1])

    def _window(self, field_value: object, number: str, now: float) -> WindowState | None:
        moment = dt.datetime.fromtimestamp(now, tz=dt.UTC)
        checked = send_window.check(self._rules, number, zone_field=field_value, now=moment)
        if checked is None:
            return None
        decision = checked.decision
        zone = decision.zone or checked.zones[0]
        local = moment.astimezone(send_window.zone_info(zone))
        return WindowState(
            open=decision.open,
            window=str(checked.window),
            time_zone=zone,
            local_time=local.strftime("%H:%M"),
            opens_at=decision.opens_at.timestamp() if decision.opens_at else None,
            reason=decision.reason,
        )


def _blocked(preview: Preview, status: str, reason: str | None) -> Preview:
    return replace(preview, blocked=(status, reason or "It cannot be sent."))


def _used(composed: Composed) -> TemplateUsed | None:
    chosen = composed.template
    return None if chosen is None else TemplateUsed(chosen.name, chosen.version, composed.language)
