"""R16: a word CCAI sends (a chat status, a chat or event id) that carries a phone number reaches
no log line unmasked."""

from __future__ import annotations

import logging

import pytest

from bridge.ccai.chats import NewStatusWords, loggable, parse
from bridge.chatsync import SyncOptions
from bridge.store import Store
from tests._clock import Clock
from tests._harness import MOBILE_CASE, Harness, make_harness

pytestmark = pytest.mark.anyio

NUMBER = "+1 415-555-0199"
OPTIONS = SyncOptions(interval=60, follow_seconds=7 * 86400, no_reply_seconds=0, lease_seconds=30)


def test_an_unknown_status_word_is_logged_with_its_number_masked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    NewStatusWords().notice([parse({"id": 114, "status": NUMBER, "updated_at": 1_800_000_000})])
    assert "does not know" in caplog.text
    assert "555-0199" not in caplog.text
    assert "0199" in caplog.text  # the last digits stay, as for every masked number


def test_loggable_keeps_a_chat_id_and_masks_what_looks_like_a_number() -> None:
    assert loggable("114") == "114"
    assert loggable(114) == "114"
    assert "555" not in loggable(f"chat {NUMBER}")
    assert "4155550199" not in loggable("4155550199")


async def test_the_chat_sync_logs_no_number_ccai_put_in_a_status(
    store: Store, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    h: Harness = make_harness(store, clock, bridge_chat_sync_seconds=0)
    h.ingest(MOBILE_CASE)
    await h.drain()
    chat = int(str(h.row(MOBILE_CASE).chat_id))
    sync = h.chat_sync(OPTIONS)
    caplog.set_level(logging.DEBUG)
    h.clock.advance(1)
    h.sim.chats.update(chat, {"status": NUMBER}, now=h.clock())
    await sync.poll()
    await sync.write()
    assert "does not know" in caplog.text
    assert "555-0199" not in caplog.text


def test_loggable_keeps_an_event_id() -> None:
    assert loggable("f45189d8-ff76-407b-9c28-97533baa3482") == "f45189d8-ff76-407b-9c28-97533baa3482"
