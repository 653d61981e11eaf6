from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.text import forbidden_characters, sanitize

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # man, ZWJ, woman, ZWJ, girl
SCOTLAND = "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"  # tag sequence


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("a\x00b", ["U+0000 (NUL)"]),
        ("ring\x07", ["U+0007 (BEL)"]),
        ("abc\u202eusr.exe", ["U+202E (RIGHT-TO-LEFT OVERRIDE)"]),
        ("\u2066x\u2069", ["U+2066 (LEFT-TO-RIGHT ISOLATE)", "U+2069 (POP DIRECTIONAL ISOLATE)"]),
        ("x\x7f", ["U+007F (DEL)"]),
        ("cp1252 ellipsis\x85", ["U+0085 (NEL)"]),
        ("\x9f", ["U+009F (APC)"]),
        ("half \ud83d emoji", ["U+D83D (lone surrogate)"]),
        ("a\ufeffb", ["U+FEFF (BYTE ORDER MARK)"]),
        ("\uffff\ufffe\ufdd0\U0010ffff", [f"U+{c} (non-character)" for c in ("FFFF", "FFFE", "FDD0", "10FFFF")]),
        ("page\x0cbreak\x1b[0m", ["U+000C (FF)", "U+001B (ESC)"]),
    ],
)
def test_each_forbidden_character_is_named_by_code_point_and_name(text: str, labels: list[str]) -> None:
    assert forbidden_characters(text) == labels


def test_a_character_is_named_once_in_order_of_first_appearance() -> None:
    assert forbidden_characters("\x07a\x00b\x07c\x00") == ["U+0007 (BEL)", "U+0000 (NUL)"]


@pytest.mark.parametrize(
    "text",
    [
        "Hola, ¿qué tal? Ação, naïve, Ødegaard, Œuvre",
        "Your order ships today 📦🚚",
        FAMILY,
        SCOTLAND,
        "thumbs up \U0001f44d\U0001f3fd and a heart \u2764\ufe0f",
        "col1\tcol2\nline two",
        "a\r\nb\rc",
        "שלום \u200f(123)\u200e, مرحبا \u061c",  # the LRM, RLM and ALM marks are allowed
        "\ufeffa leading byte order mark",
        "zero\u200bwidth space, soft\u00adhyphen, replacement \ufffd",
    ],
)
def test_ordinary_text_has_nothing_forbidden(text: str) -> None:
    assert forbidden_characters(text) == []


def test_the_refusal_names_every_forbidden_character() -> None:
    assert forbidden_characters("a\r\nb\u202ec\x07") == ["U+202E (RIGHT-TO-LEFT OVERRIDE)", "U+0007 (BEL)"]
    assert forbidden_characters("a\x00") == ["U+0000 (NUL)"]


@pytest.mark.parametrize(
    ("text", "clean"),
    [
        ("a\x00b", "ab"),
        ("ring\x07!", "ring!"),
        ("abc\u202etxt.exe", "abctxt.exe"),
        ("one\r\ntwo\rthree\nfour", "one\ntwo\nthree\nfour"),
        ("para\u2029line\u2028end", "para\nline\nend"),
        ("a\r\x00\nb", "a\nb"),
        ("half \ud83d emoji", "half  emoji"),
        ("\ufeffstart\ufeffmiddle", "startmiddle"),
        ("tab\tstays", "tab\tstays"),
        (FAMILY + " " + SCOTLAND, FAMILY + " " + SCOTLAND),
        ("Crème brûlée ✓", "Crème brûlée ✓"),
    ],
)
def test_sanitize_removes_forbidden_characters_and_normalises_line_breaks(text: str, clean: str) -> None:
    assert sanitize(text) == clean


# Any code point, surrogates included, with the characters the policy is about drawn far more often
# than chance would draw them.
EDGES = (
    "\x00\x07\t\n\r\x0c\x1b\x7f\x85\x9f\u200e\u200f\u2028\u2029\u202a\u202e\u2066\u2069\ud800\udfff\ufeff\ufffe\uffff"
)
messy_text = st.text(
    alphabet=st.one_of(st.sampled_from(EDGES), st.characters(exclude_categories=()), st.sampled_from("a\U0001f600")),
    max_size=200,
)


@given(messy_text)
def test_sanitized_text_never_contains_a_forbidden_character_or_a_cr(text: str) -> None:
    clean = sanitize(text)
    assert forbidden_characters(clean) == []
    assert "\r" not in clean
    assert "\ufeff" not in clean


@given(messy_text)
def test_sanitize_is_idempotent(text: str) -> None:
    once = sanitize(text)
    assert sanitize(once) == once


@given(st.text(alphabet=st.characters(exclude_categories=("Cc", "Cs", "Cn")), max_size=200))
def test_text_without_controls_passes_unchanged_unless_it_holds_bidi_controls_or_separators(text: str) -> None:
    if any(c in text for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff\u2028\u2029"):
        return
    assert sanitize(text) == text
    assert forbidden_characters(text) == []


def test_control_characters_are_labelled_with_their_unicode_abbreviations() -> None:
    controls = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)] if chr(c) not in "\t\n\r"]
    labels = forbidden_characters("".join(controls))
    assert len(labels) == len(controls) == 62
    for char, label in zip(controls, labels, strict=True):
        abbreviation = label.split("(")[1].rstrip(")")
        if abbreviation == "EM":  # Python's name table lacks this one alias of U+0019 END OF MEDIUM
            continue
        assert unicodedata.lookup(abbreviation) == char, label
