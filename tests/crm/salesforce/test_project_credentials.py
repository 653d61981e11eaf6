"""The bridge's two credentials in the Salesforce project: the External Client App the bridge logs
in with, and the Named Credential / External Credential pair the agents' callouts go through.

Nothing here can be deployed to an org from CI, so these tests hold the project to what Salesforce
documents: a header formula is evaluated only when the Named Credential allows formulas in headers
(otherwise the bridge gets no key and answers 401); an External Client App is the only OAuth client
a 2026 org can create (no Connected App anywhere).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from xml.etree.ElementTree import Element

from defusedxml import ElementTree

ROOT = Path(__file__).parents[3]
PROJECT = ROOT / "salesforce"
SOURCE = PROJECT / "force-app" / "main" / "default"
NS = {"md": "http://soap.sforce.com/2006/04/metadata"}
CREDENTIAL_REFERENCE = re.compile(r"\$Credential\.(\w+)\.(\w+)")


def parse(path: Path) -> Element:
    root: Element = ElementTree.parse(path).getroot()
    return root


def text(element: Element, path: str) -> str | None:
    found = element.find(path, NS)
    return None if found is None else found.text


def texts(element: Element, path: str) -> list[str]:
    return [found.text or "" for found in element.findall(path, NS)]


def replacements() -> list[dict[str, object]]:
    project = json.loads((PROJECT / "sfdx-project.json").read_text(encoding="utf-8"))
    found: list[dict[str, object]] = project["replacements"]
    return found


def replacement_for(path: Path, placeholder: str) -> dict[str, object]:
    relative = str(path.relative_to(PROJECT))
    (found,) = [r for r in replacements() if r["filename"] == relative and r["stringToReplace"] == placeholder]
    return found


def header_formulas(parameters: list[Element], header_type: str) -> dict[str, str]:
    return {
        text(parameter, "md:parameterName") or "": text(parameter, "md:parameterValue") or ""
        for parameter in parameters
        if text(parameter, "md:parameterType") == header_type
    }


def credential_problems(named: Element, externals: dict[str, Element]) -> list[str]:
    """Why callouts through this Named Credential would not carry the header its External Credential
    defines, one sentence each; an empty list when the pair agrees."""
    problems = []
    linked = texts(named, "md:namedCredentialParameters/md:externalCredential")
    headers = header_formulas(named.findall("md:namedCredentialParameters", NS), "HttpHeader")
    for name in linked:
        if name not in externals:
            problems.append(f"the External Credential {name} is not in the project")
            continue
        own = header_formulas(externals[name].findall("md:externalCredentialParameters", NS), "AuthHeader")
        for header, value in own.items():
            for credential, _parameter in CREDENTIAL_REFERENCE.findall(value):
                if credential != name:
                    problems.append(f"the {header} header reads $Credential.{credential}, not {name}")
        headers.update(own)
    formulas = [header for header, value in headers.items() if "{!" in value or "$Credential" in value]
    if formulas and text(named, "md:allowMergeFieldsInHeader") != "true":
        problems.append(f"{', '.join(formulas)} is a formula but allowMergeFieldsInHeader is not true")
    if "Authorization" in headers and text(named, "md:generateAuthorizationHeader") != "false":
        problems.append("Salesforce would generate its own Authorization header over the External Credential's")
    return problems


def externals() -> dict[str, Element]:
    return {
        path.name.removesuffix(".externalCredential-meta.xml"): parse(path)
        for path in (SOURCE / "externalCredentials").glob("*.externalCredential-meta.xml")
    }


def test_every_named_credential_sends_its_external_credentials_header() -> None:
    nameds = sorted((SOURCE / "namedCredentials").glob("*.namedCredential-meta.xml"))
    assert nameds
    for path in nameds:
        assert credential_problems(parse(path), externals()) == [], path.name


def test_the_pair_check_catches_the_drift_that_made_callouts_unauthenticated() -> None:
    """The pair as shipped before: a formula header, formulas in headers not allowed."""
    named = parse(SOURCE / "namedCredentials" / "CCAI_Bridge.namedCredential-meta.xml")
    named.find("md:allowMergeFieldsInHeader", NS).text = "false"  # type: ignore[union-attr]
    assert credential_problems(named, externals()) == [
        "Authorization is a formula but allowMergeFieldsInHeader is not true"
    ]
    renamed = {"Other_Auth": externals()["CCAI_Bridge_Auth"]}
    named = parse(SOURCE / "namedCredentials" / "CCAI_Bridge.namedCredential-meta.xml")
    named.find("md:namedCredentialParameters/md:externalCredential", NS).text = "Other_Auth"  # type: ignore[union-attr]
    assert credential_problems(named, renamed) == [
        "the Authorization header reads $Credential.CCAI_Bridge_Auth, not Other_Auth"
    ]


def test_the_apex_calls_the_named_credential_the_project_ships() -> None:
    apex = (SOURCE / "classes" / "BridgeApi.cls").read_text(encoding="utf-8")
    (name,) = set(re.findall(r"'callout:(\w+)", apex))
    assert (SOURCE / "namedCredentials" / f"{name}.namedCredential-meta.xml").exists()


def external_client_app_parts() -> dict[str, list[Element]]:
    suffixes = {
        "settings": "*.ecaOauth-meta.xml",
        "global": "*.ecaGlblOauth-meta.xml",
        "policies": "*.ecaOauthPlcy-meta.xml",
        "plugins": "*.ecaPlcy-meta.xml",
    }
    return {part: [parse(path) for path in SOURCE.rglob(pattern)] for part, pattern in suffixes.items()}


def test_one_external_client_app_with_every_part_pointing_at_it() -> None:
    (app_path,) = SOURCE.rglob("*.eca-meta.xml")
    app = parse(app_path)
    name = app_path.name.removesuffix(".eca-meta.xml")
    assert text(app, "md:distributionState") == "Local"
    for part, elements in external_client_app_parts().items():
        assert len(elements) == 1, part
        assert text(elements[0], "md:externalClientApplication") == name, part
    (plugins,) = external_client_app_parts()["plugins"]
    assert (text(plugins, "md:isEnabled"), text(plugins, "md:isOauthPluginEnabled")) == ("true", "true")
    (settings,) = external_client_app_parts()["settings"]
    assert "Api" in [scope.strip() for scope in (text(settings, "md:commaSeparatedOauthScopes") or "").split(",")]


def test_the_app_allows_jwt_bearer_with_the_bridges_certificate() -> None:
    (path,) = SOURCE.rglob("*.ecaGlblOauth-meta.xml")
    settings = parse(path)
    placeholder = text(settings, "md:certificate") or ""
    replacement = replacement_for(path, placeholder)
    # The JWT bearer flow is on when a certificate is given; a deploy without one stops with a message.
    assert replacement["replaceWithEnv"] == "CCAI_BRIDGE_CERTIFICATE"
    assert not replacement.get("allowUnsetEnvVariable")
    (policies,) = external_client_app_parts()["policies"]
    assert text(policies, "md:permittedUsersPolicyType") == "AdminApprovedPreAuthorized"
    permitted = (text(policies, "md:commaSeparatedPermissionSet") or "").split(",")
    for name in permitted:
        permission_set = parse(SOURCE / "permissionsets" / f"{name.strip()}.permissionset-meta.xml")
        enabled = texts(permission_set, "md:userPermissions[md:enabled='true']/md:name")
        assert "ApiEnabled" in enabled, name


def test_the_app_allows_client_credentials_run_as_the_integration_user() -> None:
    (global_path,) = SOURCE.rglob("*.ecaGlblOauth-meta.xml")
    assert text(parse(global_path), "md:isClientCredentialsFlowEnabled") == "true"
    (policies_path,) = SOURCE.rglob("*.ecaOauthPlcy-meta.xml")
    policies = parse(policies_path)
    assert text(policies, "md:isClientCredentialsFlowEnabled") == "true"
    run_as = replacement_for(policies_path, text(policies, "md:clientCredentialsFlowUser") or "")
    # The same user the outbound message is sent as: the integration user of step 1.
    workflow = SOURCE / "workflows" / "Case.workflow-meta.xml"
    sent_as = replacement_for(workflow, text(parse(workflow), "md:outboundMessages/md:integrationUser") or "")
    assert run_as["replaceWithEnv"] == sent_as["replaceWithEnv"] == "CCAI_BRIDGE_INTEGRATION_USERNAME"


def test_no_step_creates_a_connected_app() -> None:
    assert not list(SOURCE.rglob("*.connectedApp-meta.xml"))
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    assert not re.search(r"New Connected App|connected app credentials|Create the connected app", readme, re.IGNORECASE)
