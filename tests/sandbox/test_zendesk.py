"""The simulated Zendesk answers in Zendesk's documented shapes, limits and faults."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bridge.sandbox.servers import free_port, make_tls_files
from bridge.sandbox.zendesk import ZendeskSimulator
from bridge.sandbox.zendesk_account import (
    FIRST_BRIDGE_FIELD_ID,
    SANDBOX_ADMIN_EMAIL,
    SANDBOX_AGENT_ID,
    SANDBOX_API_TOKEN,
)
from bridge.sandbox.zendesk_api import CONFLICT, TICKET_UPDATE_LIMIT
from bridge.sandbox.zendesk_app import create_zendesk_app
from tests._processes import wait_for

pytestmark = pytest.mark.anyio

ADMIN = (f"{SANDBOX_ADMIN_EMAIL}/token", SANDBOX_API_TOKEN)
CHAT_ID_FIELD = FIRST_BRIDGE_FIELD_ID


@dataclass
class Receiver:
    """A webhook endpoint that records what it got and answers from a script (then 200)."""

    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            self.received.append((dict(request.headers), await request.body()))
            status, headers = self.answers.pop(0) if self.answers else (200, {})
            return JSONResponse({"ok": status < 300}, status_code=status, headers=headers)

        return Starlette(routes=[Route("/zendesk/webhook", receive, methods=["POST"])])


@pytest.fixture
async def zendesk() -> AsyncIterator[tuple[ZendeskSimulator, httpx.AsyncClient, Receiver]]:
    sim = ZendeskSimulator.sample()
    receiver = Receiver()
    sim.deliverer.transport = httpx.ASGITransport(app=receiver.app())
    sim.deliverer.retry_delay = 0.01
    transport = httpx.ASGITransport(app=create_zendesk_app(sim))
    async with httpx.AsyncClient(transport=transport, base_url="https://sandbox.zendesk.test", auth=ADMIN) as client:
        yield sim, client, receiver
    await sim.aclose()


async def webhook_with_trigger(client: httpx.AsyncClient, **trigger: Any) -> tuple[str, str]:
    """A webhook to the receiver and an active trigger on every change, except the bridge's own."""
    created = await client.post(
        "/api/v2/webhooks",
        json={
            "webhook": {
                "name": "CCAI bridge",
                "endpoint": "https://bridge.test/zendesk/webhook",
                "http_method": "POST",
                "request_format": "json",
                "status": "active",
                "subscriptions": ["conditional_ticket_events"],
                "authentication": {"type": "bearer_token", "data": {"token": "t0k"}, "add_position": "header"},
            }
        },
    )
    assert created.status_code == 201, created.text
    webhook_id = created.json()["webhook"]["id"]
    body = '{"ticket_id": "{{ticket.id}}", "phone": "{{ticket.requester.phone}}", "tags": "{{ticket.tags}}"}'
    rule = {
        "title": "Text the customer",
        "conditions": {"all": [{"field": "current_tags", "operator": "not_includes", "value": "ccai_bridge"}]},
        "actions": [{"field": "notification_webhook", "value": [webhook_id, body]}],
        **trigger,
    }
    assert (await client.post("/api/v2/triggers", json={"trigger": rule})).status_code == 201
    secret = (await client.get(f"/api/v2/webhooks/{webhook_id}/signing_secret")).json()["signing_secret"]
    return webhook_id, secret["secret"]


def signature(secret: str, headers: dict[str, str], body: bytes) -> str:
    signed = headers["x-zendesk-webhook-signature-timestamp"].encode() + body
    return base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()


# -- auth ---------------------------------------------------------------------------------------


