"""Sample data for the sandbox: an organisation, a few Cases, and outbound-message XML about them."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from typing import Any
from xml.sax.saxutils import escape

from bridge.crm.salesforce.ids import to18

SANDBOX_ORG_ID = to18("00D5g00000SBXRG")
SANDBOX_OUTBOUND_NUMBER = "+1 628-555-0199"


def _case(suffix: str, number: str, **fields: Any) -> dict[str, Any]:
    return {"Id": to18(f"5005g00000SBX{suffix}"), "CaseNumber": number, "Status": "New", **fields}


def sample_cases() -> list[dict[str, Any]]:
    """Cases as flat field maps (``Owner.Email`` style), covering the mapping's main paths."""
    agent = {"Owner.Type": "User", "Owner.Name": "Ana Agent", "Owner.Email": "ana.agent@example.com"}
    queue = {"Owner.Type": "Queue", "Owner.Name": "Support Queue", "Owner.Email": None}
    return [
        # A mobile in international format, owned by an agent: texted and assigned to her.
        _case(
            "01",
            "00001001",
            Subject="Router will not start",
            ContactMobile="+1 415-555-0100",
            **{"Account.Name": "Acme Corp"},
            **agent,
        ),
        # Only a national-format phone, owned by a queue: texted, not assigned to anyone.
        _case(
            "02",
            "00001002",
            Subject="Billing question",
            ContactPhone="(212) 555-0142",
            **{"Account.Name": None},
            **queue,
        ),
        # No phone at all: nothing is sent and the Case says why.
        _case("03", "00001003", Subject="Password reset", **{"Account.Name": "Globex"}, **agent),
        # A UK number: CCAI Platform texts US numbers only.
        _case(
            "04",
            "00001004",
            Subject="Delivery to London",
            ContactMobile="+44 20 7946 0958",
            **{"Account.Name": "Initech"},
            **agent,
        ),
        # Not in the sample outbound message: the banner's send-API example texts it, so that example
        # never meets the live chat the sample message just started.
        _case(
            "05",
            "00001005",
            Subject="Follow-up after the visit",
            ContactMobile="+1 628-555-0105",
            **{"Account.Name": "Umbrella"},
            **agent,
        ),
    ]


def new_notification_id() -> str:
    return to18("04l" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(12)))


def outbound_message(
    case_ids: Iterable[str],
    *,
    org_id: str = SANDBOX_ORG_ID,
    notification_ids: Iterable[str] | None = None,
    extra_fields: Mapping[str, str] | None = None,
) -> bytes:
    """An outbound message exactly as Salesforce sends it, one Notification per Case id."""
    ids = list(case_ids)
    note_ids = list(notification_ids) if notification_ids is not None else [new_notification_id() for _ in ids]
    extra = "".join(f"<sf:{k}>{escape(v)}</sf:{k}>" for k, v in (extra_fields or {}).items())
    notes = "".join(
        f"""
   <Notification>
    <Id>{note_id}</Id>
    <sObject xsi:type="sf:Case" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>{case_id}</sf:Id>{extra}
    </sObject>
   </Notification>"""
        for note_id, case_id in zip(note_ids, ids, strict=True)
    )
    org15 = org_id[:15]
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>{org_id}</OrganizationId>
   <ActionId>{to18("04k5g00000SBXAC")}</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>https://sandbox.my.salesforce.com/services/Soap/c/61.0/{org15}</EnterpriseUrl>
   <PartnerUrl>https://sandbox.my.salesforce.com/services/Soap/u/61.0/{org15}</PartnerUrl>{notes}
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>
""".encode()
