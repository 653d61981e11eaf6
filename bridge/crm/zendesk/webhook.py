"""The Zendesk webhook door: a signed request from a trigger or an automation in, the ack out.

The admin writes the body (README: Zendesk set-up); the bridge reads ``ticket_id`` (required, from
``{{ticket.id}}``), ``template`` (optional: a message template by name, ``[templates.<name>]``; an
unknown name is refused with the known ones, never sent as the default text) and ``message``
(optional: the text instead of the template); other keys are ignored, so a body written for other
uses still works.

In order: the signature (HMAC-SHA256 of the timestamp header and the raw body, base64, with any of
the configured signing secrets, compared in constant time), then the timestamp within the
tolerance (a captured request cannot be replayed later), then the body; a refusal is counted and
stores nothing. The send is keyed by the invocation id, the same on every redelivery of one
invocation, so a redelivery finds the send it already made. The answer is 200 only once the send
is committed; when the store cannot be reached it is 503 with a short ``Retry-After``, which
Zendesk retries.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bridge.crm.plugin import DoorContext
from bridge.crm.zendesk.ids import ticket_number
from bridge.errors import AuthenticationFailed, MalformedMessage, StoreRejected, StoreUnavailable, Unprocessable
from bridge.inbound import Door, parse_json
from bridge.message_templates import TemplateBook
from bridge.model import NewSend, Overrides
from bridge.text import forbidden_characters

logger = logging.getLogger(__name__)

SIGNATURE = "x-zendesk-webhook-signature"
TIMESTAMP = "x-zendesk-webhook-signature-timestamp"
INVOCATION = "x-zendesk-webhook-invocation-id"
ACCOUNT = "x-zendesk-account-id"
DOOR = "zendesk_webhook"
# Zendesk retries a 503 whose Retry-After is short (its documented retry rules): the store's blip passes.
STORE_RETRY_AFTER = "5"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """What Zendesk sends in ``X-Zendesk-Webhook-Signature`` for this timestamp and body."""
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signed_at(timestamp: str) -> float | None:
    """The signature timestamp (ISO 8601 UTC, as Zendesk writes it; epoch seconds also read), or None."""
    text = timestamp.strip()
    if text.isascii() and text.isdigit() and len(text) <= 12:
        return float(text)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def verify(headers: Mapping[str, str], body: bytes, *, secrets: Sequence[str], tolerance: float, now: float) -> None:
    """Raise :class:`AuthenticationFailed` unless one secret signed this body at an acceptable time."""
    given = headers.get(SIGNATURE, "")
    timestamp = headers.get(TIMESTAMP, "")
    if not given or not timestamp:
        raise AuthenticationFailed("The request has no Zendesk webhook signature.")
    # Every secret is compared, whichever matches, so the time taken says nothing about which did.
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(signature(secret, timestamp, body).encode(), given.encode())
    if not matched:
        raise AuthenticationFailed("The Zendesk webhook signature does not match (ZENDESK_WEBHOOK_SECRET).")
    at = signed_at(timestamp)
    if at is None or abs(now - at) > tolerance:
        raise AuthenticationFailed(
            f"The Zendesk webhook was signed at {timestamp[:40]!r}, outside the accepted {tolerance:.0f} s."
        )


def new_send(
    payload: Mapping[str, Any], *, account: str, invocation: str, templates: TemplateBook | None = None
) -> NewSend:
    """The send a verified webhook asks for, keyed by its invocation; :class:`MalformedMessage` or
    :class:`Unprocessable` when the body cannot be one."""
    raw = payload.get("ticket_id")
    number = ticket_number(str(raw)) if isinstance(raw, str | int) and not isinstance(raw, bool) else None
    if number is None:
        raise MalformedMessage('The body needs "ticket_id": the ticket\'s id, e.g. "{{ticket.id}}".')
    template = payload.get("template")
    if template is not None and not isinstance(template, str):
        raise MalformedMessage('"template" must be the name of a message template.')
    template = template.strip() if template else None
    if template and (templates is None or templates.get(template) is None):
        known = ", ".join(t.name for t in templates) if templates is not None else "none"
        raise Unprocessable(f"There is no message template named {template[:40]!r} (templates: {known}).")
    message = payload.get("message")
    if message is not None and not isinstance(message, str):
        raise MalformedMessage('"message" must be text.')
    message = message.strip() if message else None
    bad = forbidden_characters(message) if message else []
    if bad:
        raise MalformedMessage(f'"message" contains characters that cannot be texted: {", ".join(bad)}.')
    return NewSend(
        dedupe_key=f"zd:{account}:{invocation}",
        source=DOOR,
        origin="crm_event",
        ticket_id=number,
        org_id=account or None,
        overrides=Overrides(message=message or None, template=template or None),
    )


class WebhookEndpoint:
    """``POST /zendesk/webhook``: verify, store the send, then ack."""

    def __init__(
        self,
        *,
        secrets: Sequence[str],
        tolerance: float,
        doors: DoorContext,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._door = Door(name=DOOR, metrics=doors.metrics, max_body_bytes=doors.max_body_bytes)
        self._secrets = list(secrets)
        self._tolerance = tolerance
        self._inbox = doors.inbox
        self._metrics = doors.metrics
        self._wake = doors.wake
        self._templates = doors.templates
        self._clock = clock

    async def endpoint(self, request: Request) -> Response:
        return await self._door.counted(self._handle, request)

    async def _handle(self, request: Request) -> Response:
        body = await self._door.body(
            request, media_types=("application/json",), refusal="Expected a JSON body, got {given}."
        )
        verify(request.headers, body, secrets=self._secrets, tolerance=self._tolerance, now=self._clock())
        invocation = request.headers.get(INVOCATION, "").strip()
        if not invocation or len(invocation) > 100 or not invocation.isascii() or not invocation.isalnum():
            raise MalformedMessage("The request has no usable X-Zendesk-Webhook-Invocation-Id.")
        account = request.headers.get(ACCOUNT, "").strip()
        account = account if account.isascii() and account.isdigit() and len(account) <= 20 else ""
        payload = parse_json(body)
        if not isinstance(payload, dict):
            raise MalformedMessage("The body must be a JSON object.")
        send = new_send(payload, account=account, invocation=invocation, templates=self._templates)
        try:
            stored = await anyio.to_thread.run_sync(self._inbox.ingest, [send])
        except StoreRejected as exc:
            raise MalformedMessage(f"The webhook could not be stored: {exc}") from exc
        except StoreUnavailable as exc:
            # Nothing was acknowledged: Zendesk delivers this invocation again after a short wait.
            self._door.refused("store_unavailable")
            logger.warning("Zendesk webhook for ticket %s not stored: %s", send.ticket_id, exc)
            return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": STORE_RETRY_AFTER})
        self._metrics.events_received.labels(DOOR).inc()
        self._metrics.events_duplicate.labels(DOOR).inc(1 - stored)
        logger.info(
            "Zendesk webhook for ticket %s (invocation %s): %s",
            send.ticket_id,
            invocation,
            "new" if stored else "known",
        )
        if stored:
            self._wake()
        return JSONResponse({"ok": True, "ticket_id": send.ticket_id, "new": bool(stored)})
