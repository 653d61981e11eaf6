"""A simulated Slack incoming webhook: what ``BRIDGE_ALERT_WEBHOOK_URL`` posts to, in tests and demos.

It answers as Slack documents its incoming webhooks: ``200 ok`` for a message it accepts; ``400``
with ``invalid_payload`` (not JSON), ``no_text`` (neither ``text`` nor ``blocks``) or
``invalid_blocks`` (a block Slack would refuse: more than 50, a header over 150 characters, a
section over 3,000); ``404 no_service`` for a path that is not its webhook; ``429`` with
``Retry-After`` when rate limited (Slack allows about one message per second).

Steering, as the other simulators: ``GET /_sandbox/state`` lists the messages received and the
answers given; ``POST /_sandbox/control`` with ``script`` (one-shot steps for the next posts) or
``fault`` (a step for every post until null). A step is ``{"status": N, "error": "...",
"retry_after": S}`` (answer N with that body), ``{"hang": S}`` (answer nothing for S seconds, then
200) or ``{"cut": true}`` (drop the connection without an answer).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bridge.sandbox._faults import CutResponse

logger = logging.getLogger(__name__)

WEBHOOK_PATH = "/services/TSANDBOX/BSANDBOX/sandbox-alert-secret"
MAX_BLOCKS, HEADER_LIMIT, SECTION_LIMIT = 50, 150, 3000
BLOCK_TYPES = {"header", "section", "context", "divider", "actions", "image", "rich_text", "markdown"}


@dataclass
class SlackWebhook:
    """What the webhook received and how it answered; ``script`` and ``fault`` steer its answers."""

    path: str = WEBHOOK_PATH
    received: list[dict[str, Any]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    script: list[dict[str, Any]] = field(default_factory=list)
    fault: dict[str, Any] | None = None


def create_slack_app(hook: SlackWebhook) -> Starlette:
    async def post(request: Request) -> Response:
        response = await _answer(hook, request)
        if not isinstance(response, CutResponse):  # a cut connection answers nothing
            hook.answers.append(response.status_code)
        return response

    async def state(_request: Request) -> Response:
        return JSONResponse({"received": hook.received, "answers": hook.answers, "path": hook.path})

    async def control(request: Request) -> Response:
        changes = await request.json()
        if "fault" in changes:
            hook.fault = changes["fault"]
        hook.script.extend(changes.get("script", []))
        return JSONResponse({"fault": hook.fault, "script": hook.script})

    return Starlette(
        routes=[
            Route("/_sandbox/state", state, methods=["GET"]),
            Route("/_sandbox/control", control, methods=["POST"]),
            Route("/{path:path}", post, methods=["POST"]),
        ]
    )


async def _answer(hook: SlackWebhook, request: Request) -> Response:
    step = hook.script.pop(0) if hook.script else dict(hook.fault or {})
    if step.get("cut"):
        return CutResponse(promised=2)
    if "hang" in step:
        await asyncio.sleep(float(step["hang"]))
    if "status" in step:
        headers = {"Retry-After": str(step["retry_after"])} if "retry_after" in step else None
        return PlainTextResponse(
            str(step.get("error", "rollup_error")), status_code=int(step["status"]), headers=headers
        )
    if request.url.path != hook.path:
        return PlainTextResponse("no_service", status_code=404)
    try:
        message = json.loads(await request.body())
    except ValueError:
        return PlainTextResponse("invalid_payload", status_code=400)
    if not isinstance(message, dict):
        return PlainTextResponse("invalid_payload", status_code=400)
    if not message.get("text") and not message.get("blocks"):
        return PlainTextResponse("no_text", status_code=400)
    if problem := _block_problem(message.get("blocks", [])):
        logger.info("sandbox Slack: refused a message: %s", problem)
        return PlainTextResponse("invalid_blocks", status_code=400)
    hook.received.append(message)
    return PlainTextResponse("ok")


def _block_problem(blocks: Any) -> str | None:
    if not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS:
        return f"blocks must be a list of at most {MAX_BLOCKS}"
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in BLOCK_TYPES:
            return f"unknown block type {kind!r}"
        text = block.get("text", {}).get("text", "") if isinstance(block.get("text"), dict) else ""
        if kind == "header" and (block["text"].get("type") != "plain_text" or len(text) > HEADER_LIMIT):
            return f"a header takes plain_text of at most {HEADER_LIMIT} characters"
        if kind == "section" and len(text) > SECTION_LIMIT:
            return f"a section's text is at most {SECTION_LIMIT} characters"
    return None
