"""A simulated Salesforce org: the slice of the REST API the bridge uses, answered like Salesforce.

SOQL is understood only in the shape the bridge sends (``SELECT ... FROM Case WHERE Id IN (...)``);
unknown fields get ``INVALID_FIELD`` as in a real org. Every call is counted, so tests can hold
the bridge to its API budget, and ``/_sandbox/control`` injects outages, slow answers and expired
sessions. Its Pub/Sub API (:mod:`bridge.sandbox.pubsub`), when it runs one, is driven through ``/_sandbox/pubsub``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.crm.salesforce.ids import is_record_id, to18
from bridge.sandbox._login import oauth_token, soap_login
from bridge.sandbox.cases import SANDBOX_ORG_ID
from bridge.sandbox.pubsub import PubSubServer
from bridge.sandbox.salesforce_setup import SetupOrg, answer_query, setup_routes

logger = logging.getLogger(__name__)

CASE_FIELDS = frozenset(
    {
        "Id",
        "CaseNumber",
        "Subject",
        "Status",
        "Description",
        "ContactMobile",
        "ContactPhone",
        "ContactEmail",
        "Owner.Type",
        "Owner.Name",
        "Owner.Email",
        "Owner.FirstName",
        "Account.Name",
        "ContactId",
        "Contact.FirstName",
        "Contact.LastName",
        "Contact.DoNotCall",
        "Contact.CCAI_SMS_Opt_Out__c",
        "Contact.Time_Zone__c",
        "CCAI_Chat_Id__c",
        "CCAI_SMS_Status__c",
        "CCAI_SMS_Error__c",
        "CCAI_Chat_Status__c",
        "CCAI_Chat_Agent__c",
        "CCAI_Chat_Ended_At__c",
        "CCAI_Chat_Outcome__c",
        "CCAI_SMS_Template__c",
        "SMS_Message__c",
    }
)
CONTACT_FIELDS = frozenset(f.split(".", 1)[1] for f in CASE_FIELDS if f.startswith("Contact."))
TASK_FIELDS = frozenset({"WhatId", "Subject", "Status", "Priority", "ActivityDate", "Description", "OwnerId"})
_SOQL = re.compile(r"^SELECT\s+(?P<fields>.+?)\s+FROM\s+Case\s+WHERE\s+Id\s+IN\s+\((?P<ids>[^)]*)\)\s*$", re.I | re.S)
_TASK_SOQL = re.compile(
    r"^SELECT\s+(?P<fields>.+?)\s+FROM\s+Task\s+WHERE\s+WhatId\s+IN\s+\((?P<ids>[^)]*)\)(?:\s+AND\s+.*)?$", re.I | re.S
)
_REFERENCE = re.compile(r"@\{(?P<ref>[A-Za-z0-9_]+)\.(?P<field>[A-Za-z0-9_]+)\}")


@dataclass
class SalesforceSimulator:
    access_token: str
    clients: dict[str, str] = field(default_factory=dict)  # OAuth client id -> secret
    jwt_keys: dict[str, str] = field(default_factory=dict)  # OAuth client id -> PEM public key
    users: dict[str, str] = field(default_factory=dict)  # username -> password + security token
    valid_tokens: set[str] = field(default_factory=set)
    logins: list[str] = field(default_factory=list)
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    fail_next: list[dict[str, Any]] = field(default_factory=list)
    # One-shot delays, {"path": part of a path, "seconds": N}: the next matching call is answered
    # (normally) N seconds late, e.g. a composite write that takes long to commit.
    slow_next: list[dict[str, Any]] = field(default_factory=list)
    next_task: int = 1
    # The org's set-up (users, permission sets, credentials, outbound message, Flows), as an admin left it.
    setup: SetupOrg = field(default_factory=lambda: sandbox_setup())

    def __post_init__(self) -> None:
        self.valid_tokens.add(self.access_token)
        self.valid_tokens.add(self.setup.admin_token)

    def issue_token(self, how: str) -> str:
        token = secrets.token_urlsafe(24)
        self.valid_tokens.add(token)
        self.logins.append(how)
        return token

    def add_cases(self, cases: Iterable[dict[str, Any]]) -> None:
        for case in cases:
            self.cases[to18(case["Id"])] = {**case, "Id": to18(case["Id"])}


SANDBOX_ADMIN_TOKEN = "sandbox-admin-access-token"  # noqa: S105 - the admin session for `bridge salesforce setup`
SANDBOX_INTEGRATION_USER = "bridge@sandbox.example"


def sandbox_setup() -> SetupOrg:
    """The sandbox org as an admin leaves it after set-up, so that ``bridge check`` passes against it
    (``/_sandbox/control`` ``{"setup": "as_deployed"}`` goes back to right after the deploy)."""
    return SetupOrg.configured(
        SANDBOX_ORG_ID,
        integration_user=SANDBOX_INTEGRATION_USER,
        admin_token=SANDBOX_ADMIN_TOKEN,
        endpoint="https://bridge.sandbox.example/salesforce/outbound-message?token=sandbox",
    )


def _errors(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse([{"message": message, "errorCode": code}], status_code=status)


_CANONICAL = {name.lower(): name for name in CASE_FIELDS}


def _nested(case: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    record: dict[str, Any] = {"attributes": {"type": "Case", "url": f"/services/data/v61.0/sobjects/Case/{case['Id']}"}}
    for name in fields:
        relation, _, child = name.partition(".")
        if not child:
            record[name] = case.get(name)
            continue
        related = {k.split(".", 1)[1]: v for k, v in case.items() if k.startswith(relation + ".")}
        if not any(v is not None for v in related.values()):
            record[relation] = None
            continue
        holder = record.setdefault(relation, {"attributes": {"type": case.get(f"{relation}.Type") or relation}})
        holder[child] = case.get(name)
    return record


def create_salesforce_app(sim: SalesforceSimulator, *, pubsub: PubSubServer | None = None) -> Starlette:
    def gate(request: Request) -> Response | None:
        sim.calls.append(
            {
                "method": request.method,
                "path": request.url.path,
                "auto_assign": request.headers.get("sforce-auto-assign"),
            }
        )
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in sim.valid_tokens:
            return _errors(401, "INVALID_SESSION_ID", "Session expired or invalid")
        # A fault may name part of a path ("composite", "query") to hit only those calls.
        for index, fault in enumerate(sim.fail_next):
            if fault.get("path", "") in request.url.path:
                del sim.fail_next[index]
                return _errors(int(fault.get("status", 503)), fault.get("code", "SERVER_UNAVAILABLE"), "Injected fault")
        return None

    async def slow(request: Request) -> None:
        for index, delay in enumerate(sim.slow_next):
            if delay.get("path", "") in request.url.path:
                del sim.slow_next[index]
                await asyncio.sleep(float(delay.get("seconds", 0)))
                return

    async def query(request: Request) -> Response:
        if (refused := gate(request)) is not None:
            return refused
        await slow(request)
        soql = request.query_params.get("q", "")
        if (answer := answer_query(sim.setup, soql)) is not None:
            return JSONResponse(answer)
        if tasks := _TASK_SOQL.match(soql):
            cases = {to18(i.strip().strip("'\"")) for i in tasks["ids"].split(",") if i.strip()}
            found = [
                {
                    "attributes": {"type": "Task"},
                    "Id": t["Id"],
                    "WhatId": t.get("WhatId"),
                    "Description": t.get("Description"),
                }
                for t in sim.tasks
                if t.get("WhatId") in cases
            ]
            return JSONResponse({"totalSize": len(found), "done": True, "records": found})
        match = _SOQL.match(soql)
        if not match:
            return _errors(400, "MALFORMED_QUERY", "The sandbox understands SELECT ... FROM Case WHERE Id IN (...)")
        # Field names are case-insensitive in SOQL; records carry each field's own spelling.
        fields = [_CANONICAL.get(f.strip().lower(), f.strip()) for f in match["fields"].split(",")]
        unknown = [f for f in fields if f not in CASE_FIELDS]
        if unknown:
            return _errors(400, "INVALID_FIELD", f"No such column '{unknown[0]}' on entity 'Case'.")
        if len({f.lower() for f in fields}) < len(fields):  # as Salesforce: a field named twice, in any case
            twice = next(f for i, f in enumerate(fields) if f.lower() in {g.lower() for g in fields[:i]})
            return _errors(400, "MALFORMED_QUERY", f"duplicate field selected: {twice}")
        ids = [to18(i.strip().strip("'\"")) for i in match["ids"].split(",") if i.strip()]
        records = [_nested(sim.cases[i], fields) for i in ids if i in sim.cases]
        return JSONResponse({"totalSize": len(records), "done": True, "records": records})

    async def collections(request: Request) -> Response:
        if (refused := gate(request)) is not None:
            return refused
        body = await request.json()
        return JSONResponse([_apply(sim, request.method, record) for record in body.get("records", [])])

    async def composite(request: Request) -> Response:
        if (refused := gate(request)) is not None:
            return refused
        await slow(request)
        body = await request.json()
        subrequests = sim.calls[-1].setdefault("subrequests", [])
        answers = []
        results_by_ref: dict[str, Any] = {}
        for sub in body.get("compositeRequest", []):
            url = _resolve(sub.get("url", ""), results_by_ref)
            path = urlsplit(url).path
            headers = {k.lower(): v for k, v in (sub.get("httpHeaders") or {}).items()}
            subrequests.append(
                {"method": sub.get("method"), "path": path, "auto_assign": headers.get("sforce-auto-assign")}
            )
            reference = sub.get("referenceId")
            if path.endswith("/composite/sobjects") and sub.get("method") in ("PATCH", "POST"):
                records = sub.get("body", {}).get("records", [])
                if any("CCAI_Chat_Status__c" in record for record in records):
                    sim.calls[-1]["chat"] = True  # a chat sync write, counted apart by the benchmarks
                results = [_apply(sim, sub["method"], record) for record in records]
                answers.append({"body": results, "httpHeaders": {}, "httpStatusCode": 200, "referenceId": reference})
            elif (single := _sobject(path)) is not None:
                status, result = _single(sim, sub.get("method", "GET"), *single, sub.get("body") or {})
                results_by_ref[str(reference)] = result
                answers.append({"body": result, "httpHeaders": {}, "httpStatusCode": status, "referenceId": reference})
            else:
                refusal = [{"errorCode": "NOT_FOUND", "message": f"The sandbox does not serve {path} in composite"}]
                answers.append(
                    {"body": refusal, "httpHeaders": {}, "httpStatusCode": 404, "referenceId": sub.get("referenceId")}
                )
        return JSONResponse({"compositeResponse": answers})

    async def state(_request: Request) -> Response:
        return JSONResponse(
            {
                "cases": sim.cases,
                "tasks": sim.tasks,
                "calls": sim.calls,
                "logins": sim.logins,
                "setup": sim.setup.view(),
            }
        )

    async def describe(request: Request) -> Response:
        if (refused := gate(request)) is not None:
            return refused
        name = request.path_params["sobject"]
        if name not in ("Case", "Task", "Contact"):
            return _errors(404, "NOT_FOUND", f"The requested resource does not exist: {name}")
        return JSONResponse({"name": name, "fields": _describe_fields(name)})

    async def control(request: Request) -> Response:
        changes = await request.json()
        sim.fail_next.extend(changes.get("fail_next", []))
        sim.slow_next.extend(changes.get("slow_next", []))
        if changes.get("expire_tokens"):
            sim.valid_tokens.clear()
        sim.add_cases(changes.get("cases", []))
        if changes.get("setup") == "as_deployed":
            sim.setup.as_deployed()
        for username in changes.get("users", []):
            sim.setup.add_user(username)
        return JSONResponse({"ok": True})

    async def pubsub_control(request: Request) -> Response:
        if pubsub is None:
            return JSONResponse({"error": "This sandbox runs no Pub/Sub API."}, status_code=404)
        if request.method == "GET":
            return JSONResponse(pubsub.state())
        return JSONResponse(await pubsub.control(await request.json()))

    return Starlette(
        middleware=[Middleware(_LimitInfo, sim=sim)],
        routes=[
            *setup_routes(sim.setup, gate),
            Route("/services/data/{version}/query/", query),
            Route("/services/data/{version}/tooling/query/", query),
            Route("/services/data/{version}/query", query),
            Route("/services/data/{version}/composite/sobjects", collections, methods=["PATCH", "POST"]),
            Route("/services/data/{version}/composite", composite, methods=["POST"]),
            Route("/services/data/{version}/sobjects/{sobject}/describe/", describe),
            Route("/services/oauth2/token", partial(oauth_token, sim), methods=["POST"]),
            Route("/services/Soap/u/{version}", partial(soap_login, sim), methods=["POST"]),
            Route("/_sandbox/state", state),
            Route("/_sandbox/control", control, methods=["POST"]),
            Route("/_sandbox/pubsub", pubsub_control, methods=["GET", "POST"]),
        ],
    )


class _LimitInfo:
    """Adds ``Sforce-Limit-Info`` to REST answers, as Salesforce does (one call counted per request)."""

    def __init__(self, app: ASGIApp, *, sim: SalesforceSimulator) -> None:
        self.app = app
        self.sim = sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/services/data/"):
            await self.app(scope, receive, send)
            return

        async def send_with_usage(message: Message) -> None:
            if message["type"] == "http.response.start":
                usage = f"api-usage={len(self.sim.calls)}/100000".encode()
                message = {**message, "headers": [*message.get("headers", []), (b"sforce-limit-info", usage)]}
            await send(message)

        await self.app(scope, receive, send_with_usage)


def _apply(sim: SalesforceSimulator, method: str, record: dict[str, Any]) -> dict[str, Any]:
    kind = record.get("attributes", {}).get("type")
    values = {k: v for k, v in record.items() if k not in ("attributes", "id")}
    allowed = CASE_FIELDS if kind == "Case" else TASK_FIELDS
    unknown = [k for k in values if k not in allowed]
    if unknown:
        return _failure("INVALID_FIELD", f"No such column '{unknown[0]}' on sobject of type {kind}")
    if method == "PATCH" and kind == "Case":
        case_id = str(record.get("id", ""))
        if not is_record_id(case_id) or to18(case_id) not in sim.cases:
            return _failure("ENTITY_IS_DELETED", "entity is deleted")
        sim.cases[to18(case_id)].update(values)
        logger.info("sandbox Salesforce: Case %s updated: %s", case_id, values)
        return {"id": to18(case_id), "success": True, "errors": []}
    if method == "PATCH" and kind == "Task":
        task = next((t for t in sim.tasks if t["Id"] == record.get("id")), None)
        if task is None:
            return _failure("ENTITY_IS_DELETED", "entity is deleted")
        task.update(values)
        return {"id": task["Id"], "success": True, "errors": []}
    if method == "POST" and kind == "Task":
        task_id = to18(f"00T5g{sim.next_task:010d}")
        sim.next_task += 1
        sim.tasks.append({"Id": task_id, **values})
        return {"id": task_id, "success": True, "errors": []}
    return _failure("INVALID_TYPE", f"The sandbox does not {method} {kind}")


def _resolve(url: str, results: dict[str, Any]) -> str:
    """Composite references, ``@{ref.Field}``, replaced by an earlier subrequest's answer."""

    def value(match: re.Match[str]) -> str:
        result = results.get(match["ref"])
        return str(result.get(match["field"]) if isinstance(result, dict) else None)

    return _REFERENCE.sub(value, url)


