"""The send step: claim → settle what needs no SMS → look up lost answers → loop guard → read the
tickets → map → consent and send window → pace → send → record.

Everything it learns goes to the store before it moves on, so a crash anywhere resumes from there.
The one step that cannot be made atomic is the CCAI request itself: the send is flagged *inflight*
just before it leaves, and a send found still flagged after its worker died is treated as
possibly delivered (see :mod:`bridge.policy`). What to do after each step is decided by
:mod:`bridge.policy`; this module carries it out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import anyio
import anyio.to_thread

from bridge import _backoff, departure, lookup, lookup_proof, policy
from bridge.ccai.client import CCAIClient
from bridge.ccai.pacing import Slot
from bridge.consent import Allow, Block, ConsentCheck, Hold, Verdict
from bridge.crm import CRMGateway, Ticket
from bridge.errors import CCAIError, CCAIUnavailable, CRMError, StoreError, StoreUnavailable, StoreWentBack
from bridge.logs import about_send
from bridge.mapping import TicketMapper
from bridge.model import Chat, ClaimedSend, OptOutReading, Outcome, SmsRequest
from bridge.phones import mask
from bridge.segments import count_segments
from bridge.store.lookup_evidence import LookupEvidence
from bridge.store.sends import Sends
from bridge.store.takeovers import Takeovers
from bridge.worker import StepContext

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendOptions:
    batch_size: int
    lease_seconds: float
    loop_guard_seconds: float
    max_concurrency: int
    create_task: bool
    ccai_deadline: float
    chat_type: str | None = None  # what the bridge's requests carry: a listed chat of another type is not ours


class SendStep:
    """One batch of sends per :meth:`run_batch`."""

    def __init__(
        self,
        *,
        context: StepContext,
        sends: Sends,
        takeovers: Takeovers,
        gateway: CRMGateway,
        ccai: CCAIClient,
        mapper: TicketMapper,
        consent: ConsentCheck,
        limits: policy.Limits,
        options: SendOptions,
        evidence: LookupEvidence,
    ) -> None:
        self._owner = context.owner
        self._evidence = evidence
        self._claimed_mono: dict[int, float] = {}  # when each send of the batch was claimed (monotonic)
        self._holdings = context.holdings
        self._stopping = context.stopping
        self._metrics = context.metrics
        self._rng = context.rng
        self._lead = departure.Lead()
        self._words = context.words
        self._sends = sends
        self._takeovers = takeovers
        self._gateway = gateway
        self._ccai = ccai
        self._mapper = mapper
        self._consent = consent
        self._limits = limits
        self._options = options

    async def run_batch(self) -> int:
        options = self._options
        settle = self._settle_seconds()
        try:
            claimed = await anyio.to_thread.run_sync(
                lambda: self._sends.claim(
                    self._owner, limit=options.batch_size, lease_seconds=options.lease_seconds, settle_seconds=settle
                )
            )
        except StoreWentBack as exc:
            await self._went_back(exc)
            return 0
        self._claimed_mono = dict.fromkeys((job.id for job in claimed), time.monotonic())
        with self._holdings.sends(job.id for job in claimed):
            to_guard: list[ClaimedSend] = []
            for job in claimed:
                async with self._alone(job):
                    if (ready := await self._before_sending(job)) is not None:
                        to_guard.append(ready)
            to_read = [job for job in to_guard if await self._passes_loop_guard(job)]
            if to_read:
                await self._read_map_and_send(to_read)
        return len(claimed)

    def _settle_seconds(self) -> float:
        """How long a send taken from a holder that may be alive waits before its chat is looked up."""
        return departure.settle_after_takeover(
            lease_seconds=self._options.lease_seconds, ccai_deadline=self._options.ccai_deadline, holder_alive=True
        )

    async def _went_back(self, exc: StoreWentBack) -> None:
        """Say so loudly, and have every unfinished send looked up before anything is sent from this store."""
        logger.error(
            "%s Every send not finished is now treated as possibly delivered: its chat is looked up in CCAI "
            "Platform before anything is sent. Events acknowledged shortly before may be lost (README: What is "
            "guaranteed).",
            exc,
        )
        flagged = await anyio.to_thread.run_sync(
            lambda: self._takeovers.after_going_back(
                self._owner, settle_seconds=self._settle_seconds(), detail=str(exc)
            )
        )
        logger.error("%d unfinished send(s) will be looked up in CCAI Platform before any is sent", flagged)

    # -- before anything is sent --------------------------------------------------------------

    async def _before_sending(self, job: ClaimedSend) -> ClaimedSend | None:
        """Stop runaway sends, and resolve a possibly delivered send by looking its chat up."""
        decision = policy.on_claim(job, self._limits)
        if isinstance(decision, policy.Finish):
            await self._finish(job, decision)
            return None
        if isinstance(decision, policy.Proceed):
            return job
        try:
            judged = await self._look_up(job)
        except CCAIUnavailable as exc:
            failed = policy.after_lookup(exc, job, self._limits, rng=self._rng)
            assert not isinstance(failed, policy.Proceed), "a failed lookup never leads to sending"
            await self._apply(job, failed)
            return None
        if isinstance(judged, lookup.Unsure):
            if judged.wait > 0:
                retry = policy.Retry(delay=judged.wait, reason=judged.reason, may_have_sent=True)
                await self._apply(job, retry)
            else:
                logger.warning("Send %s: %s", job.id, judged.reason)
                await self._finish(job, policy.Finish("unknown", judged.reason))
            return None
        found = Chat(id=judged.chat.id, status=judged.chat.status) if isinstance(judged, lookup.Found) else None
        if found is None:
            # The whole list was read and holds no chat for the earlier attempts: nothing reached the customer.
            if not await anyio.to_thread.run_sync(lambda: self._sends.confirm_not_sent(job.id, token=job.token)):
                return None
            job = dataclasses.replace(job, may_have_sent=False)
        after = policy.after_lookup(found, job, self._limits, rng=self._rng)
        if isinstance(after, policy.Proceed):
            logger.info("Send %s: no chat found for the earlier unanswered attempt; sending it", job.id)
            return job
        if found is not None:
            logger.info("Send %s: chat %s found in CCAI after a lost answer; not sent again", job.id, found.id)
        await self._apply(job, after)
        return None

    async def _look_up(self, job: ClaimedSend) -> lookup.Judgement:
        """Search CCAI's chat list for the send's own chat, and judge what was found (:mod:`bridge.lookup`)."""
        since = job.ambiguous_since or job.first_attempt_at
        assert since is not None, "a possibly delivered send has had an attempt"
        # How long ago the attempt left, measured on the store's clock alone (both readings are its own),
        # so that the window can be placed on CCAI's clock whatever the two clocks say.
        ago = max(0.0, job.claimed_at - since) + (time.monotonic() - self._claimed_mono.get(job.id, time.monotonic()))
        search = await self._ccai.find_chats(ticket_id=job.ticket_id, since=since, ago=ago)
        # A chat already recorded for another send of the same ticket is that send's, not this one's.
        known = await anyio.to_thread.run_sync(self._sends.known_chat_ids, [c.id for c in search.chats])
        others = await anyio.to_thread.run_sync(lambda: self._sends.others_unanswered(job.ticket_id, exclude=job.id))
        proof = lookup_proof.judge(await anyio.to_thread.run_sync(self._evidence.recent))
        return lookup.judge(
            search,
            since=since,
            known=known,
            chat_type=self._options.chat_type,
            others_unresolved=others,
            proof=proof,
            ago=ago,
        )

    async def _passes_loop_guard(self, job: ClaimedSend) -> bool:
        if job.first_attempt_at is not None:
            return True  # a retry: the guard let it through on its first attempt
        cooldown = self._options.loop_guard_seconds if policy.loop_guarded(job.origin) else 0.0
        recent = await anyio.to_thread.run_sync(
            lambda: self._sends.start_attempt(job.id, job.ticket_id, token=job.token, cooldown=cooldown)
        )
        if recent is None:
            return True
        minutes = math.ceil(self._options.loop_guard_seconds / 60)
        ticket = self._words.ticket
        reason = (
            f"Suppressed: send {recent} for this {ticket} was under way or texted the customer less than {minutes} "
            f"minute(s) ago, so this event (often fired by the bridge's own update of the {ticket}) is not texted "
            "again."
        )
        # Writing this back would update the Case and could fire the rule once more.
        await self._finish(job, policy.Finish("suppressed", reason, write_back=False))
        return False

    # -- read, map, send ----------------------------------------------------------------------

    async def _read_map_and_send(self, jobs: list[ClaimedSend]) -> None:
        tickets = await self._read_tickets(jobs)
        if tickets is None:
            return
        ready: list[tuple[ClaimedSend, Ticket, SmsRequest]] = []
        for job in jobs:
            async with self._alone(job):
                ticket = tickets.get(job.ticket_id)
                if (request := await self._map_and_check(job, ticket)) is not None and ticket is not None:
                    ready.append((job, ticket, request))
        limit = anyio.CapacityLimiter(self._options.max_concurrency)
        async with anyio.create_task_group() as group:
            for job, ticket, request in ready:
                group.start_soon(self._send_guarded, limit, job, ticket, request)
        # After the requests left, so that it costs them no time.
        await self._note_numbers(jobs, tickets)

    async def _note_numbers(self, jobs: Sequence[ClaimedSend], tickets: dict[str, Ticket]) -> None:
        """The numbers agents quote (CaseNumbers), for the dashboard's search; a failure to note them
        is logged and never holds a send up."""
        numbers = {job.id: ticket.number for job in jobs if (ticket := tickets.get(job.ticket_id)) and ticket.number}
        if not numbers:
            return
        try:
            await anyio.to_thread.run_sync(lambda: self._sends.note_ticket_numbers(numbers))
        except StoreError as exc:  # (a store that went back in time is noticed by the next departure)
            logger.warning("The %s numbers could not be noted (%s)", self._words.ticket, exc)

    async def _map_and_check(self, job: ClaimedSend, ticket: Ticket | None) -> SmsRequest | None:
        """The SMS request for the ticket, if it may be sent now; otherwise the send is finished or held."""
        if ticket is None:
            words = self._words
            reason = f"The {words.ticket} was not found in {words.crm} (deleted, or not visible to the bridge's user)."
            await self._finish(job, policy.settle("failed", reason, job, write_back=False))
            return None
        mapped = self._mapper.map(ticket, job.overrides)
        if isinstance(mapped, Outcome):
            await self._finish(job, policy.settle(mapped.status, mapped.reason, job), hint=mapped.end_user_hint)
            return None
        return mapped if await self._allowed(job, ticket, mapped, now=job.claimed_at) else None

    async def _allowed(self, job: ClaimedSend, ticket: Ticket, request: SmsRequest, *, now: float) -> bool:
        """The consent and send-window check at ``now`` (the claim's time), on this fresh read of the
        ticket, for every attempt; checked again, with the lease, as the request leaves."""
        ignore = policy.may_ignore_window(job.origin) and job.overrides.window_ignored
        verdict = await anyio.to_thread.run_sync(
            lambda: self._consent.check(ticket, request.end_user_number, now=now, ignore_window=ignore)
        )
        if not isinstance(verdict, Allow):
            await self._refused(job, request, verdict)
            return False
        if verdict.window_ignored:  # said once, here, not again at departure
            logger.info("Send %s: the send window was ignored, as the agent's request asked", job.id)
        return True

    async def _read_tickets(self, jobs: Sequence[ClaimedSend]) -> dict[str, Ticket] | None:
        ids = sorted({job.ticket_id for job in jobs})
        fields = (*self._mapper.fields, *self._consent.fields)
        try:
            return await anyio.to_thread.run_sync(lambda: self._gateway.read_tickets(ids, fields))
        except CRMError as exc:
            logger.warning("Reading %d %s(s) failed: %s", len(ids), self._words.ticket, exc)
            # One delay for the whole batch, so that the retry is again a single query.
            wait = _backoff.delay(min(j.retrying_for for j in jobs), rng=self._rng)
            for job in jobs:
                with about_send(job.id):
                    await self._apply(job, policy.after_read_failure(exc, job, self._limits, wait=wait))
        return None

    async def _send_guarded(
        self, limit: anyio.CapacityLimiter, job: ClaimedSend, ticket: Ticket, request: SmsRequest
    ) -> None:
        """One send; a failure of this send never cancels the others of its batch."""
        async with limit:
            with about_send(job.id):  # this task's log lines carry the send id
                state = _Attempt()
                try:
                    await self._send_one(job, ticket, request, state)
                except StoreUnavailable as exc:
                    # No longer in hand once the batch ends: its lease runs out and it is taken up
                    # again, following the lost-answer rule.
                    logger.warning("Send %s could not be recorded (%s); it will be taken up again", job.id, exc)
                except Exception:
                    logger.exception("Send %s failed unexpectedly", job.id)
                    job = dataclasses.replace(job, may_have_sent=job.may_have_sent or state.departed)
                    await self._finish_after_error(job, request)

    @contextlib.asynccontextmanager
    async def _alone(self, job: ClaimedSend) -> AsyncIterator[None]:
        """One send's unexpected error (a bug) finishes that send, never its batch: a failed pass
        would leave every send of the batch to be taken over, again and again. A store outage still
        ends the pass (nothing can be recorded); the leases run out and the sends are taken up again."""
        with about_send(job.id):
            try:
                yield
            except StoreUnavailable:
                raise
            except Exception:
                logger.exception("Send %s failed unexpectedly", job.id)
                await self._finish_after_error(job, None)

    async def _finish_after_error(self, job: ClaimedSend, request: SmsRequest | None) -> None:
        reason = "The bridge hit an internal error while sending (see its log)."
        try:
            await self._finish(job, policy.settle("failed", reason, job), request=request)
        except Exception:  # the outcome cannot be stored either: the lease runs out, it is taken up again
            logger.exception("Send %s: its failure could not be recorded", job.id)

    async def _send_one(self, job: ClaimedSend, ticket: Ticket, request: SmsRequest, state: _Attempt) -> None:
        if self._stopping():
            return  # given back to the queue when the worker stops
        cleared = False
        for attempt in range(departure.SLOT_TRIES):
            # The store's go-ahead is asked for just before the slot, so that the request leaves on time.
            slot = await self._ccai.wait_for_slot(lead=self._lead.seconds)
            if self._stopping() and not cleared:
                return
            if not await self._cleared_to_leave(job, ticket, request, slot):
                return
            cleared = True
            if not slot.late():
                break
            # Its slot passed long ago while the store answered (a host or database far too busy):
            # leaving now could crowd the requests after it, so it takes the next slot. After a
            # few, it goes anyway, said to the pacing before it goes.
            logger.info("Send %s missed its CCAI slot (try %d); taking the next one", job.id, attempt + 1)
        state.departed = True
        result: Chat | CCAIError
        try:
            result = await self._ccai.send(request, slot=slot)
        except CCAIError as exc:
            result = exc
        await self._apply(job, policy.after_send(result, job, self._limits, rng=self._rng), request=request)

    async def _cleared_to_leave(self, job: ClaimedSend, ticket: Ticket, request: SmsRequest, slot: Slot) -> bool:
        """Ask the store, as the request leaves, whether it may: consent and the send window again
        (the wait for a slot can be minutes, long enough for the window to close or the customer to
        opt out) and the lease, in one transaction; and act only on a fresh yes (:mod:`bridge.departure`).
        A block or a hold is recorded here; False then, or when the send was taken over. True once
        ``slot`` has come, with the yes still fresh."""
        ignore = policy.may_ignore_window(job.origin) and job.overrides.window_ignored
        lease = departure.departure_lease(
            lease_seconds=self._options.lease_seconds, ccai_deadline=self._options.ccai_deadline
        )
        verdicts: list[Verdict] = []  # what the store's transaction decided, newest last

        def allows(reading: OptOutReading) -> bool:
            verdicts.append(self._consent.verdict(ticket, request.end_user_number, reading, ignore_window=ignore))
            return isinstance(verdicts[-1], Allow)

        first_asked = time.monotonic()
        while True:
            verdicts.clear()
            yes = departure.Yes(asked_at=time.monotonic(), lease_seconds=lease)
            try:
                cleared = await anyio.to_thread.run_sync(
                    lambda: self._sends.depart(
                        job.id,
                        owner=self._owner,
                        token=job.token,
                        lease_seconds=lease,
                        number=request.end_user_number,
                        allows=allows,
                    )
                )
            except StoreWentBack as exc:
                await self._went_back(exc)
                return False
            if not cleared:
                if verdicts and not isinstance(verdicts[-1], Allow):
                    await self._refused(job, request, verdicts[-1])
                else:
                    logger.warning("Send %s was taken over by another worker; not sending it from here", job.id)
                return False
            now = time.monotonic()
            self._lead.observe(now - yes.asked_at)  # the go-ahead's round-trip, not the wait for the slot
            until_slot = max(0.0, slot.not_before - slot.clock())
            if yes.fresh(now + until_slot):
                await anyio.sleep(until_slot)
                return True
            if not yes.worth_asking_again(now, first_asked_at=first_asked):
                await self._withdraw(job, waited=now - yes.asked_at)
                return False
            logger.warning(
                "Send %s: the store's go-ahead took %.1f s to arrive, too long to act on; asking again",
                job.id,
                now - yes.asked_at,
            )

    async def _refused(self, job: ClaimedSend, request: SmsRequest, verdict: Verdict) -> None:
        """The check as the request leaves said no: blocked (recorded) or held for the window."""
        hint = mask(request.end_user_number)
        if isinstance(verdict, Block):
            decision = policy.settle(verdict.status, verdict.reason, job)
            await self._finish(job, decision, hint=hint, opt_out_learned=verdict.from_list)
        elif isinstance(verdict, Hold):
            held = await anyio.to_thread.run_sync(
                lambda: self._sends.hold(job.id, token=job.token, until=verdict.until, reason=verdict.reason, hint=hint)
            )
            if held:
                logger.info("Send %s for ticket %s held: %s", job.id, job.ticket_id, verdict.reason)

    async def _withdraw(self, job: ClaimedSend, *, waited: float) -> None:
        """No fresh go-ahead came while the lease lasted (the store answers too slowly, or this process
        was paused): the request never left. Queue it again; if even that cannot be recorded, the
        lease runs out and it is taken over as possibly delivered, which is safe, only slower."""
        reason = f"The store took {waited:.1f} s to clear the request to leave, too long to act on safely; not sent."
        logger.warning("Send %s: %s It is queued again.", job.id, reason)
        await self._apply(
            job,
            policy.Retry(
                delay=_backoff.delay(job.retrying_for, rng=self._rng),
                reason=reason,
                may_have_sent=job.may_have_sent,
                refund=True,
            ),
        )

    # -- recording ----------------------------------------------------------------------------

    async def _apply(
        self, job: ClaimedSend, decision: policy.Finish | policy.Retry, *, request: SmsRequest | None = None
    ) -> None:
        if isinstance(decision, policy.Finish):
            await self._finish(job, decision, request=request)
            return
        cause = "ccai_throttled" if decision.refund else "unavailable"
        self._metrics.retries.labels(cause).inc()
        requeued = await anyio.to_thread.run_sync(
            lambda: self._sends.requeue(
                job.id,
                token=job.token,
                delay=decision.delay,
                reason=decision.reason,
                may_have_sent=decision.may_have_sent,
                ambiguous=decision.ambiguous,
                refund=decision.refund,
            )
        )
        if requeued:
            logger.info("Send %s will be retried in %.0f s: %s", job.id, decision.delay, decision.reason)
        else:
            logger.warning("Send %s was taken over by another worker before it could be put back", job.id)

    async def _finish(
        self,
        job: ClaimedSend,
        decision: policy.Finish,
        *,
        request: SmsRequest | None = None,
        hint: str | None = None,
        opt_out_learned: bool = False,
    ) -> None:
        reason = decision.reason
        if request is not None and reason is not None and decision.live_chat:
            reason = await self._name_the_live_chat(job, reason)
        if request is not None and decision.status == "opted_out":
            number = request.end_user_number
            await anyio.to_thread.run_sync(lambda: self._consent.record_opt_out(number, reason=reason))
            opt_out_learned = True
        outcome = Outcome(
            status=decision.status,
            reason=reason,
            chat_id=decision.chat_id,
            message=request.message if request is not None else None,
            end_user_hint=mask(request.end_user_number) if request is not None else hint,
            write_back=decision.write_back,
            segments=count_segments(request.message).segments if request is not None else None,
            opt_out_learned=opt_out_learned,
            template=request.template if request is not None else None,
            template_version=request.template_version if request is not None else None,
            end_user_number=request.end_user_number if request is not None and decision.chat_id else None,
        )
        recorded = await self._record(job, outcome)
        if recorded:
            self._metrics.sends_finished.labels(outcome.status).inc()
            logger.info("Send %s for ticket %s finished %s", job.id, job.ticket_id, outcome.summary)
        else:
            logger.warning("Send %s was taken over by another worker before its outcome was recorded", job.id)

    async def _record(self, job: ClaimedSend, outcome: Outcome) -> bool:
        """Record the outcome, through store outages: an SMS may already be out, and leaving it
        unrecorded would have it taken up again as possibly delivered. Only a stopping worker
        gives up (its lease then runs out and the lost-answer rule applies)."""
        delay = 0.5
        while True:
            try:
                return await anyio.to_thread.run_sync(
                    lambda: self._sends.finish(job.id, outcome, token=job.token, create_task=self._options.create_task)
                )
            except StoreUnavailable:
                if self._stopping():
                    raise
                logger.warning("Store unavailable while recording send %s; trying again", job.id)
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _name_the_live_chat(self, job: ClaimedSend, reason: str) -> str:
        latest = await anyio.to_thread.run_sync(lambda: self._sends.latest_chat(job.ticket_id, exclude=job.id))
        if latest is None:
            return reason
        return (
            f"{reason} The customer is most likely still in chat {latest}, which this bridge started for "
            f"the {self._words.ticket}."
        )


@dataclass
class _Attempt:
    departed: bool = False
