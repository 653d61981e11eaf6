"""Every link in the READMEs goes somewhere: anchors name a heading (as GitHub spells its ids),
relative links name a file of the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted(p for p in ROOT.glob("*/README.md") if not p.parent.name.startswith("."))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def slug(heading: str) -> str:
    """GitHub's id for a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    found: set[str] = set()
    for heading in HEADING.findall(FENCE.sub("", markdown)):
        base, n = slug(heading), 0
        while (candidate := base if n == 0 else f"{base}-{n}") in found:
            n += 1
        found.add(candidate)
    return found


def links(markdown: str) -> list[str]:
    return LINK.findall(FENCE.sub("", markdown))


def test_slugs_follow_githubs_rules() -> None:
    assert slug("Consent and send windows") == "consent-and-send-windows"
    assert slug("Security, privacy, observability") == "security-privacy-observability"
    assert slug("`bridge check`: what it verifies") == "bridge-check-what-it-verifies"
    assert anchors("## Setup\n## Setup\n```\n## Not a heading\n```\n") == {"setup", "setup-1"}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_link_goes_somewhere(document: Path) -> None:
    text = document.read_text()
    broken = []
    for target in links(text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto: - not ours to check offline
        path, _, anchor = target.partition("#")
        destination = (document.parent / path).resolve() if path else document
        if not destination.exists():
            broken.append(f"{target}: no file {destination.relative_to(ROOT) if ROOT in destination.parents else path}")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination.read_text()):
            broken.append(f"{target}: no heading with that id in {destination.relative_to(ROOT)}")
    assert broken == []
