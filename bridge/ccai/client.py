"""CCAI Platform over httpx: the outbound SMS endpoint and the Manager API's chat list.

Each SMS answer becomes a :class:`Chat` or one of three errors, chosen by what a retry could do:
:class:`CCAIRejected` (the same request gets the same answer), :class:`CCAIUnavailable` (try again
later; ``reached`` says whether CCAI may have acted) and :class:`CCAIBadResponse` (CCAI accepted
something we cannot read: the outcome is unknown).

Every request, SMS or chat list, takes a slot from the tenant's shared rate limit first, and is
bounded as a whole by a deadline (httpx's timeout bounds each read, so an answer trickling in
byte by byte would otherwise never time out).
"""

from __future__ import annotations

import email.utils
import logging
import math
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx

from bridge.ccai.pacing import RateLimiter, Slot
from bridge.errors import CCAIBadResponse, CCAIRejected, CCAIUnavailable
from bridge.metrics import Metrics
from bridge.model import Chat, SmsRequest
from bridge.phones import mask, mask_numbers
from bridge.times import iso_utc

logger = logging.getLogger(__name__)

# The seed's examples use camelCase for the agent's fields, snake_case for the others.
FIELD_CHAT_TYPE = "chat_type"
FIELD_END_USER = "end_user_number"
FIELD_OUTBOUND = "outbound_number"
FIELD_MESSAGE = "message"
FIELD_TICKET = "ticket_id"
FIELD_AGENT_ID = "agentId"
FIELD_AGENT_EMAIL = "agentEmail"

# A Retry-After beyond this is not believed: one bad header must not stop all sending for days.
MAX_RETRY_AFTER_SECONDS = 300.0
CHAT_PAGE_SIZE = 100
MAX_CHAT_PAGES = 50
# CCAI's clock and ours differ: search the chat list from a little before the attempt left.
LOOKUP_MARGIN_SECONDS = 120.0


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


def manager_url_for(sms_base_url: str) -> str:
    """The Manager API's base URL on the same host as the SMS endpoint's."""
    parts = urlsplit(sms_base_url)
    return f"{parts.scheme}://{parts.netloc}/manager/api/v1"


