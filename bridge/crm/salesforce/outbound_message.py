"""The outbound-message door: Salesforce's SOAP notifications in, the ack out.

Only the shape Salesforce sends is accepted: ``Envelope/Body/notifications`` in the outbound
namespace with 1 to 100 ``Notification`` elements on Case. DTDs and entities are refused by
defusedxml before anything is expanded. The endpoint never calls anything remote: it
authenticates, parses, commits every notification to the store, and only then acks.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError

import anyio.to_thread
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from starlette.requests import Request
from starlette.responses import Response

from bridge._secrets import matches_any
from bridge.crm.plugin import LAST_PUSH_KEY, DoorContext
from bridge.crm.salesforce.ids import is_record_id, org_prefix, to18
from bridge.errors import (
    AuthenticationFailed,
    MalformedMessage,
    OrganizationNotAllowed,
    StoreRejected,
    StoreUnavailable,
)
from bridge.inbound import Door
from bridge.model import NewSend, Outcome, Overrides

logger = logging.getLogger(__name__)

XML_TYPES = ("text/xml", "application/xml", "application/soap+xml")
DELETED_RECORD = "The Case was deleted before Salesforce delivered the notification; there is nothing to text."

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
SOBJECT_NS = "urn:sobject.enterprise.soap.sforce.com"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
MAX_NOTIFICATIONS = 100

ACK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<soapenv:Envelope xmlns:soapenv="{SOAP_NS}">'
    "<soapenv:Body>"
    f'<notificationsResponse xmlns="{OUTBOUND_NS}"><Ack>true</Ack></notificationsResponse>'
    "</soapenv:Body>"
    "</soapenv:Envelope>"
).encode()


@dataclass(frozen=True)
class Notification:
    """One notification of an outbound message. ``ticket_id`` is None when Salesforce delivered it
    without a record (the record was deleted before delivery)."""

    org_id: str
    notification_id: str
    ticket_id: str | None
    action_id: str = ""  # the outbound message that fired (its ActionId)
    template: str | None = None  # the Case's template field as the notification carries it


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def parse_outbound_message(body: bytes, *, template_field: str = "") -> tuple[str, list[Notification]]:
    """Return the organisation id and the notifications, or raise :class:`MalformedMessage`.
    ``template_field``: the Case field naming the template, read from each notification when sent."""
    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise MalformedMessage("The XML declares a DTD or entities, which outbound messages never do.") from exc
    except (ParseError, ValueError) as exc:
        raise MalformedMessage(f"The body is not well-formed XML ({exc}).") from exc
    if root.tag != _q(SOAP_NS, "Envelope"):
        raise MalformedMessage("The body is not a SOAP 1.1 envelope.")
    notifications = root.find(f"{_q(SOAP_NS, 'Body')}/{_q(OUTBOUND_NS, 'notifications')}")
    if notifications is None:
        raise MalformedMessage("The SOAP body holds no Salesforce outbound-message notifications element.")

    org_id = _text(notifications, "OrganizationId")
    if not org_id or not is_record_id(org_id):
        raise MalformedMessage("The outbound message has no valid OrganizationId.")
    items = notifications.findall(_q(OUTBOUND_NS, "Notification"))
    if not items:
        raise MalformedMessage("The outbound message holds no Notification.")
    if len(items) > MAX_NOTIFICATIONS:
        raise MalformedMessage(f"The outbound message holds {len(items)} notifications; at most 100 are allowed.")
    action_id = _text(notifications, "ActionId")
    action_id = action_id if is_record_id(action_id) else ""
    return org_id, [_notification(item, org_id, template_field, action_id) for item in items]


def _notification(item: Element, org_id: str, template_field: str, action_id: str) -> Notification:
    notification_id = _text(item, "Id")
    if not notification_id or not is_record_id(notification_id):
        raise MalformedMessage("A Notification has no valid Id.")
    sobject = item.find(_q(OUTBOUND_NS, "sObject"))
    if sobject is None:
        raise MalformedMessage(f"Notification {notification_id} carries no sObject.")
    object_type = sobject.get(_q(XSI_NS, "type"), "")
    if len(sobject) == 0 and object_type.rpartition(":")[2] in ("Case", ""):
        # Salesforce delivers a notification whose record was deleted meanwhile with an empty sObject.
        return Notification(org_id=org_id, notification_id=notification_id, ticket_id=None, action_id=action_id)
    if object_type.rpartition(":")[2] != "Case":
        # A misconfigured outbound message (on another object): an admin must see it, so refuse.
        raise MalformedMessage(
            f"Notification {notification_id} is about {object_type or 'an untyped object'}; the bridge handles Case."
        )
    record_id = sobject.findtext(_q(SOBJECT_NS, "Id"), default="").strip()
    if not is_record_id(record_id):
        raise MalformedMessage(f"Notification {notification_id} has no valid Case Id.")
    template = sobject.findtext(_q(SOBJECT_NS, template_field), default="").strip() if template_field else ""
    return Notification(
        org_id=org_id,
        notification_id=notification_id,
        ticket_id=to18(record_id),
        template=template or None,
        action_id=action_id,
    )


def _text(parent: Element, name: str) -> str:
    return parent.findtext(_q(OUTBOUND_NS, name), default="").strip()


class OutboundMessageEndpoint:
    """``POST /salesforce/outbound-message?token=...``: store every notification, then ack."""

    def __init__(self, *, tokens: Sequence[str], org_ids: Sequence[str], doors: DoorContext) -> None:
        self._door = Door(name="outbound_message", metrics=doors.metrics, max_body_bytes=doors.max_body_bytes)
        self._inbox = doors.inbox
        self._tokens = tokens
        self._orgs = {org_prefix(o) for o in org_ids}
        self._metrics = doors.metrics
        self._wake = doors.wake
        self._memory = doors.memory
        self._templates = doors.templates
        self._noted_at = -math.inf

    async def endpoint(self, request: Request) -> Response:
        return await self._door.counted(self._handle, request)

    async def _handle(self, request: Request) -> Response:
        if not matches_any(request.query_params.get("token", ""), self._tokens):
            raise AuthenticationFailed("Missing or wrong token in the outbound-message URL.")
        body = await self._door.body(
            request, media_types=XML_TYPES, refusal="Expected an XML body (text/xml), got {given}."
        )
        template_field = self._templates.template_field if self._templates is not None else ""
        org_id, notifications = parse_outbound_message(body, template_field=template_field)
        if self._orgs and org_prefix(org_id) not in self._orgs:
            raise OrganizationNotAllowed(f"Organization {org_id} is not in SALESFORCE_ORG_IDS.")
        new = [_new_send(n, self._template_for(n)) for n in notifications]
        try:
            stored = await anyio.to_thread.run_sync(self._inbox.ingest, new)
        except StoreRejected as exc:
            raise MalformedMessage(f"The notifications could not be stored: {exc}") from exc
        self._metrics.events_received.labels("outbound_message").inc(len(new))
        self._metrics.events_duplicate.labels("outbound_message").inc(len(new) - stored)
        logger.info(
            "Outbound message from org %s: %d notification(s), %d new, %d already known",
            org_id,
            len(new),
            stored,
            len(new) - stored,
        )
        if stored:
            self._wake()
        await self._note_arrival(org_id, notifications)
        return Response(ACK, media_type="text/xml", headers={"Content-Type": "text/xml; charset=utf-8"})

    def _template_for(self, notification: Notification) -> str | None:
        """The template this notification asks for: the one configured for its outbound message
        (ActionId), else the one the Case's template field named when it fired; None: as the Case says
        when it is read."""
        if self._templates is None:
            return notification.template
        by_rule = self._templates.for_rule(notification.action_id, _same_record) if notification.action_id else None
        return by_rule or notification.template

    async def _note_arrival(self, org_id: str, notifications: Sequence[Notification]) -> None:
        """When the last outbound message arrived (``bridge status``, the dashboard): a wrong endpoint
        or token shows as silence. Noted after the ack is certain; a store blip here costs only the note."""
        if self._memory is None:
            return
        # At most once a second: a second durable commit per message would halve the rate of acks,
        # and the board only needs to show that messages arrive, and what the latest looked like.
        now = time.monotonic()
        if now - self._noted_at < NOTE_EVERY_SECONDS:
            return
        self._noted_at = now
        value = {
            "door": "outbound_message",
            "org_id": org_prefix(org_id),
            "notifications": len(notifications),
            "action_id": notifications[0].action_id,
        }
        memory = self._memory
        try:
            await anyio.to_thread.run_sync(lambda: memory.put(LAST_PUSH_KEY, value))
        except StoreUnavailable as exc:
            logger.warning("Could not note the outbound message's arrival: %s", exc)


# How often the arrival of an outbound message is noted for ``bridge status`` (at most).
NOTE_EVERY_SECONDS = 1.0


def _same_record(a: str, b: str) -> bool:
    """One record id in its 15- and 18-character forms."""
    return is_record_id(a) and is_record_id(b) and a[:15] == b[:15]


def _new_send(notification: Notification, template: str | None = None) -> NewSend:
    key = f"om:{org_prefix(notification.org_id)}:{notification.notification_id}"
    if notification.ticket_id is None:
        finished = Outcome(status="skipped", reason=DELETED_RECORD, write_back=False)
        return NewSend(
            dedupe_key=key,
            source="outbound_message",
            origin="crm_event",
            ticket_id="",
            org_id=notification.org_id,
            finished=finished,
        )
    return NewSend(
        dedupe_key=key,
        source="outbound_message",
        origin="crm_event",
        ticket_id=notification.ticket_id,
        org_id=notification.org_id,
        overrides=Overrides(template=template),
    )
