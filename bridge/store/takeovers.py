"""Taking sends away from whoever holds them when they cannot be trusted to finish them: a worker
whose lease ran out while its request may be under way (:func:`take_over`, from the claim), a worker
whose process ended (:meth:`Takeovers.from_gone_worker`, noticed by :mod:`bridge.store.liveness`),
and everyone, when the store itself went back in time (:meth:`Takeovers.after_going_back`, noticed
by :mod:`bridge.store.generations`).

A send whose request may have left is never handed straight on: it is queued as possibly delivered
until that request, if it left, shows in CCAI's chat list (:mod:`bridge.departure`), and looked up
then. Each takeover fences the old holder out with a new lease token.
"""

from __future__ import annotations

from sqlalchemy import Connection, RowMapping, case, func, select, update

from bridge.model import PENDING_STATUSES
from bridge.store._rows import LEASE_RELEASED, log_event
from bridge.store.database import Database
from bridge.store.generations import Generations
from bridge.store.schema import sends
from bridge.store.status import WENT_BACK_KEY, put_value
from bridge.times import readable


class Takeovers:
    """Sends taken from workers that are gone, and from a store that went back in time."""

    def __init__(self, db: Database, generations: Generations) -> None:
        self._db = db
        self._generations = generations

    def lease_owners(self) -> set[str]:
        """The workers holding a send's lease that has not run out."""
        with self._db.tx() as connection:
            now = self._db.now(connection)
            rows = connection.execute(
                select(sends.c.lease_owner)
                .where(sends.c.status == "sending", sends.c.lease_until >= now, sends.c.lease_owner.is_not(None))
                .distinct()
            ).all()
        return {str(row[0]) for row in rows}

    def from_gone_worker(self, owner: str, *, settle_seconds: float) -> int:
        """The worker ``owner`` is gone (its process ended: :mod:`bridge.store.liveness`): its sends
        are free now, without waiting for their leases to run out. One whose request may have been
        under way is taken over and looked up after ``settle_seconds``; the others are claimable at
        once. Returns how many sends were freed."""
        with self._db.tx() as connection:
            now = self._db.now(connection)
            rows = (
                connection.execute(
                    select(sends).where(sends.c.lease_owner == owner, sends.c.status == "sending").with_for_update()
                )
                .mappings()
                .all()
            )
            for row in rows:
                if row["inflight"]:
                    take_over(connection, row, now=now, settle_seconds=settle_seconds, why="its worker's process ended")
                else:
                    connection.execute(update(sends).where(sends.c.id == row["id"]).values(lease_until=now))
        return len(rows)

    def after_going_back(self, owner: str, *, settle_seconds: float, detail: str) -> int:
        """The store went back in time (``owner``'s worker noticed): nothing in it says which sends were
        already texted, so every send not finished is treated as possibly delivered. Each is fenced
        off from whoever holds it, and looked up in CCAI (from when it was created) no sooner than
        ``settle_seconds`` from now, before anything is sent. The event is kept for operators.
        Returns how many sends were flagged."""
        with self._db.tx() as connection:
            now = self._db.now(connection)
            self._generations.restart_from_memory(connection, owner, now=now)
            unfinished = sends.c.status.in_(PENDING_STATUSES)
            ids = [int(row[0]) for row in connection.execute(select(sends.c.id).where(unfinished)).all()]
            connection.execute(
                update(sends)
                .where(unfinished)
                .values(
                    status=case((sends.c.status == "sending", "queued"), else_=sends.c.status),
                    not_before=case(
                        (sends.c.not_before > now + settle_seconds, sends.c.not_before), else_=now + settle_seconds
                    ),
                    may_have_sent=True,
                    ambiguous_since=func.coalesce(sends.c.ambiguous_since, sends.c.inflight_at, sends.c.created_at),
                    lease_token=sends.c.lease_token + 1,
                    **LEASE_RELEASED,
                )
            )
            for send_id in ids:
                log_event(
                    connection,
                    send_id,
                    now,
                    "store went back",
                    "The store went back in time; this send may have been texted in the part it lost, so its chat "
                    "is looked up in CCAI Platform before anything is sent.",
                )
            record = {"detected_at": now, "worker": owner, "detail": detail, "sends_flagged": len(ids)}
            put_value(self._db, connection, WENT_BACK_KEY, record, now=now)
        return len(ids)

    def looking_up_after_going_back(self, since: float) -> int:
        """How many sends flagged when the store went back (at ``since``) are not finished yet."""
        with self._db.tx() as connection:
            return int(
                connection.execute(
                    select(func.count()).where(
                        sends.c.status.in_(PENDING_STATUSES),
                        sends.c.may_have_sent.is_(True),
                        sends.c.created_at <= since,
                    )
                ).scalar_one()
            )


def take_over(connection: Connection, row: RowMapping, *, now: float, settle_seconds: float, why: str) -> None:
    """Take a send away from a holder whose request to CCAI may be under way: fence the holder out
    (a new token), count the takeover, and queue the send as possibly delivered until its chat can
    be looked up."""
    until = now + settle_seconds
    connection.execute(
        update(sends)
        .where(sends.c.id == row["id"])
        .values(
            status="queued",
            not_before=until,
            lease_token=sends.c.lease_token + 1,
            takeovers=sends.c.takeovers + 1,
            may_have_sent=True,
            ambiguous_since=func.coalesce(sends.c.ambiguous_since, sends.c.inflight_at),
            **LEASE_RELEASED,
        )
    )
    log_event(
        connection,
        int(row["id"]),
        now,
        "taken over",
        f"Taken over ({why}) while its request to CCAI Platform may have been under way; its chat is looked "
        f"up at {readable(until)}, once that request, if it left, shows in CCAI's chat list.",
    )
