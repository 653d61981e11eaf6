"""The operator's dashboard at ``/dashboard``: what the bridge did, without a shell on the server.

Server-rendered pages (Jinja2 with autoescaping, no JavaScript): an overview, the sends with
filters, one send with its timeline, the opt-out list; and one action, retrying a send, as a form.

- HTTP Basic auth, user ``operator`` and ``BRIDGE_DASHBOARD_PASSWORD``, compared in constant time;
  failures are counted like every other door's. Without the password the routes do not exist (404).
- Forms are protected against cross-site requests by a signed token and an origin check; why that
  design, for Basic auth without sessions, is explained in :mod:`bridge._csrf`.
- A send that may already have reached the customer is retried (with ``force``) only after the
  operator ticks a confirmation. Every action is logged with the operator's address and its outcome.
- Numbers are masked everywhere (the store keeps only the masked hint anyway); a message is shown
  only for a send that was sent, as the ticket's note shows it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import anyio
import anyio.to_thread
import jinja2
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bridge._secrets import basic_credentials, matches_any
from bridge.api.opt_outs import view as opt_out_view
from bridge.api.sends import cancel_refusal
from bridge.crm import TicketIds, Words, ticket_or_number
from bridge.errors import AuthenticationFailed, MalformedMessage
from bridge.inbound import Door, positive_int
from bridge.metrics import Metrics
from bridge.model import (
    FINAL_STATUSES,
    MAX_SEND_ID,
    NOTHING_SENT,
    PENDING_STATUSES,
    ActivityCount,
    LogEntry,
    SendRecord,
    SendStatus,
)
from bridge.ops import export
from bridge.ops._csrf import CsrfGuard
from bridge.ops.health import limits, read_verdict
from bridge.ops.overview import read_overview
from bridge.ops.retries import maybe_reached, reached, retry, retry_offer, sentence
from bridge.ops.timeline import readable as readable_timeline
from bridge.ops.verdict import Verdict
from bridge.phones import mask, us_e164
from bridge.store import Store
from bridge.times import readable

logger = logging.getLogger(__name__)

USER = "operator"
PAGE_SIZE = 50
FORM_LIMIT = 4096  # bytes: a token and a checkbox
TEMPLATES = Path(__file__).parent / "templates" / "dashboard"
STATUSES: tuple[SendStatus, ...] = (*PENDING_STATUSES, *FINAL_STATUSES)
# The sends list's time ranges: query value -> (label, seconds).
WITHIN = {"1h": ("last hour", 3600), "24h": ("last 24 hours", 86400), "7d": ("last 7 days", 604800)}

# The activity chart's stacking order (the stylesheet colours each status: one hue per kind of outcome).
CHART_ORDER: tuple[SendStatus, ...] = ("sent", "unknown", "suppressed", *NOTHING_SENT, *PENDING_STATUSES)

SECURITY_HEADERS = {
    # No scripts at all; styles only from the page itself; forms post only here; never framed.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # Our own form posts keep their Referer, the origin check's fallback when a browser drops Origin.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

Page = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Bar:
    """One hour of the activity chart: its label and its stacked segments (status, count, y, height)."""

    label: str
    total: int
    segments: Sequence[tuple[str, int, float, float]]


@dataclass(frozen=True)
class Chart:
    bars: Sequence[Bar]
    peak: int
    legend: Sequence[str]  # the statuses that appear


def activity_chart(start: float, counts: Sequence[ActivityCount], *, hours: int = 24, height: float = 100.0) -> Chart:
    """Stacked bars, one per hour from ``start``, scaled so that the busiest hour is ``height`` tall."""
    per_hour: list[dict[str, int]] = [{} for _ in range(hours)]
    for c in counts:
        if 0 <= c.hour < hours:
            per_hour[c.hour][c.status] = per_hour[c.hour].get(c.status, 0) + c.count
    peak = max((sum(h.values()) for h in per_hour), default=0)
    scale = height / peak if peak else 0.0
    bars = []
    for index, hour in enumerate(per_hour):
        y = height
        segments = []
        for status in CHART_ORDER:  # the same stacking order in every bar
            if count := hour.get(status, 0):
                y -= count * scale
                segments.append((status, count, round(y, 2), round(count * scale, 2)))
        label = dt.datetime.fromtimestamp(start + index * 3600, tz=dt.UTC).strftime("%H:00")
        bars.append(Bar(label=label, total=sum(hour.values()), segments=segments))
    present = {c.status for c in counts if c.count}
    return Chart(bars=bars, peak=peak, legend=[status for status in CHART_ORDER if status in present])


@dataclass(frozen=True)
class SendFilters:
    """The sends list's filters, as given (``shown``, for the form and the paging links) and as parsed."""

    shown: Mapping[str, str]
    status: str | None = None
    ticket_id: str | None = None
    ticket_number: str | None = None  # what agents quote (a CaseNumber), when that was given instead of an id
    within: int | None = None  # seconds back from now
    since: float | None = None
    until: float | None = None


