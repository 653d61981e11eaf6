"""The Manager API chat list of the simulated tenant: ``GET /manager/api/v1/chats``.

Documented (https://cloud.google.com/contact-center/ccai-platform/docs/manager-api,
.../manager-api-pagination-tailing): the same Basic auth as the rest of the API and the same
10 requests per second per customer; ``per`` sets the page size, default 100, and a larger value is
reduced to 100; ``page`` picks a page; paged answers carry an RFC 5988 ``Link`` header with
``rel="next"`` while more records exist and ``rel="last"``, plus ``Total`` and ``Per-Page``
headers (the English page once said no such indication exists; its later translations describe
these headers). For chats Google recommends *tailing*: ``updated_at[from]`` (records updated at or
after that time) with ``sort_column`` and ``sort_direction``.

Assumed: ``created_at[from]`` works like ``updated_at[from]``; ``sort_column`` takes ``id``,
``created_at`` or ``updated_at`` and defaults to ``id``; ``sort_direction`` is ``ASC`` (default) or
``DESC``; equal values are ordered by id; comparisons use the whole seconds the answer shows; a
malformed parameter is refused with HTTP 400 and ``{"message": ...}`` (so a client's mistake shows
up here rather than as a silently unfiltered list).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, cast

from starlette.datastructures import URL

from bridge.sandbox.chats import Chat

MAX_PER_PAGE = 100
SortColumn = Literal["id", "created_at", "updated_at"]


@dataclass(frozen=True)
class ChatQuery:
    created_from: float | None = None
    updated_from: float | None = None
    sort_column: SortColumn = "id"
    descending: bool = False
    per: int = MAX_PER_PAGE
    page: int = 1

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> ChatQuery:
        """Read the query string. Raises ``ValueError`` naming the bad parameter."""
        column = params.get("sort_column", "id")
        if column not in ("id", "created_at", "updated_at"):
            raise ValueError(f"sort_column must be created_at, updated_at or id, not {column!r}.")
        direction = params.get("sort_direction", "ASC").upper()
        if direction not in ("ASC", "DESC"):
            raise ValueError(f"sort_direction must be ASC or DESC, not {params['sort_direction']!r}.")
        return cls(
            created_from=_moment(params, "created_at[from]"),
            updated_from=_moment(params, "updated_at[from]"),
            sort_column=cast(SortColumn, column),
            descending=direction == "DESC",
            per=min(_positive(params, "per", MAX_PER_PAGE), MAX_PER_PAGE),
            page=_positive(params, "page", 1),
        )

    def select(self, chats: Iterable[Chat]) -> tuple[list[Chat], int]:
        """This query's page of ``chats``, and how many chats match in all."""
        matching = [c for c in chats if self._matches(c)]
        matching.sort(key=self._sort_key, reverse=self.descending)
        start = (self.page - 1) * self.per
        return matching[start : start + self.per], len(matching)

    def headers(self, url: URL, total: int) -> dict[str, str]:
        """``Link`` (next while more pages exist, and last), ``Total`` and ``Per-Page``."""
        last = max(1, math.ceil(total / self.per))
        links = []
        if self.page < last:
            links.append(f'<{url.include_query_params(page=self.page + 1)}>; rel="next"')
        links.append(f'<{url.include_query_params(page=last)}>; rel="last"')
        return {"Link": ", ".join(links), "Total": str(total), "Per-Page": str(self.per)}

    def _matches(self, chat: Chat) -> bool:
        if self.created_from is not None and math.floor(chat.created_at) < self.created_from:
            return False
        return self.updated_from is None or math.floor(chat.updated_at) >= self.updated_from

    def _sort_key(self, chat: Chat) -> tuple[float, int]:
        if self.sort_column == "id":
            return (chat.id, chat.id)
        return (math.floor(getattr(chat, self.sort_column)), chat.id)


def _moment(params: Mapping[str, str], name: str) -> float | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{name} must be an ISO 8601 time such as 2026-11-25T10:00:00Z, not {raw!r}.") from None
    # A time without an offset is taken as UTC, the zone every answer uses.
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def _positive(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name} must be a whole number from 1, not {raw!r}.")
    return int(raw)
