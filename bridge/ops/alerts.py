"""The alert webhook: the verdict, posted to ``BRIDGE_ALERT_WEBHOOK_URL`` when it changes.

The message is Slack's incoming-webhook JSON (``text`` for notifications, ``blocks`` for the
layout, and the verdict itself in ``metadata.event_payload`` for receivers that read fields), so
a Slack or Mattermost channel, or any HTTPS endpoint, can take it. When to post is decided in
:mod:`bridge.ops.alert_state`; this module reads the verdict, shares the decision with the other
processes through an :class:`AlertLedger`, and delivers.

Alerting never stands in the way of sending: it runs as its own task, every store access off the
event loop, every request bounded by a deadline, and a receiver that fails is retried with
backoff while the bridge goes on. The webhook's URL is a secret (Slack's carries its token): logs
name only its host. Texts are built from counts and masked again before they leave, so no
customer's number reaches the receiver.
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol, assert_never
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import httpx

from bridge import __version__
from bridge.ops.alert_state import (
    Alert,
    AlertPolicy,
    AlertState,
    Delivery,
    claim,
    decide,
    from_record,
    settle,
    to_record,
)
from bridge.ops.verdict import Level, Verdict, clock, duration
from bridge.phones import mask_numbers
from bridge.store.status import StatusBoard
from bridge.times import iso

logger = logging.getLogger(__name__)

# Slack's documented limits: a header's text, a section's text, and its advice on message length.
HEADER_LIMIT, SECTION_LIMIT, TEXT_LIMIT = 150, 3000, 4000
_EMOJI: Mapping[Level, str] = {
    "healthy": ":large_green_circle:",
    "degraded": ":large_orange_circle:",
    "down": ":red_circle:",
}


def payload(alert: Alert, *, name: str, dashboard_url: str | None = None) -> dict[str, Any]:
    """The message for ``alert``: Slack-compatible, and the same facts as fields in ``metadata``."""
    title = _title(alert, name)
    lines = [f"• {_escape(reason.sentence)}" for reason in alert.reasons if reason.severity != "note"]
    notes = [f"• {_escape(reason.sentence)}" for reason in alert.reasons if reason.severity == "note"]
    body = "\n".join(lines) or "Nothing is wrong now."
    if notes:
        body += "\n*Also:*\n" + "\n".join(notes)
    context = f"{alert.level.capitalize()} since {clock(alert.since, alert.decided_at)}"
    if dashboard_url:
        context += f" · <{_escape(dashboard_url)}|Open the dashboard>"
    summary = title + "".join(f"\n{reason.sentence}" for reason in alert.reasons if reason.severity != "note")
    return {
        "text": _masked(summary)[:TEXT_LIMIT],
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": _masked(title)[:HEADER_LIMIT]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _masked(body)[:SECTION_LIMIT]}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _masked(context)}]},
        ],
        "metadata": {
            "event_type": "bridge_verdict",
            "event_payload": {
                "kind": alert.kind,
                "verdict": alert.level,
                "previous": alert.previous,
                "since": iso(alert.since),
                "reasons": [{**reason.as_dict(), "text": _masked(reason.text)} for reason in alert.reasons],
            },
        },
    }


def _title(alert: Alert, name: str) -> str:
    emoji = _EMOJI[alert.level]
    match alert.kind:
        case "changed":
            return f"{emoji} {name} is {alert.level.upper()} (was {alert.previous})"
        case "recovered":
            lasted = "" if alert.previous_since is None else f" after {duration(alert.since - alert.previous_since)}"
            return f"{emoji} {name} recovered: healthy again{lasted} {alert.previous}"
        case "reminder":
            return f"{emoji} {name} is still {alert.level.upper()} ({duration(alert.decided_at - alert.since)})"
        case _:
            assert_never(alert.kind)


def _escape(text: str) -> str:
    # Slack reads &, < and > as markup (<!channel> would notify everyone).
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _masked(text: str) -> str:
    return mask_numbers(text)


# -- delivery -------------------------------------------------------------------------------------


class Poster(Protocol):
    where: str

    async def post(self, body: Mapping[str, Any]) -> Delivery: ...


class WebhookSender:
    """Posts JSON to the webhook, with one deadline for the whole request; every failure becomes a
    :class:`Delivery` saying whether to try again."""

    def __init__(
        self,
        *,
        url: str,
        timeout: float = 10.0,
        ca_bundle: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        parts = urlsplit(url)
        self.where = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"  # never the path: it holds the secret
        self._url = url
        self._deadline = timeout
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            verify=verify,
            transport=transport,
            follow_redirects=False,  # a redirect would carry the message somewhere not configured
            headers={"User-Agent": f"ccai-sms-bridge/{__version__}"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def post(self, body: Mapping[str, Any]) -> Delivery:
        try:
            with anyio.fail_after(self._deadline):
                response = await self._client.post(self._url, json=body)
        except TimeoutError:
            return Delivery(False, f"{self.where} did not answer within {self._deadline:g} s")
        except httpx.ConnectError:
            return Delivery(False, f"could not connect to {self.where}")
        except (httpx.RemoteProtocolError, httpx.ReadError):
            return Delivery(False, f"{self.where} dropped the connection without an answer")
        except httpx.HTTPError as exc:  # its message can hold the URL: name the kind of failure only
            return Delivery(False, f"{self.where}: {type(exc).__name__}")
        return _answer(response, self.where)


def _answer(response: httpx.Response, where: str) -> Delivery:
    status = response.status_code
    said = mask_numbers(" ".join(response.text.split())[:200])
    detail = f"{where} answered {status}" + (f" ({said})" if said else "")
    if 200 <= status < 300:
        return Delivery(True, detail)
    if status == 429:
        return Delivery(False, detail, retry_after=_seconds(response.headers.get("retry-after")))
    if status >= 500 or status in (408, 425):
        return Delivery(False, detail)
    # 3xx (never followed), 400 invalid_payload, 403 action_prohibited, 404 no_service, 410 channel_is_archived:
    # the same message cannot succeed.
    return Delivery(False, detail, permanent=True)


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date or garbage: back off as usual


# -- the shared decision ---------------------------------------------------------------------------


class AlertLedger(Protocol):
    """Where the alert state lives, shared by every process of one bridge."""

    def load(self) -> AlertState: ...

    def swap(self, old: AlertState, new: AlertState) -> AlertState | None:
        """Store ``new`` (as the next version) if the state is still ``old``; None if another
        process changed it first."""
        ...


class MemoryLedger:
    """The state of one process (a bridge on SQLite has one; tests)."""

    def __init__(self, state: AlertState | None = None) -> None:
        self._state = state or AlertState()
        self._lock = threading.Lock()

    def load(self) -> AlertState:
        with self._lock:
            return self._state

    def swap(self, old: AlertState, new: AlertState) -> AlertState | None:
        with self._lock:
            if self._state.version != old.version:
                return None
            self._state = replace(new, version=old.version + 1)
            return self._state


class StoreLedger:
    """The alert state in the store (one ``bridge_status`` row), shared by every process of the bridge."""

    KEY = "alerts"

    def __init__(self, board: StatusBoard) -> None:
        self._board = board

    def load(self) -> AlertState:
        found = self._board.get(self.KEY)
        return AlertState() if found is None else from_record(found[0])

    def swap(self, old: AlertState, new: AlertState) -> AlertState | None:
        stored = replace(new, version=old.version + 1)
        # Version 0 is the state before anything was stored.
        before = None if old.version == 0 else to_record(old)
        return stored if self._board.swap(self.KEY, before, to_record(stored)) else None


class Alerter:
    """Looks at the verdict every ``interval`` seconds and posts what :func:`decide` says to."""

    def __init__(
        self,
        *,
        read: Callable[[], Verdict],
        ledger: AlertLedger,
        sender: Poster,
        policy: AlertPolicy | None = None,
        name: str = "The bridge",
        dashboard_url: str | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._read = read
        self._ledger = ledger
        self._sender = sender
        self._policy = policy or AlertPolicy()
        self._name = name
        self._dashboard_url = dashboard_url
        self._rng = rng or random.Random()
        self._given_clock = clock
        self._clock: Callable[[], float] = clock or time.time

    async def run(self, *, interval: float) -> None:
        """Look until cancelled; a failed look is logged and the next one tries again."""
        while True:
            try:
                await self.tick()
            except Exception:
                logger.exception("Alerts: could not look at the verdict; trying again in %.0f s", interval)
            await anyio.sleep(interval)

    async def tick(self) -> Delivery | None:
        """Decide, and deliver what is due; the delivery (or None when nothing was sent)."""
        verdict = await anyio.to_thread.run_sync(self._read)
        if self._given_clock is None:
            # Every process judges time by the store's clock (the verdict's), not by its host's.
            read_at = time.monotonic()
            self._clock = lambda: verdict.at + (time.monotonic() - read_at)
        state = await anyio.to_thread.run_sync(self._ledger.load)
        decided = decide(state, verdict, self._policy)
        if decided != state:
            stored = await anyio.to_thread.run_sync(self._ledger.swap, state, decided)
            if stored is None:
                return None  # another process decided first; look again next time
            _log_decision(state, stored, verdict)
            state = stored
        held = claim(state, self._clock(), self._policy)
        if held is None:
            return None
        claimed = await anyio.to_thread.run_sync(self._ledger.swap, state, held)
        if claimed is None or claimed.outbox is None:
            return None  # another process claimed it
        alert = claimed.outbox.alert
        delivery = await self._sender.post(payload(alert, name=self._name, dashboard_url=self._dashboard_url))
        await anyio.to_thread.run_sync(self._record, claimed, alert, delivery)
        return delivery

    def _record(self, state: AlertState, alert: Alert, delivery: Delivery) -> None:
        """Fold the delivery in, even if the state moved on while the request was out."""
        for _ in range(5):
            settled = settle(state, alert, delivery, self._clock(), self._policy, self._rng)
            if self._ledger.swap(state, settled) is not None:
                _log_delivery(alert, delivery, settled, self._clock())
                return
            state = self._ledger.load()
        logger.warning("Alerts: could not record the delivery of the %s alert (the state kept changing)", alert.level)


def _log_decision(before: AlertState, after: AlertState, verdict: Verdict) -> None:
    if after.outbox is not None and (before.outbox is None or before.outbox.alert != after.outbox.alert):
        if before.outbox is None or before.outbox.alert.decided_at != after.outbox.alert.decided_at:
            alert = after.outbox.alert
            logger.info(
                "Alerts: announcing %s (%s, was %s): %s", alert.kind, alert.level, alert.previous, verdict.headline
            )
    elif before.outbox is not None and after.outbox is None:
        logger.info("Alerts: dropped an unsent %s alert: the verdict is back to what was last announced", before.seen)


def _log_delivery(alert: Alert, delivery: Delivery, after: AlertState, now: float) -> None:
    if delivery.ok:
        logger.info("Alerts: the %s alert (%s) was delivered: %s", alert.kind, alert.level, delivery.detail)
    elif after.outbox is None:
        logger.error("Alerts: gave up on the %s alert (%s): %s", alert.kind, alert.level, delivery.detail)
    else:
        wait = after.outbox.next_try_at - now
        logger.warning("Alerts: the %s alert (%s) was not delivered: %s; next try in about %.0f s",
                       alert.kind, alert.level, delivery.detail, max(0.0, wait))  # fmt: skip
