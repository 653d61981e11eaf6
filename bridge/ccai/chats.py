"""CCAI's chat objects, as the Manager API lists them and session events push them, read into the
bridge's :class:`ChatState`. No I/O here.

CCAI's vocabulary is only partly documented, so parsing is lenient: status words are kept
verbatim, unknown keys are ignored, and a field that is missing or malformed reads as unknown.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.phones import mask_numbers
from bridge.text import sanitize

logger = logging.getLogger(__name__)

# Words after which a chat will not change again (documented: finished; seen: failed).
ENDED = frozenset({"finished", "failed", "ended", "closed", "canceled", "cancelled", "dismissed", "abandoned"})
# Documented fail-reason codes (reason-codes-statuses): "nothing" (0, "No Error") is no failure.
NO_FAILURE = "nothing"
OPT_OUT_FAIL_REASON = "end_user_opt_out"
# An event's agent participant in these statuses has the chat (documented: accepted, then connected).
AGENT_ASSIGNED = frozenset({"accepted", "connected"})
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
# Words CCAI is known to use; others are written verbatim and logged once.
KNOWN = ENDED | {"selecting", "queued", "assigned", "in_progress", "active", "connected", "disconnected"}
# The documented statuses (chat-session-metadata): queued, assigned, and four final ones, each of
# which ends the chat (and completes its note).
DOCUMENTED_FINAL = frozenset({"finished", "no_response", "canceled", "failed"})
ENDED, KNOWN = ENDED | DOCUMENTED_FINAL, KNOWN | DOCUMENTED_FINAL
# fail_reason code 0, "No Error" (reason-codes-statuses): no outcome at all.
NO_OUTCOME = frozenset({"nothing", "0", "finish_reason_none"})


@dataclass(frozen=True)
class ChatState:
    """What CCAI says about one chat at ``updated_at`` (seconds since the epoch)."""

    chat_id: str
    status: str | None
    updated_at: float
    agent: str | None
    ended_at: float | None
    outcome: str | None
    replied: bool | None  # None: CCAI did not say
    # CCAI's failure code (the chat's or its customer's), e.g. ``end_user_opt_out``; never ``nothing``.
    fail_reason: str | None = None
    disposition: str | None = None  # the wrap-up code an agent submitted (session events' ``dispositions``)

    @property
    def ended(self) -> bool:
        return self.status in ENDED or (self.ended_at is not None and self.ended_at <= self.updated_at)


def event_state(event: Mapping[str, Any], timestamp: float | None) -> ChatState | None:
    """The chat state a session event tells of, if any.

    Documented (External Session Events): the ``item`` carries the chat id, ``state``
    (``connected``, then ``disconnected``), ``participants`` with their statuses (the agent's name
    and id once one accepted), ``ends_at`` and, at wrap-up, ``dispositions {code, custom_code_id,
    note}``. Manager API names (``status``, ``agent_info``, ``fail_reason``) are not documented for
    events but still read if present. What the event does not say stays unknown (None): it never
    blanks what the poll found. Whether the chat ended is the poll's to say (see
    :func:`bridge.store.chat_rows.apply_state`)."""
    item = event.get("item", event.get("chat", event))
    if not isinstance(item, Mapping):
        return None
    # The event's own time orders it when the item carries no updated_at of its own.
    state = parse({"timestamp": timestamp, **item}) if timestamp is not None else parse(item)
    if state is None:
        return None
    agent = _participant(item, "agent")
    disposition = item.get("dispositions")
    if isinstance(disposition, list):  # one object documented; a list of them read as its last
        disposition = disposition[-1] if disposition else None
    code, note = (
        (_text(disposition.get("code"), 64), _text(disposition.get("note"), 200))
        if isinstance(disposition, Mapping)
        else (None, None)
    )
    wrap_up = ": ".join(part for part in (code, note) if part) or None
    return dataclasses.replace(
        state,
        status=state.status or _pushed_status(item.get("state"), agent),
        agent=state.agent or (_agent(agent) if agent is not None else None),
        outcome=wrap_up or state.outcome,
        disposition=code,
    )


def opted_out(state: ChatState, dispositions: Iterable[str] = ()) -> bool:
    """CCAI says the customer opted out: the chat failed with ``end_user_opt_out``, or its agent
    wrapped it up with one of ``dispositions`` (the tenant's own codes; compared case-insensitively)."""
    if state.fail_reason == OPT_OUT_FAIL_REASON:
        return True
    codes = {code.strip().lower() for code in dispositions if code.strip()}
    return state.disposition is not None and state.disposition.strip().lower() in codes


def parse(raw: Mapping[str, Any]) -> ChatState | None:
    """A chat object from the Manager API (or a session event's item); None without id or time."""
    chat_id = raw.get("id", raw.get("chat_id"))
    updated = moment(raw.get("updated_at")) or moment(raw.get("timestamp"))
    if chat_id in (None, "") or updated is None:
        return None
    return ChatState(
        chat_id=str(chat_id),
        status=_word(raw.get("status")),
        updated_at=updated,
        agent=_agent(raw.get("agent_info")),
        ended_at=moment(raw.get("ends_at")),
        outcome=_outcome(raw),
        replied=_replied(raw),
        fail_reason=_fail_reason(raw),
    )


class NewStatusWords:
    """Says once per instance (a process's chat sync, its session-events door) that CCAI used a
    status word the bridge does not know: it is written to the ticket as it is, but someone should
    look at what it means."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def notice(self, states: Iterable[ChatState | None]) -> None:
        for state in states:
            status = state.status if state is not None else None
            if status is not None and status not in KNOWN and status not in self._seen:
                self._seen.add(status)
                logger.warning(
                    "CCAI reported a chat status the bridge does not know: %r; written to the ticket as it is",
                    loggable(status),
                )


def loggable(value: object) -> str:
    """A word CCAI sent (a status, a chat or event id), fit for a log line: anything that may be a
    phone number is masked. Ids stay readable: a chat id is an integer (below ten digits, no
    number has so few), an event id a UUID."""
    text = str(value)
    if (text.isdigit() and len(text) < 10) or _UUID.fullmatch(text):
        return text
    return mask_numbers(text)


def _participant(item: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    """The last participant of ``kind`` (``agent``, ``end_user``) in a chat or event item."""
    participants = item.get("participants")
    found = None
    for participant in participants if isinstance(participants, list) else ():
        if isinstance(participant, Mapping) and participant.get("type", participant.get("role")) == kind:
            found = participant
    return found


def _pushed_status(state: object, agent: Mapping[str, Any] | None) -> str | None:
    """A status word for what an event's ``state`` and agent participant say: ``assigned`` once an
    agent accepted, ``disconnected`` at the end (the poll then says how it ended). A ``connected``
    chat with no agent says nothing the Case does not already show."""
    if state == "disconnected":
        return "disconnected"
    if agent is not None and agent.get("status") in AGENT_ASSIGNED:
        return "assigned"
    return None


def _fail_reason(raw: Mapping[str, Any]) -> str | None:
    """The chat's failure code, else its customer's (participants carry their own)."""
    customer = _participant(raw, "end_user")
    for value in (raw.get("fail_reason"), customer.get("fail_reason") if customer is not None else None):
        word = _text(value, 64)
        if word is not None and word != NO_FAILURE:
            return word
    return None


def _text(value: object, limit: int) -> str | None:
    if value is None or isinstance(value, Mapping | list):
        return None
    return _clean(value).strip()[:limit] or None


def _word(value: object) -> str | None:
    text = _clean(value).strip() if value is not None else ""
    return text[:40] or None


def _agent(info: object) -> str | None:
    if isinstance(info, str):  # a public client built from live data types a chat's agent_info so
        return _clean(info).strip()[:255] or None
    if not isinstance(info, Mapping):
        return None
    name = info.get("name") or " ".join(str(info.get(k) or "") for k in ("first_name", "last_name")).strip()
    return _clean(name or info.get("email") or "").strip()[:255] or None


def _outcome(raw: Mapping[str, Any]) -> str | None:
    """The best reason CCAI gives: a failure first, then how it finished, then its sub-status."""
    for key in ("fail_reason", "finish_reason", "sub_status"):
        value = raw.get(key)
        if isinstance(value, str) and value.strip() and value.strip().lower() not in NO_OUTCOME:
            return _clean(value).strip()[:255] or None
    return None


def _clean(value: object) -> str:
    """CCAI's text as it can be stored and shown: no NUL, lone surrogate or other character no
    store or Case field can hold (the same rule as for the text the bridge sends)."""
    return sanitize(str(value))


def _replied(raw: Mapping[str, Any]) -> bool | None:
    """Whether the customer answered. Not documented as such: the bridge's text is the chat's
    first message, so more than one message, or a later last message, means someone answered."""
    count = raw.get("message_count")
    if isinstance(count, int):
        return count > 1
    first, last = moment(raw.get("first_msg_sent_at")), moment(raw.get("last_msg_sent_at"))
    if first is not None and last is not None:
        return last > first
    return None


def finite(value: object) -> float | None:
    """A JSON number as a float, or None: not a number, or one no float holds (JSON allows 10**400)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def epoch_seconds(value: object) -> float | None:
    """A JSON number of epoch seconds or milliseconds (CCAI uses both) as seconds, or None."""
    number = finite(value)
    if number is None:
        return None
    return number / (1000.0 if number > 1e11 else 1.0)


def moment(value: object) -> float | None:
    """A time as CCAI writes it (ISO 8601, UTC when it names no zone; or epoch seconds or
    milliseconds) in epoch seconds, or None."""
    if (seconds := epoch_seconds(value)) is not None:
        return seconds
    if isinstance(value, int | float):
        return None  # a number, but none a float holds
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()
