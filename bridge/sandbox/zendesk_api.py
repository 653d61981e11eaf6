"""The REST endpoints of the simulated Zendesk account (see ``zendesk.py`` for what they answer)."""

from __future__ import annotations

import asyncio
import base64
import copy
import hmac
import logging
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bridge.sandbox import zendesk_triggers as triggers
from bridge.sandbox._faults import CutResponse
from bridge.sandbox.zendesk import ZendeskSimulator
from bridge.sandbox.zendesk_account import stamp, ticket_field_json, user_field_json
from bridge.sandbox.zendesk_webhooks import new_signing_secret, new_ulid

logger = logging.getLogger(__name__)

CONFLICT = {
    "error": "UpdateConflict",
    "description": "Safe Update prevented the update due to outdated ticket data. "
    "Please fetch the latest ticket data and try again.",
}
TICKET_UPDATE_LIMIT = "Rate limit for ticket updates exceeded, please wait before updating this ticket again"
_UNAUTHENTICATED = {"error": "Couldn't authenticate you"}
_FORBIDDEN = {
    "error": "Forbidden",
    "description": "You do not have access to this page. Please contact the account owner of this help desk for "
    "further help.",
}
_NOT_FOUND = {"error": "RecordNotFound", "description": "Not found"}
# Assumed wording: the docs say only that the body "details the reason".
_RATE_LIMITED = {"error": "APIRateLimitExceeded", "description": "Number of allowed API requests per minute exceeded"}
_WEBHOOK_REQUIRED = ("name", "endpoint", "http_method", "request_format", "status", "subscriptions")


def _error(status: int, content: Mapping[str, Any], **headers: str) -> JSONResponse:
    return JSONResponse(dict(content), status_code=status, headers=headers)


def _record_invalid(field_name: str, description: str) -> JSONResponse:
    details = {field_name: [{"description": description, "error": "InvalidValue"}]}
    return _error(422, {"error": "RecordInvalid", "description": "Record validation errors", "details": details})


