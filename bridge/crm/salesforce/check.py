"""``bridge check``'s look at the Salesforce org: is it set up the way ``salesforce/`` (the SFDX
project) and ``config/bridge.toml`` say?

Everything is read as the bridge's own integration user, so "writable" means writable by the user
that will write: describe calls honour field-level security. Setup metadata (the Flow, the outbound
message) may be beyond that user's rights; those checks then say so instead of failing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from bridge._secrets import matches_any
from bridge.crm.plugin import CheckContext
from bridge.crm.salesforce.gateway import BASE_FIELDS, case_status
from bridge.crm.salesforce.settings import SalesforceSettings
from bridge.errors import BridgeError
from bridge.message_templates import TemplateBook
from bridge.model import FINAL_STATUSES, Finding, SendStatus

# What the SFDX project deploys, by the names it gives them: the two trigger Flows (one is activated)
# and the outbound message the first fires.
FLOW_API_NAME = "CCAI_Bridge_Text_Customer"
PUBSUB_FLOW_API_NAME = "CCAI_Bridge_Publish_SMS_Request"
OUTBOUND_MESSAGE_NAME = "CCAI_Bridge_Notify"
OUTBOUND_MESSAGE_PATH = "/salesforce/outbound-message"
SEND_SMS_ACTION = "Case.Send_SMS"
MAX_LAYOUTS_READ = 20  # one call each: an org with more Case layouts gets "not on any" past these


Described = Mapping[str, Mapping[str, Any]]


class OrgReader(Protocol):
    """What the checks read (:class:`bridge.crm.salesforce.gateway.SalesforceGateway` does it over the wire)."""

    def describe(self, sobject: str) -> Described: ...

    def query(self, soql: str, *, tooling: bool = False) -> list[dict[str, Any]]: ...


# Every status a Case can be written with: the final ones, and Scheduled (held for the send window).
WRITTEN: tuple[SendStatus, ...] = (*FINAL_STATUSES, "scheduled")


def check_org(settings: SalesforceSettings, gateway: OrgReader, context: CheckContext) -> list[Finding]:
    """The org's findings; a failed login or Case describe ends the list early."""
    try:
        case = gateway.describe("Case")
    except BridgeError as exc:
        return [Finding("Salesforce", False, str(exc))]
    findings = [Finding("Salesforce", True, f"logged in ({settings.credentials().mode}); Case described")]
    findings.append(_writeback_fields(settings, case))
    findings.append(_status_values(settings, case))
    findings.append(_mapping_fields(case, context.ticket_fields))
    if context.templates is not None:
        findings.append(_template_fields(case, context.templates, gateway))
    findings.append(_consent_fields(settings, context.block_if_true, gateway))
    if context.create_notes:
        findings.append(_tasks(settings, gateway))
    findings.append(_automation(gateway))
    findings.append(_outbound_endpoint(settings, gateway, context.public_url))
    findings.append(_send_sms_action(gateway))
    return findings


def _writeback_fields(settings: SalesforceSettings, case: Described) -> Finding:
    config = settings.writeback
    expected = {
        config.chat_id_field: ("string",),
        config.status_field: ("picklist",),
        config.error_field: ("string", "textarea"),
        config.chat_status_field: ("string",),
        config.chat_agent_field: ("string",),
        config.chat_ended_at_field: ("datetime",),
        config.chat_outcome_field: ("string", "textarea"),
    }
    problems = []
    for name, types in expected.items():
        field = case.get(name)
        if field is None:
            problems.append(f"{name} is missing")
        elif not field.get("updateable"):
            problems.append(f"{name} is not writable by the bridge's user (permission set CCAI_Bridge_Integration)")
        elif field.get("type") not in types:
            problems.append(f"{name} is a {field.get('type')}, not a {' or '.join(types)}")
    if problems:
        return Finding("Write-back fields", False, "; ".join(problems) + " (deploy salesforce/, see its README)")
    return Finding("Write-back fields", True, ", ".join(expected))


def _status_values(settings: SalesforceSettings, case: Described) -> Finding:
    field = case.get(settings.writeback.status_field) or {}
    present = {str(v.get("value")) for v in field.get("picklistValues") or [] if v.get("active", True)}
    needed = sorted({case_status(status) for status in WRITTEN})
    missing = [value for value in needed if value not in present]
    if missing:
        return Finding("Status values", False, f"{settings.writeback.status_field} lacks: {', '.join(missing)}")
    return Finding("Status values", True, ", ".join(needed))


