"""The plain records: what a send's overrides keep, and in which form they are stored."""

from __future__ import annotations

import json

from bridge.model import Overrides


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
