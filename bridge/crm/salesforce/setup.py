"""``bridge salesforce setup``: what is left after ``sf project deploy start``, scripted.

Run with the admin's own session (an access token, e.g. from ``sf org display``), never the
integration user's: it changes set-up. Each step reads first and changes only what differs, so it
can run again at any time; a step that fails says why and the others still run.

1. Permission sets: *CCAI Bridge Integration* to the integration user, *CCAI Bridge Agent* to the
   agents named, *CCAI Platform Integration* to CCAI Platform's user when named (REST, SOQL on
   ``PermissionSetAssignment``, then ``POST /sobjects/PermissionSetAssignment``).
2. The External Credential principal's key: the ``ApiKey`` authentication parameter of *CCAI Bridge
   Auth* / *Bridge* set to one of the bridge's API keys (Connect REST ``/named-credentials/credential``).
3. The outbound message's endpoint: the bridge's public URL and webhook token (Tooling API,
   ``WorkflowOutboundMessage`` ``Metadata.endpointUrl``).
4. On request, the chosen trigger's Flow activated and the other one deactivated (Tooling API,
   ``FlowDefinition`` ``Metadata.activeVersionNumber``).

What it cannot do is the admin's: create the integration user, copy the External Client App's
consumer key (and secret) into the bridge's environment, and put the Send SMS action on the Case
page. ``bridge check`` verifies each of those.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, assert_never
from urllib.parse import quote

import httpx

from bridge.crm.salesforce.settings import SalesforceSettings
from bridge.errors import CRMError, UsageError
from bridge.settings import Settings

INTEGRATION_SET = "CCAI_Bridge_Integration"
AGENT_SET = "CCAI_Bridge_Agent"
PLATFORM_SET = "CCAI_Platform_Integration"
EXTERNAL_CREDENTIAL = "CCAI_Bridge_Auth"
PRINCIPAL = "Bridge"
OUTBOUND_MESSAGE = "CCAI_Bridge_Notify"
TRIGGER_FLOWS = {"outbound-message": "CCAI_Bridge_Text_Customer", "pubsub": "CCAI_Bridge_Publish_SMS_Request"}

Trigger = Literal["outbound-message", "pubsub"]
StepOutcome = Literal["done", "unchanged", "skipped", "failed"]


class SetupRefused(CRMError):
    """Salesforce refused a set-up call; the message has its errorCode and words."""


@dataclass(frozen=True)
class SetupPlan:
    integration_user: str
    agents: tuple[str, ...] = ()
    ccai_user: str | None = None
    api_key: str | None = None
    outbound_endpoint: str | None = None  # the full URL, token included
    activate: Trigger | None = None


@dataclass(frozen=True)
class StepResult:
    step: str
    outcome: StepOutcome
    detail: str


class AdminSession:
    """The admin's REST session: JSON in and out, Salesforce's errors as :class:`SetupRefused`."""

    def __init__(self, *, instance_url: str, access_token: str, api_version: str, client: httpx.Client) -> None:
        self._base = f"{instance_url.rstrip('/')}/services/data/v{api_version}"
        self._headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
        self._client = client

    def query(self, soql: str, *, tooling: bool = False) -> list[dict[str, Any]]:
        path = "/tooling/query/" if tooling else "/query/"
        answer = self.call("GET", f"{path}?q={quote(soql)}")
        records: list[dict[str, Any]] = answer.get("records", []) if isinstance(answer, dict) else []
        return records

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self._client.request(method, self._base + path, json=body, headers=self._headers)
        except httpx.HTTPError as exc:
            raise SetupRefused(f"Salesforce could not be reached ({type(exc).__name__}).") from exc
        if response.status_code >= 400:
            raise SetupRefused(_refusal(response))
        return response.json() if response.content else None


def _refusal(response: httpx.Response) -> str:
    try:
        errors = response.json()
    except ValueError:
        return f"Salesforce answered HTTP {response.status_code}."
    first = errors[0] if isinstance(errors, list) and errors else errors
    if isinstance(first, dict):
        return f"{first.get('errorCode', 'HTTP ' + str(response.status_code))}: {first.get('message', '')}".strip()
    return f"Salesforce answered HTTP {response.status_code}."


def run_setup(session: AdminSession, plan: SetupPlan) -> list[StepResult]:
    results = assign_permission_sets(session, plan)
    results.append(_guarded("API key", lambda: set_api_key(session, plan.api_key)))
    results.append(_guarded("Outbound message", lambda: point_outbound_message(session, plan.outbound_endpoint)))
    results.append(_guarded("Trigger", lambda: activate_trigger(session, plan.activate)))
    return results


def _guarded(step: str, run: Callable[[], StepResult]) -> StepResult:
    try:
        result: StepResult = run()
    except SetupRefused as exc:
        return StepResult(step, "failed", str(exc))
    return result


def _quoted(values: Sequence[str]) -> str:
    return ", ".join("'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'" for value in values)


def assign_permission_sets(session: AdminSession, plan: SetupPlan) -> list[StepResult]:
    wanted = [(plan.integration_user, INTEGRATION_SET), *((agent, AGENT_SET) for agent in plan.agents)]
    if plan.ccai_user:
        wanted.append((plan.ccai_user, PLATFORM_SET))
    try:
        users = {
            r["Username"].lower(): r["Id"]
            for r in session.query(
                f"SELECT Id, Username FROM User WHERE Username IN ({_quoted([u for u, _ in wanted])})"  # noqa: S608
            )
        }
        sets = {
            r["Name"]: r["Id"]
            for r in session.query(
                f"SELECT Id, Name FROM PermissionSet WHERE Name IN ({_quoted(sorted({s for _, s in wanted}))})"  # noqa: S608
            )
        }
        held = (
            {
                (r["AssigneeId"], r["PermissionSetId"])
                for r in session.query(
                    "SELECT AssigneeId, PermissionSetId FROM PermissionSetAssignment "  # noqa: S608
                    f"WHERE AssigneeId IN ({_quoted(sorted(users.values()))})"
                )
            }
            if users
            else set()
        )
    except SetupRefused as exc:
        return [StepResult("Permission sets", "failed", str(exc))]
    results = []
    for username, permission_set in wanted:
        step = f"{permission_set} for {username}"
        user, set_id = users.get(username.lower()), sets.get(permission_set)
        if user is None:
            results.append(StepResult(step, "failed", f"there is no user {username} in this org"))
        elif set_id is None:
            results.append(
                StepResult(step, "failed", f"the permission set {permission_set} is not deployed (deploy salesforce/)")
            )
        elif (user, set_id) in held:
            results.append(StepResult(step, "unchanged", "already assigned"))
        else:
            try:
                session.call(
                    "POST", "/sobjects/PermissionSetAssignment", {"AssigneeId": user, "PermissionSetId": set_id}
                )
            except SetupRefused as exc:
                results.append(StepResult(step, "failed", str(exc)))
            else:
                results.append(StepResult(step, "done", "assigned"))
    return results


def set_api_key(session: AdminSession, api_key: str | None) -> StepResult:
    step = f"API key ({EXTERNAL_CREDENTIAL} / {PRINCIPAL})"
    if not api_key:
        return StepResult(step, "skipped", "BRIDGE_API_KEY is not set: the Send SMS action has no key to send")
    current = session.call(
        "GET",
        f"/named-credentials/credential?externalCredential={EXTERNAL_CREDENTIAL}&principalName={PRINCIPAL}"
        "&principalType=NamedPrincipal",
    )
    body = {
        "externalCredential": EXTERNAL_CREDENTIAL,
        "authenticationProtocol": "Custom",
        "principalName": PRINCIPAL,
        "principalType": "NamedPrincipal",
        "credentials": {"ApiKey": {"value": api_key, "encrypted": True}},
    }
    # Encrypted values never come back, so the key is always written: PUT replaces, POST creates.
    exists = bool((current or {}).get("credentials"))
    session.call("PUT" if exists else "POST", "/named-credentials/credential", body)
    return StepResult(step, "done", "ApiKey " + ("replaced" if exists else "set"))


def point_outbound_message(session: AdminSession, endpoint: str | None) -> StepResult:
    step = f"Outbound message {OUTBOUND_MESSAGE}"
    if not endpoint:
        return StepResult(step, "skipped", "BRIDGE_PUBLIC_URL or BRIDGE_WEBHOOK_TOKEN is not set")
    found = session.query(
        f"SELECT Id, Name FROM WorkflowOutboundMessage WHERE Name = '{OUTBOUND_MESSAGE}'",  # noqa: S608
        tooling=True,
    )
    if not found:
        return StepResult(
            step, "failed", f"the outbound message {OUTBOUND_MESSAGE} is not deployed (deploy salesforce/)"
        )
    record = session.call("GET", f"/tooling/sobjects/WorkflowOutboundMessage/{found[0]['Id']}")
    metadata = dict(record["Metadata"])
    if metadata.get("endpointUrl") == endpoint:
        return StepResult(step, "unchanged", "already points at this bridge")
    metadata["endpointUrl"] = endpoint
    session.call(
        "PATCH",
        f"/tooling/sobjects/WorkflowOutboundMessage/{found[0]['Id']}",
        {"Metadata": metadata, "FullName": record.get("FullName", f"Case.{OUTBOUND_MESSAGE}")},
    )
    return StepResult(step, "done", "endpoint set to this bridge (token included)")


def activate_trigger(session: AdminSession, trigger: Trigger | None) -> StepResult:
    step = "Trigger"
    if trigger is None:
        return StepResult(step, "skipped", "no --activate: the Flows stay as they are")
    names = sorted(TRIGGER_FLOWS.values())
    flows = {
        r["DeveloperName"]: r
        for r in session.query(
            "SELECT Id, DeveloperName, ActiveVersion.VersionNumber, LatestVersion.VersionNumber "  # noqa: S608
            f"FROM FlowDefinition WHERE DeveloperName IN ({_quoted(names)})",
            tooling=True,
        )
    }
    chosen = TRIGGER_FLOWS[trigger]
    if chosen not in flows:
        return StepResult(step, "failed", f"the Flow {chosen} is not deployed (deploy salesforce/)")
    changed = []
    for name, record in flows.items():
        active = (record.get("ActiveVersion") or {}).get("VersionNumber") or 0
        latest = (record.get("LatestVersion") or {}).get("VersionNumber") or 0
        # Exactly one trigger: the chosen Flow's newest version on, the other off.
        wanted = latest if name == chosen else 0
        if active != wanted:
            session.call(
                "PATCH",
                f"/tooling/sobjects/FlowDefinition/{record['Id']}",
                {"Metadata": {"activeVersionNumber": wanted}},
            )
            changed.append(f"{name} {'activated (version ' + str(wanted) + ')' if wanted else 'deactivated'}")
    match trigger:
        case "outbound-message" | "pubsub":
            label = {"outbound-message": "the outbound message", "pubsub": "the platform event"}[trigger]
        case _:
            assert_never(trigger)
    if not changed:
        return StepResult(step, "unchanged", f"{chosen} is already the active trigger ({label})")
    return StepResult(step, "done", "; ".join(changed))


# -- the command ----------------------------------------------------------------------------------

MANUAL_STEPS = (
    "Create the integration user (Setup > Users; licence Salesforce Integration, profile Minimum Access - API "
    "Only Integrations) before deploying: bridge check logs in as it.",
    "Copy the External Client App's consumer key (and, for client credentials, its secret) into the bridge's "
    "SALESFORCE_CLIENT_ID (and SALESFORCE_CLIENT_SECRET): Setup > External Client App Manager > CCAI Bridge > "
    "Settings > OAuth Settings. bridge check logs in with them.",
    "Add the Send SMS action to the Case page layout (Object Manager > Case > Page Layouts > Mobile & Lightning "
    "Actions). bridge check says whether a layout has it.",
)


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], *, load_settings: Callable[[], Settings]
) -> None:
    """``bridge salesforce setup``; ``load_settings`` reads the bridge's settings when the command runs."""
    salesforce = commands.add_parser("salesforce", help="Salesforce set-up after deploying salesforce/")
    actions = salesforce.add_subparsers(required=True, metavar="ACTION")
    setup = actions.add_parser(
        "setup",
        help="assign the permission sets, set the Send SMS key, point the outbound message here, activate a trigger",
        description="Run with the admin's own session: SALESFORCE_ADMIN_ACCESS_TOKEN (for example from "
        "`sf org display --target-org <alias> --json`, result.accessToken). Every step reads first and changes "
        "only what differs, so it can run again.",
    )
    setup.add_argument(
        "--instance-url",
        default=os.environ.get("SALESFORCE_INSTANCE_URL", ""),
        help="the org's My Domain URL (default: SALESFORCE_INSTANCE_URL)",
    )
    setup.add_argument("--integration-user", required=True, metavar="USERNAME", help="the bridge's integration user")
    setup.add_argument("--agent", action="append", default=[], metavar="USERNAME", help="an agent who texts (repeat)")
    setup.add_argument("--ccai-user", metavar="USERNAME", help="CCAI Platform's own Salesforce user")
    setup.add_argument(
        "--activate", choices=sorted(TRIGGER_FLOWS), help="the trigger to activate (the other is deactivated)"
    )
    setup.add_argument("--json", action="store_true", help="print the steps as JSON")
    setup.set_defaults(handler=lambda args: _setup_command(args, load_settings()))