async def test_api_tokens_and_oauth_tokens_authenticate_and_nothing_else_does(zendesk: Any) -> None:
    sim, client, _ = zendesk
    me = await client.get("/api/v2/users/me.json")
    assert me.status_code == 200
    assert me.json()["user"]["email"] == SANDBOX_ADMIN_EMAIL

    wrong = await client.get("/api/v2/users/me.json", auth=(f"{SANDBOX_ADMIN_EMAIL}/token", "nope"))
    password = await client.get("/api/v2/users/me.json", auth=(SANDBOX_ADMIN_EMAIL, SANDBOX_API_TOKEN))
    assert (wrong.status_code, wrong.json()) == (401, {"error": "Couldn't authenticate you"})
    assert password.status_code == 401

    sim.oauth_tokens["oauth-agent"] = SANDBOX_AGENT_ID
    agent = {"Authorization": "Bearer oauth-agent"}
    assert (await client.get("/api/v2/tickets/1001.json", headers=agent, auth=None)).status_code == 200
    forbidden = await client.get("/api/v2/webhooks", headers=agent, auth=None)
    assert forbidden.status_code == 403
    assert forbidden.json()["error"] == "Forbidden"


# -- reading ------------------------------------------------------------------------------------


async def test_show_many_sideloads_requesters_and_assignees_and_skips_missing_ids(zendesk: Any) -> None:
    _, client, _ = zendesk
    answer = await client.get("/api/v2/tickets/show_many.json", params={"ids": "1001,1002,9999", "include": "users"})
    body = answer.json()
    assert [t["id"] for t in body["tickets"]] == [1001, 1002]
    assert {u["id"] for u in body["users"]} == {361000101, 361000102, SANDBOX_AGENT_ID}
    rosa = next(u for u in body["users"] if u["id"] == 361000101)
    assert (rosa["phone"], rosa["iana_time_zone"], rosa["time_zone"]) == (
        "+1 415-555-0100",
        "America/Los_Angeles",
        "Pacific Time (US & Canada)",
    )
    assert body["tickets"][1]["assignee_id"] is None
    assert {"id": CHAT_ID_FIELD, "value": None} in body["tickets"][0]["custom_fields"]
    too_many = ",".join(str(i) for i in range(1, 102))
    assert (await client.get("/api/v2/tickets/show_many", params={"ids": too_many})).status_code == 400


async def test_every_answer_carries_the_rate_limit_and_the_limit_answers_429_with_retry_after(zendesk: Any) -> None:
    sim, client, _ = zendesk
    sim.rate_limit = 3
    first = await client.get("/api/v2/tickets/1001.json")
    assert first.headers["x-rate-limit"] == "3"
    assert first.headers["x-rate-limit-remaining"] == "2"
    assert first.headers["ratelimit-remaining"] == "2"
    await client.get("/api/v2/tickets/1001")
    await client.get("/api/v2/tickets/1001")
    refused = await client.get("/api/v2/tickets/1001")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60


# -- writing ------------------------------------------------------------------------------------


async def test_safe_update_with_a_stale_stamp_is_a_409_with_the_documented_body(zendesk: Any) -> None:
    sim, client, _ = zendesk
    ticket = (await client.get("/api/v2/tickets/1001.json")).json()["ticket"]
    update = {
        "custom_fields": [{"id": CHAT_ID_FIELD, "value": "114"}],
        "comment": {"body": "SMS sent: chat 114.", "public": False},
        "additional_tags": ["ccai_bridge"],
        "safe_update": True,
        "updated_stamp": ticket["updated_at"],
    }
    sim.conflict_next = 1  # an agent edits the ticket between our read and our write
    conflict = await client.put("/api/v2/tickets/1001.json", json={"ticket": update})
    assert (conflict.status_code, conflict.json()) == (409, CONFLICT)
    assert sim.tickets[1001]["custom_fields"][0]["value"] is None

    fresh = (await client.get("/api/v2/tickets/1001.json")).json()["ticket"]
    done = await client.put(
        "/api/v2/tickets/1001.json", json={"ticket": {**update, "updated_stamp": fresh["updated_at"]}}
    )
    assert done.status_code == 200
    saved = done.json()["ticket"]
    assert {"id": CHAT_ID_FIELD, "value": "114"} in saved["custom_fields"]
    assert "ccai_bridge" in saved["tags"]
    assert saved["updated_at"] > fresh["updated_at"]
    [note] = sim.comments[1001]
    assert (note["body"], note["public"]) == ("SMS sent: chat 114.", False)
    comments = (await client.get("/api/v2/tickets/1001/comments.json")).json()["comments"]
    assert comments[0]["public"] is False


