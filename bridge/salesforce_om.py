"""Salesforce outbound messages: parse the SOAP notification (hardened XML), build the ack.

Only the shape Salesforce sends is accepted: ``Envelope/Body/notifications`` in the outbound
namespace with 1 to 100 ``Notification`` elements on Case. DTDs and entities are refused by
defusedxml before anything is expanded.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from bridge.errors import MalformedMessage
from bridge.model import Notification
from bridge.record_ids import is_record_id, to18

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
    if object_type.rpartition(":")[2] != "Case":
        raise MalformedMessage(
            f"Notification {notification_id} is about {object_type or 'an untyped object'}; the bridge handles Case."
        )
    record_id = sobject.findtext(_q(SOBJECT_NS, "Id"), default="").strip()
    if not is_record_id(record_id):
        raise MalformedMessage(f"Notification {notification_id} has no valid Case Id.")
    return Notification(org_id=org_id, notification_id=notification_id, ticket_id=to18(record_id))


def _text(parent: Element, name: str) -> str:
    return parent.findtext(_q(OUTBOUND_NS, name), default="").strip()
