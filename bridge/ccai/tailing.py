"""Reading CCAI's chat list by tailing, as Google's pagination page advises for the chat list.

Paging by number while the tenant's chats change shifts rows between pages, and a row that moves up
a page is never read. Tailing asks again from the last row's time instead (the rows of that second
are read twice, which is harmless), and pages by number only to get past a full page of rows that
share one second. The chat sync tails by ``updated_at``, the lost-answer lookup by ``created_at``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bridge.ccai.chats import moment
from bridge.times import iso_utc

Column = Literal["updated_at", "created_at"]
PAGE_SIZE = 100  # the Manager API's default and largest page


@dataclass(frozen=True)
class Position:
    """Where the next request reads from: rows at or after the second ``cursor``, its ``page``."""

    column: Column
    cursor: float
    page: int = 1

    @classmethod
    def start(cls, column: Column, since: float) -> Position:
        return cls(column, float(math.floor(since)))

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            f"{self.column}[from]": iso_utc(self.cursor),
            "sort_column": self.column,
            "sort_direction": "ASC",
            "per": PAGE_SIZE,
        }
        if self.page > 1:
            params["page"] = self.page
        return params

    def after(self, rows: Sequence[Mapping[str, Any]]) -> Position:
        """Where to read after a full page of ``rows`` (sorted by the column)."""
        first, last = (moment(rows[0].get(self.column)), moment(rows[-1].get(self.column))) if rows else (None, None)
        if last is None or math.floor(last) <= self.cursor:
            # A full page of one second (or of unreadable times): only paging gets past it.
            return Position(self.column, self.cursor, self.page + 1)
        if first is not None and math.floor(first) == math.floor(last):
            return Position(self.column, float(math.floor(last)), 2)  # the page is that second's first page
        return Position(self.column, float(math.floor(last)), 1)

    @property
    def paged(self) -> bool:
        """Whether this read goes past rows by page number (they can still shift: read them again later)."""
        return self.page > 1
