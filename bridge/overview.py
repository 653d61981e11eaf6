"""The state of the whole bridge at a glance, read from the store: what ``bridge status`` prints and
the dashboard's overview shows. Every process writes what it knows to the store, so any one
process can tell the operator about all of them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from bridge.model import QueueSummary
from bridge.store import Store
from bridge.store.status import API_USAGE_KEY, CHAT_SYNC_KEY, WorkerInfo


@dataclass(frozen=True)
class ApiUsage:
    """The org's daily API requests, as Salesforce last reported them (``Sforce-Limit-Info``)."""

    used: int
    total: int
    as_of: float


@dataclass(frozen=True)
class ChatSyncState:
    high_water: float | None  # CCAI's updated_at up to which chats have been read
    polled_at: float | None
    lag_seconds: float  # since the last poll
    chats_with_news_pending: int  # chats whose news has not reached their ticket yet


@dataclass(frozen=True)
class Overview:
    queue: QueueSummary
    workers: Sequence[WorkerInfo]
    api_usage: ApiUsage | None
    chat_sync: ChatSyncState | None


def read_overview(store: Store, *, now: float | None = None) -> Overview:
    board = store.status
    usage = board.get(API_USAGE_KEY)
    sync = board.get(CHAT_SYNC_KEY)
    now = time.time() if now is None else now
    return Overview(
        queue=store.history.queue_summary(),
        workers=board.workers(),
        api_usage=None if usage is None else ApiUsage(int(usage[0]["used"]), int(usage[0]["total"]), usage[1]),
        chat_sync=None if sync is None else _chat_sync(sync[0], store.chats.lagging(), now),
    )


def _chat_sync(record: dict[str, object], pending: int, now: float) -> ChatSyncState:
    high_water, polled_at = _number(record.get("high_water")), _number(record.get("polled_at"))
    return ChatSyncState(
        high_water=high_water,
        polled_at=polled_at,
        lag_seconds=round(now - (polled_at or now), 1),
        chats_with_news_pending=pending,
    )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and value else None
