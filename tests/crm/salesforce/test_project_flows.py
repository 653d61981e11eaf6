"""The shipped Flows fire on the condition they say, and never for the integrations' own edits.

Each Flow's entry condition is evaluated (``tests/_flow_formula.py``) for the saves an org sees, as
deployed: with the replacements of ``sfdx-project.json`` applied from an admin's environment, and
every optional variable left unset (the exclusions must hold without them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest
from defusedxml import ElementTree

from tests.crm.salesforce._flow_formula import Save, evaluate

ROOT = Path(__file__).parents[3]
PROJECT = ROOT / "salesforce"
SOURCE = PROJECT / "force-app" / "main" / "default"
NS = {"md": "http://soap.sforce.com/2006/04/metadata"}
FLOWS = sorted((SOURCE / "flows").glob("*.flow-meta.xml"))
NO_TRIGGERS = "CCAI_Bridge_No_Triggers"
INTEGRATION_USER = "bridge@acme.example"
REQUIRED_ENVIRONMENT = {
    "CCAI_BRIDGE_URL": "https://bridge.acme.example",
    "CCAI_BRIDGE_WEBHOOK_TOKEN": "0123abcd",
    "CCAI_BRIDGE_INTEGRATION_USERNAME": INTEGRATION_USER,
    "CCAI_BRIDGE_CERTIFICATE": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
}
AGENT = {"Username": "agent@acme.example", "Id": "005000000000001AAA"}
CCAI_PLATFORM = {"Username": "ccai@acme.example", "Id": "005000000000002AAA"}
BRIDGE = {"Username": INTEGRATION_USER, "Id": "005000000000003AAA"}


def deployed(path: Path, environment: Mapping[str, str]) -> str:
    """The file as `sf project deploy start` sends it: every replacement applied; an optional
    variable that is unset becomes the empty string, as the CLI does."""
    content = path.read_text(encoding="utf-8")
    project = json.loads((PROJECT / "sfdx-project.json").read_text(encoding="utf-8"))
    for replacement in project["replacements"]:
        if PROJECT / replacement["filename"] == path:
            value = environment.get(replacement["replaceWithEnv"])
            assert value is not None or replacement.get("allowUnsetEnvVariable"), replacement
            content = content.replace(replacement["stringToReplace"], value or "")
    return content


def entry_condition(path: Path) -> str:
    flow = ElementTree.fromstring(deployed(path, REQUIRED_ENVIRONMENT).encode("utf-8"))
    formula: str | None = flow.findtext("md:start/md:filterFormula", namespaces=NS)
    assert formula, f"{path.name} has no entry formula"
    return formula


def permissions_of(permission_set: str) -> frozenset[str]:
    root = ElementTree.parse(SOURCE / "permissionsets" / f"{permission_set}.permissionset-meta.xml").getroot()
    return frozenset(
        grant.findtext("md:name", namespaces=NS) or ""
        for grant in root.findall("md:customPermissions", NS)
        if grant.findtext("md:enabled", namespaces=NS) == "true"
    )


CASES = {
    "a new Case nobody asked to text": (Save({"Status": "New"}, user=AGENT), False),
    "a new Case created with a template": (Save({"CCAI_SMS_Template__c": "case_opened"}, user=AGENT), True),
    "an agent's automation sets the template": (
        Save({"CCAI_SMS_Template__c": "resolved"}, prior={"CCAI_SMS_Template__c": None}, user=AGENT),
        True,
    ),
    "another template replaces the first": (
        Save({"CCAI_SMS_Template__c": "resolved"}, prior={"CCAI_SMS_Template__c": "case_opened"}, user=AGENT),
        True,
    ),
    "an edit that leaves the template alone": (
        Save(
            {"CCAI_SMS_Template__c": "resolved", "Status": "Closed"},
            prior={"CCAI_SMS_Template__c": "resolved", "Status": "Working"},
            user=AGENT,
        ),
        False,
    ),
    "the template cleared": (
        Save({"CCAI_SMS_Template__c": None}, prior={"CCAI_SMS_Template__c": "resolved"}, user=AGENT),
        False,
    ),
    "the bridge's own write-back": (
        Save(
            {"CCAI_SMS_Template__c": "resolved", "CCAI_SMS_Status__c": "Sent"},
            prior={"CCAI_SMS_Template__c": None},
            user=BRIDGE,
            permissions=permissions_of("CCAI_Bridge_Integration"),
        ),
        False,
    ),
    "the bridge's user even without its permission set": (
        Save({"CCAI_SMS_Template__c": "resolved"}, prior={"CCAI_SMS_Template__c": None}, user=BRIDGE),
        False,
    ),
    "CCAI Platform's user, whose name the deploy never knew": (
        Save(
            {"CCAI_SMS_Template__c": "resolved"},
            prior={"CCAI_SMS_Template__c": None},
            user=CCAI_PLATFORM,
            permissions=permissions_of("CCAI_Platform_Integration"),
        ),
        False,
    ),
}


@pytest.mark.parametrize("path", FLOWS, ids=lambda path: path.name)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_flow_fires_only_when_asked_and_never_for_the_integrations(path: Path, case: str) -> None:
    save, fires = CASES[case]
    assert evaluate(entry_condition(path), save) is fires


def test_both_integration_permission_sets_grant_the_exclusion() -> None:
    assert NO_TRIGGERS in permissions_of("CCAI_Bridge_Integration")
    assert NO_TRIGGERS in permissions_of("CCAI_Platform_Integration")
    assert (SOURCE / "customPermissions" / f"{NO_TRIGGERS}.customPermission-meta.xml").exists()


def test_no_flow_depends_on_an_optional_deploy_variable() -> None:
    project = json.loads((PROJECT / "sfdx-project.json").read_text(encoding="utf-8"))
    optional = [r for r in project["replacements"] if r.get("allowUnsetEnvVariable")]
    assert [r["filename"] for r in optional if "/flows/" in r["filename"]] == []
