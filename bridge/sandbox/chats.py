"""The simulated tenant's chats: typed records that move through a scheduled life.

Every chat the SMS endpoint creates is a :class:`Chat` in a :class:`ChatBook`. The book moves it
along a lifecycle, a list of :class:`LifeStep` (status, seconds after creation, extra fields), on
whatever clock the caller passes in, so tests can move time by hand. The default life is
``selecting`` → ``assigned`` after 5 s (an agent from a small built-in roster) → ``finished`` after
300 s. A chat that ends releases its consumer's "active SMS session".

What the JSON of a chat follows, and what is assumed here:

- Documented (Manager API chat resource,
  https://cloud.google.com/contact-center/ccai-platform/docs/manager-api-chat, and the SMS seed):
  ``id``, ``lang``, ``chat_type``, ``status``, ``sub_status``, ``created_at``, ``queued_at``,
  ``assigned_at``, ``ends_at``, ``updated_at``, ``first_msg_sent_at``, ``last_msg_sent_at``,
  ``wait_duration``/``queue_duration``, ``chat_duration``, ``out_ticket_id``, ``finish_reason``
  (example value ``finish_reason_none``), ``fail_reason``, ``message_count``, ``agent_info``
  (``id``, ``agent_number``, ``email``, ``name``, ``first_name``, ``last_name``, ``avatar_url``),
  ``end_user``, ``outbound_number``. Times are ISO 8601 in UTC with whole seconds, as in every
  documented example; the answer to ``POST /sms`` keeps ``out_ticket_id`` null.
- Documented (chat-session-metadata): the statuses ``queued``, ``assigned``, ``finished``,
  ``no_response``, ``canceled`` and ``failed``; the last four end a chat.
- Assumed: the default ``sub_status``
  ("Disconnected by end user", the documented example). No documented field says "the consumer
  answered": the simulator counts the outbound SMS as message 1, so a reply makes
  ``message_count`` 2 and moves ``last_msg_sent_at``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

WAITING = frozenset({"selecting", "queued"})
# Final statuses (chat-session-metadata): each ends the chat.
ENDED = frozenset({"finished", "no_response", "canceled", "failed"})
NO_END_TIME = frozenset({"no_response", "canceled"})
# Fields a lifecycle step or a hand-made change may set beside the status.
STEP_FIELDS = frozenset({"sub_status", "finish_reason", "fail_reason"})


@dataclass(frozen=True)
class Agent:
    id: int
    email: str | None
    name: str | None

    def info(self) -> dict[str, Any]:
        """``agent_info`` as the seed's examples show it."""
        first, _, last = (self.name or "").partition(" ")
        return {
            "id": self.id,
            "agent_number": self.id,
            "email": self.email,
            "name": self.name,
            "first_name": first or None,
            "last_name": last or None,
            "avatar_url": None,
        }


# John Doe is the seed's example agent; the others make round-robin assignment visible.
AGENTS = (
    Agent(1, "john.doe@foo.com", "John Doe"),
    Agent(2, "ana.lopez@example.com", "Ana Lopez"),
    Agent(3, "sam.lee@example.com", "Sam Lee"),
)


@dataclass(frozen=True)
class LifeStep:
    """Move a chat to ``status`` ``after`` seconds from its creation, setting ``fields`` too."""

    status: str
    after: float
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "after": self.after, **self.fields}


DEFAULT_LIFECYCLE = (
    LifeStep("selecting", 0),
    LifeStep("assigned", 5),
    LifeStep("finished", 300, {"sub_status": "Disconnected by end user", "finish_reason": "finish_reason_none"}),
)


def parse_lifecycle(value: str | Sequence[Any]) -> tuple[LifeStep, ...]:
    """Steps from ``"selecting@0,assigned@5,finished@300"``, a JSON list, or a list of dicts or tuples.

    Raises ``ValueError`` naming the bad step.
    """
    if isinstance(value, str):
        text = value.strip()
        items: Sequence[Any] = json.loads(text) if text.startswith("[") else [p for p in text.split(",") if p.strip()]
    else:
        items = value
    steps = [_step(item) for item in items]
    if not steps:
        raise ValueError("A chat lifecycle needs at least one step.")
    return tuple(sorted(steps, key=lambda s: s.after))


def _step(item: Any) -> LifeStep:
    if isinstance(item, str):
        status, _, after = item.strip().partition("@")
        raw: dict[str, Any] = {"status": status, "after": after or 0}
    elif isinstance(item, Mapping):
        raw = dict(item)
    elif isinstance(item, Sequence) and 2 <= len(item) <= 3:
        raw = {"status": item[0], "after": item[1], **(item[2] if len(item) == 3 else {})}
    else:
        raise ValueError(f"A lifecycle step must be 'status@seconds', an object or a list: {item!r}.")
    status, after = raw.pop("status", None), raw.pop("after", None)
    unknown = set(raw) - STEP_FIELDS
    if not isinstance(status, str) or not status or unknown:
        raise ValueError(f"A lifecycle step needs a status and may set only {sorted(STEP_FIELDS)}: {item!r}.")
    try:
        seconds = float(after)
    except (TypeError, ValueError):
        raise ValueError(f"A lifecycle step needs seconds after creation: {item!r}.") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"A lifecycle step's seconds must be finite and not negative: {item!r}.")
    return LifeStep(status, seconds, raw)