async def test_a_comment_is_public_unless_the_update_says_otherwise(zendesk: Any) -> None:
    sim, client, _ = zendesk
    await client.put("/api/v2/tickets/1002", json={"ticket": {"comment": {"body": "Hello"}}})
    assert sim.comments[1002][0]["public"] is True


async def test_one_user_may_update_one_ticket_30_times_in_10_minutes(zendesk: Any) -> None:
    _, client, _ = zendesk
    for _ in range(30):
        assert (await client.put("/api/v2/tickets/1003", json={"ticket": {"priority": "low"}})).status_code == 200
    limited = await client.put("/api/v2/tickets/1003", json={"ticket": {"priority": "low"}})
    assert (limited.status_code, limited.text) == (429, TICKET_UPDATE_LIMIT)
    assert limited.headers["retry-after"] == "60"
    assert (await client.put("/api/v2/tickets/1004", json={"ticket": {"priority": "low"}})).status_code == 200


async def test_a_lost_update_answer_applies_the_update_and_cuts_the_connection(zendesk: Any) -> None:
    sim, client, _ = zendesk
    sim.lose_update_answer = 1
    with pytest.raises(httpx.RemoteProtocolError):
        await client.put(
            "/api/v2/tickets/1001", json={"ticket": {"custom_fields": [{"id": CHAT_ID_FIELD, "value": "7"}]}}
        )
    assert sim.tickets[1001]["custom_fields"][0] == {"id": CHAT_ID_FIELD, "value": "7"}


async def test_a_closed_ticket_refuses_updates(zendesk: Any) -> None:
    sim, client, _ = zendesk
    sim.tickets[1004]["status"] = "closed"
    refused = await client.put("/api/v2/tickets/1004", json={"ticket": {"comment": {"body": "x", "public": False}}})
    assert refused.status_code == 422
    assert refused.json()["error"] == "RecordInvalid"


async def test_new_ticket_fields_appear_on_every_ticket_and_need_an_admin(zendesk: Any) -> None:
    sim, client, _ = zendesk
    created = await client.post("/api/v2/ticket_fields.json", json={"ticket_field": {"type": "text", "title": "X"}})
    assert created.status_code == 201
    field_id = created.json()["ticket_field"]["id"]
    assert {"id": field_id, "value": None} in sim.tickets[1001]["custom_fields"]
    titles = [f["title"] for f in (await client.get("/api/v2/ticket_fields")).json()["ticket_fields"]]
    assert "CCAI Chat Id" in titles
    assert "X" in titles
    sim.oauth_tokens["agent"] = SANDBOX_AGENT_ID
    agent = {"Authorization": "Bearer agent"}
    refused = await client.post(
        "/api/v2/ticket_fields", json={"ticket_field": {"type": "text", "title": "Y"}}, headers=agent, auth=None
    )
    assert refused.status_code == 403


# -- webhooks -----------------------------------------------------------------------------------


