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
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx

from bridge.ccai.chats import moment
from bridge.ccai.pacing import MAX_PAUSE_SECONDS, RateLimiter, Slot
from bridge.ccai.tailing import PAGE_SIZE, Position
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
MAX_RETRY_AFTER_SECONDS = MAX_PAUSE_SECONDS  # a longer pause would read as a clock that stepped back
CHAT_PAGE_SIZE = PAGE_SIZE
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


@dataclass(frozen=True)
class ChatPage:
    """One answer of the chat list: its rows (raw chat objects) and whether more rows match."""

    rows: list[dict[str, Any]]
    more: bool


@dataclass(frozen=True)
class ListedChat:
    """A chat as the Manager API's list shows it: what the lost-answer lookup matches on."""

    id: str
    status: str | None
    out_ticket_id: str | None
    chat_type: str | None
    created_at: float | None  # on CCAI's clock


@dataclass(frozen=True)
class ChatSearch:
    """What :meth:`CCAIClient.find_chats` found: the chats carrying the ticket id (oldest first),
    the attempt's departure on CCAI's clock (None: CCAI sent no ``Date``), and where the search began."""

    chats: list[ListedChat]
    departed_at: float | None
    searched_from: float


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
        self._clock_offset: float | None = None  # CCAI's clock less ours, from its Date headers
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

    async def chat_page(self, params: Mapping[str, Any]) -> ChatPage:
        """One request for the Manager API's chat list (a slot of the rate limit): its rows, and
        whether the answer says more rows match. For tailing: the caller asks again from the last
        row's time rather than for the next page number (Google's advice for the chat list)."""
        response = await self._chat_list_page(params)
        rows = _chat_list(response)
        return ChatPage(rows=rows, more=_more_rows(response, rows, params))

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

    def ccai_time(self) -> float | None:
        """CCAI's clock now, as its ``Date`` headers showed it (None until one was seen)."""
        return None if self._clock_offset is None else time.time() + self._clock_offset

    async def find_chats(self, *, ticket_id: str, since: float, ago: float | None = None) -> ChatSearch:
        """The chats carrying ``ticket_id`` created around or after an attempt that left at ``since``
        (on the store's clock), ``ago`` seconds before this call (as the bridge measured it), oldest first.

        The window is bounded by what the bridge observed, not by one clock: from the earlier of
        ``since`` and the departure on CCAI's own clock (its ``Date`` header less ``ago``), less a
        margin; the departure on CCAI's clock comes back as ``departed_at`` so that the caller can
        tell chats created before the attempt left from the attempt's own.

        Raises :class:`CCAIUnavailable` when the list cannot be read completely: a search that
        could not finish (or whose ``Total`` says rows remain unread) is never taken for "not found".
        """
        started = time.monotonic()

        def departed() -> float | None:
            now = self.ccai_time()
            return None if now is None or ago is None else now - (ago + time.monotonic() - started)

        lower = min(since, departed() or since) - LOOKUP_MARGIN_SECONDS
        try:
            rows = await self._tail_created(lower)
            departed_at = departed()
            if departed_at is not None and departed_at - LOOKUP_MARGIN_SECONDS < lower - 1:
                # The first answer showed CCAI's clock behind ours: search again from its own time.
                lower = departed_at - LOOKUP_MARGIN_SECONDS
                rows = await self._tail_created(lower)
        except CCAIUnavailable:
            self._metrics.ccai_lookups.labels("error").inc()
            raise
        found = [chat for chat in map(_listed, rows) if chat is not None and chat.out_ticket_id == ticket_id]
        self._metrics.ccai_lookups.labels("found" if found else "not_found").inc()
        return ChatSearch(chats=found, departed_at=departed(), searched_from=lower)

    async def _tail_created(self, lower: float) -> list[dict[str, Any]]:
        """Every chat created at or after ``lower``, read by tailing (:mod:`bridge.ccai.tailing`). A
        short page whose ``Total`` or ``Link`` says rows remain unread, or more than MAX_CHAT_PAGES
        pages, raises: a search that did not read them all is never taken for "not found"."""
        rows: dict[str, dict[str, Any]] = {}
        position = Position.start("created_at", lower)
        for _ in range(MAX_CHAT_PAGES):
            params = position.params()
            response = await self._chat_list_page(params)
            batch = _chat_list(response)
            rows.update((str(chat.get("id")), chat) for chat in batch if chat.get("id") not in (None, ""))
            if not _more_rows(response, batch, params):
                if _unread_after_short_page(response, batch, params):
                    raise CCAIUnavailable(
                        "CCAI Platform's chat list says rows remain unread after a short page; a search "
                        "that did not read them all is not taken for 'not found'.",
                        reached=False,
                    )
                return list(rows.values())
            if moment(batch[-1].get("created_at")) is None:
                raise CCAIUnavailable("CCAI's chat list has a chat with no readable created_at.", reached=False)
            position = position.after(batch)
        raise CCAIUnavailable(f"CCAI Platform's chat list has more than {MAX_CHAT_PAGES} pages.", reached=False)

    async def recent_chats(self, *, since: float) -> list[ListedChat]:
        """The newest page of the chat list (created since ``since``, newest first), for ``bridge check``."""
        params = {"created_at[from]": iso_utc(since), "sort_column": "created_at", "sort_direction": "DESC"}
        response = await self._chat_list_page({**params, "per": CHAT_PAGE_SIZE})
        return [chat for chat in map(_listed, _chat_list(response)) if chat is not None]

    @property
    def chat_list_url(self) -> str:
        return f"{self._manager_url}/chats"

    async def _chat_list_page(self, params: Mapping[str, Any]) -> httpx.Response:
        slot = await self.wait_for_slot()
        response = await self._paced("GET", f"{self._manager_url}/chats", slot, params=params)
        if response.status_code == 429:
            await self._throttled(response)
        if response.status_code != 200:
            raise CCAIUnavailable(
                f"CCAI Platform's chat list answered HTTP {response.status_code}.",
                reached=False,
                throttled=response.status_code == 429,
                retry_after=_retry_after(response),
            )
        return response

    def _learn_clock(self, response: httpx.Response) -> None:
        """CCAI's clock against ours, from its ``Date`` header (whole seconds: the offset is kept to
        the second, which the lookup's tolerance allows for)."""
        try:
            moment = email.utils.parsedate_to_datetime(response.headers.get("Date", ""))
        except (TypeError, ValueError, IndexError):
            return
        if moment.tzinfo is not None:
            self._clock_offset = moment.timestamp() + 0.5 - time.time()

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
                response = await self._client.request(method, url, **kwargs)
            self._learn_clock(response)
            return response
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise CCAIUnavailable(
                f"Could not connect to CCAI Platform at {httpx.URL(url).host or self._client.base_url.host} "
                f"({connect_cause(exc)}).",
                reached=False,
            ) from exc
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