def _sobject(path: str) -> tuple[str, str] | None:
    parts = path.rstrip("/").split("/")
    if len(parts) >= 3 and parts[-3] == "sobjects":
        return parts[-2], parts[-1]
    return None


def _single(sim: SalesforceSimulator, method: str, kind: str, record_id: str, body: dict[str, Any]) -> tuple[int, Any]:
    """One record by id: GET a Case (its ContactId), PATCH a Contact (through the Cases that name it)."""
    if kind == "Case" and method == "GET" and is_record_id(record_id) and to18(record_id) in sim.cases:
        case = sim.cases[to18(record_id)]
        return 200, {"attributes": {"type": "Case"}, "Id": case["Id"], "ContactId": case.get("ContactId")}
    if kind == "Contact" and method == "PATCH" and is_record_id(record_id):
        unknown = [k for k in body if k not in CONTACT_FIELDS]
        if unknown:
            return 400, [{"errorCode": "INVALID_FIELD", "message": f"No such column '{unknown[0]}' on Contact"}]
        linked = [c for c in sim.cases.values() if c.get("ContactId") and to18(c["ContactId"]) == to18(record_id)]
        if not linked:
            return 404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
        for case in linked:
            case.update({f"Contact.{k}": v for k, v in body.items()})
        logger.info("sandbox Salesforce: Contact %s updated: %s", record_id, body)
        return 204, None
    return 404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]


