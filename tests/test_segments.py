from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.segments import SegmentCount, count_segments, describe, over_limit
from tests._processes import FIXTURES

# The shared vectors: the Salesforce component's counter is tested against the same file.
VECTORS: list[dict[str, Any]] = json.loads((FIXTURES / "sms_segments.json").read_text(encoding="utf-8"))

GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = "\f^{}\\[~]|€"


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_the_shared_vectors_are_counted_as_the_networks_count(vector: dict[str, Any]) -> None:
    expected = SegmentCount(
        encoding=vector["encoding"],
        characters=vector["characters"],
        units=vector["units"],
        segments=vector["segments"],
    )
    assert count_segments(vector["text"]) == expected


def test_the_shared_vectors_cover_every_boundary_named_in_the_brief() -> None:
    # Guards the file itself: a vector removed by accident would silently weaken both test suites.
    names = " | ".join(v["name"] for v in VECTORS)
    for phrase in ("160 GSM", "161 GSM", "306", "307", "straddling septet 153", "70 UCS-2", "71 UCS-2", "134", "135"):
        assert phrase in names
    assert {v["encoding"] for v in VECTORS} == {"GSM-7", "UCS-2"}


def test_the_gsm_table_has_the_127_basic_and_10_extension_characters_of_ts_23_038() -> None:
    assert len(set(GSM_BASIC)) == 127
    assert len(set(GSM_EXTENSION)) == 10
    assert count_segments(GSM_BASIC) == SegmentCount("GSM-7", 127, 127, 1)
    assert count_segments(GSM_EXTENSION) == SegmentCount("GSM-7", 10, 20, 1)


def test_an_extension_character_is_never_split_across_parts() -> None:
    # Dividing 306 septets by 153 would say two parts; the euro sign cannot start in part one.
    assert count_segments("a" * 152 + "€" + "a" * 152).segments == 3
    assert count_segments("a" * 151 + "€" + "a" * 153).segments == 2


def test_a_surrogate_pair_is_never_split_across_parts() -> None:
    assert count_segments("a" * 66 + "\U0001f600" + "a" * 66).segments == 3
    assert count_segments("a" * 65 + "\U0001f600" + "a" * 67).segments == 2


def test_the_refusal_names_the_count_the_encoding_and_the_limit() -> None:
    assert over_limit(count_segments("á" * 1800), limit=10) == (
        "1,800 characters in UCS-2 is 27 SMS segments; the limit is 10."
    )


def test_a_message_at_the_limit_is_not_refused() -> None:
    assert over_limit(count_segments("a" * 1530), limit=10) is None
    assert over_limit(count_segments("a" * 1531), limit=10) == (
        "1,531 characters in GSM-7 is 11 SMS segments; the limit is 10."
    )


def test_one_character_and_one_segment_are_singular() -> None:
    assert describe(count_segments("a")) == "1 character in GSM-7 is 1 SMS segment"
    assert describe(count_segments("\U0001f600")) == "1 character in UCS-2 is 1 SMS segment"


def test_a_limit_below_one_is_refused_as_a_configuration_mistake() -> None:
    with pytest.raises(ValueError, match="at least 1, not 0"):
        over_limit(count_segments("a"), limit=0)


gsm_text = st.text(alphabet=GSM_BASIC + GSM_EXTENSION, max_size=700)
any_text = st.text(max_size=400)


@given(gsm_text)
def test_a_gsm_only_text_is_never_reported_as_ucs2(text: str) -> None:
    count = count_segments(text)
    assert count.encoding == "GSM-7"
    assert count.units == len(text) + sum(c in GSM_EXTENSION for c in text)


@given(st.one_of(gsm_text, any_text), st.characters())
def test_appending_a_character_never_lowers_the_segment_count(text: str, extra: str) -> None:
    assert count_segments(text + extra).segments >= count_segments(text).segments


@given(any_text)
def test_each_part_holds_no_more_than_the_part_size(text: str) -> None:
    count = count_segments(text)
    single, part = (160, 153) if count.encoding == "GSM-7" else (70, 67)
    if count.units <= single:
        assert count.segments == (1 if text else 0)
    else:
        # Packing wastes at most one unit per part (a pair that did not fit), never more.
        assert -(-count.units // part) <= count.segments <= -(-count.units // (part - 1))
