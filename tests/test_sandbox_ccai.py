from __future__ import annotations

from typing import Any

import pytest

from bridge.sandbox.ccai import CCAISimulator, validate
from tests.ccai_errors import DOCUMENTED_ERRORS

GOOD = {
    "chat_type": "Messaging (SMS)",
    "end_user_number": "+1 415-555-0100",
    "outbound_number": "+1 628-555-0199",
    "message": "lorem ipsum",
    "ticket_id": "5005g00000SBX01AAH",
}


def sim(**kwargs: Any) -> CCAISimulator:
    return CCAISimulator(subdomain="s", api_token="t", outbound_numbers={"+16285550199"}, **kwargs)


@pytest.mark.parametrize(
    ("change", "simulator", "expected"),
    [
        ({"chat_type": None}, {}, DOCUMENTED_ERRORS[0]),
        ({"chat_type": "In-app"}, {}, DOCUMENTED_ERRORS[1]),
        ({}, {"sms_enabled": False}, DOCUMENTED_ERRORS[2]),
        ({}, {"outbound_enabled": False}, DOCUMENTED_ERRORS[3]),
        ({"end_user_number": None}, {}, DOCUMENTED_ERRORS[4]),
        ({"end_user_number": "12345"}, {}, DOCUMENTED_ERRORS[5]),
        ({"end_user_number": "+44 20 7946 0958"}, {}, DOCUMENTED_ERRORS[6]),
        ({"outbound_number": None}, {}, DOCUMENTED_ERRORS[7]),
        ({"outbound_number": "12345"}, {}, DOCUMENTED_ERRORS[8]),
        ({"outbound_number": "+1 212-555-0142"}, {}, DOCUMENTED_ERRORS[9]),
        ({"message": ""}, {}, DOCUMENTED_ERRORS[10]),
        ({}, {"sessions": {"+14155550100"}}, DOCUMENTED_ERRORS[11]),
    ],
)
def test_the_simulator_answers_each_documented_error(
    change: dict[str, Any], simulator: dict[str, Any], expected: str
) -> None:
    body = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    assert validate(sim(**simulator), body) == (expected, None)


def test_the_simulator_accepts_the_seed_example() -> None:
    assert validate(sim(), GOOD) == (None, "+14155550100")
