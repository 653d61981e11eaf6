"""The plain records: what a send's overrides keep, and in which form they are stored."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from bridge.model import Overrides, SendRecord

SENT_RECORD = SendRecord(
    id=1, dedupe_key="k", source="api", origin="person", ticket_id="500", status="sent", reason=None, chat_id="7",
    message=None, end_user_hint=None, attempts=1, may_have_sent=False, created_at=0.0, first_attempt_at=0.0,
    finished_at=1.0, not_before=0.0, writeback="done", writeback_task="done", writeback_attempts=1,
    writeback_error=None, request_hash=None, requeued_at=None, overrides=Overrides(),
)  # fmt: skip


def test_overrides_are_stored_as_the_send_api_names_them() -> None:
    given = Overrides(message="Hi", agent_id=7, send_window="ignore")
    raw = given.to_json()
    assert raw is not None
    assert json.loads(raw) == {"message": "Hi", "agent_id": 7, "send_window": "ignore"}
    assert Overrides.from_json(raw) == given
    assert Overrides().to_json() is None
    assert Overrides.from_json(None) == Overrides()


def test_an_operator_retry_drops_the_window_override_and_a_final_send_drops_the_number() -> None:
    given = Overrides(end_user_number="+14155550100", send_window="ignore")
    assert given.window_ignored
    assert not given.for_operator_retry().window_ignored
    final = given.without_number()
    assert (final.end_user_number, final.number_removed) == (None, True)
    assert Overrides(message="x").without_number() == Overrides(message="x")


def test_a_key_the_bridge_no_longer_knows_is_ignored() -> None:
    assert Overrides.from_json('{"message": "Hi", "retired_key": 1}') == Overrides(message="Hi")


@pytest.mark.parametrize(
    ("status", "may_have_sent", "chat_id", "expected"),
    [
        ("sent", False, "7", "yes"),
        ("failed", False, "7", "yes"),  # an earlier attempt's chat reached them before a retry failed
        ("unknown", False, None, "maybe"),
        ("queued", True, None, "maybe"),  # a lost answer, not settled yet
        ("failed", False, None, "no"),
        ("queued", False, None, "no"),
        ("opted_out", False, None, "no"),
    ],
)
def test_reached_the_customer_is_one_word(status: str, may_have_sent: bool, chat_id: str | None, expected: str) -> None:
    record = replace(SENT_RECORD, status=status, may_have_sent=may_have_sent, chat_id=chat_id)  # type: ignore[arg-type]
    assert record.reached == expected
