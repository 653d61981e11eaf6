"""A simulated CCAI Platform tenant that honours the outbound SMS contract of the seed document.

It validates like the real endpoint (every documented 400, in the documented words), refuses a
second SMS to a consumer with an active session, enforces a per-tenant rate limit with 429, lists
its chats through the Manager API (``GET /manager/api/v1/chats``, see ``manager.py``), moves every
chat through a scheduled life (``chats.py``) and can push session events (``session_events.py``).
Time comes from ``clock`` (default ``time.time``), so in-process tests can move it.

Tests and demos steer it through ``/_sandbox/*`` routes:

- ``GET /_sandbox/state``: what it received and answered, its chats and settings.
- ``POST /_sandbox/chats/{id}``: move one chat by hand: ``status``, ``sub_status``,
  ``finish_reason``, ``fail_reason``, ``agent_info``, ``ends_at``, ``customer_replied: true``.
  Setting ``status`` takes the chat off its schedule.
- ``POST /_sandbox/control`` with any of these keys (every value is checked before any is applied):

  - ``latency``, ``sms_enabled``, ``outbound_enabled``, ``rate_limit`` (requests per second);
  - ``fill_out_ticket_id``: false makes the chat list show ``out_ticket_id`` null for every chat (the
    SMS page's own example does), so the lost-answer lookup's self-proof can be tried;
  - ``rate_window``: ``bucket`` (default) or ``sliding``, a 429 once ``rate_limit`` requests were
    admitted in the last 1.0 s; ``jitter``: a random 0..jitter s delay before an arrival counts,
    standing in for the network;
  - ``opted_out``: consumer numbers in any format, refused with HTTP 400 "Outbound SMS failed.
    Consumer has opted out of SMS." (wording assumed: the docs list no opt-out error);
  - ``chat_lifecycle`` (for chats created from then on); ``session_events`` (an object, null stops);
  - ``outage`` (``seconds``, ``status``, ``hang``; the Manager API is down too); ``end_sessions``
    (finishes every open chat);
  - ``chat_list``: the chat list's quirks, any of ``shift``, ``no_link``, ``agent_string`` (see
    ``CHAT_LIST_QUIRKS``); an empty list answers as documented;
  - ``script``: one-shot steps for the next SMS requests; ``fault``: a step for every SMS request
    until set to null; ``manager_script``: one-shot ``{"status": N}`` answers for the chat list.

SMS steps: ``{"status": N, "message": ...}`` answers N without creating a chat; ``{"delay": N}``
creates the chat N seconds after the request arrived (a slow backend: the chat list cannot show it
sooner); the others create the chat first, then: ``accept_then_hang`` (``seconds``) stays silent;
``accept_then_cut`` drops the connection without an answer (in-process the client gets ``ConnectionCut``, an httpx
``RemoteProtocolError``); ``create_then_status`` (``status``, default 504) answers a load
balancer's HTML error page; ``trickle`` (``interval``, default 0.5 s; ``chunk``, default 1 byte)
sends the 200 slowly.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import phonenumbers
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bridge.sandbox._faults import CutResponse, gateway_page, trickle
from bridge.sandbox._limits import RateWindow, TenantLimit
from bridge.sandbox.chats import Change, Chat, ChatBook, change, parse_lifecycle
from bridge.sandbox.manager import ChatQuery
from bridge.sandbox.session_events import EventPusher, EventTarget

logger = logging.getLogger(__name__)

VALID_CHAT_TYPES = ("Messaging (SMS)", "Messaging (API)", "SMS")
ACTIVE_SESSION = "Outbound SMS failed. Consumer is already in an active SMS session."
OPTED_OUT = "Outbound SMS failed. Consumer has opted out of SMS."
_SETTINGS = ("latency", "sms_enabled", "outbound_enabled", "rate_limit", "jitter", "fill_out_ticket_id")
# What the chat list may do beside the documented default, each seen or allowed by some copy of the
# docs: ``shift`` (a chat of each page read is updated before the next page is asked for, as in a
# busy tenant), ``no_link`` (``Total`` and ``Per-Page`` but no ``Link`` header) and ``agent_string``
# (``agent_info`` as the agent's name, as a public client's schema built from live data types it).
CHAT_LIST_QUIRKS = frozenset({"shift", "no_link", "agent_string"})


@dataclass
class CCAISimulator:
    """One simulated tenant: its settings, what it received and answered, and its chats."""

    subdomain: str
    api_token: str
    outbound_numbers: set[str]
    rate_limit: float = 10.0
    latency: float = 0.0
    sms_enabled: bool = True
    outbound_enabled: bool = True
    # False: the chat list shows out_ticket_id null, as the SMS page's own example answers (a tenant whose
    # chat list does not carry the ticket id the request sent).
    fill_out_ticket_id: bool = True
    script: list[dict[str, Any]] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    answered: dict[int, int] = field(default_factory=dict)
    sessions: set[str] = field(default_factory=set)
    request_times: list[float] = field(default_factory=list)
    next_chat_id: int = 114
    # An outage: until outage_until, answer outage_status, or (status 0) hang for outage_hang seconds
    # without creating a chat, as an overloaded service whose caller times out.
    outage_until: float = 0.0
    outage_status: int = 503
    outage_hang: float = 0.0
    clock: Callable[[], float] = time.time
    opted_out: set[str] = field(default_factory=set)
    rate_window: RateWindow = "bucket"
    jitter: float = 0.0
    fault: dict[str, Any] | None = None
    chats: ChatBook = field(default_factory=ChatBook)
    manager_script: list[dict[str, Any]] = field(default_factory=list)
    manager_requests: int = 0
    manager_request_times: list[float] = field(default_factory=list)
    manager_answered: dict[int, int] = field(default_factory=dict)
    # How the chat list answers beside the documented default (see CHAT_LIST_QUIRKS).
    chat_list: frozenset[str] = frozenset()
    events_target: EventTarget | None = None
    events_transport: httpx.AsyncBaseTransport | None = None
    rng: random.Random = field(default_factory=random.Random)
    pusher: EventPusher | None = field(default=None, init=False)
    _limit: TenantLimit = field(default_factory=TenantLimit, init=False)
    _push_task: asyncio.Task[None] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.opted_out = {consumer_number(n) for n in self.opted_out}

    def admit(self) -> bool:
        """Whether the tenant limit lets one more request (SMS or Manager API) through now."""
        return self._limit.admit(self.clock(), self.rate_limit, self.rate_window)

    def advance(self) -> None:
        """Move every chat along its schedule up to now (called on every request and by the pusher).

        With ``events_target`` set it also starts the session event task, which needs the running
        event loop: the first request starts it, as the servers run without a lifespan.
        """
        if self.events_target is not None and self._push_task is None:
            self.pusher = EventPusher(self.events_target, transport=self.events_transport, rng=self.rng)
            self._push_task = asyncio.get_running_loop().create_task(self.pusher.run(self.advance))
        self.changed(self.chats.advance(self.clock()))

    def push_events_to(self, target: EventTarget | None) -> None:
        """Push session events to ``target`` from the next request on, or stop pushing (None)."""
        if self._push_task is not None:
            self._push_task.cancel()
        self.events_target, self.pusher, self._push_task = target, None, None

    async def aclose(self) -> None:
        """Stop the session event task, for tests that run the simulator in-process."""
        task, self._push_task = self._push_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def state(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "answered": {str(k): v for k, v in self.answered.items()},
            "sessions": len(self.sessions),
            "request_times": self.request_times,
            "manager_requests": self.manager_requests,
            "manager_request_times": self.manager_request_times,
            "manager_answered": {str(k): v for k, v in self.manager_answered.items()},
            "chats": [c.to_json() for c in self.chats.chats.values()],
            "settings": self.settings(),
            "session_events": self.pusher.state() if self.pusher else None,
        }

    def settings(self) -> dict[str, Any]:
        return {
            **{name: getattr(self, name) for name in _SETTINGS},
            "rate_window": self.rate_window,
            "opted_out": sorted(self.opted_out),
            "chat_lifecycle": [step.to_json() for step in self.chats.lifecycle],
            "chat_list": sorted(self.chat_list),
        }

    def create_chat(self, body: Mapping[str, Any], consumer: str) -> Chat:
        self.sessions.add(consumer)
        chat_id, self.next_chat_id = self.next_chat_id, self.next_chat_id + 1
        outbound = _e164_us(body["outbound_number"])[0] or ""
        chat = self.chats.create(chat_id=chat_id, body=body, consumer=consumer, outbound=outbound, now=self.clock())
        self.accepted.append({"chat_id": chat_id, "at": chat.created_at, **body})
        self.changed([change(chat, "created", chat.created_at)])
        logger.info("sandbox CCAI: chat %s created for ticket %s", chat_id, body.get("ticket_id"))
        return chat

    def changed(self, changes: list[Change]) -> None:
        """Follow up on chats that moved: free ended sessions, push session events."""
        for moved in changes:
            # An ended chat frees its consumer for the next SMS, unless another chat is still open.
            if moved.ended and not self.chats.has_open_chat(moved.end_user_number):
                self.sessions.discard(moved.end_user_number)
        if self.pusher is not None:
            self.pusher.publish(changes)


def _e164_us(raw: Any) -> tuple[str | None, bool]:
    """(E.164 or None if invalid, is_us)."""
    try:
        parsed = phonenumbers.parse(str(raw), "US")
    except phonenumbers.NumberParseException:
        return None, False
    if not phonenumbers.is_valid_number(parsed):
        return None, False
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return e164, phonenumbers.region_code_for_number(parsed) == "US"


def consumer_number(number: Any) -> str:
    """``number`` in E.164, in whatever format it came; raises ``ValueError`` if it is not a number."""
    e164 = _e164_us(number)[0]
    if e164 is None:
        raise ValueError(f"Not a valid phone number: {number!r}.")
    return e164


def validate(sim: CCAISimulator, body: dict[str, Any]) -> tuple[str | None, str | None]:
    """Return (error message, consumer E.164) following the order of the seed's documented errors."""
    if not body.get("chat_type"):
        return "chat_type needs to be provided", None
    if body["chat_type"] not in VALID_CHAT_TYPES:
        return "valid chat type needs to be provided", None
    if not sim.sms_enabled:
        return "SMS is not enabled", None
    if not sim.outbound_enabled:
        return "Outbound SMS is not enabled", None
    if not body.get("end_user_number"):
        return "end_user_number is required", None
    consumer, consumer_us = _e164_us(body["end_user_number"])
    if consumer is None:
        return "end_user_number is invalid", None
    if not body.get("outbound_number"):
        return "outbound_number is required", None
    outbound, outbound_us = _e164_us(body["outbound_number"])
    if outbound is None:
        return "outbound_number is invalid", None
    if not (consumer_us and outbound_us):
        return "Non-US phone number not allowed", None
    if outbound not in sim.outbound_numbers:
        return "outbound_number is not found", None
    if not body.get("message"):
        return "message is required", None
    if consumer in sim.opted_out:
        return OPTED_OUT, None
    if consumer in sim.sessions:
        return ACTIVE_SESSION, None
    return None, consumer