class CCAIClient:
    """Talks to one CCAI Platform tenant."""

    def __init__(
        self,
        *,
        base_url: str,
        subdomain: str,
        api_token: str,
        timeout: float,
        limiter: RateLimiter,
        manager_url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._limiter = limiter
        self._deadline = timeout
        self._manager_url = (manager_url or manager_url_for(base_url)).rstrip("/")
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

    async def wait_for_slot(self, *, lead: float = 0.0) -> Slot:
        """Take a request slot from the tenant's rate limit, returning ``lead`` seconds early (call
        before :meth:`send` with the slot, when something must be recorded between the slot and
        the request)."""
        return await self._limiter.acquire(lead=lead)

    async def send(self, request: SmsRequest, *, slot: Slot | None = None) -> Chat:
        if slot is None:
            slot = await self.wait_for_slot()
        started = time.perf_counter()
        try:
            response = await self._paced("POST", "/sms", slot, json=request_body(request))
        except CCAIUnavailable:
            self._metrics.ccai_responses.labels("error").inc()
            raise
        finally:
            self._metrics.ccai_latency.observe(time.perf_counter() - started)
        self._metrics.ccai_responses.labels(str(response.status_code)).inc()
        # Debug: the send step logs one line per finished send, with its outcome.
        logger.debug(
            "CCAI answered %s in %.0f ms for ticket %s to %s",
            response.status_code,
            (time.perf_counter() - started) * 1000,
            request.ticket_id,
            mask(request.end_user_number),
        )
        if response.status_code == 429:
            await self._throttled(response)
        return _interpret(response)

    async def find_chats(self, *, ticket_id: str, since: float) -> list[Chat]:
        """The chats created since ``since`` (less a margin for clock differences) that carry
        ``ticket_id``, oldest first.

        Raises :class:`CCAIUnavailable` when the list cannot be read completely: a search that
        could not finish must never be taken for "not found".
        """
        params = {
            "created_at[from]": iso_utc(since - LOOKUP_MARGIN_SECONDS),
            "sort_column": "created_at",
            "sort_direction": "ASC",
            "per": CHAT_PAGE_SIZE,
        }
        found = []
        async for page in self.chat_pages(params):
            for chat in page:
                chat_id = str(chat.get("id") or "")
                if chat_id and str(chat.get("out_ticket_id") or "") == ticket_id:
                    found.append(Chat(id=chat_id, status=_text(chat.get("status"))))
        self._metrics.ccai_lookups.labels("found" if found else "not_found").inc()
        return found

    async def chat_pages(
        self, params: Mapping[str, Any], *, max_pages: int = MAX_CHAT_PAGES, complete: bool = True
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The Manager API's chat list, page by page (each a slot of the rate limit), following
        ``Link: rel="next"`` on the same host only. Past ``max_pages`` it raises when the caller
        needs the ``complete`` list (a lookup), and simply stops otherwise (the sync resumes later)."""
        url: str | None = f"{self._manager_url}/chats"
        query: Mapping[str, Any] | None = params
        for _ in range(max_pages):
            assert url is not None
            response = await self._paced("GET", url, await self.wait_for_slot(), params=query)
            if response.status_code == 429:
                await self._throttled(response)
            if response.status_code != 200:
                self._metrics.ccai_lookups.labels("error").inc()
                raise CCAIUnavailable(
                    f"CCAI Platform's chat list answered HTTP {response.status_code}.",
                    reached=False,
                    throttled=response.status_code == 429,
                    retry_after=_retry_after(response),
                )
            yield _chat_list(response)
            url, query = _next_page(response), None
            if url is None:
                return
        if complete:
            raise CCAIUnavailable(f"CCAI Platform's chat list has more than {max_pages} pages.", reached=False)

    async def _throttled(self, response: httpx.Response) -> None:
        pause = _retry_after(response)
        pause = 1.0 if pause is None else pause
        logger.warning("CCAI is rate-limiting requests (HTTP 429); pausing every worker for %.1f s", pause)
        await self._limiter.pause(pause)

    async def _paced(self, method: str, url: str, slot: Slot, **kwargs: Any) -> httpx.Response:
        """One request on ``slot``: not before it, and the time it left recorded for the pacing."""
        if (early := slot.not_before - slot.clock()) > 0:
            await anyio.sleep(early)
        if not slot.counted():
            # The caller was held up: said before it goes, so that it is counted (and again with the
            # exact time once it has left).
            await self._departed(slot, slot.clock())
        left = [slot.clock()]

        async def trace(event: str, _info: Mapping[str, Any]) -> None:
            # The moment the request's last byte was handed to the socket: that, not the moment it
            # was asked for, is when it left (a busy event loop can sit between the two).
            if event.endswith("send_request_body.complete"):
                left.append(slot.clock())

        try:
            return await self._request(method, url, extensions={"trace": trace}, **kwargs)
        finally:
            # Until then it counts as leaving at the latest its slot allows, which is later.
            await self._departed(slot, left[-1])

    async def _departed(self, slot: Slot, at: float) -> None:
        try:
            await self._limiter.departed(slot, at)
        except Exception as exc:  # the pacing then counts it as late as its slot allows
            logger.warning("The departure of a CCAI request could not be recorded for pacing (%s)", exc)

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            with anyio.fail_after(self._deadline):
                return await self._client.request(method, url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise CCAIUnavailable(f"Could not connect to CCAI Platform ({type(exc).__name__}).", reached=False) from exc
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise CCAIUnavailable(
                f"CCAI Platform did not answer within {self._deadline:g} s; the request may have arrived.",
                reached=True,
            ) from exc
        except httpx.HTTPError as exc:
            raise CCAIUnavailable(
                f"The connection to CCAI Platform failed mid-request ({type(exc).__name__}); the request may have "
                "arrived.",
                reached=True,
            ) from exc


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
        return Chat(id=str(chat_id), status=_text(payload.get("status")) if isinstance(payload, dict) else None)
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
        # A 5xx may come from a gateway in front of a backend that created the chat before the
        # gateway gave up (502/504), or from a backend that failed after acting: possibly delivered.
        raise CCAIUnavailable(
            f"CCAI Platform answered HTTP {status}; the SMS may have been created.",
            reached=True,
            retry_after=_retry_after(response),
        )
    raise CCAIRejected(_error_message(response), status=status)


def _error_message(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    # What CCAI says goes on to logs, the ticket and the API: a number it echoes is masked.
    if isinstance(payload, dict) and isinstance(payload.get("message"), str) and payload["message"].strip():
        return mask_numbers(str(payload["message"]).strip())
    snippet = mask_numbers(response.text.strip().replace("\n", " ")[:200])
    return f"CCAI Platform answered HTTP {response.status_code}" + (f": {snippet}" if snippet else ".")


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait, from a number or an HTTP date; absurd or non-finite values are capped."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError):
            return None
    if not math.isfinite(seconds):
        return MAX_RETRY_AFTER_SECONDS if seconds > 0 else None
    return min(MAX_RETRY_AFTER_SECONDS, max(0.0, seconds))


def _chat_list(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        payload = response.json()
    except ValueError as exc:
        raise CCAIUnavailable("CCAI Platform's chat list was not JSON.", reached=False) from exc
    if isinstance(payload, dict):  # tolerate an envelope, should the API grow one
        payload = payload.get("chats", payload.get("data"))
    if not isinstance(payload, list):
        raise CCAIUnavailable("CCAI Platform's chat list was not a list.", reached=False)
    return [chat for chat in payload if isinstance(chat, dict)]


def _next_page(response: httpx.Response) -> str | None:
    target = response.links.get("next", {}).get("url")
    if not target:
        return None
    url = response.url.join(target)
    if url.host != response.url.host:
        raise CCAIUnavailable("CCAI Platform's chat list pointed to another host; not followed.", reached=False)
    return str(url)


def _text(value: object) -> str | None:
    return None if value is None else str(value)