def _failure(code: str, message: str) -> dict[str, Any]:
    return {"success": False, "errors": [{"statusCode": code, "message": message, "fields": []}]}


_RELATIONSHIPS = {
    "Owner": ("OwnerId", ["Group", "User"]),
    "Account": ("AccountId", ["Account"]),
    "Contact": ("ContactId", ["Contact"]),
}


# Field types and picklists of the fields the SFDX project (salesforce/) deploys, as describe shows them.
_TYPES = {"CCAI_SMS_Status__c": "picklist", "CCAI_Chat_Ended_At__c": "datetime", "Status": "picklist"}
_PICKLISTS = {
    ("Case", "CCAI_SMS_Status__c"): ["Sent", "Failed", "Skipped", "Unknown", "Opted Out", "Scheduled"],
    ("Task", "Status"): ["Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred"],
}


def _describe_fields(name: str) -> list[dict[str, Any]]:
    if name == "Case":
        names = sorted(f for f in CASE_FIELDS if "." not in f)
    elif name == "Contact":
        names = sorted({"Id", *CONTACT_FIELDS})
    else:
        names = sorted(TASK_FIELDS | {"Id"})
    fields: list[dict[str, Any]] = [
        {
            "name": f,
            "type": _TYPES.get(f, "boolean" if f in ("DoNotCall", "CCAI_SMS_Opt_Out__c") else "string"),
            "updateable": f not in ("Id", "CaseNumber"),
            "createable": f != "Id",
            "relationshipName": None,
            "referenceTo": [],
            "picklistValues": [{"value": v, "active": True} for v in _PICKLISTS.get((name, f), [])],
        }
        for f in names
    ]
    if name == "Case":
        fields += [
            {
                "name": field_name,
                "type": "reference",
                "updateable": True,
                "relationshipName": relation,
                "referenceTo": targets,
            }
            for relation, (field_name, targets) in _RELATIONSHIPS.items()
        ]
    return fields