def chat_object(chat_id: int, body: dict[str, Any], outbound: str) -> dict[str, Any]:
    """The answer to an accepted SMS request, built without a simulator."""
    chat = ChatBook().create(chat_id=chat_id, body=body, consumer="", outbound=outbound, now=time.time())
    return chat.sms_json()


def create_ccai_app(sim: CCAISimulator) -> Starlette:
    async def send_sms(request: Request) -> Response:
        if not _authorised(request, sim):
            return JSONResponse({"message": "Unauthorized"}, status_code=401)
        refusal = await _gate(sim, sim.request_times)
        if refusal is not None:
            return _answer(sim.answered, refusal)
        step = sim.script.pop(0) if sim.script else dict(sim.fault or {})
        if "status" in step and "action" not in step:
            content = {"message": step["message"]} if "message" in step else {"error": "scripted"}
            return _answer(sim.answered, JSONResponse(content, status_code=int(step["status"])))
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _answer(sim.answered, JSONResponse({"message": "Invalid JSON"}, status_code=400))
        if step.get("delay"):
            await asyncio.sleep(float(step["delay"]))
        sim.advance()
        error, consumer = validate(sim, body)
        if error or consumer is None:
            return _answer(sim.answered, JSONResponse({"message": error}, status_code=400))
        chat = sim.create_chat(body, consumer)
        return _answer(sim.answered, await _after_creation(step, chat))

    async def list_chats(request: Request) -> Response:
        if not _authorised(request, sim):
            return JSONResponse({"message": "Unauthorized"}, status_code=401)
        sim.manager_requests += 1
        refusal = await _gate(sim, sim.manager_request_times)
        if refusal is not None:
            return _answer(sim.manager_answered, refusal)
        if sim.manager_script:
            status = int(sim.manager_script.pop(0).get("status", 503))
            return _answer(sim.manager_answered, JSONResponse({"message": "scripted"}, status_code=status))
        try:
            query = ChatQuery.from_params(request.query_params)
        except ValueError as exc:
            return _answer(sim.manager_answered, JSONResponse({"message": str(exc)}, status_code=400))
        sim.advance()
        page, total = query.select(sim.chats.chats.values())
        content = [c.to_json() for c in page]
        headers = query.headers(request.url, total)
        if "agent_string" in sim.chat_list:
            for row, chat in zip(content, page, strict=True):
                row["agent_info"] = (chat.agent.name or chat.agent.email) if chat.agent else None
        if "no_link" in sim.chat_list:
            del headers["Link"]
        if "shift" in sim.chat_list and page and query.page * query.per < total:
            # Another integration updates a chat this page showed, just after it was read: the
            # chat moves to the end of an updated_at list and every later row moves up one place.
            sim.chats.touch(page[0].id, sim.clock())
        if not sim.fill_out_ticket_id:
            content = [{**chat, "out_ticket_id": None} for chat in content]
        return _answer(sim.manager_answered, JSONResponse(content, headers=headers))

    async def state(_request: Request) -> Response:
        sim.advance()
        return JSONResponse(sim.state())

    async def control(request: Request) -> Response:
        try:
            _apply_control(sim, await request.json())
        except (ValueError, TypeError, AttributeError) as exc:
            return JSONResponse({"message": f"Bad control request: {exc}"}, status_code=400)
        return JSONResponse({"ok": True, "settings": sim.settings()})

    async def move_chat(request: Request) -> Response:
        sim.advance()
        try:
            moved = sim.chats.update(int(request.path_params["chat_id"]), await request.json(), sim.clock())
        except KeyError:
            return JSONResponse({"message": "No such chat."}, status_code=404)
        except (ValueError, TypeError) as exc:
            return JSONResponse({"message": str(exc)}, status_code=400)
        sim.changed([moved])
        return JSONResponse(moved.chat)

    return Starlette(
        routes=[
            Route("/apps/api/v1/sms", send_sms, methods=["POST"]),
            Route("/manager/api/v1/chats", list_chats),
            Route("/_sandbox/state", state),
            Route("/_sandbox/control", control, methods=["POST"]),
            Route("/_sandbox/chats/{chat_id:int}", move_chat, methods=["POST"]),
        ]
    )


