"""The outbound-message door: Salesforce's SOAP notifications in, the ack out.

Only the shape Salesforce sends is accepted: ``Envelope/Body/notifications`` in the outbound
namespace with 1 to 100 ``Notification`` elements on Case. DTDs and entities are refused by
defusedxml before anything is expanded. The endpoint never calls anything remote: it
authenticates, parses, commits every notification to the store, and only then acks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError

import anyio.to_thread
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from starlette.requests import Request
from starlette.responses import Response

from bridge._secrets import matches_any
from bridge.crm.plugin import DoorContext
from bridge.crm.salesforce.ids import is_record_id, org_prefix, to18
from bridge.errors import AuthenticationFailed, MalformedMessage, OrganizationNotAllowed, StoreRejected
from bridge.inbound import Door
from bridge.model import NewSend, Outcome

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


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def parse_outbound_message(body: bytes) -> tuple[str, list[Notification]]:
    """Return the organisation id and the notifications, or raise :class:`MalformedMessage`."""
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
    return org_id, [_notification(item, org_id) for item in items]


def _notification(item: Element, org_id: str) -> Notification:
    notification_id = _text(item, "Id")
    if not notification_id or not is_record_id(notification_id):
        raise MalformedMessage("A Notification has no valid Id.")
    sobject = item.find(_q(OUTBOUND_NS, "sObject"))
    if sobject is None:
        raise MalformedMessage(f"Notification {notification_id} carries no sObject.")
    object_type = sobject.get(_q(XSI_NS, "type"), "")
    if len(sobject) == 0 and object_type.rpartition(":")[2] in ("Case", ""):
        # Salesforce delivers a notification whose record was deleted meanwhile with an empty sObject.
        return Notification(org_id=org_id, notification_id=notification_id, ticket_id=None)
    if object_type.rpartition(":")[2] != "Case":
        # A misconfigured outbound message (on another object): an admin must see it, so refuse.
        raise MalformedMessage(
            f"Notification {notification_id} is about {object_type or 'an untyped object'}; the bridge handles Case."
        )
    record_id = sobject.findtext(_q(SOBJECT_NS, "Id"), default="").strip()
    if not is_record_id(record_id):
        raise MalformedMessage(f"Notification {notification_id} has no valid Case Id.")
    return Notification(org_id=org_id, notification_id=notification_id, ticket_id=to18(record_id))


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

    async def endpoint(self, request: Request) -> Response:
        return await self._door.counted(self._handle, request)

    async def _handle(self, request: Request) -> Response:
        if not matches_any(request.query_params.get("token", ""), self._tokens):
            raise AuthenticationFailed("Missing or wrong token in the outbound-message URL.")
        body = await self._door.body(
            request, media_types=XML_TYPES, refusal="Expected an XML body (text/xml), got {given}."
        )
        org_id, notifications = parse_outbound_message(body)
        if self._orgs and org_prefix(org_id) not in self._orgs:
            raise OrganizationNotAllowed(f"Organization {org_id} is not in SALESFORCE_ORG_IDS.")
        new = [_new_send(n) for n in notifications]
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
        return Response(ACK, media_type="text/xml", headers={"Content-Type": "text/xml; charset=utf-8"})


def _new_send(notification: Notification) -> NewSend:
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
    )
