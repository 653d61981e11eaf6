"""WCAG 2.x contrast ratios, for checking the dashboard's colours (AA: 4.5:1 for text, 3:1 for large
text and for the parts of a chart that carry meaning)."""

from __future__ import annotations

import re

AA_TEXT, AA_LARGE = 4.5, 3.0


def luminance(colour: str) -> float:
    """The relative luminance of a ``#rrggbb`` or ``#rgb`` colour (WCAG 2.x, sRGB)."""
    hexes = colour.lstrip("#")
    if len(hexes) == 3:
        hexes = "".join(c * 2 for c in hexes)
    if not re.fullmatch(r"[0-9a-fA-F]{6}", hexes):
        raise ValueError(f"{colour!r} is not a #rrggbb colour")
    channels = [int(hexes[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(foreground: str, background: str) -> float:
    """The contrast ratio of two colours, from 1 (none) to 21 (black on white)."""
    lighter, darker = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)
