"""R10: the send's note (the Task) is written only after its chat ended (a CRM outage longer than
the chat): it must still be completed, not left "In Progress" forever."""

from __future__ import annotations

import pytest

from bridge.chatsync import ChatSync, SyncOptions
from bridge.errors import CRMUnavailable
from bridge.store import Store
from tests._clock import Clock
from tests._harness import MOBILE_CASE, Harness, make_harness

pytestmark = pytest.mark.anyio

OPTIONS = SyncOptions(interval=60, follow_seconds=7 * 86400, no_reply_seconds=0, lease_seconds=30)


@pytest.fixture
def h(store: Store, clock: Clock) -> Harness:
    return make_harness(store, clock, bridge_chat_sync_seconds=0)


def sync_for(h: Harness) -> ChatSync:
    return h.chat_sync(OPTIONS)


async def test_a_note_written_after_its_chat_ended_is_still_completed(h: Harness) -> None:
    h.gateway.write_failures.extend([CRMUnavailable("Salesforce is down")] * 3)
    h.ingest(MOBILE_CASE)
    await h.drain()
    row = h.row(MOBILE_CASE)
    assert row.status == "sent"
    assert h.gateway.notes == []  # the write-back is waiting out the outage
    chat = int(str(row.chat_id))
    sync = sync_for(h)
    h.clock.advance(1)
    h.sim.chats.update(chat, {"status": "finished", "finish_reason": "Resolved by agent"}, now=h.clock())
    await sync.poll()
    await sync.write()
    assert h.gateway.chat_updates[-1].status == "finished"
    assert h.gateway.follow_ups == []  # no note yet: nothing to complete
    await h.drain(advance=600)  # the outage ends: the note is written, after the chat ended
    assert [n.ticket_id for n in h.gateway.notes] == [MOBILE_CASE]
    await sync.write()
    [follow_up] = h.gateway.follow_ups
    assert (follow_up.ticket_id, follow_up.note_ref) == (MOBILE_CASE, "00T000000000000000")
    assert "Chat outcome: finished" in follow_up.body
    await sync.write()
    assert len(h.gateway.follow_ups) == 1  # completed once