async def _gate(sim: CCAISimulator, arrivals: list[float]) -> Response | None:
    """Everything between a request arriving and being served: network jitter, the limit, outages."""
    if sim.jitter:
        await asyncio.sleep(sim.rng.uniform(0, sim.jitter))
    arrivals.append(sim.clock())
    if not sim.admit():
        return JSONResponse({"message": "Too Many Requests"}, status_code=429, headers={"Retry-After": "1"})
    if sim.clock() < sim.outage_until:
        if sim.outage_status == 0:
            await asyncio.sleep(sim.outage_hang)
            return JSONResponse({"message": "Gateway Timeout"}, status_code=504)
        return JSONResponse({"message": "Service Unavailable"}, status_code=sim.outage_status)
    if sim.latency:
        await asyncio.sleep(sim.latency)
    return None


async def _after_creation(step: Mapping[str, Any], chat: Chat) -> Response:
    """The answer once the chat exists: normally the chat, or one of the faults of the step."""
    action = step.get("action")
    if action == "accept_then_hang":
        # The chat exists, but the caller never hears about it: the ambiguous case.
        await asyncio.sleep(float(step.get("seconds", 30)))
    if action == "accept_then_cut":
        logger.info("sandbox CCAI: cutting the connection after creating chat %s", chat.id)
        return CutResponse(promised=len(JSONResponse(chat.sms_json()).body))
    if action == "create_then_status":
        return gateway_page(int(step.get("status", 504)))
    if action == "trickle":
        return trickle(chat.sms_json(), interval=float(step.get("interval", 0.5)), chunk=int(step.get("chunk", 1)))
    return JSONResponse(chat.sms_json())