class ZendeskApi:
    """The REST endpoints; every one passes :meth:`gate` (auth, limits, faults) first."""

    def __init__(self, sim: ZendeskSimulator) -> None:
        self.sim = sim

    async def gate(self, request: Request, *, admin: bool = False) -> tuple[dict[str, Any] | None, Response | None]:
        sim = self.sim
        call = {"method": request.method, "path": request.url.path, "at": sim.clock()}
        sim.calls.append(call)
        user = self._authenticate(request.headers.get("authorization", ""))
        if user is None:
            call["status"] = 401
            return None, _error(401, _UNAUTHENTICATED)
        admitted, remaining, reset = sim.admit()
        request.state.limit = (remaining, reset)
        if not admitted:
            call["status"] = 429
            refusal = {
                "error": "APIRateLimitExceeded",
                "description": "Number of allowed API requests per minute exceeded",
            }
            return None, _error(429, refusal, **{"Retry-After": str(reset)})
        if sim.latency:
            await asyncio.sleep(sim.latency)
        if sim.clock() < sim.outage_until:
            call["status"] = sim.outage_status
            return None, _error(sim.outage_status, {"error": "ServiceUnavailable", "description": "Injected outage"})
        for index, fault in enumerate(sim.fail_next):
            if fault.get("path", "") in request.url.path and fault.get("method", request.method) == request.method:
                del sim.fail_next[index]
                status = int(fault.get("status", 503))
                call["status"] = status
                extra = {"Retry-After": str(fault["retry_after"])} if "retry_after" in fault else {}
                return None, _error(status, {"error": "InjectedFault", "description": "Injected fault"}, **extra)
        if admin and user["role"] != "admin":
            call["status"] = 403
            return None, _error(403, _FORBIDDEN)
        call["status"] = 200
        return user, None

    def _authenticate(self, header: str) -> dict[str, Any] | None:
        sim = self.sim
        scheme, _, credentials = header.partition(" ")
        user_id: int | None = None
        if scheme.lower() == "bearer":
            user_id = next((u for t, u in sim.oauth_tokens.items() if hmac.compare_digest(t, credentials)), None)
        elif scheme.lower() == "basic":
            try:
                login, _, secret = base64.b64decode(credentials, validate=True).decode().partition(":")
            except ValueError:
                return None
            email, _, kind = login.rpartition("/")
            # Only API tokens: Zendesk no longer accepts passwords on the API.
            if kind != "token" or not hmac.compare_digest(sim.api_tokens.get(email, "\0"), secret):
                return None
            user_id = next((u["id"] for u in sim.users.values() if u.get("email") == email), None)
        user = sim.user(user_id)
        if user is None or user["role"] == "end-user" or user.get("suspended"):
            return None
        return user

    # -- tickets ----------------------------------------------------------------------------

    async def show_ticket(self, request: Request) -> Response:
        _, refused = await self.gate(request)
        if refused is not None:
            return refused
        ticket = self.sim.tickets.get(request.path_params["ticket_id"])
        if ticket is None:
            return _error(404, _NOT_FOUND)
        return JSONResponse({"ticket": ticket, **self._sideload(request, [ticket])})

    async def show_many_tickets(self, request: Request) -> Response:
        _, refused = await self.gate(request)
        if refused is not None:
            return refused
        ids = _ids(request.query_params.get("ids", ""))
        if ids is None:
            return _error(400, {"error": "InvalidParameter", "description": "ids must be up to 100 ticket ids"})
        found = [self.sim.tickets[i] for i in ids if i in self.sim.tickets]
        return JSONResponse({"tickets": found, **self._sideload(request, found), **_page(len(found))})

    def _sideload(self, request: Request, tickets: list[dict[str, Any]]) -> dict[str, Any]:
        included = request.query_params.get("include", "").split(",")
        if "users" not in included:
            return {}
        wanted = {t.get(k) for t in tickets for k in ("requester_id", "submitter_id", "assignee_id")}
        return {"users": [u for i, u in self.sim.users.items() if i in wanted]}

    async def update_ticket(self, request: Request) -> Response:
        user, refused = await self.gate(request)
        if refused is not None or user is None:
            return refused or _error(401, _UNAUTHENTICATED)
        sim = self.sim
        ticket = sim.tickets.get(request.path_params["ticket_id"])
        if ticket is None:
            return _error(404, _NOT_FOUND)
        try:
            changes = (await request.json())["ticket"]
        except (ValueError, KeyError, TypeError):
            return _error(400, {"error": "InvalidValue", "description": 'The body must be {"ticket": {...}}'})
        if not isinstance(changes, dict):
            return _error(400, {"error": "InvalidValue", "description": 'The body must be {"ticket": {...}}'})
        if ticket["status"] == "closed":
            return _record_invalid("status", "Status: closed prevents ticket update")
        if changes.get("safe_update"):
            if not changes.get("updated_stamp"):
                return _record_invalid("updated_stamp", "updated_stamp is required with safe_update (sandbox)")
            if sim.conflict_next > 0:
                sim.conflict_next -= 1
                sim.change_ticket(ticket, {"priority": "high" if ticket["priority"] != "high" else "normal"}, user)
            if changes["updated_stamp"] != ticket["updated_at"]:
                sim.calls[-1]["status"] = 409
                return _error(409, CONFLICT)
        if not sim.may_update(int(user["id"]), int(ticket["id"])):
            sim.calls[-1]["status"] = 429
            return Response(
                TICKET_UPDATE_LIMIT, status_code=429, headers={"Retry-After": "60"}, media_type="text/plain"
            )
        audit = sim.change_ticket(ticket, changes, user)
        logger.info("sandbox Zendesk: ticket %s updated", ticket["id"])
        answer = JSONResponse({"ticket": ticket, "audit": audit})
        if sim.lose_update_answer > 0:
            sim.lose_update_answer -= 1
            return CutResponse(promised=len(answer.body))
        return answer

    async def ticket_comments(self, request: Request) -> Response:
        _, refused = await self.gate(request)
        if refused is not None:
            return refused
        ticket_id = request.path_params["ticket_id"]
        if ticket_id not in self.sim.tickets:
            return _error(404, _NOT_FOUND)
        found = self.sim.comments.get(ticket_id, [])
        return JSONResponse({"comments": found, **_page(len(found))})

    # -- users -------------------------------------------------------------------------------

    async def show_user(self, request: Request) -> Response:
        me, refused = await self.gate(request)
        if refused is not None or me is None:
            return refused or _error(401, _UNAUTHENTICATED)
        # The str convertor also takes the .json suffix: /users/me.json arrives as "me.json".
        raw = str(request.path_params["user_id"]).removesuffix(".json")
        user = me if raw == "me" else (self.sim.user(int(raw)) if raw.isdigit() else None)
        if user is None:
            return _error(404, _NOT_FOUND)
        return JSONResponse({"user": user})

    async def add_user_tags(self, request: Request) -> Response:
        """``PUT /api/v2/users/{id}/tags`` (Tags API, "Add Tags"): appends; answers the user's tags."""
        _, refused = await self.gate(request)
        if refused is not None:
            return refused
        user = self.sim.user(int(request.path_params["user_id"]))
        if user is None:
            return _error(404, _NOT_FOUND)
        try:
            body = await request.json()
        except ValueError:
            body = None
        tags = body.get("tags") if isinstance(body, dict) else None
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            return _error(400, {"error": "InvalidParameter", "description": "tags must be a list of strings"})
        user["tags"] = [*user.get("tags", []), *(t for t in tags if t not in user.get("tags", []))]
        return JSONResponse({"tags": user["tags"]})

    async def search_users(self, request: Request) -> Response:
        """``GET /api/v2/users/search?query=email:...``: the one query form the bridge uses."""
        _, refused = await self.gate(request)
        if refused is not None:
            return refused
        query = request.query_params.get("query", "")
        email = query.removeprefix("email:").strip().lower() if query.startswith("email:") else None
        found = [u for u in self.sim.users.values() if email is not None and str(u.get("email")).lower() == email]
        return JSONResponse({"users": found, **_page(len(found))})

    async def account_settings(self, request: Request) -> Response:
        """``GET /api/v2/account/settings``: the account's localization (assumed shape: the docs list
        ``localization.time_zone`` among many settings; only it is answered here)."""
        _, refused = await self.gate(request)
        if refused is not None:
            return refused
        return JSONResponse({"settings": {"localization": {"time_zone": self.sim.time_zone}}})

    async def show_many_users(self, request: Request) -> Response:
        _, refused = await self.gate(request)
        if refused is not None:
            return refused
        ids = _ids(request.query_params.get("ids", ""))
        if ids is None:
            return _error(400, {"error": "InvalidParameter", "description": "ids must be up to 100 user ids"})
        found = [self.sim.users[i] for i in ids if i in self.sim.users]
        return JSONResponse({"users": found, **_page(len(found))})

    # -- fields ------------------------------------------------------------------------------

    async def ticket_fields(self, request: Request) -> Response:
        _, refused = await self.gate(request, admin=request.method == "POST")
        if refused is not None:
            return refused
        if request.method == "GET":
            found = list(self.sim.ticket_fields.values())
            return JSONResponse({"ticket_fields": found, **_page(len(found))})
        body = await _json_object(request, "ticket_field")
        if body is None or not body.get("title") or body.get("type") not in _FIELD_TYPES:
            return _record_invalid("type", f"A ticket field needs a title and a type among {sorted(_FIELD_TYPES)}.")
        created = ticket_field_json(self.sim.new_id(), str(body["title"]), str(body["type"]), base_url=_base(request))
        created.update({k: v for k, v in body.items() if k in ("description", "agent_description", "active")})
        self.sim.ticket_fields[created["id"]] = created
        for ticket in self.sim.tickets.values():
            ticket["custom_fields"].append({"id": created["id"], "value": None})
            ticket["fields"] = copy.deepcopy(ticket["custom_fields"])
        return JSONResponse({"ticket_field": created}, status_code=201)

    async def user_fields(self, request: Request) -> Response:
        _, refused = await self.gate(request, admin=request.method == "POST")
        if refused is not None:
            return refused
        if request.method == "GET":
            found = list(self.sim.user_fields.values())
            return JSONResponse({"user_fields": found, **_page(len(found))})
        body = await _json_object(request, "user_field")
        if body is None or not body.get("key") or not body.get("title") or not body.get("type"):
            return _record_invalid("key", "A user field needs a key, a title and a type.")
        created = user_field_json(self.sim.new_id(), str(body["key"]), str(body["title"]), str(body["type"]))
        self.sim.user_fields[created["id"]] = created
        return JSONResponse({"user_field": created}, status_code=201)

    # -- webhooks ----------------------------------------------------------------------------

    async def webhooks(self, request: Request) -> Response:
        user, refused = await self.gate(request, admin=True)
        if refused is not None or user is None:
            return refused or _error(401, _UNAUTHENTICATED)
        sim = self.sim
        if request.method == "GET":
            contains = request.query_params.get("filter[name_contains]", "").lower()
            found = [_public_webhook(w) for w in sim.webhooks.values() if contains in w["name"].lower()]
            return JSONResponse({"webhooks": found, "meta": {"has_more": False}, "links": {}})
        body = await _json_object(request, "webhook")
        missing = [k for k in _WEBHOOK_REQUIRED if not (body or {}).get(k)]
        if body is None or missing:
            return _webhook_errors([f"{name} is required" for name in missing or ["webhook"]])
        webhook_id = new_ulid(sim.clock())
        webhook = {
            "id": webhook_id,
            **{k: body.get(k) for k in ("name", "description", "status", "subscriptions", "endpoint")},
            "http_method": body["http_method"],
            "request_format": body["request_format"],
            "created_at": stamp(sim.clock()),
            "created_by": str(user["id"]),
        }
        if body.get("authentication"):
            webhook["authentication"] = body["authentication"]
        sim.webhooks[webhook_id] = webhook
        sim.signing_secrets[webhook_id] = new_signing_secret()
        return JSONResponse({"webhook": _public_webhook(webhook)}, status_code=201)

    async def webhook(self, request: Request) -> Response:
        user, refused = await self.gate(request, admin=True)
        if refused is not None or user is None:
            return refused or _error(401, _UNAUTHENTICATED)
        sim = self.sim
        webhook_id = request.path_params["webhook_id"]
        webhook = sim.webhooks.get(webhook_id)
        if webhook is None:
            return _webhook_errors(["Webhook not found"], status=404)
        if request.method == "DELETE":
            del sim.webhooks[webhook_id]
            sim.signing_secrets.pop(webhook_id, None)
            return Response(status_code=204)
        if request.method in ("PUT", "PATCH"):
            body = await _json_object(request, "webhook")
            if body is None:
                return _webhook_errors(["webhook is required"])
            webhook.update(
                {k: v for k, v in body.items() if k in (*_WEBHOOK_REQUIRED, "description", "authentication")}
            )
            webhook["updated_at"], webhook["updated_by"] = stamp(sim.clock()), str(user["id"])
            return Response(status_code=204)
        return JSONResponse({"webhook": _public_webhook(webhook)})

    async def signing_secret(self, request: Request) -> Response:
        _, refused = await self.gate(request, admin=True)
        if refused is not None:
            return refused
        webhook_id = request.path_params["webhook_id"]
        if webhook_id not in self.sim.webhooks:
            return _webhook_errors(["Webhook not found"], status=404)
        if request.method == "POST":
            self.sim.signing_secrets[webhook_id] = new_signing_secret()
        secret = {"secret": self.sim.signing_secrets[webhook_id], "algorithm": "SHA256"}
        return JSONResponse({"signing_secret": secret}, status_code=201 if request.method == "POST" else 200)

    async def invocations(self, request: Request) -> Response:
        _, refused = await self.gate(request, admin=True)
        if refused is not None:
            return refused
        webhook_id = request.path_params["webhook_id"]
        found = [i for i in self.sim.deliverer.invocations.values() if i.webhook_id == webhook_id]
        listed = [i.summary() for i in reversed(found)]
        return JSONResponse({"invocations": listed, "meta": {"has_more": False}, "links": {}})

    async def attempts(self, request: Request) -> Response:
        _, refused = await self.gate(request, admin=True)
        if refused is not None:
            return refused
        invocation = self.sim.deliverer.invocations.get(request.path_params["invocation_id"])
        if invocation is None or invocation.webhook_id != request.path_params["webhook_id"]:
            return _webhook_errors(["Invocation not found"], status=404)
        return JSONResponse({"attempts": list(reversed(invocation.attempts))})

    # -- triggers ----------------------------------------------------------------------------

    async def triggers(self, request: Request) -> Response:
        _, refused = await self.gate(request, admin=True)
        if refused is not None:
            return refused
        sim = self.sim
        if request.method == "GET":
            found = list(sim.triggers.values())
            return JSONResponse({"triggers": found, **_page(len(found))})
        body = await _json_object(request, "trigger")
        if body is None or not body.get("title"):
            return _record_invalid("title", "A trigger needs a title.")
        trigger = _trigger_record(sim.new_id(), body, sim.clock(), _base(request))
        problems = triggers.problems(trigger, set(sim.webhooks))
        if problems:
            return _record_invalid("base", " ".join(problems))
        sim.triggers[trigger["id"]] = trigger
        return JSONResponse({"trigger": trigger}, status_code=201)

    async def trigger(self, request: Request) -> Response:
        _, refused = await self.gate(request, admin=True)
        if refused is not None:
            return refused
        sim = self.sim
        trigger = sim.triggers.get(request.path_params["trigger_id"])
        if trigger is None:
            return _error(404, _NOT_FOUND)
        if request.method == "DELETE":
            del sim.triggers[trigger["id"]]
            return Response(status_code=204)
        if request.method == "PUT":
            body = await _json_object(request, "trigger")
            if body is None:
                return _record_invalid("trigger", 'The body must be {"trigger": {...}}')
            updated = {**trigger, **_trigger_record(trigger["id"], {**trigger, **body}, sim.clock(), _base(request))}
            problems = triggers.problems(updated, set(sim.webhooks))
            if problems:
                return _record_invalid("base", " ".join(problems))
            sim.triggers[trigger["id"]] = updated
            trigger = updated
        return JSONResponse({"trigger": trigger})


