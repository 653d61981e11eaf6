"""``bridge check``'s look at the Salesforce org: is it set up the way ``salesforce/`` (the SFDX
project) and ``config/bridge.toml`` say?

Everything is read as the bridge's own integration user, so "writable" means writable by the user
that will write: describe calls honour field-level security. Setup metadata (the Flow, the outbound
message) may be beyond that user's rights; those checks then say so instead of failing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from bridge.crm.plugin import CheckContext
from bridge.crm.salesforce.gateway import BASE_FIELDS, case_status
from bridge.crm.salesforce.settings import SalesforceSettings
from bridge.errors import BridgeError
from bridge.model import FINAL_STATUSES, Finding, SendStatus

# What the SFDX project deploys, by the names it gives them.
FLOW_API_NAME = "CCAI_Bridge_Text_Customer"
OUTBOUND_MESSAGE_NAME = "CCAI_Bridge_Notify"


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
    findings.append(_consent_fields(settings, context.block_if_true, gateway))
    if context.create_notes:
        findings.append(_tasks(settings, gateway))
    findings.append(_automation(gateway))
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


def _automation(gateway: OrgReader) -> Finding:
    """The Flow and the outbound message, when the integration user may read Setup."""
    try:
        flows = gateway.query(
            f"SELECT ApiName, IsActive FROM FlowDefinitionView WHERE ApiName = '{FLOW_API_NAME}'"  # noqa: S608
        )
        messages = gateway.query(
            f"SELECT Id, Name FROM WorkflowOutboundMessage WHERE Name = '{OUTBOUND_MESSAGE_NAME}'",  # noqa: S608
            tooling=True,
        )
    except BridgeError as exc:
        return Finding(
            "Flow",
            True,
            f"not checked: the integration user cannot read Setup ({exc}); check the Flow {FLOW_API_NAME} and the "
            f"outbound message {OUTBOUND_MESSAGE_NAME} in Setup",
        )
    if not messages:
        return Finding(
            "Flow", False, f"the outbound message {OUTBOUND_MESSAGE_NAME} does not exist (deploy salesforce/)"
        )
    if not flows:
        return Finding("Flow", False, f"the Flow {FLOW_API_NAME} does not exist (deploy salesforce/)")
    if not flows[0].get("IsActive"):
        return Finding("Flow", False, f"the Flow {FLOW_API_NAME} is not active: set its condition, then activate it")
    return Finding("Flow", True, f"{FLOW_API_NAME} is active and fires {OUTBOUND_MESSAGE_NAME}")
