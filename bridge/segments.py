"""SMS segments: how many parts a message is sent in, counted the way the networks count.

A text goes out in the GSM 03.38 default alphabet (7-bit septets) when every character is in its basic
table or its extension table, and in UCS-2 (UTF-16 code units) otherwise, so a single curly apostrophe
or ``á`` turns a 160-character message into three parts. A message that fits one part is sent whole;
a longer one is split into parts that each give up room to a concatenation header: 153 septets or 67
units a part. A part never ends in the middle of an extension character's escape pair or of a
surrogate pair, so parts are filled one character at a time rather than by dividing the total.

The table follows 3GPP TS 23.038 (formerly GSM 03.38), which puts the capital ``Ç`` at 0x09; the
Unicode Consortium's GSM0338.TXT maps that code to the small ``ç`` instead, but handsets and ICU follow
the standard, so ``ç`` counts as UCS-2 here. ``tests/fixtures/sms_segments.json`` holds the shared
test vectors the Salesforce component's counter is checked against as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

# 3GPP TS 23.038 section 6.2.1, default alphabet, in code order 0x00-0x7F. 0x1B (the escape to the
# extension table) is left out: it is not a character a person writes.
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# Section 6.2.1.1, the default extension table: each is sent as ESC plus a code, two septets.
_GSM_EXTENSION = frozenset("\f^{}\\[~]|€")

_SINGLE = {"GSM-7": 160, "UCS-2": 70}
_PART = {"GSM-7": 153, "UCS-2": 67}


@dataclass(frozen=True)
class SegmentCount:
    """How a text would be sent.

    ``characters`` is what a person counts (code points), ``units`` what the network counts (septets
    for GSM-7, UTF-16 code units for UCS-2), ``segments`` the number of SMS parts (0 for no text).
    """

    encoding: Encoding
    characters: int
    units: int
    segments: int


def count_segments(text: str) -> SegmentCount:
    """Count the SMS parts ``text`` is sent in."""
    if all(c in _GSM_BASIC or c in _GSM_EXTENSION for c in text):
        encoding: Encoding = "GSM-7"
        sizes = [2 if c in _GSM_EXTENSION else 1 for c in text]
    else:
        encoding = "UCS-2"
        sizes = [2 if ord(c) > 0xFFFF else 1 for c in text]
    units = sum(sizes)
    if units == 0:
        segments = 0
    elif units <= _SINGLE[encoding]:
        segments = 1
    else:
        segments = _pack(sizes, _PART[encoding])
    return SegmentCount(encoding=encoding, characters=len(text), units=units, segments=segments)


def _pack(sizes: list[int], part: int) -> int:
    # A character that does not fit whole in the current part starts the next one.
    parts, used = 1, 0
    for size in sizes:
        if used + size > part:
            parts, used = parts + 1, 0
        used += size
    return parts


def describe(count: SegmentCount) -> str:
    """E.g. "1,800 characters in UCS-2 is 27 SMS segments", for reasons and ``bridge sends show``."""
    characters = f"{count.characters:,} character{'' if count.characters == 1 else 's'}"
    segments = f"{count.segments:,} SMS segment{'' if count.segments == 1 else 's'}"
    return f"{characters} in {count.encoding} is {segments}"


def over_limit(count: SegmentCount, *, limit: int) -> str | None:
    """The reason to refuse a message longer than ``limit`` segments, or None when it fits.

    E.g. "1,800 characters in UCS-2 is 27 SMS segments; the limit is 10."
    """
    if limit < 1:
        raise ValueError(f"The SMS segment limit must be at least 1, not {limit}.")
    if count.segments <= limit:
        return None
    return f"{describe(count)}; the limit is {limit:,}."
