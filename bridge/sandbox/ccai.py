"""A simulated CCAI Platform tenant that honours the outbound SMS contract of the seed document.

It validates like the real endpoint (every documented 400, in the documented words), refuses a
second SMS to a consumer with an active session, enforces a per-tenant rate limit with 429, and
can be told to misbehave (latency, scripted answers, accepting a request and then hanging) through
``/_sandbox/*`` control routes that tests and demos use.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import phonenumbers
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

logger = logging.getLogger(__name__)

VALID_CHAT_TYPES = ("Messaging (SMS)", "Messaging (API)", "SMS")
ACTIVE_SESSION = "Outbound SMS failed. Consumer is already in an active SMS session."


@dataclass
class CCAISimulator:
    subdomain: str
    api_token: str
    outbound_numbers: set[str]
    rate_limit: float = 10.0
    latency: float = 0.0
    sms_enabled: bool = True
    outbound_enabled: bool = True
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
    _tokens: float = 0.0
    _refilled: float = field(default_factory=time.monotonic)

    def take_token(self) -> bool:
        """Token bucket holding one second of requests: what a per-second tenant limit allows."""
        now = time.monotonic()
        self._tokens = min(self.rate_limit, self._tokens + (now - self._refilled) * self.rate_limit)
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


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
    if consumer in sim.sessions:
        return ACTIVE_SESSION, None
    return None, consumer


def chat_object(chat_id: int, body: dict[str, Any], outbound: str) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    agent = body.get("agentId") or body.get("agentEmail")
    return {
        "id": chat_id,
        "lang": "en",
        "chat_type": body["chat_type"],
        "status": "assigned" if agent else "selecting",
        "created_at": now,
        "queued_at": None,
        "assigned_at": now if agent else None,
        "ends_at": None,
        "out_ticket_id": None,
        "fail_reason": None,
        "agent_info": {"id": body.get("agentId") or 1, "email": body.get("agentEmail")} if agent else None,
        "end_user": {"id": 87, "identifier": None, "out_contact_id": None},
        "participants": [],
        "answer_type": "manual",
        "outbound_number": outbound,
    }


def create_ccai_app(sim: CCAISimulator) -> Starlette:
    async def send_sms(request: Request) -> Response:
        if not _authorised(request, sim):
            return JSONResponse({"message": "Unauthorized"}, status_code=401)
        sim.request_times.append(time.time())
        if not sim.take_token():
            return _answer(
                sim, JSONResponse({"message": "Too Many Requests"}, status_code=429, headers={"Retry-After": "1"})
            )
        if time.monotonic() < sim.outage_until:
            if sim.outage_status == 0:
                await asyncio.sleep(sim.outage_hang)
                return _answer(sim, JSONResponse({"message": "Gateway Timeout"}, status_code=504))
            return _answer(sim, JSONResponse({"message": "Service Unavailable"}, status_code=sim.outage_status))
        if sim.latency:
            await asyncio.sleep(sim.latency)
        step = sim.script.pop(0) if sim.script else {}
        if "status" in step:
            content = {"message": step["message"]} if "message" in step else {"error": "scripted"}
            return _answer(sim, JSONResponse(content, status_code=int(step["status"])))
        try:
            body = await request.json()
        except ValueError:
            return _answer(sim, JSONResponse({"message": "Invalid JSON"}, status_code=400))
        if not isinstance(body, dict):
            return _answer(sim, JSONResponse({"message": "Invalid JSON"}, status_code=400))
        error, consumer = validate(sim, body)
        if error or consumer is None:
            return _answer(sim, JSONResponse({"message": error}, status_code=400))
        sim.sessions.add(consumer)
        chat_id = sim.next_chat_id
        sim.next_chat_id += 1
        outbound = _e164_us(body["outbound_number"])[0] or ""
        sim.accepted.append({"chat_id": chat_id, "at": time.time(), "created": sim.clock(), **body})
        logger.info("sandbox CCAI: chat %s created for ticket %s", chat_id, body.get("ticket_id"))
        if step.get("action") == "accept_then_hang":
            # The chat exists, but the caller never hears about it: the ambiguous case.
            await asyncio.sleep(float(step.get("seconds", 30)))
        return _answer(sim, JSONResponse(chat_object(chat_id, body, outbound)))

    async def chats(request: Request) -> Response:
        # Minimal Manager API chat list (created_at[from], ascending, one page).
        if not _authorised(request, sim):
            return JSONResponse({"message": "Unauthorized"}, status_code=401)
        since = dt.datetime.fromisoformat(request.query_params.get("created_at[from]", "1970-01-01T00:00:00+00:00"))
        listed = [
            {
                "id": c["chat_id"],
                "status": "selecting",
                "out_ticket_id": c.get("ticket_id"),
                "created_at": dt.datetime.fromtimestamp(c["created"], tz=dt.UTC).isoformat(),
            }
            for c in sim.accepted
            if c["created"] >= since.timestamp()
        ]
        return JSONResponse(listed)

    async def state(_request: Request) -> Response:
        return JSONResponse(
            {
                "accepted": sim.accepted,
                "answered": {str(k): v for k, v in sim.answered.items()},
                "sessions": len(sim.sessions),
                "request_times": sim.request_times,
            }
        )

    async def control(request: Request) -> Response:
        changes = await request.json()
        for name in ("latency", "sms_enabled", "outbound_enabled", "rate_limit"):
            if name in changes:
                setattr(sim, name, changes[name])
        sim.script.extend(changes.get("script", []))
        if "outage" in changes:
            outage = changes["outage"]
            sim.outage_until = time.monotonic() + float(outage.get("seconds", 0))
            sim.outage_status = int(outage.get("status", 503))
            sim.outage_hang = float(outage.get("hang", 0))
        if changes.get("end_sessions"):
            sim.sessions.clear()
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/apps/api/v1/sms", send_sms, methods=["POST"]),
            Route("/manager/api/v1/chats", chats),
            Route("/_sandbox/state", state),
            Route("/_sandbox/control", control, methods=["POST"]),
        ]
    )


def _answer(sim: CCAISimulator, response: Response) -> Response:
    sim.answered[response.status_code] = sim.answered.get(response.status_code, 0) + 1
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
