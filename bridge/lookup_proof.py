"""Whether this tenant's chat list carries the ticket id the bridge sends: the proof the lost-answer
lookup needs before a lookup that finds nothing may lead to sending again. No I/O here.

The no-duplicate promise rests on the Manager API's chat list showing our ticket id as a chat's
``out_ticket_id`` soon after the chat is created. CCAI does not document that it does (the SMS
page's own example answers ``out_ticket_id: null`` for a request that sent ``ticket_id``), and it
may depend on the tenant's CRM settings. So the bridge watches: every chat it created, when the chat
sync next reads it in the list, is one piece of :class:`Evidence` (carried or not, and how soon).
:func:`judge` turns the latest evidence into a :class:`Proof`:

- ``proven``: at least :data:`MIN_CARRIED` of the bridge's chats carried its ticket id, and the
  latest settled evidence agrees; a lookup that finds nothing is then believed;
- ``unproven``: too few chats seen yet; a lookup that finds nothing ends the send *unknown*;
- ``contradicted``: the latest settled evidence is a chat of ours without our ticket id: the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

# Chats of ours that must have shown our ticket id before a lookup that finds nothing is believed.
MIN_CARRIED = 3
# A chat of ours seen this long after it was created still without our ticket id settles as "not
# carried": a tenant that fills the field later than this could not be looked up in time anyway.
NOT_CARRIED_AFTER_SECONDS = 120.0
# How many pieces of evidence are kept and judged: the recent ones tell what the tenant does now.
KEPT = 50

ProofState = Literal["proven", "unproven", "contradicted"]
NOT_SHOWN = "this tenant has not shown that its chat list carries our ticket id"


@dataclass(frozen=True)
class Sighting:
    """One chat as the chat list showed it: its id and the ``out_ticket_id`` it carried (None: null)."""

    chat_id: str
    out_ticket_id: str | None


def sightings_in(page: Sequence[Mapping[str, Any]]) -> list[Sighting]:
    """The sightings in one page of the Manager API's chat list (raw chat objects)."""
    found = []
    for chat in page:
        chat_id, ticket = chat.get("id"), chat.get("out_ticket_id")
        if chat_id not in (None, ""):
            found.append(Sighting(str(chat_id), None if ticket in (None, "") else str(ticket)))
    return found


@dataclass(frozen=True)
class Evidence:
    """One chat the bridge created, as the chat list has shown it so far (times on the store's clock).

    ``carried_at``: when it was first seen carrying the ticket id the bridge sent (None: not yet);
    ``other``: it was seen carrying some other ticket id.
    """

    chat_id: str
    sent_at: float
    first_seen_at: float
    last_seen_at: float
    carried_at: float | None
    other: bool = False

    @property
    def delay(self) -> float | None:
        """How soon our ticket id showed (at most: the chat sync saw it then)."""
        return None if self.carried_at is None else max(0.0, self.carried_at - self.sent_at)

    @property
    def settled(self) -> bool:
        waited = self.last_seen_at - self.sent_at
        return self.carried_at is not None or self.other or waited >= NOT_CARRIED_AFTER_SECONDS

    @property
    def carried(self) -> bool:
        return self.carried_at is not None and not self.other

    def describe(self) -> str:
        if self.carried:
            return f"chat {self.chat_id} showed our ticket id {self.delay:.0f} s after it was sent"
        if self.other:
            return f"chat {self.chat_id} showed another ticket id than the one the bridge sent"
        seen = self.last_seen_at - self.sent_at
        return f"chat {self.chat_id} still showed no ticket id (out_ticket_id null) {seen:.0f} s after it was sent"


@dataclass(frozen=True)
class Proof:
    """What the evidence says about trusting a lookup that finds nothing."""

    state: ProofState
    detail: str
    carried: int = 0
    latest: Evidence | None = None
    max_delay: float = 0.0  # the longest the ticket id took to show among the recent chats that carried it

    @property
    def trusted(self) -> bool:
        return self.state == "proven"

    def as_json(self) -> dict[str, object]:
        latest = self.latest
        return {
            "state": self.state,
            "detail": self.detail,
            "chats_carrying": self.carried,
            "needed": MIN_CARRIED,
            "max_delay_seconds": round(self.max_delay, 1),
            "latest": None
            if latest is None
            else {"chat_id": latest.chat_id, "carried": latest.carried, "delay_seconds": latest.delay},
        }


def judge(evidence: Sequence[Evidence]) -> Proof:
    """The proof the evidence (any order) gives. The newest chat counts even before it settles: one
    read back without our ticket id suspends the trust until it shows the id (the safe side)."""
    ordered = sorted(evidence, key=lambda e: (e.sent_at, e.chat_id))
    settled = [e for e in ordered if e.settled]
    carried = [e for e in settled if e.carried]
    # A delay is what the chat sync saw (at most): one it read late (it was off for a while) says little, and a
    # tenant slower than NOT_CARRIED_AFTER_SECONDS contradicts the proof anyway.
    max_delay = min(max((e.delay or 0.0 for e in carried), default=0.0), NOT_CARRIED_AFTER_SECONDS)
    if not ordered:
        return Proof("unproven", f"{NOT_SHOWN} yet: none of the bridge's chats has been read back from it")
    if settled and not settled[-1].carried:
        latest = settled[-1]
        return Proof(
            "contradicted", f"{NOT_SHOWN}: {latest.describe()}", len(carried), latest=latest, max_delay=max_delay
        )
    latest = ordered[-1]
    if not latest.carried:
        return Proof(
            "unproven",
            f"{NOT_SHOWN} for its latest chat yet: {latest.describe()}",
            len(carried),
            latest=latest,
            max_delay=max_delay,
        )
    if len(carried) < MIN_CARRIED:
        return Proof(
            "unproven",
            f"{NOT_SHOWN} yet: {len(carried)} of the {MIN_CARRIED} chats needed did ({latest.describe()})",
            len(carried),
            latest=latest,
            max_delay=max_delay,
        )
    return Proof(
        "proven",
        f"{len(carried)} of the bridge's recent chats showed its ticket id, at most {max_delay:.0f} s after they "
        f"were sent; the latest: {latest.describe()}",
        len(carried),
        latest=latest,
        max_delay=max_delay,
    )