def _more_rows(response: httpx.Response, rows: list[dict[str, Any]], params: Mapping[str, Any]) -> bool:
    """Whether rows beyond this page match. A short page ends the list; a full one ends it only
    when the answer says so (a ``Total`` this page reaches, or a ``Link`` without ``next``): some
    tenants send ``Total`` but no ``Link``, and an older copy of the docs promised neither."""
    per = _header_int(response, "Per-Page") or int(params.get("per") or CHAT_PAGE_SIZE)
    if len(rows) < per:
        return False
    total = _header_int(response, "Total")
    if total is not None:
        return total > (int(params.get("page") or 1) - 1) * per + len(rows)
    if "Link" in response.headers:
        return "next" in response.links
    return True


def _unread_after_short_page(response: httpx.Response, rows: list[dict[str, Any]], params: Mapping[str, Any]) -> bool:
    """A page shorter than asked for, whose ``Total`` or ``Link: next`` still says rows remain."""
    per = _header_int(response, "Per-Page") or int(params.get("per") or CHAT_PAGE_SIZE)
    if len(rows) >= per:
        return False
    total = _header_int(response, "Total")
    if total is not None:
        return total > (int(params.get("page") or 1) - 1) * per + len(rows)
    return "next" in response.links


def _header_int(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name, "").strip()
    return int(value) if value.isdigit() else None


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def connect_cause(exc: BaseException) -> str:
    """Why a connection failed, in the words an operator can act on: DNS, refused, TLS or a timeout."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return "DNS: the host name does not resolve"
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused: nothing listens on that port"
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"TLS: the certificate was not accepted ({seen.verify_message})"
        if isinstance(seen, ssl.SSLError):
            return f"TLS: {seen.reason or seen}"
        seen = seen.__cause__ or seen.__context__
    text = str(exc).lower()
    if "name or service not known" in text or "nodename nor servname" in text or "name resolution" in text:
        return "DNS: the host name does not resolve"
    if "refused" in text:
        return "connection refused: nothing listens on that port"
    if "ssl" in text or "certificate" in text:
        return f"TLS: {exc}"
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return "no connection within the timeout"
    return type(exc).__name__


def _listed(chat: Mapping[str, Any]) -> ListedChat | None:
    chat_id = str(chat.get("id") or "")
    if not chat_id:
        return None
    ticket = chat.get("out_ticket_id")
    return ListedChat(
        id=chat_id,
        status=_text(chat.get("status")),
        out_ticket_id=None if ticket in (None, "") else str(ticket),
        chat_type=_text(chat.get("chat_type")),
        created_at=moment(chat.get("created_at")),
    )
