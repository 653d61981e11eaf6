"""The operator's dashboard at ``/dashboard``: what the bridge did, without a shell on the server.

Server-rendered pages (Jinja2, no JavaScript): an overview, the sends with filters, one send with
its timeline, the opt-out list; and one action, retrying a send, as a form.

- HTTP Basic auth, user ``operator`` and ``BRIDGE_DASHBOARD_PASSWORD``, compared in constant time;
  failures are counted like every other door's. Without the password the routes do not exist.
- Forms carry a token that must match a cookie only this site can set (double submit): a page on
  another site can make the browser post, with the operator's saved credentials, but cannot read
  or set the cookie. The cookie is also SameSite=Strict, and a foreign Origin is refused outright.
- Numbers are masked everywhere (the store keeps only the masked hint anyway); a message is shown
  only for a send that was sent, as the Case's Task shows it.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import anyio.to_thread
import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bridge._body import read_capped
from bridge._secrets import basic_credentials, matches_any
from bridge.crm import TicketIds
from bridge.errors import AuthenticationFailed, MalformedMessage
from bridge.metrics import Metrics
from bridge.model import FINAL_STATUSES, PENDING_STATUSES, ActivityCount, SendRecord, SendStatus
from bridge.optout_api import view as opt_out_view
from bridge.optouts import OptOutList
from bridge.overview import read_overview
from bridge.sends import iso, retry, retryable_without_force
from bridge.store import Store

logger = logging.getLogger(__name__)

USER = "operator"
PAGE_SIZE = 50
FORM_LIMIT = 4096  # bytes: a token and a checkbox
CSRF_COOKIE = "bridge_dashboard_csrf"
TEMPLATES = Path(__file__).parent / "templates" / "dashboard"
STATUSES: tuple[SendStatus, ...] = (*PENDING_STATUSES, *FINAL_STATUSES)

# Colours of the activity chart, by status: one hue per kind of outcome.
STATUS_COLOURS: Mapping[str, str] = {
    "sent": "#2e7d32",
    "failed": "#c62828",
    "unknown": "#ef6c00",
    "opted_out": "#6a1b9a",
    "skipped": "#78909c",
    "suppressed": "#b0bec5",
    "queued": "#1565c0",
    "sending": "#42a5f5",
    "scheduled": "#90caf9",
}

_SECURITY_HEADERS = {
    # No scripts at all; styles only from the page itself; forms post only here; never framed.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
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
    legend: Sequence[tuple[str, str]]  # (status, colour) for the statuses that appear


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
        for status in STATUS_COLOURS:  # the same stacking order in every bar
            if count := hour.get(status, 0):
                y -= count * scale
                segments.append((status, count, round(y, 2), round(count * scale, 2)))
        label = dt.datetime.fromtimestamp(start + index * 3600, tz=dt.UTC).strftime("%H:00")
        bars.append(Bar(label=label, total=sum(hour.values()), segments=segments))
    present = {c.status for c in counts if c.count}
    return Chart(bars=bars, peak=peak, legend=[(s, colour) for s, colour in STATUS_COLOURS.items() if s in present])


class Dashboard:
    def __init__(
        self,
        *,
        store: Store,
        opt_outs: OptOutList,
        password: str,
        metrics: Metrics,
        ticket_ids: TicketIds,
    ) -> None:
        self._store = store
        self._opt_outs = opt_outs
        self._credentials = f"{USER}:{password}"
        self._metrics = metrics
        self._ticket_ids = ticket_ids
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
        )
        environment.filters["when"] = _when
        environment.filters["duration"] = _duration
        environment.globals["colours"] = STATUS_COLOURS
        self._templates = environment

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/dashboard", self._guard(self._overview), methods=["GET"]),
            Route("/dashboard/sends", self._guard(self._sends), methods=["GET"]),
            Route("/dashboard/sends/{send_id:int}", self._guard(self._send), methods=["GET"]),
            Route("/dashboard/sends/{send_id:int}/retry", self._guard(self._retry), methods=["POST"]),
            Route("/dashboard/opt-outs", self._guard(self._opt_out_list), methods=["GET"]),
        ]

    # -- access -------------------------------------------------------------------------------

    def _guard(self, page: Page) -> Page:
        async def guarded(request: Request) -> Response:
            if not matches_any(basic_credentials(request.headers.get("authorization", "")), [self._credentials]):
                self._metrics.refused("dashboard", AuthenticationFailed.reason)
                logger.warning("Refused a request to %s: wrong or missing dashboard credentials", request.url.path)
                return PlainTextResponse(
                    "Sign in as operator with BRIDGE_DASHBOARD_PASSWORD.\n",
                    status_code=401,
                    headers={"WWW-Authenticate": 'Basic realm="bridge dashboard", charset="UTF-8"'},
                )
            response = await page(request)
            response.headers.update(_SECURITY_HEADERS)
            return response

        return guarded

    def _render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        body = self._templates.get_template(template).render(request=request, csrf=token, **context)
        response = HTMLResponse(body, status_code=status_code)
        if request.cookies.get(CSRF_COOKIE) != token:
            response.set_cookie(
                CSRF_COOKIE, token, path="/dashboard", httponly=True, samesite="strict", secure=_https(request)
            )
        return response

    async def _form(self, request: Request) -> dict[str, str] | None:
        """The posted form, if it came from one of our pages; None for a forged or stale one.
        (Our forms are a few short fields, URL-encoded: parsed here, from a capped body.)"""
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
            return None
        try:
            body = await read_capped(request, FORM_LIMIT)
        except MalformedMessage:  # an empty body: no token either
            return None
        form = {key: values[0] for key, values in parse_qs(body.decode("utf-8", "replace")).items()}
        cookie, given = request.cookies.get(CSRF_COOKIE, ""), form.get("csrf", "")
        if not cookie or not matches_any(given, [cookie]):
            return None
        return form

    # -- pages --------------------------------------------------------------------------------

    async def _overview(self, request: Request) -> Response:
        overview = await anyio.to_thread.run_sync(read_overview, self._store)
        start, counts = await anyio.to_thread.run_sync(lambda: self._store.activity(hours=24))
        return self._render(request, "overview.html", overview=overview, chart=activity_chart(start, counts))

    async def _sends(self, request: Request) -> Response:
        query = request.query_params
        problems: list[str] = []
        status = query.get("status", "")
        if status and status not in STATUSES:
            problems.append(f"There is no status {status!r}.")
            status = ""
        ticket = query.get("case", "").strip()
        if ticket:
            try:
                ticket = self._ticket_ids(ticket)
            except ValueError as exc:
                problems.append(f"{ticket!r} {exc}.")
                ticket = ""
        since, until = _moment(query.get("since", ""), problems), _moment(query.get("until", ""), problems)
        before = _positive(query.get("before", ""))
        found = await anyio.to_thread.run_sync(
            lambda: self._store.find(
                ticket_id=ticket or None,
                status=status or None,
                since=since,
                until=until,
                before_id=before,
                limit=PAGE_SIZE + 1,
            )
        )
        rows, more = found[:PAGE_SIZE], len(found) > PAGE_SIZE
        filters = {k: v for k, v in query.items() if k in ("status", "case", "since", "until") and v}
        older = f"?{urlencode({**filters, 'before': rows[-1].id})}" if more else None
        newest = f"?{urlencode(filters)}" if before is not None else None
        return self._render(
            request,
            "sends.html",
            status_code=400 if problems else 200,
            rows=rows,
            statuses=STATUSES,
            filters=filters,
            problems=problems,
            older=older,
            newest=newest,
        )

    async def _send(self, request: Request, *, status_code: int = 200, error: str | None = None) -> Response:
        send_id = int(request.path_params["send_id"])
        send = await anyio.to_thread.run_sync(self._store.get, send_id)
        if send is None:
            return self._render(request, "missing.html", status_code=404, send_id=send_id)
        timeline = await anyio.to_thread.run_sync(self._store.timeline, send_id)
        return self._render(
            request,
            "send.html",
            status_code=status_code,
            send=send,
            timeline=timeline,
            message=send.message if send.status == "sent" else None,
            retry=_retry_offer(send),
            retried="retried" in request.query_params,
            error=error,
        )

    async def _retry(self, request: Request) -> Response:
        send_id = int(request.path_params["send_id"])
        form = await self._form(request)
        if form is None:
            self._metrics.refused("dashboard", "csrf")
            return PlainTextResponse(
                "This form did not come from the dashboard, or has expired: reload the page and try again.\n",
                status_code=403,
            )
        send = await anyio.to_thread.run_sync(self._store.get, send_id)
        if send is None:
            return self._render(request, "missing.html", status_code=404, send_id=send_id)
        force = not retryable_without_force(send)
        if force and form.get("confirm") != "yes":
            error = "Tick the box to confirm: this send may already have reached the customer."
            return await self._send(request, status_code=400, error=error)
        result = await anyio.to_thread.run_sync(lambda: retry(self._store, send_id, force=force))
        logger.info(
            "Dashboard: the operator at %s retried send %s (%s%s): %s",
            _address(request),
            send_id,
            send.status,
            ", confirmed it may text the customer again" if force else "",
            "queued again" if result.queued else "refused",
        )
        if not result.queued:
            return await self._send(request, status_code=409, error=result.message.replace(" add --force", ""))
        return RedirectResponse(f"/dashboard/sends/{send_id}?retried=1", status_code=303)

    async def _opt_out_list(self, request: Request) -> Response:
        page = _positive(request.query_params.get("page", "")) or 1
        entries, total = await anyio.to_thread.run_sync(
            lambda: self._opt_outs.page(limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        )
        return self._render(
            request,
            "opt_outs.html",
            entries=[opt_out_view(e) for e in entries],
            total=total,
            page=page,
            pages=max(1, -(-total // PAGE_SIZE)),
        )


@dataclass(frozen=True)
class RetryOffer:
    allowed: bool
    needs_confirmation: bool
    why_not: str | None = None


def _retry_offer(send: SendRecord) -> RetryOffer:
    """What the send page offers: a retry, a retry to confirm, or why there is none."""
    if not send.final:
        return RetryOffer(False, False, f"It is {send.status}: the bridge is still working on it.")
    if send.overrides.get("end_user_number_removed"):
        return RetryOffer(False, False, "It was made for a number given in its request, which is not kept.")
    return RetryOffer(True, not retryable_without_force(send))


def _https(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


def _address(request: Request) -> str:
    """The operator's address: the first X-Forwarded-For hop behind a router (Heroku), else the peer."""
    forwarded = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
    return forwarded or (request.client.host if request.client else "unknown")


def _moment(text: str, problems: list[str]) -> float | None:
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
    return int(text) if text.isdigit() and 0 < int(text) < 2**31 else None


def _when(timestamp: float | None) -> str:
    text = iso(timestamp)
    return "–" if text is None else text.replace("T", " ").removesuffix("Z") + " UTC"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
