"""Moments as people and APIs read them: ISO 8601 in UTC, to the second."""

from __future__ import annotations

import datetime as dt


def iso_utc(timestamp: float) -> str:
    """``2026-11-25T09:00:00Z``: what the API answers, what CCAI's list filters and Salesforce take."""
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_date(timestamp: float) -> str:
    """``2026-11-25``: the day (UTC) of a moment."""
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).date().isoformat()


def iso(timestamp: float | None) -> str | None:
    """:func:`iso_utc`, or None for no moment."""
    return None if timestamp is None else iso_utc(timestamp)


def readable(timestamp: float | None) -> str:
    """``2026-11-25 09:00:00 UTC`` for pages people read; a dash for no moment."""
    return "–" if timestamp is None else iso_utc(timestamp).replace("T", " ").removesuffix("Z") + " UTC"
