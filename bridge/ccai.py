"""CCAI Platform's outbound SMS endpoint (``POST /apps/api/v1/sms``) over httpx.

Each answer becomes a :class:`Chat` or one of three errors, chosen by what a retry could do:
:class:`CCAIRejected` (the same request gets the same answer), :class:`CCAIUnavailable` (try again
later; ``reached`` says whether CCAI may already have the request) and :class:`CCAIBadResponse`
(CCAI accepted something we cannot read: the outcome is unknown).
"""

from __future__ import annotations

import email.utils
import logging
import time
from typing import Any

import httpx

from bridge.errors import CCAIBadResponse, CCAIRejected, CCAIUnavailable
from bridge.metrics import Metrics
from bridge.model import Chat, SmsRequest
from bridge.phones import mask

logger = logging.getLogger(__name__)

# The request's field names, in one place. The seed's examples use camelCase for the agent.
FIELD_CHAT_TYPE = "chat_type"
FIELD_END_USER = "end_user_number"
FIELD_OUTBOUND = "outbound_number"
FIELD_MESSAGE = "message"
FIELD_TICKET = "ticket_id"
FIELD_AGENT_ID = "agentId"
FIELD_AGENT_EMAIL = "agentEmail"


def request_body(request: SmsRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        FIELD_CHAT_TYPE: request.chat_type,
        FIELD_END_USER: request.end_user_number,
        FIELD_OUTBOUND: request.outbound_number,
        FIELD_MESSAGE: request.message,
    }
    if request.ticket_id:
        body[FIELD_TICKET] = request.ticket_id
    if request.agent_id is not None:
        body[FIELD_AGENT_ID] = request.agent_id
    elif request.agent_email:
        body[FIELD_AGENT_EMAIL] = request.agent_email
    return body


def is_active_session_refusal(error: CCAIRejected) -> bool:
    return "already in an active sms session" in error.message.lower()


class CCAIClient:
    """Sends SMS through one CCAI Platform tenant."""

    def __init__(
        self,
        *,
        base_url: str,
        subdomain: str,
        api_token: str,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._client = httpx.AsyncClient(
            base_url=base_url,
            auth=httpx.BasicAuth(subdomain, api_token),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            headers={"Accept": "application/json"},
            transport=transport,
            # Never follow a redirect with credentials attached to somewhere else.
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, request: SmsRequest) -> Chat:
        started = time.perf_counter()
        try:
            response = await self._post(request)
        except CCAIUnavailable:
            self._metrics.ccai_responses.labels("error").inc()
            raise
        finally:
            self._metrics.ccai_latency.observe(time.perf_counter() - started)
        self._metrics.ccai_responses.labels(str(response.status_code)).inc()
        return self._answer(request, response, started)

    async def _post(self, request: SmsRequest) -> httpx.Response:
        try:
            return await self._client.post("/sms", json=request_body(request))
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise CCAIUnavailable(f"Could not connect to CCAI Platform ({type(exc).__name__}).", reached=False) from exc
        except httpx.TimeoutException as exc:
            raise CCAIUnavailable(
                f"CCAI Platform did not answer in time ({type(exc).__name__}); the request may have arrived.",
                reached=True,
            ) from exc
        except httpx.HTTPError as exc:
            raise CCAIUnavailable(
                f"The connection to CCAI Platform failed mid-request ({type(exc).__name__}); the request may have "
                "arrived.",
                reached=True,
            ) from exc

    def _answer(self, request: SmsRequest, response: httpx.Response, started: float) -> Chat:
        elapsed_ms = (time.perf_counter() - started) * 1000
        logger.info(
            "CCAI answered %s in %.0f ms for ticket %s to %s",
            response.status_code,
            elapsed_ms,
            request.ticket_id,
            mask(request.end_user_number),
        )
        return _interpret(response)


def _interpret(response: httpx.Response) -> Chat:
    status = response.status_code
    if 200 <= status < 300:
        try:
            payload = response.json()
            chat_id = payload["id"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CCAIBadResponse(
                f"CCAI Platform answered HTTP {status} without a chat id; a chat may have been created."
            ) from exc
        if chat_id is None or str(chat_id).strip() == "":
            raise CCAIBadResponse(f"CCAI Platform answered HTTP {status} with an empty chat id.")
        return Chat(id=str(chat_id), status=payload.get("status") if isinstance(payload, dict) else None)
    if status == 429:
        raise CCAIUnavailable(
            "CCAI Platform is rate-limiting requests (HTTP 429).",
            reached=False,
            throttled=True,
            retry_after=_retry_after(response),
        )
    if status in (401, 403):
        raise CCAIUnavailable(
            f"CCAI Platform refused the API credentials (HTTP {status}); check CCAI_SUBDOMAIN and CCAI_API_TOKEN.",
            reached=False,
        )
    if status >= 500:
        # CCAI answered, so the request was handled and refused; only a lost answer is ambiguous.
        raise CCAIUnavailable(
            f"CCAI Platform had a server error (HTTP {status}).", reached=False, retry_after=_retry_after(response)
        )
    raise CCAIRejected(_error_message(response), status=status)


def _error_message(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("message"), str) and payload["message"].strip():
        return str(payload["message"]).strip()
    snippet = response.text.strip().replace("\n", " ")[:200]
    return f"CCAI Platform answered HTTP {response.status_code}" + (f": {snippet}" if snippet else ".")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
