from __future__ import annotations

import pytest

from bridge.phones import PhoneProblem, mask, to_e164


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+1 415-555-0100", "+14155550100"),
        ("(212) 555-0142", "+12125550142"),
        ("212.555.0142", "+12125550142"),
        ("1-212-555-0142", "+12125550142"),
        ("+1 (628) 555 0199", "+16285550199"),
    ],
)
def test_common_us_formats_become_e164(raw: str, expected: str) -> None:
    assert to_e164(raw, default_region="US", allowed_regions={"US"}, label="The number") == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("12345", "is not a valid phone number"),
        ("call me", "is not a phone number"),
        ("+44 20 7946 0958", "is a GB number; only US numbers can be texted"),
        ("+1 604 555 0199", "is a CA number"),
    ],
)
def test_unusable_numbers_give_a_reason_without_the_number(raw: str, reason: str) -> None:
    result = to_e164(raw, default_region="US", allowed_regions={"US"}, label="The Case's ContactMobile")
    assert isinstance(result, PhoneProblem)
    assert reason in result.reason
    assert result.reason.startswith("The Case's ContactMobile")
    digits = "".join(c for c in raw if c.isdigit())
    if len(digits) >= 8:
        assert digits not in result.reason.replace(" ", "")
        assert digits[:-4] not in result.reason


def test_mask_keeps_only_the_last_digits() -> None:
    assert mask("+14155550100") == "*******0100"
    assert mask("12345") == "***45"
    assert mask(None) == "(none)"
