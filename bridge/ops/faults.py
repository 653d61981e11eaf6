"""``bridge sandbox fault``: the simulated CCAI's fault switches as commands, for trying what an
operator sees when CCAI throttles, fails or hangs (the dashboard's verdict, ``bridge status``, the
alert webhook) without writing JSON to its control endpoint by hand."""

from __future__ import annotations

import os
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import httpx

from bridge.errors import BridgeError, UsageError

Fault = Literal["429", "503", "timeout", "cut", "outage", "off"]
FAULTS: tuple[Fault, ...] = get_args(Fault)
DESCRIPTIONS = {
    "429": "answer 429 Too Many Requests",
    "503": "answer 503 without creating the chat",
    "timeout": "create the chat, then answer nothing for 60 s (a lost answer: the chat is looked up)",
    "cut": "create the chat, then drop the connection (a lost answer)",
    "outage": "be down for --seconds (503 to every request, the Manager API too)",
    "off": "answer normally again",
}


def control_body(fault: Fault, *, times: int | None, seconds: float) -> dict[str, Any]:
    """The simulated CCAI's ``/_sandbox/control`` body for ``fault``: every request until ``off``, or
    only the next ``times`` requests."""
    step: dict[str, Any]
    match fault:
        case "off":
            return {"fault": None, "script": [], "outage": {"seconds": 0}}
        case "outage":
            return {"outage": {"seconds": seconds}}
        case "429":
            step = {"status": 429, "message": "Too Many Requests"}
        case "503":
            step = {"status": 503, "message": "Service Unavailable"}
        case "timeout":
            step = {"action": "accept_then_hang", "seconds": 60}
        case "cut":
            step = {"action": "accept_then_cut"}
    return {"script": [step] * times} if times else {"fault": step}


def control_url(given: str | None) -> str:
    """Where the simulated CCAI takes its switches: ``--url``, else the CCAI_BASE_URL the sandbox's
    settings file exports (``set -a; . sandbox.env; set +a``)."""
    base = given or os.environ.get("CCAI_BASE_URL", "")
    parts = urlsplit(base)
    if not parts.scheme or not parts.netloc:
        raise UsageError(
            "Which sandbox? Give --url (the simulated CCAI's address, printed by `bridge serve --sandbox`), or load "
            "its settings first: set -a; . <the sandbox.env it prints>; set +a"
        )
    return f"{parts.scheme}://{parts.netloc}/_sandbox/control"


def apply(url: str, body: dict[str, Any]) -> None:
    try:
        answer = httpx.post(url, json=body, timeout=5)
    except httpx.HTTPError as exc:
        raise BridgeError(f"The simulated CCAI at {url} cannot be reached ({type(exc).__name__}).") from exc
    if answer.status_code != 200:
        raise BridgeError(f"The simulated CCAI refused the switch: {answer.status_code} {answer.text[:200]}")
