"""Whether a text may go out now: the one decision point, checked on the fresh read of the ticket
before every send (outbound message, API and CLI alike, first attempts and retries alike).

Three things can stop it, in this order:

1. consent fields on the ticket (``[consent] block_if_true``, e.g. ``Contact.DoNotCall``: a text is a
   call), read with the ticket in the same query;
2. the bridge's opt-out list (:mod:`bridge.store.opt_outs`), by the number in E.164;
3. the recipient's send window (``BRIDGE_SEND_WINDOW``, in the recipient's local time): outside it
   the send is *held* until the window opens, then checked again from the start.

A block or a hold never reaches CCAI. :func:`decide` is pure; :class:`ConsentCheck` adds the one
store lookup it needs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from bridge import send_window
from bridge.crm import Ticket, Words
from bridge.model import OptOut, OptOutReading
from bridge.send_window import WindowRules

# How the ticket's consent fields read in a reason; other fields are named by their API name.
FIELD_WORDS = {
    "Contact.DoNotCall": "the Contact is marked Do Not Call",
    "Contact.HasOptedOutOfEmail": "the Contact has opted out of email",
    "Contact.CCAI_SMS_Opt_Out__c": "the Contact opted out of SMS (CCAI SMS Opt Out is ticked)",
}


@dataclass(frozen=True)
class Allow:
    window_ignored: bool = False


@dataclass(frozen=True)
class Block:
    """Never sent: ``opted_out`` (no consent), or ``failed`` (the window can never be met)."""

    status: Literal["opted_out", "failed"]
    reason: str
    from_list: bool = False  # the bridge's opt-out list blocked it (the CRM may not know yet)


@dataclass(frozen=True)
class Hold:
    """Held until ``until`` (seconds since the epoch), when the recipient's window opens."""

    until: float
    reason: str


Verdict = Allow | Block | Hold


def decide(
    ticket: Ticket,
    number: str,
    *,
    now: float,
    block_if_true: Sequence[str],
    opted_out: OptOut | None,
    rules: WindowRules,
    words: Words,
    ignore_window: bool = False,
) -> Verdict:
    """The verdict for texting ``number`` (E.164) about ``ticket`` at ``now``."""
    for field in block_if_true:
        if _true(ticket.get(field)):
            said = FIELD_WORDS.get(field, f"the {words.ticket} field {field} is true")
            return Block("opted_out", f"Not sent: {said}.")
    if opted_out is not None:
        return Block("opted_out", f"Not sent: {opted_out.describe()}.", from_list=True)
    if ignore_window:
        return Allow(window_ignored=rules.default is not None)
    moment = dt.datetime.fromtimestamp(now, tz=dt.UTC)
    checked = send_window.check(rules, number, zone_field=ticket.get(rules.timezone_field), now=moment)
    if checked is None or checked.decision.open:
        return Allow()
    decision, window = checked.decision, checked.window
    if decision.opens_at is None:
        return Block("failed", decision.reason or f"The send window {window} can never be met for this number.")
    return Hold(until=decision.opens_at.timestamp(), reason=decision.reason or f"Scheduled (send window {window}).")


class OptOutList(Protocol):
    """The opt-out list as the check uses it (:class:`bridge.store.opt_outs.OptOuts`)."""

    def read(self, number: str) -> OptOutReading: ...

    def add(self, number: str, *, source: str, note: str | None = None) -> bool: ...


class ConsentCheck:
    """:func:`decide` with the opt-out list it reads, and adds to when CCAI refuses an opted-out number."""

    def __init__(self, *, opt_outs: OptOutList, block_if_true: Sequence[str], rules: WindowRules, words: Words) -> None:
        self._opt_outs = opt_outs
        self._words = words
        self._block_if_true = tuple(block_if_true)
        self._rules = rules

    @property
    def fields(self) -> tuple[str, ...]:
        """The ticket fields the check reads (selected with the ticket, in the same query)."""
        extra = (self._rules.timezone_field,) if self._rules.timezone_field else ()
        return (*self._block_if_true, *extra)

    def check(self, ticket: Ticket, number: str, *, now: float | None, ignore_window: bool = False) -> Verdict:
        """The verdict at ``now``, or (None) at the store's time of reading the opt-out list."""
        reading = self._opt_outs.read(number)
        return self.verdict(
            ticket,
            number,
            reading if now is None else OptOutReading(reading.entry, at=now),
            ignore_window=ignore_window,
        )

    def verdict(self, ticket: Ticket, number: str, reading: OptOutReading, *, ignore_window: bool = False) -> Verdict:
        """The verdict on a reading of the opt-out list, at the reading's time (no I/O: the store asks
        this inside the transaction that clears a request to leave)."""
        return decide(
            ticket,
            number,
            now=reading.at,
            block_if_true=self._block_if_true,
            opted_out=reading.entry,
            rules=self._rules,
            words=self._words,
            ignore_window=ignore_window,
        )

    def record_opt_out(self, number: str, *, reason: str | None) -> None:
        """CCAI refused because the consumer opted out: no ticket may text this number again."""
        self._opt_outs.add(number, source="ccai", note=reason)


def _true(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")