def _setup_command(args: argparse.Namespace, settings: Settings) -> int:
    token = os.environ.get("SALESFORCE_ADMIN_ACCESS_TOKEN", "")
    if not token:
        raise UsageError(
            "SALESFORCE_ADMIN_ACCESS_TOKEN is not set: this command runs with an admin's own session, e.g. export "
            "SALESFORCE_ADMIN_ACCESS_TOKEN=$(sf org display --target-org <alias> --json | jq -r .result.accessToken)"
        )
    if not args.instance_url.startswith("https://"):
        raise UsageError("--instance-url (or SALESFORCE_INSTANCE_URL) must be the org's https:// My Domain URL.")
    crm = settings.crm
    if not isinstance(crm, SalesforceSettings):
        raise UsageError("BRIDGE_CRM is not salesforce.")
    webhook = crm.webhook_token[0].get_secret_value() if crm.webhook_token else ""
    endpoint = (
        f"{settings.bridge_public_url}/salesforce/outbound-message?token={quote(webhook, safe='')}"
        if settings.bridge_public_url and webhook
        else None
    )
    plan = SetupPlan(
        integration_user=args.integration_user,
        agents=tuple(args.agent),
        ccai_user=args.ccai_user,
        api_key=settings.bridge_api_key[0].get_secret_value() if settings.bridge_api_key else None,
        outbound_endpoint=endpoint,
        activate=args.activate,
    )
    verify: str | bool = crm.ca_bundle or True
    with httpx.Client(timeout=crm.timeout_seconds, verify=verify) as client:
        session = AdminSession(
            instance_url=args.instance_url, access_token=token, api_version=crm.api_version, client=client
        )
        results = run_setup(session, plan)
    if args.json:
        print(json.dumps({"steps": [asdict(r) for r in results], "manual": list(MANUAL_STEPS)}, indent=2))
    else:
        for result in results:
            print(f"{result.outcome:<9} {result.step}: {result.detail}")
        print("\nLeft to you (bridge check verifies each):")
        print("\n".join(f"  {n}. {step}" for n, step in enumerate(MANUAL_STEPS, start=1)))
    return 1 if any(result.outcome == "failed" for result in results) else 0