async def test_a_trigger_fires_a_signed_webhook_that_the_bridge_can_verify(zendesk: Any) -> None:
    sim, client, receiver = zendesk
    webhook_id, secret = await webhook_with_trigger(client)
    await client.put("/api/v2/tickets/1001", json={"ticket": {"status": "pending"}})
    await wait_for_async(lambda: len(receiver.received) == 1)
    headers, body = receiver.received[0]
    assert json.loads(body) == {"ticket_id": "1001", "phone": "+1 415-555-0100", "tags": ""}
    assert headers["x-zendesk-webhook-signature"] == signature(secret, headers, body)
    assert headers["x-zendesk-webhook-id"] == webhook_id
    assert headers["x-zendesk-account-id"] == str(sim.account_id)
    assert headers["authorization"] == "Bearer t0k"
    assert headers["user-agent"] == "Zendesk Webhook"
    assert len(headers["x-zendesk-webhook-invocation-id"]) == 26
    assert headers["x-zendesk-webhook-signature-timestamp"].endswith("Z")


async def test_the_bridges_own_update_fires_the_trigger_unless_the_trigger_excludes_its_tag(zendesk: Any) -> None:
    sim, client, receiver = zendesk
    await webhook_with_trigger(client)
    # The bridge writes back with its tag: the trigger's exclusion holds, nothing is invoked.
    await client.put("/api/v2/tickets/1001", json={"ticket": {"additional_tags": ["ccai_bridge"]}})
    # A trigger without the exclusion fires on the bridge's update too: the loop hazard.
    await webhook_with_trigger(
        client, conditions={"all": [{"field": "update_type", "operator": "is", "value": "Change"}]}
    )
    await client.put("/api/v2/tickets/1001", json={"ticket": {"comment": {"body": "Sent", "public": False}}})
    await wait_for_async(lambda: len(receiver.received) == 1)
    assert len(sim.deliverer.invocations) == 1


async def test_a_failed_delivery_is_redelivered_with_the_same_invocation_id(zendesk: Any) -> None:
    sim, client, receiver = zendesk
    await webhook_with_trigger(client)
    receiver.answers = [(503, {"Retry-After": "0"}), (500, {})]
    await client.put("/api/v2/tickets/1001", json={"ticket": {"status": "pending"}})
    await wait_for_async(lambda: any(i.status == "terminated" for i in sim.deliverer.invocations.values()))
    # 503 with a short Retry-After is retried; 500 ends the invocation.
    ids = [h["x-zendesk-webhook-invocation-id"] for h, _ in receiver.received]
    assert len(ids) == 2
    assert ids[0] == ids[1]

    receiver.answers = [(409, {})]
    await client.put("/api/v2/tickets/1002", json={"ticket": {"status": "pending"}})
    await wait_for_async(lambda: any(i.status == "success" for i in sim.deliverer.invocations.values()))
    assert len(receiver.received) == 4


async def test_a_timeout_is_redelivered_and_a_success_can_be_delivered_twice(zendesk: Any) -> None:
    sim, client, receiver = zendesk
    webhook_id, _ = await webhook_with_trigger(client)
    sim.deliverer.faults.redeliver_success = 1
    await client.put("/api/v2/tickets/1001", json={"ticket": {"status": "pending"}})
    await wait_for_async(lambda: len(receiver.received) == 2)
    first, second = (h for h, _ in receiver.received)
    assert first["x-zendesk-webhook-invocation-id"] == second["x-zendesk-webhook-invocation-id"]
    listed = (await client.get(f"/api/v2/webhooks/{webhook_id}/invocations")).json()["invocations"]
    assert [i["status"] for i in listed] == ["success"]
    attempts = (await client.get(f"/api/v2/webhooks/{webhook_id}/invocations/{listed[0]['id']}/attempts")).json()
    assert len(attempts["attempts"]) == 2
    keys = {h["key"] for h in attempts["attempts"][0]["request"]["headers"]}
    assert "X-Zendesk-Webhook-Invocation-Id" in keys
    assert "Authorization" not in keys