def iso(moment: float | None) -> str | None:
    """ISO 8601 in UTC with whole seconds, the shape of every documented timestamp."""
    if moment is None:
        return None
    return dt.datetime.fromtimestamp(math.floor(moment), dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class Chat:
    """One chat of the simulated tenant; times are epoch seconds from the simulator's clock."""

    id: int
    chat_type: str
    end_user_number: str
    end_user_id: int
    outbound_number: str
    ticket_id: str | None
    created_at: float
    updated_at: float
    status: str = "selecting"
    sub_status: str | None = None
    queued_at: float | None = None
    assigned_at: float | None = None
    ends_at: float | None = None
    finish_reason: str | None = None
    fail_reason: str | None = None
    agent: Agent | None = None
    message_count: int = 1
    last_message_at: float | None = None
    # The lifecycle in force when the chat was created: a new one applies to later chats only.
    lifecycle: tuple[LifeStep, ...] = ()
    next_step: int = 0
    # A chat moved by hand leaves its schedule, so a test's move is never undone by the clock.
    on_schedule: bool = True

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def to_json(self) -> dict[str, Any]:
        """The chat as the Manager API lists it."""
        waited = (self.assigned_at or self.created_at) - self.created_at
        talked = (self.ends_at - self.assigned_at) if self.ends_at and self.assigned_at else 0
        return {
            "id": self.id,
            "lang": "en",
            "chat_type": self.chat_type,
            "status": self.status,
            "sub_status": self.sub_status,
            "created_at": iso(self.created_at),
            "queued_at": iso(self.queued_at),
            "assigned_at": iso(self.assigned_at),
            "ends_at": iso(self.ends_at),
            "updated_at": iso(self.updated_at),
            "first_msg_sent_at": iso(self.created_at),
            "last_msg_sent_at": iso(self.last_message_at or self.created_at),
            "message_count": self.message_count,
            "wait_duration": round(waited),
            "queue_duration": round(waited),
            "chat_duration": round(max(talked, 0)),
            "rating": None,
            "has_feedback": False,
            "verified": False,
            "disconnected_by": "disconnected_by_unknown",
            "out_ticket_id": self.ticket_id,
            "out_ticket_url": None,
            "finish_reason": self.finish_reason,
            "fail_reason": self.fail_reason,
            "agent_info": self.agent.info() if self.agent else None,
            "end_user": {"id": self.end_user_id, "identifier": None, "out_contact_id": None},
            "participants": [],
            "answer_type": "manual",
            "outbound_number": self.outbound_number,
        }

    def sms_json(self) -> dict[str, Any]:
        """The answer to ``POST /sms``: the same chat, but ``out_ticket_id`` stays null there."""
        return {**self.to_json(), "out_ticket_id": None}


@dataclass(frozen=True)
class Change:
    """One move of one chat, for session events: ``event`` is ``created``, a new status or ``updated``."""

    event: str
    at: float
    chat: dict[str, Any]
    ended: bool
    end_user_number: str


@dataclass
class ChatBook:
    """Every chat of the tenant, and the schedule they follow."""

    lifecycle: tuple[LifeStep, ...] = DEFAULT_LIFECYCLE
    agents: tuple[Agent, ...] = AGENTS
    chats: dict[int, Chat] = field(default_factory=dict)
    _end_users: dict[str, int] = field(default_factory=dict)
    _round_robin: int = 0

    def create(self, *, chat_id: int, body: Mapping[str, Any], consumer: str, outbound: str, now: float) -> Chat:
        """A chat for an accepted SMS request; assigned at once when the request names an agent."""
        chat = Chat(
            id=chat_id,
            chat_type=str(body["chat_type"]),
            end_user_number=consumer,
            end_user_id=self._end_users.setdefault(consumer, 87 + len(self._end_users)),
            outbound_number=outbound,
            ticket_id=body.get("ticket_id"),
            created_at=now,
            updated_at=now,
            lifecycle=self.lifecycle,
        )
        agent = self._requested_agent(body)
        if agent is not None:
            chat.status, chat.agent, chat.assigned_at = "assigned", agent, now
        self.chats[chat_id] = chat
        self._follow_schedule(chat, now)
        return chat

    def advance(self, now: float) -> list[Change]:
        """Apply every scheduled step that is due by ``now``, each at its own time."""
        changes: list[Change] = []
        for chat in self.chats.values():
            changes.extend(self._follow_schedule(chat, now))
        return changes

    def update(self, chat_id: int, values: Mapping[str, Any], now: float) -> Change:
        """Change a chat by hand (``/_sandbox/chats/{id}``). Raises ``KeyError`` or ``ValueError``."""
        chat = self.chats[chat_id]
        unknown = set(values) - STEP_FIELDS - {"status", "agent_info", "ends_at", "customer_replied"}
        if unknown:
            raise ValueError(f"Unknown chat fields: {sorted(unknown)}.")
        # Read every value before changing anything, so a refused change leaves the chat as it was.
        agent = _agent_from(values["agent_info"]) if "agent_info" in values else chat.agent
        ends_at = _parse_moment(values["ends_at"]) if "ends_at" in values else chat.ends_at
        before = chat.status
        chat.agent, chat.ends_at = agent, ends_at
        if values.get("customer_replied"):
            chat.message_count += 1
            chat.last_message_at = now
        if "status" in values:
            chat.on_schedule = False
            self._move(chat, LifeStep(str(values["status"]), 0, {}), now)
        for name in STEP_FIELDS & set(values):
            setattr(chat, name, values[name])
        chat.updated_at = now
        return self._change(chat, before, now)

    def touch(self, chat_id: int, now: float) -> Change:
        """An update that changes nothing the bridge reads (another integration's), moving ``updated_at``."""
        chat = self.chats[chat_id]
        chat.updated_at = max(now, chat.updated_at)
        return change(chat, "updated", now)

    def end_open_chats(self, now: float) -> list[Change]:
        """Finish every open chat, as when every consumer's session ends at once."""
        step = DEFAULT_LIFECYCLE[-1]
        changes = []
        for chat in self.chats.values():
            if not chat.ended:
                before = chat.status
                self._move(chat, step, now)
                changes.append(self._change(chat, before, now))
        return changes

    def has_open_chat(self, consumer: str) -> bool:
        return any(c.end_user_number == consumer and not c.ended for c in self.chats.values())

    def _follow_schedule(self, chat: Chat, now: float) -> list[Change]:
        changes = []
        while chat.on_schedule and not chat.ended and chat.next_step < len(chat.lifecycle):
            step = chat.lifecycle[chat.next_step]
            at = chat.created_at + step.after
            if at > now:
                break
            chat.next_step += 1
            # A schedule never takes an assigned chat back to waiting.
            if step.status in WAITING and chat.agent is not None:
                continue
            before = (chat.status, chat.sub_status, chat.finish_reason, chat.fail_reason)
            self._move(chat, step, at)
            if (chat.status, chat.sub_status, chat.finish_reason, chat.fail_reason) != before:
                changes.append(self._change(chat, before[0], at))
        return changes

    def _move(self, chat: Chat, step: LifeStep, at: float) -> None:
        chat.status = step.status
        for name, value in step.fields.items():
            setattr(chat, name, value)
        if step.status == "queued" and chat.queued_at is None:
            chat.queued_at = at
        if step.status == "assigned" and chat.agent is None:
            chat.agent = self.agents[self._round_robin % len(self.agents)]
            self._round_robin += 1
        if step.status == "assigned" and chat.assigned_at is None:
            chat.assigned_at = at
        # Assumed: a chat nobody answered or that was canceled before an agent took it has no end time.
        if chat.ended and chat.ends_at is None and not (chat.status in NO_END_TIME and chat.assigned_at is None):
            chat.ends_at = at
        if chat.status == "finished" and chat.finish_reason is None:
            chat.finish_reason = "finish_reason_none"
        chat.updated_at = max(chat.updated_at, at)

    def _requested_agent(self, body: Mapping[str, Any]) -> Agent | None:
        # The seed sends camelCase; another page of the docs writes snake_case. Accept both.
        agent_id = body.get("agentId", body.get("agent_id"))
        email = body.get("agentEmail", body.get("agent_email"))
        if agent_id is None and not email:
            return None
        for agent in self.agents:
            if agent.id == agent_id or (email and agent.email and agent.email.lower() == str(email).lower()):
                return agent
        # An agent the roster does not know is shown as it was asked for (id 0 when only an email came).
        return Agent(id=agent_id if isinstance(agent_id, int) else 0, email=email, name=None)

    @staticmethod
    def _change(chat: Chat, before: str, at: float) -> Change:
        return change(chat, chat.status if chat.status != before else "updated", at)


def change(chat: Chat, event: str, at: float) -> Change:
    """A snapshot of ``chat`` as it is now, for the session event that tells of this move."""
    return Change(event=event, at=at, chat=chat.to_json(), ended=chat.ended, end_user_number=chat.end_user_number)


def _agent_from(value: Any) -> Agent | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not isinstance(value.get("id"), int):
        raise ValueError(f"agent_info must be null or an object with an integer id: {value!r}.")
    return Agent(id=value["id"], email=value.get("email"), name=value.get("name"))


def _parse_moment(value: Any) -> float | None:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"ends_at must be an ISO 8601 time or null: {value!r}.") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()
