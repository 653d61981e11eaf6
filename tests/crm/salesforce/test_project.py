"""The SFDX project in ``salesforce/`` against the bridge itself.

No Salesforce org is reachable from CI, so these tests read the metadata an admin deploys and check
that it says what the bridge expects: the Case fields are the ``[writeback]`` fields of
``config/bridge.toml``, the status picklist holds exactly the statuses the bridge writes, the
permission sets grant what the integration user and the agents need, and every file parses.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from xml.etree.ElementTree import Element

import pytest
from defusedxml import ElementTree

from bridge.crm.salesforce.check import WRITTEN
from bridge.crm.salesforce.gateway import case_status

ROOT = Path(__file__).parents[3]
PROJECT = ROOT / "salesforce"
SOURCE = PROJECT / "force-app" / "main" / "default"
NS = {"md": "http://soap.sforce.com/2006/04/metadata"}

# Each metadata file's suffix, the root element Salesforce expects in it, and the folder the sf CLI
# looks for it in (relative to force-app/main/default; "*" is any one folder, such as an object's).
ROOT_ELEMENTS = {
    ".cls-meta.xml": "ApexClass",
    ".field-meta.xml": "CustomField",
    ".permissionset-meta.xml": "PermissionSet",
    ".workflow-meta.xml": "Workflow",
    ".flow-meta.xml": "Flow",
    ".externalCredential-meta.xml": "ExternalCredential",
    ".namedCredential-meta.xml": "NamedCredential",
    ".quickAction-meta.xml": "QuickAction",
    ".js-meta.xml": "LightningComponentBundle",
}
FOLDERS = {
    ".cls-meta.xml": "classes",
    ".field-meta.xml": "objects/*/fields",
    ".permissionset-meta.xml": "permissionsets",
    ".workflow-meta.xml": "workflows",
    ".flow-meta.xml": "flows",
    ".externalCredential-meta.xml": "externalCredentials",
    ".namedCredential-meta.xml": "namedCredentials",
    ".quickAction-meta.xml": "quickActions",
    ".js-meta.xml": "lwc/*",
}
METADATA_FILES = sorted(SOURCE.rglob("*-meta.xml"))

# The length limits Salesforce enforces on deploy, where we can check them here.
FIELD_LIMITS = {"label": 40, "description": 1000, "inlineHelpText": 510}
DESCRIPTION_LIMIT = {"PermissionSet": 255, "Flow": 255}


def parse(path: Path) -> Element:
    root: Element = ElementTree.parse(path).getroot()
    return root


def text(element: Element, path: str) -> str | None:
    found = element.find(path, NS)
    return None if found is None else found.text


def texts(element: Element, path: str) -> list[str]:
    return [found.text or "" for found in element.findall(path, NS)]


def project_json() -> dict[str, object]:
    project: dict[str, object] = json.loads((PROJECT / "sfdx-project.json").read_text(encoding="utf-8"))
    return project


def bridge_toml() -> dict[str, object]:
    return tomllib.loads((ROOT / "config" / "bridge.toml").read_text(encoding="utf-8"))


def writeback_fields() -> dict[str, str]:
    """``[writeback]`` keys naming a Case field (``*_field``) and their API names."""
    writeback = bridge_toml()["writeback"]
    assert isinstance(writeback, dict)
    return {key: value for key, value in writeback.items() if key.endswith("_field")}


def case_fields() -> dict[str, Element]:
    return {
        path.name.removesuffix(".field-meta.xml"): parse(path)
        for path in (SOURCE / "objects" / "Case" / "fields").glob("*.field-meta.xml")
    }


def permission_set(name: str) -> Element:
    return parse(SOURCE / "permissionsets" / f"{name}.permissionset-meta.xml")


def field_permissions(permissions: Element) -> dict[str, tuple[bool, bool]]:
    """Field -> (readable, editable)."""
    return {
        text(grant, "md:field") or "": (text(grant, "md:readable") == "true", text(grant, "md:editable") == "true")
        for grant in permissions.findall("md:fieldPermissions", NS)
    }


def statuses_the_bridge_writes() -> set[str]:
    return {case_status(status) for status in WRITTEN}


@pytest.mark.parametrize("path", METADATA_FILES, ids=lambda path: str(path.relative_to(PROJECT)))
def test_every_metadata_file_parses_as_its_type(path: Path) -> None:
    root = parse(path)
    suffix = next(suffix for suffix in ROOT_ELEMENTS if path.name.endswith(suffix))
    assert root.tag == f"{{{NS['md']}}}{ROOT_ELEMENTS[suffix]}"
    assert path.parent.relative_to(SOURCE).match(FOLDERS[suffix])
    limit = DESCRIPTION_LIMIT.get(ROOT_ELEMENTS[suffix])
    if limit is not None:
        assert len(text(root, "md:description") or "") <= limit


def test_the_project_has_every_kind_of_metadata_and_valid_json() -> None:
    kinds = {next(suffix for suffix in ROOT_ELEMENTS if path.name.endswith(suffix)) for path in METADATA_FILES}
    assert kinds == set(ROOT_ELEMENTS)
    assert project_json()["packageDirectories"] == [{"path": "force-app", "default": True}]
    json.loads((PROJECT / "package.json").read_text(encoding="utf-8"))


def test_the_case_fields_are_the_writeback_fields() -> None:
    assert set(case_fields()) == set(writeback_fields().values())


def test_the_case_fields_have_the_types_the_bridge_writes() -> None:
    fields = case_fields()
    names = writeback_fields()
    expected = {
        "chat_id_field": ("Text", "64"),
        "status_field": ("Picklist", None),
        "error_field": ("Text", "255"),
        "chat_status_field": ("Text", "40"),
        "chat_agent_field": ("Text", "255"),
        "chat_ended_at_field": ("DateTime", None),
        "chat_outcome_field": ("Text", "255"),
    }
    assert set(names) == set(expected)
    for key, (kind, length) in expected.items():
        field = fields[names[key]]
        assert (text(field, "md:type"), text(field, "md:length")) == (kind, length), key
    # The bridge cuts its reasons to error_max_length: the field must hold that many characters.
    writeback = bridge_toml()["writeback"]
    assert isinstance(writeback, dict)
    assert int(text(fields[names["error_field"]], "md:length") or 0) >= int(writeback.get("error_max_length", 255))


@pytest.mark.parametrize("path", sorted((SOURCE / "objects").rglob("*.field-meta.xml")), ids=lambda path: path.name)
def test_fields_are_described_within_salesforces_limits(path: Path) -> None:
    field = parse(path)
    assert text(field, "md:fullName") == path.name.removesuffix(".field-meta.xml")
    for element, limit in FIELD_LIMITS.items():
        value = text(field, f"md:{element}")
        assert value, f"{path.name} has no {element}"
        assert len(value) <= limit, f"{path.name}: {element} is longer than {limit}"


def test_the_status_picklist_holds_exactly_the_statuses_the_bridge_writes() -> None:
    status = case_fields()[writeback_fields()["status_field"]]
    assert text(status, "md:valueSet/md:restricted") == "true"
    values = texts(status, "md:valueSet/md:valueSetDefinition/md:value/md:fullName")
    assert len(values) == len(set(values))
    assert set(values) == statuses_the_bridge_writes()
    assert texts(status, "md:valueSet/md:valueSetDefinition/md:value/md:default") == ["false"] * len(values)


def test_the_integration_permission_set_can_read_and_write_back() -> None:
    permissions = permission_set("CCAI_Bridge_Integration")
    grants = field_permissions(permissions)
    for name in writeback_fields().values():
        assert grants.get(f"Case.{name}") == (True, True), name
    assert grants.get("Contact.CCAI_SMS_Opt_Out__c") == (True, True)
    consent = bridge_toml().get("consent", {})
    assert isinstance(consent, dict)
    for name in consent.get("block_if_true", ["Contact.DoNotCall"]):
        assert grants.get(name, (False, False))[0], f"{name} is not readable"
    if consent.get("record_field"):
        assert grants.get(consent["record_field"]) == (True, True)

    objects = {text(grant, "md:object"): grant for grant in permissions.findall("md:objectPermissions", NS)}
    assert text(objects["Case"], "md:allowRead") == "true"
    assert text(objects["Case"], "md:allowEdit") == "true"
    assert text(objects["Contact"], "md:allowRead") == "true"
    enabled = {
        text(grant, "md:name")
        for grant in permissions.findall("md:userPermissions", NS)
        if text(grant, "md:enabled") == "true"
    }
    assert {"ApiEnabled", "EditTask"} <= enabled


def test_the_agent_permission_set_grants_the_action_and_the_credential() -> None:
    permissions = permission_set("CCAI_Bridge_Agent")
    classes = {
        text(grant, "md:apexClass")
        for grant in permissions.findall("md:classAccesses", NS)
        if text(grant, "md:enabled") == "true"
    }
    assert "BridgeSmsController" in classes
    assert all((SOURCE / "classes" / f"{name}.cls").exists() for name in classes)

    credential = parse(SOURCE / "externalCredentials" / "CCAI_Bridge_Auth.externalCredential-meta.xml")
    principals = [
        text(parameter, "md:parameterName")
        for parameter in credential.findall("md:externalCredentialParameters", NS)
        if text(parameter, "md:parameterType") == "NamedPrincipal"
    ]
    granted = texts(permissions, "md:externalCredentialPrincipalAccesses/md:externalCredentialPrincipal")
    assert granted == [f"CCAI_Bridge_Auth-{principal}" for principal in principals]

    grants = field_permissions(permissions)
    for name in writeback_fields().values():
        assert grants.get(f"Case.{name}") == (True, False), name


def test_apex_api_versions_are_the_projects() -> None:
    version = project_json()["sourceApiVersion"]
    versioned = [*SOURCE.rglob("*.cls-meta.xml"), *SOURCE.rglob("*.js-meta.xml"), *SOURCE.rglob("*.flow-meta.xml")]
    assert len(list(SOURCE.rglob("*.cls-meta.xml"))) == len(list(SOURCE.rglob("*.cls")))
    for path in versioned:
        assert text(parse(path), "md:apiVersion") == version, path.name
    workflow = parse(SOURCE / "workflows" / "Case.workflow-meta.xml")
    assert texts(workflow, "md:outboundMessages/md:apiVersion") == [version]


def test_the_component_calls_apex_that_exists() -> None:
    component = (SOURCE / "lwc" / "ccaiSendSms" / "ccaiSendSms.js").read_text(encoding="utf-8")
    imports = re.findall(r"@salesforce/apex/(\w+)\.(\w+)", component)
    assert {method for _, method in imports} == {"preview", "send", "getSend"}
    for class_name, method in imports:
        source = (SOURCE / "classes" / f"{class_name}.cls").read_text(encoding="utf-8")
        assert re.search(rf"@AuraEnabled\s+public static \w+ {method}\(", source), f"{class_name}.{method}"


def test_the_quick_action_opens_the_component_as_a_screen_action() -> None:
    action = parse(SOURCE / "quickActions" / "Case.Send_SMS.quickAction-meta.xml")
    assert text(action, "md:type") == "LightningWebComponent"
    assert text(action, "md:actionSubtype") == "ScreenAction"
    bundle = parse(SOURCE / "lwc" / str(text(action, "md:lightningWebComponent")) / "ccaiSendSms.js-meta.xml")
    assert text(bundle, "md:isExposed") == "true"
    assert texts(bundle, "md:targets/md:target") == ["lightning__RecordAction"]
    assert texts(bundle, "md:targetConfigs/md:targetConfig/md:actionType") == ["ScreenAction"]


def test_the_flow_is_inactive_and_fires_the_outbound_message_except_for_the_bridge() -> None:
    flow = parse(SOURCE / "flows" / "CCAI_Bridge_Text_Customer.flow-meta.xml")
    assert text(flow, "md:status") == "Draft"
    assert text(flow, "md:start/md:object") == "Case"
    assert text(flow, "md:start/md:triggerType") == "RecordAfterSave"
    formula = text(flow, "md:start/md:filterFormula") or ""
    assert "{!$User.Username} <> 'REPLACE_WITH_INTEGRATION_USERNAME'" in formula
    assert "CCAI Platform" in (text(flow, "md:description") or "")

    workflow = parse(SOURCE / "workflows" / "Case.workflow-meta.xml")
    (message,) = workflow.findall("md:outboundMessages", NS)
    assert texts(flow, "md:actionCalls/md:actionName") == [f"Case.{text(message, 'md:fullName')}"]
    assert texts(flow, "md:actionCalls/md:actionType") == ["outboundMessage"]
    assert texts(message, "md:fields") == ["Id"]
    assert text(message, "md:includeSessionId") == "false"
    assert text(message, "md:endpointUrl") == (
        "https://YOUR-BRIDGE-HOST/salesforce/outbound-message?token=REPLACE_WITH_BRIDGE_WEBHOOK_TOKEN"
    )


def test_every_placeholder_is_replaced_at_deploy() -> None:
    """A placeholder that reached the org would send the bridge's traffic nowhere: every one in the
    source must be filled by a string replacement from sfdx-project.json."""
    replacements = project_json()["replacements"]
    assert isinstance(replacements, list)
    covered: set[tuple[str, str]] = set()
    for replacement in replacements:
        path = PROJECT / replacement["filename"]
        assert replacement["stringToReplace"] in path.read_text(encoding="utf-8"), replacement
        covered.add((replacement["filename"], replacement["stringToReplace"]))
    placeholder = re.compile(r"https://YOUR-BRIDGE-HOST|REPLACE_WITH_[A-Z_]+")
    for path in METADATA_FILES:
        relative = str(path.relative_to(PROJECT))
        for found in set(placeholder.findall(path.read_text(encoding="utf-8"))):
            assert (relative, found) in covered, f"{found} in {relative} is never replaced"


def test_no_secret_is_kept_in_source() -> None:
    credential = parse(SOURCE / "externalCredentials" / "CCAI_Bridge_Auth.externalCredential-meta.xml")
    assert text(credential, "md:authenticationProtocol") == "Custom"
    values = {
        text(parameter, "md:parameterType"): text(parameter, "md:parameterValue")
        for parameter in credential.findall("md:externalCredentialParameters", NS)
    }
    # The key itself is an authentication parameter of the principal, entered in Setup after deploying.
    assert values == {"NamedPrincipal": None, "AuthHeader": "Bearer {!$Credential.CCAI_Bridge_Auth.ApiKey}"}
    named = parse(SOURCE / "namedCredentials" / "CCAI_Bridge.namedCredential-meta.xml")
    assert texts(named, "md:namedCredentialParameters/md:externalCredential") == ["CCAI_Bridge_Auth"]
    assert text(named, "md:generateAuthorizationHeader") == "false"