def _mapping_fields(case: Described, mapping_fields: Iterable[str]) -> Finding:
    relationships = {str(f.get("relationshipName")) for f in case.values() if f.get("relationshipName")}
    wanted = [name for name in dict.fromkeys(mapping_fields) if name not in BASE_FIELDS]
    unknown = [
        name for name in wanted if (name.split(".")[0] not in relationships if "." in name else name not in case)
    ]
    if unknown:
        return Finding("Mapping fields", False, f"not on Case: {', '.join(unknown)} (check config/bridge.toml)")
    return Finding("Mapping fields", True, ", ".join(wanted))


def _consent_fields(settings: SalesforceSettings, block_if_true: Sequence[str], gateway: OrgReader) -> Finding:
    consent = settings.consent
    contact_fields = [f.split(".", 1)[1] for f in block_if_true if f.startswith("Contact.")]
    record = consent.record_field.removeprefix("Contact.") if consent.record_field else ""
    if not contact_fields and not record:
        return Finding("Consent fields", True, "none on Contact to check")
    try:
        contact = gateway.describe("Contact")
    except BridgeError as exc:
        return Finding("Consent fields", False, f"Contact cannot be described: {exc}")
    problems = [f"Contact.{name} is missing or not readable" for name in contact_fields if name not in contact]
    if record and not (contact.get(record) or {}).get("updateable"):
        problems.append(f"{consent.record_field} is missing or not writable ([consent] record_field)")
    if problems:
        return Finding("Consent fields", False, "; ".join(problems))
    return Finding("Consent fields", True, ", ".join([*block_if_true, *([consent.record_field] if record else [])]))


def _tasks(settings: SalesforceSettings, gateway: OrgReader) -> Finding:
    try:
        task = gateway.describe("Task")
    except BridgeError as exc:
        return Finding("Tasks", False, str(exc))
    statuses = {str(v.get("value")) for v in (task.get("Status") or {}).get("picklistValues") or []}
    config = settings.writeback
    missing = [s for s in (config.task_status_open, config.task_status_done) if statuses and s not in statuses]
    if missing:
        return Finding("Tasks", False, f"Task Status lacks {', '.join(missing)} ([writeback] task_status_*)")
    return Finding("Tasks", True, "the bridge's user can describe Task, with the statuses it uses")


def _template_fields(case: Described, templates: TemplateBook, gateway: OrgReader) -> Finding:
    """Every field each template reads exists and the bridge's user can read it (describe honours
    field-level security): on Case, or on the Case's Contact."""
    needs_contact = any(f.startswith("Contact.") for t in templates for f in t.fields) or (
        templates.language_field.startswith("Contact.")
    )
    try:
        contact = gateway.describe("Contact") if needs_contact else {}
    except BridgeError as exc:
        return Finding("Template fields", False, f"Contact cannot be described: {exc}")
    relationships = {str(f.get("relationshipName")) for f in case.values() if f.get("relationshipName")}

    def readable(name: str) -> bool:
        relation, _, child = name.partition(".")
        if not child:
            return name in case
        if relation == "Contact":
            return child in contact
        return relation in relationships

    problems = []
    for template in templates:
        missing = [name for name in template.fields if not readable(name)]
        if missing:
            problems.append(f"{template.name} reads {', '.join(missing)}")
    for label, name in (("template_field", templates.template_field), ("language_field", templates.language_field)):
        if name and not readable(name):
            problems.append(f"[mapping] {label} {name}")
    if problems:
        return Finding(
            "Template fields",
            False,
            "missing or not readable by the bridge's user: " + "; ".join(problems) + " (check config/bridge.toml)",
        )
    return Finding("Template fields", True, f"{len(templates)} template(s); every field they read is readable")


