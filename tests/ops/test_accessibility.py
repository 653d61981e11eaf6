"""The dashboard for everyone: every badge and text colour at WCAG AA, a skip link, tables that
scroll inside their own box at phone width (the browser test takes the pages at 390 px)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bridge.model import FINAL_STATUSES, PENDING_STATUSES
from tests._contrast import AA_LARGE, AA_TEXT, contrast

TEMPLATES = Path(__file__).parents[2] / "bridge" / "ops" / "templates" / "dashboard"
STYLE = (TEMPLATES / "base.html").read_text()
WHITE, INK, PAGE = "#ffffff", "#1d2730", "#f6f8fa"


def rule(selector: str) -> str:
    found = re.search(re.escape(selector) + r"\s*\{([^}]*)\}", STYLE)
    assert found, f"no rule for {selector}"
    return found.group(1)


def colour(selector: str, prop: str) -> str:
    found = re.search(rf"(?<![-\w]){prop}:\s*(#[0-9a-fA-F]{{3,6}})", rule(selector))
    assert found, f"{selector} sets no {prop}"
    return found.group(1)


@pytest.mark.parametrize("status", [*PENDING_STATUSES, *FINAL_STATUSES])
def test_every_status_badge_reaches_aa_under_white_text(status: str) -> None:
    background = colour(f".s-{status}", "background")
    assert contrast(WHITE, background) >= AA_TEXT, f"{status}: {contrast(WHITE, background):.2f}:1"
    # The same colour fills the chart's bars, which must stand out from the white chart (3:1).
    assert contrast(background, WHITE) >= AA_LARGE


def test_text_colours_reach_aa_on_their_backgrounds() -> None:
    assert contrast(INK, PAGE) >= AA_TEXT
    assert contrast(colour(".muted", "color"), PAGE) >= AA_TEXT
    assert contrast(colour(".muted", "color"), WHITE) >= AA_TEXT
    assert contrast(colour("header a", "color"), colour("header", "background")) >= AA_TEXT
    assert contrast(WHITE, colour("button", "background")) >= AA_TEXT
    assert contrast(WHITE, colour("button.danger", "background")) >= AA_TEXT
    for level in ("healthy", "degraded", "down"):
        assert contrast(INK, colour(f".v-{level}", "background")) >= AA_TEXT, level


def test_every_page_has_a_skip_link_to_its_content() -> None:
    assert '<a class="skip" href="#main">Skip to the content</a>' in STYLE
    assert '<main id="main"' in STYLE


def test_every_table_scrolls_inside_a_labelled_region() -> None:
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        tables = text.count("<table")
        wrapped = len(
            re.findall(r'<div class="table-wrap" tabindex="0" role="region" aria-label="[^"]+">\s*<table', text)
        )
        assert tables == wrapped, template.name
