"""One control-character policy for message text, whatever its source.

A message may come from the send API, a Case field or a rendered template. Some characters must never
reach a customer's phone or the store: PostgreSQL text cannot hold NUL (audit A1: a send containing
one was texted again and again), other controls are invisible or garble the display, and bidirectional
overrides can make a text read differently from what the agent wrote. The same list serves both
sources, which differ only in what happens on a hit:

- API input is refused with a reason naming each character (:func:`forbidden_characters`), because
  the caller can fix it and should know;
- text read from the CRM is cleaned (:func:`sanitize`), because an agent's Case should not fail over
  a stray control character pasted from a document.

Decisions:

- CR is not refused but normalised: ``\\r\\n`` and a lone ``\\r`` become ``\\n``, on every source.
  Browsers submit form text with CRLF line breaks and Windows tools write them, so refusing CR would
  turn away ordinary messages; and SMS handsets show CRLF inconsistently (some as two breaks). The
  Unicode line and paragraph separators (U+2028, U+2029) are line breaks too and become ``\\n``. So
  the text to send is always ``sanitize(text)``; on API input, after :func:`forbidden_characters`
  found nothing, that only normalises line breaks (and drops a leading byte order mark).
- The left-to-right and right-to-left marks (U+200E, U+200F) and the Arabic letter mark (U+061C)
  stay. They are how Hebrew and Arabic writers place punctuation and numbers correctly, and they
  cannot reorder letters; the embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) can,
  which is what "Trojan Source" style spoofing uses, so those are forbidden.
- A byte order mark (U+FEFF) at the very start is an encoding leftover, not content: it is not a
  reason to refuse, and :func:`sanitize` drops it. Anywhere else it is forbidden.
- Emoji, ZWJ sequences, variation selectors, tag characters (subdivision flags), accented letters,
  TAB and LF are ordinary text.
"""

from __future__ import annotations

import re
import unicodedata

# Abbreviations from the Unicode name aliases (NameAliases.txt); unicodedata has no names for controls.
# fmt: off
_C0 = (  # U+0000-U+001F
    "NUL", "SOH", "STX", "ETX", "EOT", "ENQ", "ACK", "BEL", "BS", "HT", "LF", "VT", "FF", "CR", "SO", "SI",
    "DLE", "DC1", "DC2", "DC3", "DC4", "NAK", "SYN", "ETB", "CAN", "EM", "SUB", "ESC", "FS", "GS", "RS", "US",
)
_C1 = (  # U+0080-U+009F
    "PAD", "HOP", "BPH", "NBH", "IND", "NEL", "SSA", "ESA", "HTS", "HTJ", "VTS", "PLD", "PLU", "RI", "SS2", "SS3",
    "DCS", "PU1", "PU2", "STS", "CCH", "MW", "SPA", "EPA", "SOS", "SGC", "SCI", "CSI", "ST", "OSC", "PM", "APC",
)
# fmt: on

_NEWLINE = re.compile("\r\n|[\r\u2028\u2029]")
_BYTE_ORDER_MARK = "\ufeff"


def _is_forbidden(char: str) -> bool:
    """Whether ``char`` may never be texted; CR and the line separators are normalised instead."""
    code = ord(char)
    if code < 0x20:
        return char not in "\t\n\r"
    return (
        0x7F <= code <= 0x9F  # DEL and the C1 controls
        or 0x202A <= code <= 0x202E  # bidirectional embeddings and overrides
        or 0x2066 <= code <= 0x2069  # bidirectional isolates
        or 0xD800 <= code <= 0xDFFF  # a surrogate on its own: not a character
        or 0xFDD0 <= code <= 0xFDEF  # non-characters
        or (code & 0xFFFE) == 0xFFFE  # U+FFFE and U+FFFF of every plane: non-characters
        or code == 0xFEFF
    )


def _label(char: str) -> str:
    code = ord(char)
    if code < 0x20:
        name = _C0[code]
    elif code == 0x7F:
        name = "DEL"
    elif 0x80 <= code <= 0x9F:
        name = _C1[code - 0x80]
    elif 0xD800 <= code <= 0xDFFF:
        name = "lone surrogate"
    elif code == 0xFEFF:
        name = "BYTE ORDER MARK"
    else:
        name = unicodedata.name(char, "non-character")
    return f"U+{code:04X} ({name})"


def forbidden_characters(text: str) -> list[str]:
    """Each distinct forbidden character in ``text``, in order of first appearance.

    Labels read e.g. ``U+0000 (NUL)`` or ``U+202E (RIGHT-TO-LEFT OVERRIDE)``. A byte order mark at
    the start of the text is not listed (see the module docstring).
    """
    found = dict.fromkeys(c for i, c in enumerate(text) if _is_forbidden(c) and not (i == 0 and c == _BYTE_ORDER_MARK))
    return [_label(c) for c in found]


def sanitize(text: str) -> str:
    """Text fit to send: forbidden characters removed, line breaks normalised to ``\\n``.

    Used on text read from the CRM, and on API text in which :func:`forbidden_characters` found nothing.
    """
    kept = "".join(c for c in text if not _is_forbidden(c))
    return _NEWLINE.sub("\n", kept)
