"""The set-up side of the simulated org: what ``bridge salesforce setup`` reads and changes, answered
in the shapes Salesforce documents, as an org looks right after ``sf project deploy start``.

- REST: SOQL on ``User``, ``PermissionSet``, ``PermissionSetAssignment`` and ``Organization``;
  ``POST /sobjects/PermissionSetAssignment`` (201 ``{id, success, errors}``, 400 ``DUPLICATE_VALUE``).
- Connect REST: ``/named-credentials/credential`` (GET with ``externalCredential``, ``principalName``,
  ``principalType``; POST to create, PUT to replace; encrypted values never come back).
- Tooling: SOQL on ``WorkflowOutboundMessage``, ``FlowDefinition`` and ``FlowDefinitionView``; GET and
  PATCH ``/tooling/sobjects/WorkflowOutboundMessage/{id}`` (its ``Metadata``), PATCH
  ``/tooling/sobjects/FlowDefinition/{id}`` (``Metadata.activeVersionNumber``: 0 deactivates).

Only the admin's session may change set-up; the integration user gets ``INSUFFICIENT_ACCESS``, as a
user without "Customize Application" would.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bridge.crm.salesforce.ids import to18

OUTBOUND_MESSAGE = "CCAI_Bridge_Notify"
SEND_SMS_ACTION = "Send_SMS"
FLOWS = ("CCAI_Bridge_Text_Customer", "CCAI_Bridge_Publish_SMS_Request")
PERMISSION_SETS = ("CCAI_Bridge_Integration", "CCAI_Bridge_Agent", "CCAI_Platform_Integration")
_IN = r"\(\s*(?P<values>'[^']*'(?:\s*,\s*'[^']*')*)\s*\)"
_QUERIES = {
    "users": re.compile(rf"^SELECT\s+Id,\s*Username\s+FROM\s+User\s+WHERE\s+Username\s+IN\s*{_IN}\s*$", re.I),
    "permission_sets": re.compile(
        rf"^SELECT\s+Id,\s*Name\s+FROM\s+PermissionSet\s+WHERE\s+Name\s+IN\s*{_IN}\s*$", re.I
    ),
    "assignments": re.compile(
        rf"^SELECT\s+AssigneeId,\s*PermissionSetId\s+FROM\s+PermissionSetAssignment\s+WHERE\s+AssigneeId\s+IN\s*{_IN}\s*$",
        re.I,
    ),
    "organization": re.compile(r"^SELECT\s+Id\s+FROM\s+Organization\s*$", re.I),
    "outbound_messages": re.compile(
        r"^SELECT\s+Id,\s*Name(?P<metadata>,\s*Metadata)?\s+FROM\s+WorkflowOutboundMessage\s+"
        r"WHERE\s+Name\s*=\s*'(?P<name>[^']*)'\s*$",
        re.I,
    ),
    "flows": re.compile(
        rf"^SELECT\s+Id,\s*DeveloperName,\s*ActiveVersion\.VersionNumber,\s*LatestVersion\.VersionNumber\s+"
        rf"FROM\s+FlowDefinition\s+WHERE\s+DeveloperName\s+IN\s*{_IN}\s*$",
        re.I,
    ),
    "layouts": re.compile(r"^SELECT\s+Id,\s*Name\s+FROM\s+Layout\s+WHERE\s+TableEnumOrId\s*=\s*'Case'\s*$", re.I),
    "layout": re.compile(r"^SELECT\s+Id,\s*Metadata\s+FROM\s+Layout\s+WHERE\s+Id\s*=\s*'(?P<id>[^']*)'\s*$", re.I),
    "flow_views": re.compile(
        rf"^SELECT\s+ApiName,\s*IsActive\s+FROM\s+FlowDefinitionView\s+WHERE\s+ApiName\s+IN\s*{_IN}\s*$", re.I
    ),
}


def _id(prefix: str) -> str:
    return to18(prefix + "".join(secrets.choice("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(15 - len(prefix))))


@dataclass
class Flow:
    id: str
    latest_version: int = 1
    active_version: int = 0  # 0: no version is active


@dataclass
class SetupOrg:
    """An org with the SFDX project deployed: its users, permission sets, credentials, outbound
    message and Flows (inactive, as shipped)."""

    org_id: str
    admin_token: str = field(default_factory=lambda: "sandbox-admin-" + secrets.token_urlsafe(12))
    users: dict[str, str] = field(default_factory=dict)  # username -> Id
    permission_sets: dict[str, str] = field(default_factory=lambda: {name: _id("0PS5g") for name in PERMISSION_SETS})
    assignments: set[tuple[str, str]] = field(default_factory=set)  # (assignee Id, permission set Id)
    # (external credential, principal) -> authentication parameters (name -> value)
    credentials: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    outbound_message_id: str = field(default_factory=lambda: _id("04k5g"))
    outbound_message: dict[str, Any] = field(
        default_factory=lambda: {
            "apiVersion": 68.0,
            "description": "Tells the CCAI bridge to text this Case's customer.",
            "endpointUrl": "https://YOUR-BRIDGE-HOST/salesforce/outbound-message?token=REPLACE_WITH_BRIDGE_WEBHOOK_TOKEN",
            "fields": ["CCAI_SMS_Template__c", "Id"],
            "includeSessionId": False,
            "integrationUser": "bridge@sandbox.example",
            "name": "CCAI Bridge: text the customer",
            "protected": False,
            "useDeadLetterQueue": False,
        }
    )
    flows: dict[str, Flow] = field(default_factory=lambda: {name: Flow(_id("3005g")) for name in FLOWS})
    # Case page layouts: Id -> (name, the quick actions in its Lightning actions list)
    layouts: dict[str, tuple[str, list[str]]] = field(
        default_factory=lambda: {_id("00h5g"): ("Case Layout", ["Case.LogACall", "Case.ChangeStatus"])}
    )
    changes: list[str] = field(default_factory=list)  # what the admin changed, for tests

    @classmethod
    def configured(cls, org_id: str, *, integration_user: str, admin_token: str, endpoint: str) -> SetupOrg:
        """An org an admin has finished setting up: the integration user holds its permission set,
        the API key is in the External Credential, the outbound message points at the bridge and
        its Flow is the active trigger."""
        org = cls(org_id=org_id, admin_token=admin_token)
        user = org.add_user(integration_user)
        org.assignments.add((user, org.permission_sets["CCAI_Bridge_Integration"]))
        org.credentials[("CCAI_Bridge_Auth", "Bridge")] = {"ApiKey": "set"}
        org.outbound_message["endpointUrl"] = endpoint
        org.outbound_message["integrationUser"] = integration_user
        org.flows["CCAI_Bridge_Text_Customer"].active_version = 1
        for _name, actions in org.layouts.values():
            actions.append(f"Case.{SEND_SMS_ACTION}")
        return org

    def as_deployed(self) -> None:
        """Back to the state ``sf project deploy start`` leaves: nothing assigned, no key, the
        endpoint as deployed, both Flows inactive (the users and ids stay)."""
        fresh = SetupOrg(org_id=self.org_id, admin_token=self.admin_token, users=self.users)
        fresh.permission_sets = self.permission_sets
        fresh.outbound_message_id = self.outbound_message_id
        fresh.flows = {name: Flow(flow.id) for name, flow in self.flows.items()}
        fresh.layouts = {
            i: (name, [a for a in actions if a != f"Case.{SEND_SMS_ACTION}"])
            for i, (name, actions) in self.layouts.items()
        }
        self.__dict__.update(fresh.__dict__)

    def view(self) -> dict[str, Any]:
        """For ``/_sandbox/state``: what set-up looks like now (no secret values)."""
        names = {i: n for n, i in self.users.items()}
        sets = {i: n for n, i in self.permission_sets.items()}
        return {
            "assignments": sorted(f"{sets[p]}:{names.get(a, a)}" for a, p in self.assignments),
            "credentials": {f"{k[0]}/{k[1]}": sorted(v) for k, v in self.credentials.items()},
            "outbound_message_endpoint": self.outbound_message["endpointUrl"],
            "active_flows": self.active_flows(),
            "changes": list(self.changes),
        }

    def add_user(self, username: str) -> str:
        return self.users.setdefault(username, _id("0055g"))

    def holds(self, username: str, permission_set: str) -> bool:
        user = self.users.get(username)
        return user is not None and (user, self.permission_sets[permission_set]) in self.assignments

    def active_flows(self) -> list[str]:
        return [name for name, flow in self.flows.items() if flow.active_version]


def _records(kind: str, rows: list[dict[str, Any]], *, tooling: bool = False) -> dict[str, Any]:
    base = "/services/data/v68.0/tooling/sobjects" if tooling else "/services/data/v68.0/sobjects"
    records = [{"attributes": {"type": kind, "url": f"{base}/{kind}/{row.get('Id', '')}"}, **row} for row in rows]
    answer: dict[str, Any] = {"totalSize": len(records), "done": True, "records": records}
    if tooling:
        answer |= {"size": len(records), "entityTypeName": kind, "queryLocator": None}
    return answer


def _values(match: re.Match[str]) -> list[str]:
    return [value.strip().strip("'") for value in match["values"].split(",")]


def answer_query(org: SetupOrg, soql: str) -> dict[str, Any] | None:
    """The answer to a set-up query, or None when the query is not about set-up."""
    soql = " ".join(soql.split())
    matched = {name: pattern.match(soql) for name, pattern in _QUERIES.items()}
    rows: list[dict[str, Any]]
    if found := matched["users"]:
        wanted = _values(found)
        return _records("User", [{"Id": i, "Username": u} for u, i in org.users.items() if u in wanted])
    if found := matched["permission_sets"]:
        wanted = _values(found)
        rows = [{"Id": i, "Name": n} for n, i in org.permission_sets.items() if n in wanted]
        return _records("PermissionSet", rows)
    if found := matched["assignments"]:
        assignees = {to18(value) for value in _values(found)}
        rows = [{"AssigneeId": a, "PermissionSetId": p} for a, p in sorted(org.assignments) if a in assignees]
        return _records("PermissionSetAssignment", rows)
    if matched["organization"]:
        return _records("Organization", [{"Id": org.org_id}])
    if (found := matched["outbound_messages"]) is not None:
        rows = [{"Id": org.outbound_message_id, "Name": OUTBOUND_MESSAGE}] if found["name"] == OUTBOUND_MESSAGE else []
        if found["metadata"]:  # Tooling returns Metadata only for a query of one record, as here
            rows = [{**row, "Metadata": dict(org.outbound_message)} for row in rows]
        return _records("WorkflowOutboundMessage", rows, tooling=True)
    if found := matched["flows"]:
        rows = [
            {
                "Id": flow.id,
                "DeveloperName": name,
                "ActiveVersion": {"VersionNumber": flow.active_version} if flow.active_version else None,
                "LatestVersion": {"VersionNumber": flow.latest_version},
            }
            for name, flow in org.flows.items()
            if name in _values(found)
        ]
        return _records("FlowDefinition", rows, tooling=True)
    if matched["layouts"]:
        rows = [{"Id": i, "Name": name} for i, (name, _) in org.layouts.items()]
        return _records("Layout", rows, tooling=True)
    if found := matched["layout"]:
        layout = org.layouts.get(to18(found["id"]))
        items = [] if layout is None else layout[1]
        metadata = {
            "platformActionList": {
                "actionListContext": "Record",
                "platformActionListItems": [
                    {"actionName": name, "actionType": "QuickAction", "sortOrder": n} for n, name in enumerate(items)
                ],
            }
        }
        rows = [] if layout is None else [{"Id": to18(found["id"]), "Metadata": metadata}]
        return _records("Layout", rows, tooling=True)
    if found := matched["flow_views"]:
        rows = [
            {"ApiName": name, "IsActive": bool(flow.active_version)}
            for name, flow in org.flows.items()
            if name in _values(found)
        ]
        return _records("FlowDefinitionView", rows)
    return None


def _error(status: int, code: str, message: str, fields: list[str] | None = None) -> JSONResponse:
    return JSONResponse([{"message": message, "errorCode": code, "fields": fields or []}], status_code=status)


def setup_routes(org: SetupOrg, gate: Callable[[Request], Response | None]) -> list[Route]:
    """The set-up endpoints, behind the org's own session check (``gate``)."""

    def admin_only(request: Request) -> Response | None:
        if (refused := gate(request)) is not None:
            return refused
        if request.headers.get("authorization", "").removeprefix("Bearer ") != org.admin_token:
            return _error(403, "INSUFFICIENT_ACCESS", "insufficient access rights on cross-reference id")
        return None

    async def assign(request: Request) -> Response:
        if (refused := admin_only(request)) is not None:
            return refused
        body = await request.json()
        assignee, permission_set = to18(str(body.get("AssigneeId", ""))), to18(str(body.get("PermissionSetId", "")))
        if assignee not in org.users.values() or permission_set not in org.permission_sets.values():
            return _error(
                400, "FIELD_INTEGRITY_EXCEPTION", "field integrity exception: unknown (Assignee or Permission Set)"
            )
        if (assignee, permission_set) in org.assignments:
            return _error(400, "DUPLICATE_VALUE", "Duplicate PermissionSetAssignment. Assignee: " + assignee)
        org.assignments.add((assignee, permission_set))
        org.changes.append(f"assigned {permission_set} to {assignee}")
        return JSONResponse({"id": _id("0Pa5g"), "success": True, "errors": []}, status_code=201)

    async def credential(request: Request) -> Response:
        if (refused := admin_only(request)) is not None:
            return refused
        if request.method == "GET":
            params = request.query_params
            key = (params.get("externalCredential", ""), params.get("principalName", ""))
            if key[0] != "CCAI_Bridge_Auth" or key[1] != "Bridge":
                return _error(404, "NOT_FOUND", "The requested resource does not exist")
            stored = org.credentials.get(key, {})
            return JSONResponse(_credential_view(key, stored))
        body = await request.json()
        key = (str(body.get("externalCredential", "")), str(body.get("principalName", "")))
        if key != ("CCAI_Bridge_Auth", "Bridge") or body.get("principalType") != "NamedPrincipal":
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        values = {name: str(item.get("value", "")) for name, item in (body.get("credentials") or {}).items()}
        exists = key in org.credentials
        if request.method == "POST" and exists:
            return _error(400, "DUPLICATE_VALUE", "A credential for this principal already exists: use PUT")
        if request.method == "PUT" and not exists:
            return _error(404, "NOT_FOUND", "No credential for this principal: use POST")
        org.credentials[key] = values
        org.changes.append(f"credential {key[0]}/{key[1]}: {', '.join(sorted(values))}")
        return JSONResponse(_credential_view(key, values), status_code=201 if request.method == "POST" else 200)

    async def outbound_message(request: Request) -> Response:
        if (refused := (admin_only(request) if request.method == "PATCH" else gate(request))) is not None:
            return refused
        if to18(request.path_params["id"]) != org.outbound_message_id:
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        if request.method == "GET":
            return JSONResponse(
                {
                    "attributes": {"type": "WorkflowOutboundMessage"},
                    "Id": org.outbound_message_id,
                    "Name": OUTBOUND_MESSAGE,
                    "FullName": f"Case.{OUTBOUND_MESSAGE}",
                    "Metadata": dict(org.outbound_message),
                }
            )
        metadata = (await request.json()).get("Metadata")
        if not isinstance(metadata, dict) or not str(metadata.get("endpointUrl", "")).startswith("https://"):
            return _error(400, "FIELD_INTEGRITY_EXCEPTION", "Endpoint URL: must be an https URL", ["endpointUrl"])
        org.outbound_message = metadata
        org.changes.append(f"outbound message endpoint set ({len(metadata['endpointUrl'])} characters)")
        return Response(status_code=204)

    async def flow_definition(request: Request) -> Response:
        if (refused := admin_only(request)) is not None:
            return refused
        flow = next((f for f in org.flows.values() if f.id == to18(request.path_params["id"])), None)
        if flow is None:
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        version = ((await request.json()).get("Metadata") or {}).get("activeVersionNumber")
        if not isinstance(version, int) or not 0 <= version <= flow.latest_version:
            return _error(400, "FIELD_INTEGRITY_EXCEPTION", f"activeVersionNumber: no version {version!r}")
        flow.active_version = version
        name = next(n for n, f in org.flows.items() if f is flow)
        org.changes.append(f"flow {name} active version {version}")
        return Response(status_code=204)

    return [
        Route("/services/data/{version}/sobjects/PermissionSetAssignment", assign, methods=["POST"]),
        Route("/services/data/{version}/named-credentials/credential", credential, methods=["GET", "POST", "PUT"]),
        Route(
            "/services/data/{version}/tooling/sobjects/WorkflowOutboundMessage/{id}",
            outbound_message,
            methods=["GET", "PATCH"],
        ),
        Route("/services/data/{version}/tooling/sobjects/FlowDefinition/{id}", flow_definition, methods=["PATCH"]),
    ]


def _credential_view(key: tuple[str, str], values: dict[str, str]) -> dict[str, Any]:
    # Encrypted authentication parameters are never returned: only that they are set.
    return {
        "authenticationProtocol": "Custom",
        "authenticationStatus": "Configured" if values else "NotConfigured",
        "credentials": {name: {"encrypted": True, "value": None} for name in sorted(values)},
        "externalCredential": key[0],
        "principalName": key[1],
        "principalType": "NamedPrincipal",
    }
