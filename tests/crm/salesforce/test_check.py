"""``bridge check``'s findings about the org, from what a hand-made org describes and answers.
(The same checks against the simulated org over TLS run in ``tests/e2e/test_cli_wire.py``.)"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from bridge.crm.plugin import CheckContext
from bridge.crm.salesforce.check import FLOW_API_NAME, OUTBOUND_MESSAGE_NAME, WRITTEN, Described, check_org
from bridge.crm.salesforce.gateway import case_status
from bridge.crm.salesforce.settings import SalesforceConsent, SalesforceSettings
from bridge.errors import CRMRequestError
from tests._apps import salesforce_settings

MAPPING = ["ContactMobile", "ContactPhone", "Account.Name", "Subject"]
CONTEXT = CheckContext(ticket_fields=MAPPING, block_if_true=("Contact.DoNotCall",), create_notes=True)


def field(kind: str, *, updateable: bool = True, values: tuple[str, ...] = (), **more: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "updateable": updateable,
        "picklistValues": [{"value": v, "active": True} for v in values],
        **more,
    }


def deployed_case() -> dict[str, dict[str, Any]]:
    """Case as the SFDX project deploys it."""
    return {
        "Id": field("id", updateable=False),
        "ContactMobile": field("phone", updateable=False),
        "ContactPhone": field("phone", updateable=False),
        "Subject": field("string"),
        "AccountId": field("reference", relationshipName="Account"),
        "CCAI_Chat_Id__c": field("string"),
        "CCAI_SMS_Status__c": field("picklist", values=tuple(sorted({case_status(status) for status in WRITTEN}))),
        "CCAI_SMS_Error__c": field("textarea"),
        "CCAI_Chat_Status__c": field("string"),
        "CCAI_Chat_Agent__c": field("string"),
        "CCAI_Chat_Ended_At__c": field("datetime"),
        "CCAI_Chat_Outcome__c": field("string"),
    }


class FakeOrg:
    """An org whose describes and Setup queries the test sets; ``None`` refuses the call."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, dict[str, Any]] | None] = {
            "Case": deployed_case(),
            "Contact": {"DoNotCall": field("boolean"), "CCAI_SMS_Opt_Out__c": field("boolean")},
            "Task": {"Status": field("picklist", values=("Not Started", "In Progress", "Completed"))},
        }
        self.flows: list[dict[str, Any]] | None = [{"ApiName": FLOW_API_NAME, "IsActive": True}]
        self.messages: list[dict[str, Any]] = [{"Id": "04k000000000001AAA", "Name": OUTBOUND_MESSAGE_NAME}]

    def describe(self, sobject: str) -> Described:
        described = self.objects.get(sobject)
        if described is None:
            raise CRMRequestError(f"NOT_FOUND: The requested resource does not exist ({sobject})")
        return copy.deepcopy(described)

    def query(self, soql: str, *, tooling: bool = False) -> list[dict[str, Any]]:
        if "FlowDefinitionView" in soql:
            if self.flows is None:
                raise CRMRequestError("INSUFFICIENT_ACCESS: insufficient access rights on FlowDefinitionView")
            return self.flows
        assert tooling, "outbound messages are Tooling API records"
        return self.messages


@pytest.fixture
def settings() -> SalesforceSettings:
    return salesforce_settings(instance_url="https://acme.my.salesforce.com", access_token="t")


def findings(
    settings: SalesforceSettings, org: FakeOrg, context: CheckContext = CONTEXT
) -> dict[str, tuple[bool, str]]:
    return {f.area: (f.ok, f.detail) for f in check_org(settings, org, context)}


def test_an_org_with_the_project_deployed_passes_every_check(settings: SalesforceSettings) -> None:
    found = findings(settings, FakeOrg())
    assert all(ok for ok, _ in found.values()), found
    assert list(found) == [
        "Salesforce",
        "Write-back fields",
        "Status values",
        "Mapping fields",
        "Consent fields",
        "Tasks",
        "Flow",
    ]
    assert found["Flow"][1] == f"{FLOW_API_NAME} is active and fires {OUTBOUND_MESSAGE_NAME}"