def _automation(gateway: OrgReader) -> Finding:
    """The trigger: exactly one of the two Flows active, and the outbound message it may fire, when
    the integration user may read Setup."""
    flows_wanted = (FLOW_API_NAME, PUBSUB_FLOW_API_NAME)
    try:
        flows = gateway.query(
            "SELECT ApiName, IsActive FROM FlowDefinitionView WHERE ApiName IN "  # noqa: S608
            f"({', '.join(repr(name) for name in flows_wanted)})"
        )
        messages = gateway.query(
            f"SELECT Id, Name FROM WorkflowOutboundMessage WHERE Name = '{OUTBOUND_MESSAGE_NAME}'",  # noqa: S608
            tooling=True,
        )
    except BridgeError as exc:
        return Finding(
            "Flow",
            True,
            f"not checked: the integration user cannot read Setup ({exc}); check the Flows {FLOW_API_NAME} and "
            f"{PUBSUB_FLOW_API_NAME} (one active) and the outbound message {OUTBOUND_MESSAGE_NAME} in Setup",
        )
    if not messages:
        return Finding(
            "Flow", False, f"the outbound message {OUTBOUND_MESSAGE_NAME} does not exist (deploy salesforce/)"
        )
    found = {str(flow.get("ApiName")): bool(flow.get("IsActive")) for flow in flows}
    if FLOW_API_NAME not in found:
        return Finding("Flow", False, f"the Flow {FLOW_API_NAME} does not exist (deploy salesforce/)")
    active = [name for name in flows_wanted if found.get(name)]
    if not active:
        return Finding(
            "Flow",
            False,
            f"no trigger is active: run bridge salesforce setup --activate outbound-message (or pubsub), "
            f"or activate {FLOW_API_NAME} or {PUBSUB_FLOW_API_NAME} in Setup",
        )
    if len(active) > 1:
        return Finding(
            "Flow",
            False,
            f"both {FLOW_API_NAME} and {PUBSUB_FLOW_API_NAME} are active: each request would arrive twice",
        )
    if active == [FLOW_API_NAME]:
        return Finding("Flow", True, f"{FLOW_API_NAME} is active and fires {OUTBOUND_MESSAGE_NAME}")
    return Finding("Flow", True, f"{PUBSUB_FLOW_API_NAME} is active and publishes CCAI_SMS_Request__e")


def _outbound_endpoint(settings: SalesforceSettings, gateway: OrgReader, public_url: str) -> Finding:
    """The outbound message points at this bridge, with one of its tokens, when both can be known."""
    if not public_url:
        return Finding("Outbound message endpoint", True, "not compared: set BRIDGE_PUBLIC_URL to compare it")
    try:
        found = gateway.query(
            f"SELECT Id, Name, Metadata FROM WorkflowOutboundMessage WHERE Name = '{OUTBOUND_MESSAGE_NAME}'",  # noqa: S608
            tooling=True,
        )
    except BridgeError as exc:
        return Finding("Outbound message endpoint", True, f"not compared: the integration user cannot read it ({exc})")
    metadata = (found[0].get("Metadata") or {}) if found else {}
    endpoint = str(metadata.get("endpointUrl") or "")
    if not endpoint:
        return Finding("Outbound message endpoint", True, "not compared: its endpoint could not be read")
    expected = public_url + OUTBOUND_MESSAGE_PATH
    parts = urlsplit(endpoint)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    token = (parse_qs(parts.query).get("token") or [""])[0]
    tokens = [secret.get_secret_value() for secret in settings.webhook_token]
    if base != expected:
        return Finding(
            "Outbound message endpoint",
            False,
            f"it posts to {base}, not {expected}: run bridge salesforce setup, or correct it in Setup",
        )
    if not matches_any(token, tokens):
        return Finding(
            "Outbound message endpoint",
            False,
            "its token is not one of BRIDGE_WEBHOOK_TOKEN: run bridge salesforce setup, or correct it in Setup",
        )
    return Finding("Outbound message endpoint", True, f"{expected} with one of BRIDGE_WEBHOOK_TOKEN")


def _send_sms_action(gateway: OrgReader) -> Finding:
    """The Send SMS quick action is on a Case page layout (the one set-up step that is the admin's
    choice of page), when the integration user may read layouts."""
    try:
        layouts = gateway.query("SELECT Id, Name FROM Layout WHERE TableEnumOrId = 'Case'", tooling=True)
        for layout in layouts[:MAX_LAYOUTS_READ]:
            # Tooling returns a layout's Metadata only one record at a time.
            found = gateway.query(f"SELECT Id, Metadata FROM Layout WHERE Id = '{layout['Id']}'", tooling=True)  # noqa: S608
            items = ((found[0].get("Metadata") or {}).get("platformActionList") or {}) if found else {}
            if any(item.get("actionName") == SEND_SMS_ACTION for item in items.get("platformActionListItems") or []):
                return Finding("Send SMS action", True, f"on the Case page layout {layout.get('Name')}")
    except BridgeError as exc:
        return Finding("Send SMS action", True, f"not checked: the integration user cannot read page layouts ({exc})")
    return Finding(
        "Send SMS action",
        False,
        "not on any Case page layout: add Send SMS under Mobile & Lightning Actions (with Dynamic Actions in the "
        "Lightning App Builder instead, ignore this)",
    )
