"""The write-back step in-process: ticket updates and notes, in order, once, through CRM faults."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.crm import WriteResult
from bridge.errors import CRMUnavailable
from bridge.model import NewSend, Outcome
from bridge.store import Store
from tests._clock import Clock
from tests._harness import MOBILE_CASE, Harness, make_harness

pytestmark = pytest.mark.anyio


@pytest.fixture
def h(sqlite_store: Store, clock: Clock) -> Harness:
    return make_harness(sqlite_store, clock)


async def test_a_crm_outage_during_write_back_never_resends_the_sms(h: Harness) -> None:
    h.gateway.write_failures.extend([CRMUnavailable("down")] * 2)
    h.ingest(MOBILE_CASE)
    await h.drain()
    assert h.row(MOBILE_CASE).status == "sent"
    assert h.row(MOBILE_CASE).writeback == "pending"
    h.gateway.write_failures.extend([CRMUnavailable("still down")] * 3)
    await h.drain(advance=30)
    row = h.row(MOBILE_CASE)
    assert (row.writeback, row.writeback_task) == ("done", "done")
    assert len(h.sim.accepted) == 1
    assert h.gateway.latest(MOBILE_CASE).status == "sent"


async def test_a_permanent_record_error_stops_the_write_back(h: Harness) -> None:
    h.gateway.record_errors[MOBILE_CASE] = WriteResult(ok=False, message="INVALID_FIELD: No such column")
    h.ingest(MOBILE_CASE)
    await h.drain(advance=30, rounds=5)
    row = h.row(MOBILE_CASE)
    assert (row.writeback, row.writeback_task) == ("failed", "done")
    assert row.writeback_error == "INVALID_FIELD: No such column"


async def test_a_lost_write_back_answer_never_adds_a_second_note(h: Harness) -> None:
    """A11: the CRM created the note, but its answer was lost; the retry finds it instead of adding one."""
    h.gateway.lose_write_answers.append(CRMUnavailable("read timed out"))
    h.ingest(MOBILE_CASE)
    await h.drain(advance=30)
    assert h.row(MOBILE_CASE).writeback_task == "done"
    assert len([n for n in h.gateway.notes if n.ticket_id == MOBILE_CASE]) == 1
    assert h.gateway.writes == 2  # the retry still updated the ticket (idempotent), without the note


async def test_write_back_retries_give_up_after_the_bounded_time(sqlite_store: Store, clock: Clock) -> None:
    h = make_harness(sqlite_store, clock, bridge_writeback_retry_for_seconds=600)
    h.gateway.write_failures.extend([CRMUnavailable("down")] * 100)
    h.ingest(MOBILE_CASE)
    await h.drain(advance=120, rounds=40)
    row = h.row(MOBILE_CASE)
    assert (row.status, row.writeback, row.writeback_task) == ("sent", "failed", "failed")
    assert len(h.sim.accepted) == 1


async def test_outcomes_for_one_ticket_land_in_order(h: Harness) -> None:
    """An older outcome retried after a newer one was written never overwrites it."""
    store = h.store
    ids = [
        store.sends.create(NewSend(dedupe_key=f"api:{i}", source="api", origin="person", ticket_id=MOBILE_CASE)).id
        for i in range(2)
    ]
    first, second = store.sends.claim("w", limit=2, lease_seconds=30)
    store.sends.finish(first.id, Outcome(status="sent", chat_id="7"), token=first.token, create_task=True)
    h.clock.advance(1)
    store.sends.finish(
        second.id, Outcome(status="failed", reason="already in a session"), token=second.token, create_task=True
    )
    h.gateway.write_failures.append(CRMUnavailable("down"))  # the first write-back fails once
    await h.drain(advance=30)
    updates = [u for u in h.gateway.updates if u.ticket_id == MOBILE_CASE]
    statuses = [u.status for u in updates]
    assert statuses[-1] == "failed"  # the newest outcome is what the ticket shows...
    assert "sent" not in statuses[statuses.index("failed") :]
    assert updates[-1].chat_id == "7"  # ...with the chat that exists
    assert {n.key for n in h.gateway.notes} == {f"send {i}" for i in ids}  # each outcome's note, once


async def test_an_answer_about_an_older_state_never_marks_the_newer_one_written(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in review: while the CRM took its time over the "Scheduled" update, the send window
    opened and the SMS went out; the late answer marked the write-back done and the ticket showed
    "Scheduled" for good. The newer outcome stays pending and is written next."""
    store = h.store
    [send_id] = h.ingest(MOBILE_CASE)
    [job] = store.sends.claim("w", limit=1, lease_seconds=30)
    assert store.sends.hold(
        job.id, token=job.token, until=h.clock.now + 100, reason="Outside the send window.", hint=None
    )
    write_outcomes = h.gateway.write_outcomes

    def slow_crm(*args: Any) -> Any:
        if h.clock.now < store.history.get(send_id).not_before:  # type: ignore[union-attr]
            h.clock.advance(101)  # the CRM answers after the window opened and the SMS went out
            [again] = store.sends.claim("w", limit=1, lease_seconds=30)
            assert store.sends.finish(
                again.id, Outcome(status="sent", chat_id="9"), token=again.token, create_task=True
            )
        return write_outcomes(*args)

    monkeypatch.setattr(h.gateway, "write_outcomes", slow_crm)
    await h.drain()
    statuses = [u.status for u in h.gateway.updates if u.ticket_id == MOBILE_CASE]
    assert statuses == ["scheduled", "sent"]
    row = h.row(MOBILE_CASE)
    assert (row.status, row.writeback, row.writeback_task) == ("sent", "done", "done")