def _apply_control(sim: CCAISimulator, changes: dict[str, Any]) -> None:
    """Apply a ``/_sandbox/control`` body; raises ``ValueError`` (or ``TypeError``) on a bad value."""
    chat_list = parse_chat_list(changes.get("chat_list", sim.chat_list))
    if changes.get("rate_window", "bucket") not in ("bucket", "sliding"):
        raise ValueError(f"rate_window must be bucket or sliding, not {changes['rate_window']!r}.")
    opted_out = {consumer_number(n) for n in changes.get("opted_out", sim.opted_out)}
    lifecycle = parse_lifecycle(changes["chat_lifecycle"]) if "chat_lifecycle" in changes else sim.chats.lifecycle
    target = changes.get("session_events")
    events_target = EventTarget.from_json(target) if target is not None else None
    outage = changes.get("outage")
    if outage is not None:
        outage_until = sim.clock() + float(outage.get("seconds", 0))
        outage_status, outage_hang = int(outage.get("status", 503)), float(outage.get("hang", 0))

    for name in (*_SETTINGS, "fault", "rate_window"):
        if name in changes:
            setattr(sim, name, changes[name])
    sim.opted_out, sim.chats.lifecycle, sim.chat_list = opted_out, lifecycle, chat_list
    if "session_events" in changes:
        sim.push_events_to(events_target)
    sim.script.extend(changes.get("script", []))
    sim.manager_script.extend(changes.get("manager_script", []))
    if outage is not None:
        sim.outage_until, sim.outage_status, sim.outage_hang = outage_until, outage_status, outage_hang
    if changes.get("end_sessions"):
        sim.sessions.clear()
        sim.changed(sim.chats.end_open_chats(sim.clock()))


def parse_chat_list(value: Any) -> frozenset[str]:
    """The chat list's quirks, from a list or a comma-separated text (``-`` and ``_`` alike)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    quirks = frozenset(str(item).strip().replace("-", "_") for item in items if str(item).strip())
    if unknown := quirks - CHAT_LIST_QUIRKS:
        raise ValueError(f"chat_list takes {sorted(CHAT_LIST_QUIRKS)}, not {sorted(unknown)}.")
    return quirks


def _answer(tally: dict[int, int], response: Response) -> Response:
    tally[response.status_code] = tally.get(response.status_code, 0) + 1
    return response


def _authorised(request: Request, sim: CCAISimulator) -> bool:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return False
    return hmac.compare_digest(user, sim.subdomain) and hmac.compare_digest(password, sim.api_token)
