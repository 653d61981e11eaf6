"""The sends: the inbox (deduplicated), the send step's leases, and the retention purge.

Every time is the database's (:meth:`Database.now`), and every write a worker makes on a claimed
send carries the lease *token* it claimed with, so a worker that lost its lease (it hung, or its
host's clock is off) can never overwrite the work of the one that took over. The one exception is
a success that arrives late: an SMS that went out is always recorded (see :meth:`Sends.finish`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, and_, case, delete, func, or_, select, update

from bridge.errors import StoreUnavailable
from bridge.model import (
    FINAL_STATUSES,
    PENDING_STATUSES,
    ClaimedSend,
    Created,
    NewSend,
    OptOutReading,
    Outcome,
    Overrides,
    SendStatus,
)
from bridge.store._group_commit import GroupCommit
from bridge.store._rows import (
    LEASE_RELEASED,
    PENDING_WRITEBACK,
    insert_new_keys,
    log_event,
    new_row,
    overrides_of,
    received_detail,
    still_held,
)
from bridge.store.database import Database
from bridge.store.generations import Generations
from bridge.store.opt_outs import entry_of, lock_number
from bridge.store.outcomes import record_outcome
from bridge.store.schema import send_log, sends
from bridge.store.takeovers import take_over
from bridge.store.wakeups import announce

logger = logging.getLogger(__name__)

# How long a send whose commit's answer was lost is looked for before the outage is believed.
READ_BACK_SECONDS = 3.0


class Sends:
    """The ``sends`` table as the doors and the send step use it."""

    def __init__(self, db: Database, generations: Generations) -> None:
        self.db = db
        self._generations = generations
        self._ingests: GroupCommit[NewSend] = GroupCommit(self._ingest_together)

    def ingest(self, new: Sequence[NewSend]) -> int:
        """Store every send in one transaction; already-known dedupe keys are ignored.

        Returns how many were new. When this returns, all of them are durable.
        """
        if not new:
            return 0
        return self._ingests.submit(new)

    def _ingest_together(self, groups: list[Sequence[NewSend]]) -> list[int]:
        """Several callers' sends in one transaction (:mod:`bridge.store._group_commit`); each
        caller's count of new ones (a key two callers share is the first one's)."""
        with self.db.tx() as connection:
            stored = insert_new_keys(
                self.db, connection, [item for group in groups for item in group], self.db.now(connection)
            )
        counts = []
        for group in groups:
            mine = {item.dedupe_key for item in group} & stored
            stored -= mine
            counts.append(len(mine))
        return counts

    def create(self, new: NewSend, *, request_hash: str | None = None) -> Created:
        """Store one send, or find the one already stored under its dedupe key.

        When the store fails mid-way, the failure may be only the commit's answer getting lost: the
        send can be stored. Before calling it an outage (the caller is told to try again, and a
        caller without an Idempotency-Key would create a second send), the key is read back.
        """
        try:
            return self._create(new, request_hash=request_hash)
        except StoreUnavailable:
            found = self._read_back(new.dedupe_key)
            if found is None:
                raise
            logger.warning("Send %s was stored although the store's answer was lost; found by its key", found.id)
            # A key the door made up for this request names this request's own row.
            return Created(id=found.id, request_hash=found.request_hash, created=new.dedupe_key.startswith("api:auto:"))

    def _read_back(self, dedupe_key: str) -> Created | None:
        """The send stored under ``dedupe_key``, read on a fresh connection; None once a read shows
        there is none. Tried for a few seconds while the store cannot be read: if it never can, the
        caller's "try again" is all that is left."""
        deadline = time.monotonic() + READ_BACK_SECONDS
        while True:
            try:
                with self.db.tx() as connection:
                    row = connection.execute(
                        select(sends.c.id, sends.c.request_hash).where(sends.c.dedupe_key == dedupe_key)
                    ).first()
            except StoreUnavailable:
                if time.monotonic() >= deadline:
                    return None
                time.sleep(0.25)
                continue
            return None if row is None else Created(id=int(row[0]), request_hash=row[1], created=False)

    def _create(self, new: NewSend, *, request_hash: str | None) -> Created:
        with self.db.tx() as connection:
            now = self.db.now(connection)
            statement = (
                self.db.insert(sends)
                .values(**new_row(new, now), request_hash=request_hash)
                .on_conflict_do_nothing(index_elements=["dedupe_key"])
                .returning(sends.c.id)
            )
            inserted = connection.execute(statement).first()
            if inserted is not None:
                log_event(connection, int(inserted[0]), now, "received", received_detail(new))
                announce(self.db, connection)
                return Created(id=int(inserted[0]), request_hash=request_hash, created=True)
            existing = connection.execute(
                select(sends.c.id, sends.c.request_hash).where(sends.c.dedupe_key == new.dedupe_key)
            ).one()
        return Created(id=int(existing[0]), request_hash=existing[1], created=False)

    def requeue_finished(self, send_id: int, *, statuses: Sequence[SendStatus]) -> bool:
        """An operator's retry: queue a finished send again if its status is one of ``statuses``.

        The loop guard does not apply to it and its retry time starts anew, but what is known about
        earlier attempts stays: a send that may have reached the customer keeps that flag, so it is
        looked up in CCAI before anything is sent again. A write-back of the old outcome still under
        way keeps its lease, so the new outcome reaches the ticket after it, never before (R11).
        """
        with self.db.tx() as connection:
            now = self.db.now(connection)
            raw = connection.execute(select(sends.c.overrides).where(sends.c.id == send_id)).scalar()
            result = connection.execute(
                update(sends)
                .where(sends.c.id == send_id, sends.c.status.in_(list(statuses)))
                .values(
                    status="queued",
                    overrides=Overrides.from_json(raw).for_operator_retry().to_json(),
                    not_before=now,
                    requeued_at=now,
                    first_attempt_at=func.coalesce(sends.c.first_attempt_at, now),
                    **LEASE_RELEASED,
                    takeovers=0,
                    finished_at=None,
                    writeback="none",
                    writeback_task="none",
                )
            )
            if result.rowcount == 1:
                log_event(connection, send_id, now, "requeued", "Queued again by an operator.")
                announce(self.db, connection)
        return result.rowcount == 1

    # -- the send step ------------------------------------------------------------------------

    def claim(self, owner: str, *, limit: int, lease_seconds: float, settle_seconds: float = 0.0) -> list[ClaimedSend]:
        """Lease up to ``limit`` due sends.

        A send whose lease ran out while its request may have been under way (its worker hung, was
        cut off or died after clearing it to leave) is not handed out: it is taken over, queued as
        possibly delivered for ``settle_seconds`` (:func:`bridge.departure.settle_after_takeover`:
        until a request its old holder may still send has had time to reach CCAI's chat list), and
        its chat is looked up when it is claimed then. Only those takeovers count against the cap on
        takeovers: a send whose worker died before anything left was never attempted.
        """
        with self.db.tx() as connection:
            self._generations.check(connection, owner)
            now = self.db.now(connection)
            due = or_(
                and_(sends.c.status.in_(("queued", "scheduled")), sends.c.not_before <= now),
                and_(sends.c.status == "sending", sends.c.lease_until < now),
            )
            query = select(sends).where(due).order_by(sends.c.not_before, sends.c.id).limit(limit)
            if self.db.postgres:
                query = query.with_for_update(skip_locked=True)
            claimed = []
            for row in connection.execute(query).mappings().all():
                if row["status"] == "sending" and row["inflight"]:
                    take_over(connection, row, now=now, settle_seconds=settle_seconds, why="its lease ran out")
                    continue
                values = {
                    "status": "sending",
                    "lease_owner": owner,
                    "lease_token": row["lease_token"] + 1,
                    "lease_until": now + lease_seconds,
                    "inflight": False,
                }
                connection.execute(update(sends).where(sends.c.id == row["id"]).values(values))
                started = max(row["first_attempt_at"] or row["created_at"], row["requeued_at"] or 0.0)
                claimed.append(
                    ClaimedSend(
                        id=row["id"],
                        ticket_id=row["ticket_id"],
                        source=row["source"],
                        origin=row["origin"],
                        attempts=row["attempts"],
                        may_have_sent=bool(row["may_have_sent"]),
                        token=int(values["lease_token"]),
                        takeovers=row["takeovers"],
                        retrying_for=max(0.0, now - started),
                        claimed_at=now,
                        first_attempt_at=row["first_attempt_at"],
                        ambiguous_since=row["ambiguous_since"],
                        overrides=overrides_of(row),
                    )
                )
        return claimed

    def start_attempt(self, send_id: int, ticket_id: str, *, token: int, cooldown: float) -> int | None:
        """The loop guard. Returns the id of another send for this ticket that makes this one an
        echo (this send is then to be suppressed); otherwise marks this send attempted.

        Another send counts while it is under way, while its outcome is still to be written to the
        ticket, and for ``cooldown`` seconds after the latest of: its first attempt, its SMS
        leaving, its outcome, and the bridge's write to the ticket. Measuring from the latest, not
        the first, keeps the guard up through CCAI retries and CRM outages of any length.
        """
        with self.db.tx() as connection:
            self.db.lock(connection, f"ticket:{ticket_id}")  # serialise the check-then-mark per ticket
            now = self.db.now(connection)
            if cooldown > 0:
                echo_of = _recent_send(connection, send_id, ticket_id, since=now - cooldown)
                if echo_of is not None:
                    return echo_of
            connection.execute(
                update(sends)
                .where(sends.c.id == send_id, sends.c.lease_token == token, sends.c.first_attempt_at.is_(None))
                .values(first_attempt_at=now)
            )
        return None

    def depart(
        self,
        send_id: int,
        *,
        owner: str,
        token: int,
        lease_seconds: float,
        number: str,
        allows: Callable[[OptOutReading], bool],
    ) -> bool:
        """The last decision before a CCAI request leaves, in one transaction (see :mod:`bridge.departure`).

        ``allows`` is asked with the number's opt-out entry, read under the number's lock (an opt-out
        being added waits for it, and is read by every later departure), and the store's time. If it
        says yes and this worker still holds the send, the send is marked in flight, its lease set to
        at least ``lease_seconds``, and True is returned. False: not allowed (the caller kept the
        verdict ``allows`` reached), or taken over. Asked again for a send already in flight (a yes
        that came back too late to act on), it renews the decision without counting another attempt.
        Each yes is counted for ``owner`` (:mod:`bridge.store.generations`): a store that lost one is
        noticed (:class:`StoreWentBack`) before anything is cleared from it.
        """
        with self.db.tx() as connection:
            lock_number(self.db, connection, number)
            now = self.db.now(connection)
            if not allows(OptOutReading(entry_of(connection, number), at=now)):
                return False
            first = connection.execute(
                select(sends.c.inflight).where(*still_held(send_id, token)).with_for_update()
            ).first()
            if first is None:
                return False
            connection.execute(
                update(sends)
                .where(*still_held(send_id, token))
                .values(
                    inflight=True,
                    inflight_at=now,
                    attempts=sends.c.attempts + (0 if first.inflight else 1),
                    # Never shorter than what the heartbeat granted; at least long enough for the request.
                    lease_until=case(
                        (sends.c.lease_until > now + lease_seconds, sends.c.lease_until), else_=now + lease_seconds
                    ),
                )
            )
            if not first.inflight:
                log_event(connection, send_id, now, "attempt", "Cleared to leave: the request to CCAI Platform left.")
            count = self._generations.advance(connection, owner, now=now)
        self._generations.remember(owner, count)
        return True

    def confirm_not_sent(self, send_id: int, *, token: int) -> bool:
        """A chat lookup found nothing for the earlier attempts: nothing reached the customer."""
        with self.db.tx() as connection:
            now = self.db.now(connection)
            result = connection.execute(
                update(sends).where(*still_held(send_id, token)).values(may_have_sent=False, ambiguous_since=None)
            )
            if result.rowcount == 1:
                log_event(
                    connection, send_id, now, "looked up", "No chat in CCAI's list: the earlier attempt never arrived."
                )
        return result.rowcount == 1

    def finish(self, send_id: int, outcome: Outcome, *, token: int, create_task: bool) -> bool:
        """Record a final outcome and, unless told otherwise, queue its write-back (see
        :func:`bridge.store.outcomes.record_outcome`: a success is recorded whoever holds the lease)."""
        return record_outcome(self.db, send_id, outcome, token=token, create_task=create_task)

    def cancel(self, send_id: int, *, by: str) -> bool:
        """An operator's cancel of a send that is waiting (queued or held for its send window) and
        that nothing can have texted yet: it ends ``skipped`` with who canceled it, and its ticket is
        told like any outcome. False when it cannot be canceled any more: a worker holds it (the
        request may be leaving), an earlier attempt's answer was lost, or it has finished."""
        reason = f"Canceled by {by} before it was sent."
        with self.db.tx() as connection:
            now = self.db.now(connection)
            row = connection.execute(select(sends.c.overrides).where(sends.c.id == send_id)).first()
            canceled = connection.execute(
                update(sends)
                .where(
                    sends.c.id == send_id,
                    sends.c.status.in_(("queued", "scheduled")),
                    sends.c.lease_owner.is_(None),
                    sends.c.may_have_sent.is_(False),
                    sends.c.inflight.is_(False),
                )
                .values(
                    status="skipped",
                    reason=reason,
                    finished_at=now,
                    state_at=now,
                    message=None,
                    overrides=Overrides.from_json(row[0] if row else None).without_number().to_json(),
                    writeback="pending",
                    writeback_task="none",
                    writeback_not_before=now,
                    writeback_attempts=0,
                    writeback_error=None,
                )
            )
            if canceled.rowcount == 1:
                log_event(connection, send_id, now, "canceled", reason)
            return bool(canceled.rowcount == 1)

    def requeue(
        self,
        send_id: int,
        *,
        token: int,
        delay: float,
        reason: str,
        may_have_sent: bool,
        ambiguous: bool = False,
        refund: bool = False,
    ) -> bool:
        """Put a send back in the queue for ``delay`` seconds. ``ambiguous``: this attempt's answer
        was lost; ``refund`` undoes the attempt count (a 429 is not a failure). False if this worker
        no longer holds the send (taken over, or already finished)."""
        values: dict[str, Any] = {
            "status": "queued",
            "reason": reason,
            "may_have_sent": may_have_sent,
            **LEASE_RELEASED,
        }
        if ambiguous:
            values["ambiguous_since"] = func.coalesce(sends.c.ambiguous_since, sends.c.inflight_at)
        if refund:
            values["attempts"] = case((sends.c.attempts > 0, sends.c.attempts - 1), else_=0)
        with self.db.tx() as connection:
            now = self.db.now(connection)
            values["not_before"] = now + delay
            result = connection.execute(update(sends).where(*still_held(send_id, token)).values(values))
            if result.rowcount != 1:
                return False
            log_event(connection, send_id, now, "retry", f"Retried in {delay:.0f} s: {reason}")
        return True

    def hold(self, send_id: int, *, token: int, until: float, reason: str, hint: str | None) -> bool:
        """Hold a send until the recipient's send window opens; the ticket is told when (its status
        write-back is queued), and the send is claimed again, from the start, at ``until``."""
        with self.db.tx() as connection:
            now = self.db.now(connection)
            result = connection.execute(
                update(sends)
                .where(*still_held(send_id, token))
                .values(
                    status="scheduled",
                    reason=reason,
                    not_before=until,
                    # Time spent waiting for the window is not time spent retrying.
                    requeued_at=until,
                    end_user_hint=hint,
                    state_at=now,
                    **LEASE_RELEASED,
                    writeback="pending",
                    writeback_not_before=now,
                    writeback_attempts=0,
                )
            )
            if result.rowcount == 1:
                log_event(connection, send_id, now, "held", reason)
        return result.rowcount == 1

    def release(self, owner: str) -> int:
        """Give back this worker's claimed sends whose CCAI request has not started (on shutdown)."""
        with self.db.tx() as connection:
            result = connection.execute(
                update(sends)
                .where(sends.c.lease_owner == owner, sends.c.status == "sending", sends.c.inflight.is_(False))
                .values(status="queued", lease_owner=None, lease_until=None)
            )
        return int(result.rowcount)

    def renew(
        self, owner: str, *, sends_in_hand: Sequence[int], writebacks_in_hand: Sequence[int], lease_seconds: float
    ) -> int:
        """Extend the leases of the work this worker has in hand (its heartbeat): work in progress
        is never taken over from a live worker, however long CCAI or the CRM take. Claims it let go
        of without an outcome are not renewed, so they are taken up again. Never shortens a lease."""
        renewed = 0
        with self.db.tx() as connection:
            until = self.db.now(connection) + lease_seconds
            if sends_in_hand:
                renewed += connection.execute(
                    update(sends)
                    .where(
                        sends.c.id.in_(list(sends_in_hand)),
                        sends.c.lease_owner == owner,
                        sends.c.status == "sending",
                        sends.c.lease_until < until,
                    )
                    .values(lease_until=until)
                ).rowcount
            if writebacks_in_hand:
                renewed += connection.execute(
                    update(sends)
                    .where(
                        sends.c.id.in_(list(writebacks_in_hand)),
                        sends.c.writeback_owner == owner,
                        sends.c.writeback_lease_until < until,
                    )
                    .values(writeback_lease_until=until)
                ).rowcount
        return renewed

    def note_ticket_numbers(self, numbers: dict[int, str]) -> None:
        """Note on each send (by id) the number agents quote for its ticket, so that people can find
        it by that number. Unfenced: it is only what the CRM answered, whoever holds the send."""
        with self.db.tx() as connection:
            for send_id, number in numbers.items():
                connection.execute(
                    update(sends)
                    .where(sends.c.id == send_id)
                    .where(or_(sends.c.ticket_number.is_(None), sends.c.ticket_number != number[:40]))
                    .values(ticket_number=number[:40])
                )

    def latest_chat(self, ticket_id: str, *, exclude: int) -> str | None:
        """The newest chat this bridge created for the ticket, other than send ``exclude``'s."""
        with self.db.tx() as connection:
            chat_id = connection.execute(
                select(sends.c.chat_id)
                .where(sends.c.ticket_id == ticket_id, sends.c.id != exclude, sends.c.chat_id.is_not(None))
                .order_by(sends.c.finished_at.desc())
                .limit(1)
            ).scalar()
        return None if chat_id is None else str(chat_id)

    def known_chat_ids(self, chat_ids: Sequence[str]) -> set[str]:
        """Which of these CCAI chats are already recorded for some send."""
        if not chat_ids:
            return set()
        with self.db.tx() as connection:
            rows = connection.execute(select(sends.c.chat_id).where(sends.c.chat_id.in_(list(chat_ids)))).all()
        return {str(row[0]) for row in rows}

    def others_unanswered(self, ticket_id: str, *, exclude: int, within: float = 86400.0) -> int:
        """Other sends of the ticket (made in the last ``within`` seconds) that may have reached CCAI
        without the bridge learning their chat: a chat the lookup finds may be theirs."""
        with self.db.tx() as connection:
            since = self.db.now(connection) - within
            return int(
                connection.execute(
                    select(func.count())
                    .select_from(sends)
                    .where(
                        sends.c.ticket_id == ticket_id,
                        sends.c.id != exclude,
                        sends.c.chat_id.is_(None),
                        or_(sends.c.may_have_sent.is_(True), sends.c.inflight.is_(True)),
                        sends.c.created_at >= since,
                    )
                ).scalar_one()
            )

    def purge(self, older_than: float, *, batch: int = 1000, once: bool = False) -> int:
        """Delete finished sends (write-back settled) that finished more than ``older_than`` seconds
        ago, in batches.

        Their dedupe keys go with them, so the retention must outlast every redelivery window:
        Salesforce retries for 24 hours and API idempotency keys are promised for 24 hours, hence
        the 2-day minimum on the retention setting.
        """
        removed = 0
        while True:
            with self.db.tx() as connection:
                settled = and_(
                    sends.c.status.in_(FINAL_STATUSES),
                    sends.c.writeback != "pending",
                    sends.c.writeback_task != "pending",
                    sends.c.finished_at < self.db.now(connection) - older_than,
                )
                ids = [row[0] for row in connection.execute(select(sends.c.id).where(settled).limit(batch))]
                if ids:
                    connection.execute(delete(send_log).where(send_log.c.send_id.in_(ids)))
                    connection.execute(delete(sends).where(sends.c.id.in_(ids)))
            removed += len(ids)
            if once or len(ids) < batch:  # ``once``: one batch per call, for callers showing progress
                return removed

    def seconds_until_due(self) -> float | None:
        """How long until the earliest queued or held send or pending write-back is due (the worker's
        sleep: a send held for its window starts when the window opens, not at the next poll)."""
        with self.db.tx() as connection:
            now = self.db.now(connection)
            send_at = connection.execute(
                select(func.min(sends.c.not_before)).where(sends.c.status.in_(("queued", "scheduled")))
            ).scalar()
            # A leased write-back is not due before its lease ends (else an idle worker would spin).
            lease_end = sends.c.writeback_lease_until
            due_at = case((lease_end > sends.c.writeback_not_before, lease_end), else_=sends.c.writeback_not_before)
            writeback_at = connection.execute(select(func.min(due_at)).where(PENDING_WRITEBACK)).scalar()
        candidates = [t for t in (send_at, writeback_at) if t is not None]
        return max(0.0, min(candidates) - now) if candidates else None


def _recent_send(connection: Connection, send_id: int, ticket_id: str, *, since: float) -> int | None:
    rows = connection.execute(
        select(
            sends.c.id,
            sends.c.status,
            sends.c.first_attempt_at,
            sends.c.inflight_at,
            sends.c.finished_at,
            sends.c.case_written_at,
            sends.c.writeback,
        ).where(sends.c.ticket_id == ticket_id, sends.c.id != send_id, sends.c.status != "suppressed")
    ).all()
    for row in rows:
        if row.first_attempt_at is None:
            continue  # never attempted: not yet anything the ticket or the customer could have seen
        if row.status in PENDING_STATUSES or row.writeback == "pending":
            return int(row.id)
        moments = [t for t in (row.first_attempt_at, row.inflight_at, row.finished_at, row.case_written_at) if t]
        if max(moments) >= since:
            return int(row.id)
    return None
