"""The contrast helper gives WCAG's own figures."""

from __future__ import annotations

import pytest

from tests._contrast import contrast


def test_known_ratios() -> None:
    assert contrast("#000", "#fff") == pytest.approx(21.0)
    assert contrast("#fff", "#fff") == pytest.approx(1.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)  # the classic "just fails AA" grey
    assert contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)  # and the one that passes
    assert contrast("#ffffff", "#ef6c00") == contrast("#ef6c00", "#ffffff")


def test_a_colour_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="not a #rrggbb colour"):
        contrast("orange", "#fff")