def test_missing_read_only_or_mistyped_write_back_fields_are_each_named(settings: SalesforceSettings) -> None:
    org = FakeOrg()
    case = org.objects["Case"]
    assert case is not None
    del case["CCAI_Chat_Id__c"]
    case["CCAI_Chat_Agent__c"]["updateable"] = False
    case["CCAI_Chat_Ended_At__c"]["type"] = "date"
    ok, detail = findings(settings, org)["Write-back fields"]
    assert not ok
    assert "CCAI_Chat_Id__c is missing" in detail
    assert "CCAI_Chat_Agent__c is not writable by the bridge's user" in detail
    assert "CCAI_Chat_Ended_At__c is a date, not a datetime" in detail


def test_a_status_value_the_bridge_writes_must_be_in_the_picklist(settings: SalesforceSettings) -> None:
    org = FakeOrg()
    case = org.objects["Case"]
    assert case is not None
    case["CCAI_SMS_Status__c"] = field("picklist", values=("Sent", "Failed", "Skipped", "Unknown"))
    assert findings(settings, org)["Status values"] == (False, "CCAI_SMS_Status__c lacks: Opted Out, Scheduled")


def test_mapping_fields_are_looked_up_on_case_and_its_relationships(settings: SalesforceSettings) -> None:
    org = FakeOrg()
    context = replace(CONTEXT, ticket_fields=[*MAPPING, "Priority__c", "Asset.Name"])
    found = {f.area: f for f in check_org(settings, org, context)}
    assert found["Mapping fields"].detail == "not on Case: Priority__c, Asset.Name (check config/bridge.toml)"


def test_consent_fields_on_contact_must_be_readable_and_the_opt_out_field_writable(
    settings: SalesforceSettings,
) -> None:
    configured = settings.model_copy(update={"consent": SalesforceConsent(record_field="Contact.Opt")})
    blocking = replace(CONTEXT, block_if_true=("Contact.HasOptedOutOfSMS__c",))
    assert findings(configured, FakeOrg(), blocking)["Consent fields"] == (
        False,
        "Contact.HasOptedOutOfSMS__c is missing or not readable; Contact.Opt is missing or not writable "
        "([consent] record_field)",
    )
    org = FakeOrg()
    org.objects["Contact"] = None
    ok, detail = findings(settings, org)["Consent fields"]
    assert not ok
    assert detail.startswith("Contact cannot be described: NOT_FOUND")


def test_task_statuses_the_bridge_uses_must_exist(settings: SalesforceSettings) -> None:
    org = FakeOrg()
    org.objects["Task"] = {"Status": field("picklist", values=("Open", "Closed"))}
    assert findings(settings, org)["Tasks"] == (
        False,
        "Task Status lacks In Progress, Completed ([writeback] task_status_*)",
    )
    assert "Tasks" not in findings(settings, org, replace(CONTEXT, create_notes=False))


@pytest.mark.parametrize(
    ("flows", "messages", "expected"),
    [
        ([{"ApiName": FLOW_API_NAME, "IsActive": False}], True, "is not active: set its condition, then activate it"),
        ([], True, f"the Flow {FLOW_API_NAME} does not exist (deploy salesforce/)"),
        ([{"ApiName": FLOW_API_NAME, "IsActive": True}], False, f"{OUTBOUND_MESSAGE_NAME} does not exist"),
    ],
)
def test_the_flow_and_its_outbound_message_must_be_deployed_and_active(
    settings: SalesforceSettings, flows: list[dict[str, Any]], messages: bool, expected: str
) -> None:
    org = FakeOrg()
    org.flows = flows
    org.messages = org.messages if messages else []
    ok, detail = findings(settings, org)["Flow"]
    assert not ok
    assert expected in detail


def test_setup_the_integration_user_cannot_read_is_reported_not_failed(settings: SalesforceSettings) -> None:
    org = FakeOrg()
    org.flows = None
    ok, detail = findings(settings, org)["Flow"]
    assert ok
    assert detail.startswith("not checked: the integration user cannot read Setup (INSUFFICIENT_ACCESS")


def test_an_org_that_cannot_describe_case_ends_the_list(settings: SalesforceSettings) -> None:
    org = FakeOrg()
    org.objects["Case"] = None
    [only] = check_org(settings, org, CONTEXT)
    assert (only.area, only.ok) == ("Salesforce", False)