@pytest.mark.parametrize("fault", ["wrong", "missing"])
async def test_signature_faults_send_a_wrong_or_no_signature(zendesk: Any, fault: str) -> None:
    sim, client, receiver = zendesk
    _, secret = await webhook_with_trigger(client)
    sim.deliverer.faults.signature = fault
    await client.put("/api/v2/tickets/1001", json={"ticket": {"status": "pending"}})
    await wait_for_async(lambda: len(receiver.received) == 1)
    headers, body = receiver.received[0]
    if fault == "missing":
        assert "x-zendesk-webhook-signature" not in headers
    else:
        assert headers["x-zendesk-webhook-signature"] != signature(secret, headers, body)


async def test_the_circuit_breaker_drops_invocations_while_the_endpoint_keeps_failing(zendesk: Any) -> None:
    sim, client, receiver = zendesk
    await webhook_with_trigger(client)
    sim.deliverer.breaker_min, sim.deliverer.retries = 3, 0
    receiver.answers = [(500, {})] * 3
    for ticket in (1001, 1002, 1003):
        await client.put(f"/api/v2/tickets/{ticket}", json={"ticket": {"status": "pending"}})
        await wait_for_async(lambda: sim.deliverer.pending() == 0)
    await client.put("/api/v2/tickets/1004", json={"ticket": {"status": "pending"}})
    statuses = [i.status for i in sim.deliverer.invocations.values()]
    assert statuses == ["terminated", "terminated", "terminated", "circuit broken"]
    assert len(receiver.received) == 3


async def test_a_signing_secret_can_be_reset(zendesk: Any) -> None:
    _, client, _ = zendesk
    webhook_id, secret = await webhook_with_trigger(client)
    reset = await client.post(f"/api/v2/webhooks/{webhook_id}/signing_secret")
    assert reset.status_code == 201
    assert reset.json()["signing_secret"]["secret"] != secret
    assert reset.json()["signing_secret"]["algorithm"] == "SHA256"
    shown = (await client.get("/api/v2/webhooks", params={"filter[name_contains]": "ccai"})).json()["webhooks"]
    assert [w["id"] for w in shown] == [webhook_id]
    assert shown[0]["authentication"] == {"type": "bearer_token", "add_position": "header"}


async def test_a_trigger_the_sandbox_cannot_evaluate_is_refused_with_a_reason(zendesk: Any) -> None:
    _, client, _ = zendesk
    rule = {
        "title": "x",
        "conditions": {"all": [{"field": "organization_id", "operator": "is", "value": "1"}]},
        "actions": [{"field": "status", "value": "open"}],
    }
    refused = await client.post("/api/v2/triggers", json={"trigger": rule})
    assert refused.status_code == 422
    assert "organization_id" in json.dumps(refused.json())


async def test_control_checks_every_value_before_applying_any(zendesk: Any) -> None:
    sim, client, _ = zendesk
    bad = await client.post("/_sandbox/control", json={"rate_limit": 5, "webhook_faults": {"signature": "odd"}})
    assert bad.status_code == 400
    assert sim.rate_limit == 700
    assert (await client.post("/_sandbox/control", json={"rate_limit": 5})).status_code == 200
    assert sim.rate_limit == 5


