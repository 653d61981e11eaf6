"""The platform event that asks the bridge to text a Case's customer, as a send (no I/O here).

``CCAI_SMS_Request__e`` ships with the ``salesforce/`` project; its Flow (or an admin's own Flow or
Apex) publishes one per request. A Flow is a rule the CRM runs, so the send's origin is a CRM event,
as for an outbound message: the loop guard holds, consent and the send window are checked, and the
event's ``Ignore_Send_Window__c`` is never honoured (events the CRM fires may not override the window).

Two events are one send when they carry the same ``Idempotency_Key__c`` for the same Case (the
shipped Flow keys on the Case and its ``SystemModstamp``); without a key, each event is its own send.
An event delivered again is recognised by its ``EventUuid`` before it gets this far
(:mod:`bridge.store.streams`).
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.crm.salesforce.ids import normalize_case_id, org_prefix
from bridge.crm.salesforce.pubsub_events import PlatformEvent
from bridge.model import NewSend, Outcome

SOURCE = "salesforce_pubsub"  # the door's name, as sends and their timelines show it
CASE_ID = "Case_Id__c"
TEMPLATE = "Template__c"
REQUESTED_BY = "Requested_By__c"
IDEMPOTENCY_KEY = "Idempotency_Key__c"
IGNORE_SEND_WINDOW = "Ignore_Send_Window__c"


@dataclass(frozen=True)
class SmsRequestEvent:
    """What one event asks for: the send, and what the log records about it."""

    send: NewSend
    template: str | None = None
    requested_by: str | None = None
    window_override_refused: bool = False


def sms_request(event: PlatformEvent, *, org_id: str) -> SmsRequestEvent:
    """The send an event asks for; an event that cannot become one is stored already skipped, with
    the reason, so that it is seen (not lost, and not retried)."""
    org = org_prefix(org_id)
    if event.problem is not None:
        return SmsRequestEvent(_skipped(event, org_id, f"The platform event could not be read: {event.problem}"))
    raw_case = _text(event, CASE_ID)
    try:
        case_id = normalize_case_id(raw_case or "")
    except ValueError:
        shown = "empty" if not raw_case else repr(raw_case[:40])
        return SmsRequestEvent(_skipped(event, org_id, f"The platform event's {CASE_ID} is {shown}, not a Case id."))
    key = _text(event, IDEMPOTENCY_KEY)
    send = NewSend(
        dedupe_key=f"pe:{org}:{case_id}:{key}" if key else f"pe:{org}:{event.uuid}",
        source=SOURCE,
        origin="crm_event",
        ticket_id=case_id,
        org_id=org_id,
    )
    return SmsRequestEvent(
        send=send,
        template=_text(event, TEMPLATE),
        requested_by=_text(event, REQUESTED_BY),
        window_override_refused=event.fields.get(IGNORE_SEND_WINDOW) is True,
    )


def _skipped(event: PlatformEvent, org_id: str, reason: str) -> NewSend:
    return NewSend(
        dedupe_key=f"pe:{org_prefix(org_id)}:{event.uuid}",
        source=SOURCE,
        origin="crm_event",
        ticket_id="",
        org_id=org_id,
        finished=Outcome(status="skipped", reason=reason, write_back=False),
    )


def _text(event: PlatformEvent, name: str) -> str | None:
    value = event.fields.get(name)
    return (value.strip() or None) if isinstance(value, str) else None