_FIELD_TYPES = frozenset(
    {
        "text",
        "textarea",
        "checkbox",
        "date",
        "integer",
        "decimal",
        "regexp",
        "partialcreditcard",
        "multiselect",
        "tagger",
    }
)


def _trigger_record(trigger_id: int, body: Mapping[str, Any], now: float, base_url: str) -> dict[str, Any]:
    conditions = body.get("conditions") or {"all": body.get("all", []), "any": body.get("any", [])}
    return {
        "url": f"{base_url}/api/v2/triggers/{trigger_id}.json",
        "id": trigger_id,
        "title": body.get("title"),
        "raw_title": body.get("title"),
        "active": bool(body.get("active", True)),
        "position": int(body.get("position", 0)),
        "description": body.get("description"),
        "conditions": {"all": list(conditions.get("all", [])), "any": list(conditions.get("any", []))},
        "actions": list(body.get("actions", [])),
        "default": False,
        "category_id": body.get("category_id"),
        "created_at": body.get("created_at") or stamp(now),
        "updated_at": stamp(now),
    }


def _public_webhook(webhook: Mapping[str, Any]) -> dict[str, Any]:
    """A webhook as the API shows it: its authentication without the password or token."""
    shown = dict(webhook)
    auth = webhook.get("authentication")
    if isinstance(auth, Mapping):
        data = {k: v for k, v in (auth.get("data") or {}).items() if k in ("username", "name")}
        shown["authentication"] = {**auth, "data": data} if data else {k: v for k, v in auth.items() if k != "data"}
    return shown


def _webhook_errors(details: list[str], *, status: int = 400) -> JSONResponse:
    # Assumed shape: the Webhooks API answers errors as a list, unlike the Support API's single error.
    errors = [{"code": "InvalidValue" if status == 400 else "NotFound", "title": d, "detail": d} for d in details]
    return JSONResponse({"errors": errors}, status_code=status)


def _ids(raw: str) -> list[int] | None:
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not parts or len(parts) > 100 or not all(p.isdigit() for p in parts):
        return None
    return [int(p) for p in parts]


def _page(count: int) -> dict[str, Any]:
    return {"next_page": None, "previous_page": None, "count": count}


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def _json_object(request: Request, key: str) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    inner = body.get(key) if isinstance(body, dict) else None
    return inner if isinstance(inner, dict) else None