async def wait_for_async(predicate: Any, *, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


# -- over the wire: HTTPS with the sandbox's test CA, webhooks to a real server --------------------


@dataclass
class Served:
    sim: ZendeskSimulator
    url: str
    ca: str
    receiver: Receiver
    endpoint: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tls = make_tls_files(Path(tmp_path_factory.mktemp("tls")))
    sim = ZendeskSimulator.sample()
    receiver = Receiver()
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []
    zendesk_port, receiver_port = free_port(), free_port()
    common: dict[str, Any] = {"host": "127.0.0.1", "log_level": "warning", "lifespan": "off"}
    configs = [
        uvicorn.Config(
            create_zendesk_app(sim), port=zendesk_port, ssl_certfile=str(tls.cert), ssl_keyfile=str(tls.key), **common
        ),
        uvicorn.Config(receiver.app(), port=receiver_port, **common),
    ]
    for config in configs:
        config.timeout_graceful_shutdown = 1
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
    for started, _ in servers:
        wait_for(lambda started=started: started.started, what="the sandbox Zendesk and a webhook receiver")  # type: ignore[misc]
    endpoint = f"http://127.0.0.1:{receiver_port}/zendesk/webhook"
    yield Served(sim, f"https://127.0.0.1:{zendesk_port}", str(tls.ca), receiver, endpoint)
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def test_over_https_an_agents_edit_reaches_a_real_endpoint_signed(served: Served) -> None:
    receiver, endpoint = served.receiver, served.endpoint
    with httpx.Client(
        base_url=served.url, verify=ssl.create_default_context(cafile=served.ca), auth=ADMIN, timeout=10
    ) as client:
        hook = client.post(
            "/api/v2/webhooks",
            json={
                "webhook": {
                    "name": "bridge",
                    "endpoint": endpoint,
                    "http_method": "POST",
                    "request_format": "json",
                    "status": "active",
                    "subscriptions": ["conditional_ticket_events"],
                }
            },
        ).json()["webhook"]
        secret = client.get(f"/api/v2/webhooks/{hook['id']}/signing_secret").json()["signing_secret"]["secret"]
        rule = {
            "title": "t",
            "actions": [{"field": "notification_webhook", "value": [hook["id"], '{"id": "{{ticket.id}}"}']}],
        }
        assert client.post("/api/v2/triggers", json={"trigger": rule}).status_code == 201
        assert client.post("/_sandbox/tickets/1002", json={"status": "pending"}).status_code == 200
    wait_for(lambda: len(receiver.received) == 1, what="the webhook delivery")
    headers, body = receiver.received[0]
    assert json.loads(body) == {"id": "1002"}
    assert headers["x-zendesk-webhook-signature"] == signature(secret, headers, body)


# Keys of the records as real accounts answer them (the Tickets, Users and Webhooks API references,
# and answers recorded from real accounts): a client written against them finds each one here.
TICKET_KEYS = {
    "id", "url", "external_id", "via", "created_at", "updated_at", "type", "subject", "raw_subject", "description",
    "priority", "status", "recipient", "requester_id", "submitter_id", "assignee_id", "organization_id", "group_id",
    "collaborator_ids", "follower_ids", "email_cc_ids", "has_incidents", "is_public", "due_at", "tags",
    "custom_fields", "satisfaction_rating", "sharing_agreement_ids", "fields", "followup_ids", "ticket_form_id",
    "brand_id", "allow_channelback", "allow_attachments", "from_messaging_channel",
}  # fmt: skip
USER_KEYS = {
    "id", "url", "name", "email", "created_at", "updated_at", "time_zone", "iana_time_zone", "phone",
    "shared_phone_number", "photo", "locale_id", "locale", "organization_id", "role", "verified", "external_id",
    "tags", "alias", "active", "shared", "shared_agent", "last_login_at", "two_factor_auth_enabled", "signature",
    "details", "notes", "role_type", "custom_role_id", "moderator", "ticket_restriction", "only_private_comments",
    "restricted_agent", "suspended", "default_group_id", "report_csv", "user_fields",
}  # fmt: skip
WEBHOOK_KEYS = {
    "id", "name", "description", "status", "subscriptions", "created_at", "created_by", "endpoint", "http_method",
    "request_format", "authentication",
}  # fmt: skip


async def test_records_carry_every_documented_key(zendesk: Any) -> None:
    _, client, _ = zendesk
    ticket = (await client.get("/api/v2/tickets/1001.json", params={"include": "users"})).json()
    assert set(ticket["ticket"]) >= TICKET_KEYS
    assert all(set(user) >= USER_KEYS for user in ticket["users"])
    webhook_id, _ = await webhook_with_trigger(client)
    assert set((await client.get(f"/api/v2/webhooks/{webhook_id}")).json()["webhook"]) == WEBHOOK_KEYS
