"""Argument types of the ``bridge`` command line."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import time

_AGO = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def moment(text: str, *, now: float | None = None) -> float:
    """A moment from the command line: ISO 8601 (``2026-11-25``, ``2026-11-25T09:00``, UTC unless it
    names a zone) or a time ago (``30m``, ``2h``, ``7d``)."""
    ago = _AGO.fullmatch(text.strip())
    if ago:
        return (time.time() if now is None else now) - float(ago.group(1)) * _UNIT[ago.group(2)]
    try:
        parsed = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a moment: give a date and time such as 2026-11-25T09:00 (UTC) or a time ago such as 2h"
        ) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).timestamp()