class Dashboard:
    def __init__(
        self,
        *,
        store: Store,
        password: str,
        metrics: Metrics,
        ticket_ids: TicketIds,
        words: Words,
        chat_sync_seconds: float = 60.0,
        ticket_link: Callable[[str], str | None] = lambda ticket_id: None,
    ) -> None:
        self._store = store
        self._limits = limits(chat_sync_seconds=chat_sync_seconds, words=words)
        self._chat_sync = chat_sync_seconds > 0
        self._opt_outs = store.opt_outs
        self._words = words
        self._credentials = f"{USER}:{password}"
        self._door = Door(name="dashboard", metrics=metrics, max_body_bytes=FORM_LIMIT)
        self._ticket_ids = ticket_ids
        self._csrf = CsrfGuard(password=password, path="/dashboard")
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
        )
        environment.filters.update(when=readable, duration=_duration, maybe_reached=maybe_reached, sentence=sentence)
        environment.globals.update(statuses=STATUSES, within=WITHIN, words=words, ticket_link=ticket_link)
        self._templates = environment

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/dashboard", self._guard(self._overview), methods=["GET"]),
            Route("/dashboard/status.json", self._guard(self._status), methods=["GET"]),
            Route("/dashboard/sends", self._guard(self._sends), methods=["GET"]),
            Route("/dashboard/sends.csv", self._guard(self._export_csv), methods=["GET"]),
            Route("/dashboard/sends.json", self._guard(self._export_json), methods=["GET"]),
            Route("/dashboard/sends/{send_id:int}", self._guard(self._send), methods=["GET"]),
            Route("/dashboard/sends/{send_id:int}/retry", self._guard(self._retry), methods=["POST"]),
            Route("/dashboard/sends/{send_id:int}/cancel", self._guard(self._cancel), methods=["POST"]),
            Route("/dashboard/opt-outs", self._guard(self._opt_out_list), methods=["GET"]),
            Route("/dashboard/opt-outs", self._guard(self._opt_out_change), methods=["POST"]),
            # Last: any other page under /dashboard is a dashboard page that says so, not a bare 404.
            Route("/dashboard/{rest:path}", self._guard(self._not_found), methods=["GET"]),
        ]

    def _guard(self, page: Page) -> Page:
        async def guarded(request: Request) -> Response:
            if not matches_any(basic_credentials(request.headers.get("authorization", "")), [self._credentials]):
                self._door.refused(AuthenticationFailed.reason)
                logger.warning(
                    "Dashboard: refused %s from %s: wrong or missing credentials", request.url.path, _address(request)
                )
                return PlainTextResponse(
                    "Sign in as operator with BRIDGE_DASHBOARD_PASSWORD.\n",
                    status_code=401,
                    headers={"WWW-Authenticate": 'Basic realm="bridge dashboard", charset="UTF-8"'},
                )
            response = await page(request)
            response.headers.update(SECURITY_HEADERS)
            return response

        return guarded

    def _render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        token, new_nonce = self._csrf.token(request)
        body = self._templates.get_template(template).render(request=request, csrf=token, **context)
        response = HTMLResponse(body, status_code=status_code)
        if new_nonce is not None:
            self._csrf.set_cookie(request, response, new_nonce)
        return response

    # -- pages --------------------------------------------------------------------------------

    def _verdict(self) -> Verdict:
        return read_verdict(self._store, self._limits, chat_sync=self._chat_sync)

    async def _overview(self, request: Request) -> Response:
        verdict = await anyio.to_thread.run_sync(self._verdict)
        overview = await anyio.to_thread.run_sync(read_overview, self._store)
        start, counts = await anyio.to_thread.run_sync(lambda: self._store.history.activity(hours=24))
        chart = activity_chart(start, counts)
        return self._render(request, "overview.html", verdict=verdict, overview=overview, chart=chart)

    async def _status(self, request: Request) -> Response:
        """The verdict as JSON, for monitors that sign in like a person (the same Basic auth)."""
        verdict = await anyio.to_thread.run_sync(self._verdict)
        return JSONResponse(verdict.as_dict(), status_code=200)

    async def _exported(self, request: Request) -> tuple[SendFilters, list[SendRecord], int] | Response:
        filters, problems = _filters(request.query_params, self._ticket_ids, self._words)
        if problems:  # never a file of every send for a filter that could not be read
            return PlainTextResponse(" ".join(problems) + "\n", status_code=400)
        found = await anyio.to_thread.run_sync(lambda: self._find(filters, None, limit=export.LIMIT))
        total = await anyio.to_thread.run_sync(lambda: self._count(filters))
        return filters, found, total

    async def _export_csv(self, request: Request) -> Response:
        exported = await self._exported(request)
        if isinstance(exported, Response):
            return exported
        _, found, total = exported
        headers = {
            "Content-Disposition": 'attachment; filename="sends.csv"',
            "X-Total-Count": str(total),  # the file holds at most export.LIMIT rows
        }
        return Response(export.as_csv(found), media_type="text/csv; charset=utf-8", headers=headers)

    async def _export_json(self, request: Request) -> Response:
        exported = await self._exported(request)
        if isinstance(exported, Response):
            return exported
        filters, found, total = exported
        return JSONResponse(export.as_json(found, total=total, filters=filters.shown))

    def _count(self, filters: SendFilters) -> int:
        return self._store.history.count(
            ticket_id=filters.ticket_id,
            ticket_number=filters.ticket_number,
            status=filters.status,
            since=filters.since,
            until=filters.until,
            within=filters.within,
        )

    async def _not_found(self, request: Request) -> Response:
        return self._render(request, "not_found.html", status_code=404, path=request.url.path)

    async def _sends(self, request: Request) -> Response:
        filters, problems = _filters(request.query_params, self._ticket_ids, self._words)
        before = _positive(request.query_params.get("before", ""))
        # A filter that cannot be read lists nothing: an unfiltered list would pass for the answer.
        found = [] if problems else await anyio.to_thread.run_sync(self._find, filters, before)
        rows, more = found[:PAGE_SIZE], len(found) > PAGE_SIZE
        older = f"?{urlencode({**filters.shown, 'before': rows[-1].id})}" if more else None
        newest = f"?{urlencode(filters.shown)}" if before is not None else None
        return self._render(
            request,
            "sends.html",
            status_code=400 if problems else 200,
            rows=rows,
            filters=filters.shown,
            problems=problems,
            older=older,
            newest=newest,
        )

    def _find(self, filters: SendFilters, before: int | None, *, limit: int = PAGE_SIZE + 1) -> list[SendRecord]:
        return self._store.history.find(
            ticket_id=filters.ticket_id,
            ticket_number=filters.ticket_number,
            status=filters.status,
            since=filters.since,
            until=filters.until,
            within=filters.within,
            before_id=before,
            limit=limit,
        )

    def _load(self, send_id: int) -> tuple[SendRecord, list[LogEntry]] | None:
        send = self._store.history.get(send_id)
        return None if send is None else (send, self._store.history.timeline(send_id))

    async def _send(self, request: Request, *, status_code: int = 200, error: str | None = None) -> Response:
        send_id = int(request.path_params["send_id"])
        found = await anyio.to_thread.run_sync(self._load, send_id) if send_id <= MAX_SEND_ID else None
        if found is None:
            return self._render(request, "missing.html", status_code=404, send_id=send_id)
        send, timeline = found
        notice = None
        if "canceled" in request.query_params:
            notice = f"Canceled: it will not be sent, and the {self._words.ticket} is told so."
        if "retried" in request.query_params:
            notice = "Queued again" + (
                ", and finished since: the timeline shows how."
                if send.final
                else ": a worker picks it up within seconds."
            )
        return self._render(
            request,
            "send.html",
            status_code=status_code,
            send=send,
            timeline=readable_timeline(timeline, self._words),
            reached=reached(send, self._words),
            message=send.message if send.status == "sent" else None,
            window_ignored=send.overrides.window_ignored,
            retry=retry_offer(send, self._words),
            notice=notice,
            error=error,
        )

    async def _retry(self, request: Request) -> Response:
        send_id, operator = int(request.path_params["send_id"]), _address(request)
        form = await self._form(request)
        if refusal := self._csrf.check(request, form.get("csrf", "")):
            self._door.refused("csrf")
            logger.warning("Dashboard: refused a retry of send %s from %s: %s", send_id, operator, refusal)
            return PlainTextResponse(
                "This form did not come from the dashboard, or has expired: reload the page and try again.\n",
                status_code=403,
            )
        send = await anyio.to_thread.run_sync(self._store.history.get, send_id) if send_id <= MAX_SEND_ID else None
        if send is None:
            return self._render(request, "missing.html", status_code=404, send_id=send_id)
        force = retry_offer(send, self._words).risk is not None
        if force and form.get("confirm") != "yes":
            logger.info(
                "Dashboard: the operator at %s did not confirm a retry of send %s (%s)", operator, send_id, send.status
            )
            error = "Tick the box to confirm: this send may already have reached the customer."
            return await self._send(request, status_code=400, error=error)
        result = await anyio.to_thread.run_sync(lambda: retry(self._store, send_id, force=force, words=self._words))
        logger.info(
            "Dashboard: the operator at %s retried send %s (%s%s): %s",
            operator,
            send_id,
            send.status,
            ", confirmed it may text the customer again" if force else "",
            "queued again" if result.queued else f"refused: {result.message}",
        )
        if not result.queued:  # it changed meanwhile: the page shows what it is now
            offer = result.offer
            why = f"it {offer.why_not}" if offer is not None and offer.why_not else "it changed meanwhile"
            return await self._send(request, status_code=409, error=sentence(f"Not retried: {why}"))
        return RedirectResponse(f"/dashboard/sends/{send_id}?retried=1", status_code=303)

    async def _form(self, request: Request) -> dict[str, str]:
        """The posted form: a few short URL-encoded fields, parsed here from a capped body."""
        try:
            body = await self._door.body(request)
        except MalformedMessage:  # an empty body: no token either
            return {}
        return {key: values[0] for key, values in parse_qs(body.decode("utf-8", "replace")).items()}

    async def _cancel(self, request: Request) -> Response:
        send_id, operator = int(request.path_params["send_id"]), _address(request)
        form = await self._form(request)
        if refusal := self._csrf.check(request, form.get("csrf", "")):
            self._door.refused("csrf")
            logger.warning("Dashboard: refused a cancel of send %s from %s: %s", send_id, operator, refusal)
            return PlainTextResponse(
                "This form did not come from the dashboard, or has expired: reload the page and try again.\n",
                status_code=403,
            )
        who = f"the operator at {operator} (dashboard)"
        canceled = send_id <= MAX_SEND_ID and await anyio.to_thread.run_sync(
            lambda: self._store.sends.cancel(send_id, by=who)
        )
        send = await anyio.to_thread.run_sync(self._store.history.get, send_id) if send_id <= MAX_SEND_ID else None
        if send is None:
            return self._render(request, "missing.html", status_code=404, send_id=send_id)
        if not canceled:
            logger.info("Dashboard: the operator at %s could not cancel send %s (%s)", operator, send_id, send.status)
            return await self._send(request, status_code=409, error=f"It cannot be canceled: {cancel_refusal(send)}")
        logger.info("Dashboard: the operator at %s canceled send %s", operator, send_id)
        return RedirectResponse(f"/dashboard/sends/{send_id}?canceled=1", status_code=303)

    async def _opt_out_list(
        self, request: Request, *, status_code: int = 200, notice: str | None = None, error: str | None = None
    ) -> Response:
        page = _positive(request.query_params.get("page", "")) or 1
        entries, total = await anyio.to_thread.run_sync(
            lambda: self._opt_outs.page(limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        )
        checked = None
        if (asked := request.query_params.get("check", "").strip()) and request.method == "GET":
            try:
                number = us_e164(asked, label="The number")
            except ValueError as exc:
                error, status_code = str(exc), 400
            else:
                entry = await anyio.to_thread.run_sync(self._opt_outs.get, number)
                checked = (mask(number), None if entry is None else opt_out_view(entry))
        return self._render(
            request,
            "opt_outs.html",
            status_code=status_code,
            entries=[opt_out_view(e) for e in entries],
            total=total,
            page=page,
            pages=max(1, -(-total // PAGE_SIZE)),
            checked=checked,
            notice=notice,
            error=error,
        )

    async def _opt_out_change(self, request: Request) -> Response:
        """Add a number to the opt-out list, or remove one (``action``), from the page's forms; logged."""
        operator = _address(request)
        form = await self._form(request)
        if refusal := self._csrf.check(request, form.get("csrf", "")):
            self._door.refused("csrf")
            logger.warning("Dashboard: refused an opt-out change from %s: %s", operator, refusal)
            return PlainTextResponse(
                "This form did not come from the dashboard, or has expired: reload the page and try again.\n",
                status_code=403,
            )
        try:
            number = us_e164(form.get("number", ""), label="The number")
        except ValueError as exc:
            return await self._opt_out_list(request, status_code=400, error=str(exc))
        who = f"the operator at {operator} (dashboard)"
        if form.get("action") == "remove":
            removed = await anyio.to_thread.run_sync(lambda: self._opt_outs.remove(number, by=who))
            logger.info(
                "Dashboard: %s %s %s from the opt-out list", who, "removed" if removed else "did not find", mask(number)
            )
            done = "is off the list: it may be texted again" if removed else "was not on the list"
        else:
            note = form.get("note", "").strip()[:200] or None
            added = await anyio.to_thread.run_sync(lambda: self._opt_outs.add(number, source="dashboard", note=note))
            logger.info("Dashboard: %s added %s to the opt-out list", who, mask(number))
            done = "is now on the list: it is never texted" if added else "was already on the list"
        return await self._opt_out_list(request, notice=f"{mask(number)} {done}.")


def _filters(query: QueryParams, ticket_ids: TicketIds, words: Words) -> tuple[SendFilters, list[str]]:
    """The sends list's filters from the query, and what was wrong with them (those are dropped)."""
    problems: list[str] = []
    shown = {
        k: v.strip() for k, v in query.items() if k in ("status", "case", "within", "since", "until") and v.strip()
    }
    status = shown.get("status")
    if status is not None and status not in STATUSES:
        problems.append(f"There is no status {status!r}.")
        status = None
    ticket, number = shown.get("case"), None
    if ticket is not None:
        try:
            ticket, number = ticket_or_number(ticket, ticket_ids, words)
        except ValueError as exc:
            problems.append(f"{ticket!r} {exc}.")
            ticket = None
    within = shown.get("within")
    if within is not None and within not in WITHIN:
        problems.append(f"There is no time range {within!r}.")
        within = None
    since, until = _moment(shown.get("since"), problems), _moment(shown.get("until"), problems)
    seconds = WITHIN[within][1] if within else None
    filters = SendFilters(
        shown, status=status, ticket_id=ticket, ticket_number=number, within=seconds, since=since, until=until
    )
    return filters, problems


def _address(request: Request) -> str:
    """The operator's address. Behind a trusted proxy (Heroku's router, ``FORWARDED_ALLOW_IPS``) uvicorn
    has already replaced the peer with the X-Forwarded-For client; the header itself is not read here,
    since anyone who reaches the port directly could write any address into it."""
    return request.client.host if request.client else "unknown"


def _moment(text: str | None, problems: list[str]) -> float | None:
    """A filter time from a datetime-local input (UTC), or None."""
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        problems.append(f"{text!r} is not a date and time such as 2026-11-25T09:00.")
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def _positive(text: str) -> int | None:
    return positive_int(text, maximum=MAX_SEND_ID)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
