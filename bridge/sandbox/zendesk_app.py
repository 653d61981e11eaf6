"""The simulated Zendesk account as a web app: its REST API (``zendesk_api.py``), the rate limit
headers on every answer, and the ``/_sandbox`` routes tests and demos steer it with (``zendesk.py``
lists them)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.sandbox.zendesk import ZendeskSimulator
from bridge.sandbox.zendesk_account import SANDBOX_AGENT_ID, stamp, ticket_json
from bridge.sandbox.zendesk_api import ZendeskApi


class _LimitHeaders:
    """Adds the rate limit headers Zendesk puts on every API answer (the gate counted the request)."""

    def __init__(self, app: ASGIApp, *, sim: ZendeskSimulator) -> None:
        self.app = app
        self.sim = sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/v2/"):
            await self.app(scope, receive, send)
            return

        async def with_limits(message: Message) -> None:
            limit = scope.get("state", {}).get("limit")
            if message["type"] == "http.response.start" and limit is not None:
                remaining, reset = limit
                total = str(self.sim.rate_limit).encode()
                extra = [
                    (b"x-rate-limit", total),
                    (b"x-rate-limit-remaining", str(remaining).encode()),
                    (b"ratelimit-limit", total),
                    (b"ratelimit-remaining", str(remaining).encode()),
                    (b"ratelimit-reset", str(reset).encode()),
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_limits)


def create_zendesk_app(sim: ZendeskSimulator) -> Starlette:
    api = ZendeskApi(sim)

    async def state(_request: Request) -> Response:
        return JSONResponse(sim.state())

    async def control(request: Request) -> Response:
        try:
            _apply_control(sim, await request.json())
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return JSONResponse({"message": f"Bad control request: {exc}"}, status_code=400)
        return JSONResponse({"ok": True})

    async def new_ticket(request: Request) -> Response:
        """A ticket created as its requester would (the web form): the triggers run on ``Create``."""
        body = await request.json()
        requester = sim.user(int(body["requester_id"]))
        if requester is None:
            return JSONResponse({"message": "No such requester."}, status_code=400)
        ticket = ticket_json(
            int(body.get("id") or sim.new_id()),
            str(body.get("subject", "New ticket")),
            requester_id=int(requester["id"]),
            assignee_id=body.get("assignee_id"),
            tags=body.get("tags", []),
        )
        ticket["created_at"] = ticket["updated_at"] = stamp(sim.clock())
        sim.tickets[ticket["id"]] = ticket
        sim.add_custom_fields(ticket)
        sim.change_ticket(ticket, {}, requester, created=True)
        return JSONResponse({"ticket": ticket}, status_code=201)

    async def edit_ticket(request: Request) -> Response:
        """An agent's edit in the Zendesk UI (``as``: the user id, default the sandbox's agent Ana)."""
        ticket = sim.tickets.get(request.path_params["ticket_id"])
        if ticket is None:
            return JSONResponse({"message": "No such ticket."}, status_code=404)
        body = await request.json()
        author = sim.user(int(body.pop("as", SANDBOX_AGENT_ID)))
        if author is None:
            return JSONResponse({"message": "No such user."}, status_code=400)
        sim.change_ticket(ticket, body, author)
        return JSONResponse({"ticket": ticket})

    async def invoke_webhook(request: Request) -> Response:
        """Invoke a webhook with a body, as a trigger would, without a ticket change."""
        webhook_id = request.path_params["webhook_id"]
        if webhook_id not in sim.webhooks:
            return JSONResponse({"message": "No such webhook."}, status_code=404)
        body = await request.json()
        invocation = sim.deliverer.invoke(webhook_id, json.dumps(body))
        return JSONResponse({"invocation_id": invocation.id})

    def both(path: str, endpoint: Any, methods: list[str]) -> list[Route]:
        # Zendesk answers each endpoint with and without the .json suffix.
        return [Route(path, endpoint, methods=methods), Route(f"{path}.json", endpoint, methods=methods)]

    routes = [
        *both("/api/v2/tickets/show_many", api.show_many_tickets, ["GET"]),
        *both("/api/v2/tickets/{ticket_id:int}", api.show_ticket, ["GET"]),
        *both("/api/v2/tickets/{ticket_id:int}", api.update_ticket, ["PUT"]),
        *both("/api/v2/tickets/{ticket_id:int}/comments", api.ticket_comments, ["GET"]),
        *both("/api/v2/users/show_many", api.show_many_users, ["GET"]),
        *both("/api/v2/users/search", api.search_users, ["GET"]),
        *both("/api/v2/account/settings", api.account_settings, ["GET"]),
        *both("/api/v2/users/{user_id:int}/tags", api.add_user_tags, ["PUT"]),
        *both("/api/v2/users/{user_id}", api.show_user, ["GET"]),
        *both("/api/v2/ticket_fields", api.ticket_fields, ["GET", "POST"]),
        *both("/api/v2/user_fields", api.user_fields, ["GET", "POST"]),
        *both("/api/v2/triggers", api.triggers, ["GET", "POST"]),
        *both("/api/v2/triggers/{trigger_id:int}", api.trigger, ["GET", "PUT", "DELETE"]),
        Route("/api/v2/webhooks", api.webhooks, methods=["GET", "POST"]),
        Route("/api/v2/webhooks/{webhook_id}", api.webhook, methods=["GET", "PUT", "PATCH", "DELETE"]),
        Route("/api/v2/webhooks/{webhook_id}/signing_secret", api.signing_secret, methods=["GET", "POST"]),
        Route("/api/v2/webhooks/{webhook_id}/invocations", api.invocations, methods=["GET"]),
        Route("/api/v2/webhooks/{webhook_id}/invocations/{invocation_id}/attempts", api.attempts, methods=["GET"]),
        Route("/_sandbox/state", state),
        Route("/_sandbox/control", control, methods=["POST"]),
        Route("/_sandbox/tickets", new_ticket, methods=["POST"]),
        Route("/_sandbox/tickets/{ticket_id:int}", edit_ticket, methods=["POST"]),
        Route("/_sandbox/webhooks/{webhook_id}/invoke", invoke_webhook, methods=["POST"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(_LimitHeaders, sim=sim)])


def _apply_control(sim: ZendeskSimulator, changes: Mapping[str, Any]) -> None:
    """Apply a ``/_sandbox/control`` body; raises ``ValueError`` (or ``TypeError``) on a bad value.

    Every value is checked before any is applied, so a refused request changes nothing.
    """
    known = {
        "rate_limit", "latency", "fail_next", "outage", "conflict_next", "lose_update_answer",
        "expire_tokens", "tickets", "users", "webhook_faults", "webhook_retry_delay",
    }  # fmt: skip
    unknown = set(changes) - known
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; known: {sorted(known)}")
    rate_limit = int(changes.get("rate_limit", sim.rate_limit))
    if rate_limit < 1:
        raise ValueError("rate_limit must be at least 1 request a minute.")
    fail_next = [dict(f) for f in changes.get("fail_next", [])]
    outage = changes.get("outage")
    faults = dict(changes.get("webhook_faults") or {})
    probe = type(sim.deliverer.faults)()
    probe.update(faults)

    sim.rate_limit = rate_limit
    sim.latency = float(changes.get("latency", sim.latency))
    sim.fail_next.extend(fail_next)
    if outage is not None:
        sim.outage_until = sim.clock() + float(outage.get("seconds", 0))
        sim.outage_status = int(outage.get("status", 503))
    sim.conflict_next += int(changes.get("conflict_next", 0))
    sim.lose_update_answer += int(changes.get("lose_update_answer", 0))
    if changes.get("expire_tokens"):
        sim.api_tokens.clear()
        sim.oauth_tokens.clear()
    sim.add_users(changes.get("users", []))
    sim.add_tickets(changes.get("tickets", []))
    sim.deliverer.faults.update(faults)
    if "webhook_retry_delay" in changes:
        sim.deliverer.retry_delay = float(changes["webhook_retry_delay"])
