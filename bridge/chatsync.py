"""The chat sync: what happened to each chat the bridge started, kept current on its ticket.

Every ``BRIDGE_CHAT_SYNC_SECONDS`` one process (a lease in the store decides which) reads the
Manager API's chat list for chats updated since the last run, tailing it (each request from the
last row's ``updated_at``, as Google advises; never paged by number): one request per 100 changed
chats, never one per chat, each a slot of the tenant's rate limit. It applies what
changed to the followed chats, flags chats nobody answered, stops following chats that ended or
are too old, and every worker pass writes what changed to the tickets (one CRM call per 200
tickets) and completes the notes of ended chats. Session events CCAI pushes are applied as they
arrive; the poll stays the safety net. Nothing here can send an SMS.

A write holds its chats for as long as the CRM takes (the lease is renewed meanwhile), so no other
process writes the same ticket at the same time; news that arrives during the write is written by
the next one (see :meth:`bridge.store.chats.Chats.record_update`).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from bridge import _backoff
from bridge.ccai.chats import ChatState, NewStatusWords, loggable, opted_out, parse
from bridge.ccai.client import CCAIClient
from bridge.ccai.tailing import Position
from bridge.crm import ChatUpdate, CRMGateway, FollowUp, WriteResult
from bridge.errors import CCAIError, CRMError, CRMRequestError, StoreError
from bridge.lookup_proof import sightings_in
from bridge.store.chats import ChatClaim, Chats, PendingChatUpdate
from bridge.store.lookup_evidence import LookupEvidence
from bridge.store.session_events import SessionEvents
from bridge.store.status import CHAT_SYNC_KEY, StatusBoard
from bridge.times import iso_utc
from bridge.worker import StepContext

logger = logging.getLogger(__name__)

T = TypeVar("T")

LEASE_NAME = "chat-sync"
BATCH_LIMIT = 200
EVENTS_PER_PASS = 500
# CCAI's updated_at has whole seconds and several chats can share one; ``updated_at[from]`` is
# inclusive ("at or after"). Reading from one second before the high-water mark catches a chat that
# changed in that second after the last poll; re-reading a chat is harmless (an older state is
# never applied, and an unchanged one writes nothing).
OVERLAP_SECONDS = 1.0
# A chat CCAI has not yet told of is read from this long before the bridge followed it: its send
# was recorded after CCAI created it (the request's own time, and clocks that differ a little).
UNSEEN_MARGIN_SECONDS = 60.0
# ... for this long after it was followed; one the list never shows must not hold every poll back.
UNSEEN_SECONDS = 900.0
# Requests one poll may make; the next poll goes on from the mark.
MAX_REQUESTS_PER_POLL = 50
MAX_WRITE_ATTEMPTS = 300
# With polling off, chats still expire and go quiet: checked this often.
HOUSEKEEPING_SECONDS = 60.0


@dataclass(frozen=True)
class SyncOptions:
    interval: float  # seconds between polls; 0 turns polling off
    follow_seconds: float
    no_reply_seconds: float  # 0: never say "no reply"
    lease_seconds: float
    # Wrap-up codes that mean "the customer opted out" (CCAI_OPT_OUT_DISPOSITIONS): the number goes on
    # the opt-out list, as it does for a chat that failed with end_user_opt_out.
    opt_out_dispositions: tuple[str, ...] = ()

    @property
    def no_reply_text(self) -> str:
        return f"No reply after {self.no_reply_seconds / 3600:g} h"


class ChatSync:
    """A worker step: pushed events, the poll when due, and the ticket write-backs."""

    def __init__(
        self,
        *,
        context: StepContext,
        chats: Chats,
        events: SessionEvents,
        board: StatusBoard,
        ccai: CCAIClient,
        gateway: CRMGateway,
        options: SyncOptions,
        opt_out: Callable[[str, str], None] | None = None,
        evidence: LookupEvidence | None = None,
    ) -> None:
        """``opt_out(number, chat_id)`` puts a number on the opt-out list because CCAI said so (as
        :meth:`bridge.consent.ConsentCheck.record_opt_out` does for a refused send)."""
        self._owner = context.owner
        self._evidence = evidence
        self._metrics = context.metrics
        self._rng = context.rng
        self._chats = chats
        self._events = events
        self._new_words = NewStatusWords()
        self._board = board
        self._ccai = ccai
        self._gateway = gateway
        self._options = options
        self._opt_out = opt_out
        self._next_poll = 0.0

    async def run_batch(self) -> int:
        handled = await self.apply_events()
        if time.monotonic() >= self._next_poll:
            # With polling off (interval 0) pushed events still arrive, and chats still end or expire.
            interval = self._options.interval or HOUSEKEEPING_SECONDS
            self._next_poll = time.monotonic() + interval
            if await anyio.to_thread.run_sync(
                lambda: self._board.take_lease(LEASE_NAME, self._owner, seconds=interval * 2)
            ):
                await self.poll(read_list=self._options.interval > 0)
        return handled + await self.write()

    async def apply_events(self) -> int:
        """Apply pushed session events; one the store refuses is skipped (logged), an outage raised."""
        seen: list[ChatState] = []
        handled, changed = await anyio.to_thread.run_sync(lambda: self._events.apply(limit=EVENTS_PER_PASS, seen=seen))
        self._metrics.chats_updated.labels("push").inc(changed)
        await self._learn_opt_outs(seen)
        return handled

    async def poll(self, *, read_list: bool = True) -> int:
        """One poll of the chat list (unless ``read_list`` is False), then the no-reply and follow
        housekeeping; returns how many chats changed on their ticket."""
        follow = self._options.follow_seconds
        start = await anyio.to_thread.run_sync(
            lambda: self._chats.poll_start(follow_seconds=follow, unseen_seconds=UNSEEN_SECONDS)
        )
        started = start.now  # the store's clock: the same for every process
        record = await anyio.to_thread.run_sync(self._board.get, CHAT_SYNC_KEY)
        # A mark past this poll's start came from a clock ahead (an earlier version kept it): not believed.
        high_water = min(float(record[0].get("high_water") or 0.0) if record else 0.0, started)
        start_mark = high_water
        changed = requests = 0
        outcome = "ok"
        if start.followed and read_list:  # nothing to follow: no request at all
            since = max(high_water, started - follow)
            if start.unseen_since is not None:
                # A chat followed only after its row was read (its send recorded while the list was
                # being read) is read again: from a little before it was started.
                since = min(since, max(start.unseen_since - UNSEEN_MARGIN_SECONDS, started - follow))
            try:
                paged: list[float] = []  # seconds read past by page number
                async for page in self._tail(since - OVERLAP_SECONDS, paged):
                    requests += 1
                    await self._witness(page)
                    states = [s for s in map(parse, page) if s is not None]
                    self._new_words.notice(states)
                    changed += await anyio.to_thread.run_sync(
                        functools.partial(self._chats.apply, states, follow_seconds=follow)
                    )
                    await self._learn_opt_outs(states)
                    # Only a time this poll could have read moves the mark: one chat stamped ahead
                    # (a CCAI node with a fast clock) must not carry it past every other chat's news.
                    high_water = max([high_water, *(s.updated_at for s in states if s.updated_at <= started)])
                    # Rows of one second read page by page can still shift: the next poll reads that
                    # second once more (once: then the mark is there, and goes on past it).
                    high_water = min([high_water, *(second for second in paged if second > start_mark)])
                    await anyio.to_thread.run_sync(self._save, high_water, started)
            except CCAIError as exc:
                outcome = "error"
                logger.warning("The chat sync could not read CCAI's chat list (%s); it will try again", exc)
        if self._options.no_reply_seconds > 0:
            changed += await anyio.to_thread.run_sync(
                lambda: self._chats.flag_no_reply(
                    older_than=self._options.no_reply_seconds, text=self._options.no_reply_text
                )
            )
        await anyio.to_thread.run_sync(
            lambda: self._chats.stop_following(follow_seconds=follow, text="No further news from CCAI Platform")
        )
        await anyio.to_thread.run_sync(lambda: self._events.forget(forget_before=follow))
        await anyio.to_thread.run_sync(self._save, high_water, started)
        self._metrics.chat_syncs.labels(outcome).inc()
        self._metrics.chats_updated.labels("poll").inc(changed)
        logger.debug("Chat sync: %d followed, %d request(s), %d changed", start.followed, requests, changed)
        return changed

    async def _learn_opt_outs(self, states: list[ChatState]) -> None:
        """Numbers whose chat CCAI says the customer opted out of go on the opt-out list (source
        ``ccai``, the chat id as the note): no ticket may text them again."""
        chat_ids = sorted({s.chat_id for s in states if opted_out(s, self._options.opt_out_dispositions)})
        if not chat_ids or self._opt_out is None:
            return
        numbers = await anyio.to_thread.run_sync(self._chats.numbers, chat_ids)
        for chat_id, number in numbers.items():  # the bridge's own chats only
            if number is None:
                logger.warning(
                    "CCAI says the customer of chat %s opted out, but the bridge no longer knows the number: "
                    "add it with `bridge opt-outs add`",
                    loggable(chat_id),
                )
                continue
            await anyio.to_thread.run_sync(self._opt_out, number, chat_id)

    async def _tail(self, since: float, paged: list[float]) -> AsyncIterator[list[dict[str, Any]]]:
        """The chats updated at or after ``since``, read by tailing (:mod:`bridge.ccai.tailing`); the
        seconds read past by page number go to ``paged``. Stops after ``MAX_REQUESTS_PER_POLL``: the
        next poll goes on from the mark."""
        position = Position.start("updated_at", since)
        for _ in range(MAX_REQUESTS_PER_POLL):
            if position.paged:
                paged.append(position.cursor)
            answer = await self._ccai.chat_page(position.params())
            yield answer.rows
            if not answer.more:
                return
            position = position.after(answer.rows)

    async def _witness(self, page: Sequence[Mapping[str, Any]]) -> None:
        """What the list shows of the bridge's own chats is the lost-answer lookup's evidence
        (:mod:`bridge.lookup_proof`): whether they carry the ticket id the bridge sent."""
        if self._evidence is not None:
            sightings = sightings_in(page)
            await anyio.to_thread.run_sync(self._evidence.observe, sightings)

    def _save(self, high_water: float, polled_at: float) -> None:
        self._board.put(CHAT_SYNC_KEY, {"high_water": high_water, "polled_at": polled_at})

    async def write(self) -> int:
        """Bring chats' news to their tickets: one CRM call for up to 200 of them."""
        claim = await anyio.to_thread.run_sync(
            lambda: self._chats.claim_updates(limit=BATCH_LIMIT, lease_seconds=self._options.lease_seconds)
        )
        if claim is None:
            return 0
        items = claim.items
        shown = [i for i in items if i.case_pending and not i.superseded]
        closing = [i for i in items if i.complete_task and i.task_ref is not None]
        updates = [ChatUpdate(i.ticket_id, i.view.status, i.view.agent, i.view.ended_at, i.view.outcome) for i in shown]
        follow_ups = [
            FollowUp(ticket_id=i.ticket_id, key=f"send {i.send_id}", body=_outcome_note(i), note_ref=i.task_ref or None)
            for i in closing
        ]
        try:
            case_results, task_results = await self._holding(
                claim, lambda: self._gateway.write_chats(updates, follow_ups)
            )
        except CRMError as exc:
            logger.warning("Writing chat news to %d ticket(s) failed: %s", len(items), exc)
            failed = WriteResult(ok=False, retryable=not isinstance(exc, CRMRequestError), message=str(exc))
            case_results, task_results = [failed] * len(updates), [failed] * len(follow_ups)
        results = {i.chat_id: r for i, r in zip(shown, case_results, strict=True)}
        for item, result in zip(closing, task_results, strict=True):
            if item.chat_id not in results or results[item.chat_id].ok:
                results[item.chat_id] = result
        for item in items:
            await anyio.to_thread.run_sync(self._record, claim, item, results.get(item.chat_id, WriteResult(ok=True)))
        return len(items)

    async def _holding(self, claim: ChatClaim, call: Callable[[], T]) -> T:
        """``call`` (in a thread) while the claim's lease is renewed, however long it takes."""
        outcome: list[T] = []
        failure: Exception | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(self._renew, claim)
            try:
                outcome.append(await anyio.to_thread.run_sync(call))
            except Exception as exc:  # raised below as it is, not wrapped in the task group's ExceptionGroup
                failure = exc
            finally:
                group.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return outcome[0]

    async def _renew(self, claim: ChatClaim) -> None:
        lease = self._options.lease_seconds
        while True:
            await anyio.sleep(lease / 3)
            try:
                await anyio.to_thread.run_sync(lambda: self._chats.renew(claim, lease_seconds=lease))
            except StoreError as exc:
                logger.warning("Could not renew the lease on %d chat(s) being written (%s)", len(claim.items), exc)

    def _record(self, claim: ChatClaim, item: PendingChatUpdate, result: WriteResult) -> None:
        retry = not result.ok and result.retryable and item.attempts < MAX_WRITE_ATTEMPTS
        if not result.ok and not retry:
            logger.error(
                "Chat %s's news could not be written to its ticket: %s", loggable(item.chat_id), result.message
            )
        delay = _backoff.after_attempts(item.attempts, rng=self._rng) if retry else None
        if not self._chats.record_update(claim, item, done=result.ok, retry_in=delay, error=result.message):
            logger.warning(
                "Chat %s was taken over by another process while its news was being written; that one writes it",
                loggable(item.chat_id),
            )


def _outcome_note(item: PendingChatUpdate) -> str:
    """The follow-up of a sent SMS's note: what was texted, and how its chat ended."""
    view = item.view
    lines = [f"Text sent to the customer:\n\n{item.message or '(not known)'}", f"CCAI Platform chat id: {item.chat_id}"]
    ended = f", ended {iso_utc(view.ended_at)}" if view.ended_at else ""
    lines.append(f"Chat outcome: {view.status or 'unknown'}{ended}" + (f" ({view.outcome})" if view.outcome else ""))
    if view.agent:
        lines.append(f"Agent: {view.agent}")
    return "\n\n".join(lines)
