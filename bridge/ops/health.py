"""The verdict as the store tells it: one read of what every process recorded, judged.

:func:`read_verdict` is what the dashboard's overview, ``bridge status``, the status endpoint and
the alert webhook all call, so they can never disagree. A store that cannot be read is itself the
verdict: down, with the store's own words.
"""

from __future__ import annotations

import time

from bridge.crm import Words
from bridge.errors import StoreError
from bridge.ops.overview import StreamState, read_lookup_proof, read_streams, read_went_back
from bridge.ops.verdict import (
    Backlog,
    ChatSyncHealth,
    Limits,
    LookupTrust,
    Snapshot,
    StoreRewound,
    Streak,
    StreamHealth,
    Verdict,
    WorkerHealth,
    duration,
    judge,
)
from bridge.phones import mask_numbers
from bridge.settings import Settings
from bridge.store import Store
from bridge.store.health import Run
from bridge.store.status import CHAT_SYNC_KEY


def limits_for(settings: Settings, words: Words) -> Limits:
    """The verdict's limits for these settings: a chat sync is late after five of its intervals."""
    return limits(chat_sync_seconds=settings.bridge_chat_sync_seconds, words=words)


def limits(*, chat_sync_seconds: float, words: Words) -> Limits:
    return Limits(chat_sync_lag_seconds=max(300.0, 5 * chat_sync_seconds), words=words)


def read_snapshot(store: Store, *, chat_sync: bool = True) -> Snapshot:
    """Everything the rules judge, from one look at the store. ``chat_sync``: whether polling is on."""
    facts = store.health.facts()
    workers = [
        WorkerHealth(
            id=w.id,
            seconds_since_beat=w.seconds_since_beat,
            pass_error=mask_numbers(w.pass_error) if w.pass_error else None,
            failing_since=w.pass_ok_at if w.pass_error else None,
        )
        for w in store.status.workers()
    ]
    sync = None
    if chat_sync:
        record = store.status.get(CHAT_SYNC_KEY)
        polled = record[0].get("polled_at") if record is not None else None
        ago = facts.at - float(polled) if isinstance(polled, int | float) and polled else None
        sync = ChatSyncHealth(polled_seconds_ago=ago, chats_waiting=store.chats.lagging())
    streams = [_stream_health(stream, facts.at) for stream in read_streams(store.status, facts.at)]
    went_back = read_went_back(store)
    proof = read_lookup_proof(store)
    return Snapshot(
        at=facts.at,
        backlog=Backlog(
            queued=facts.queued,
            sending=facts.sending,
            throttled=facts.throttled,
            oldest_seconds=facts.oldest_in_hand_seconds,
            scheduled=facts.scheduled,
            writebacks=facts.writebacks,
            oldest_writeback_seconds=facts.oldest_writeback_seconds,
        ),
        workers=workers,
        ccai_throttled=_streak(facts.ccai_throttled),
        ccai_failing=_streak(facts.ccai_failing),
        writebacks_failing=_streak(facts.writebacks_failing),
        chat_sync=sync,
        streams=[stream for stream in streams if stream is not None],
        lookup=LookupTrust(state=proof.state, detail=proof.detail),
        rewound=None
        if went_back is None
        else StoreRewound(went_back.detected_at, went_back.detail, went_back.still_looking_up),
    )


def read_verdict(store: Store, limits: Limits, *, chat_sync: bool = True, now: float | None = None) -> Verdict:
    """The verdict now; down (with the store's reason) when the store cannot be read."""
    try:
        snapshot = read_snapshot(store, chat_sync=chat_sync)
    except StoreError as exc:
        snapshot = Snapshot(
            at=time.time() if now is None else now,
            backlog=Backlog(),
            workers=(),
            store_problem=f"the store cannot be read: {exc}",
        )
    return judge(snapshot, limits)


def _stream_health(stream: StreamState, now: float) -> StreamHealth | None:
    """A CRM event stream for the verdict; None when it was stopped on purpose (its holder stopped)."""
    name = f"The event stream {stream.name}"
    match stream.state:
        case "stopped":
            return None
        case "live":
            silent = None if stream.last_response_at is None else max(0.0, now - stream.last_response_at)
            return StreamHealth(name=name, connected=True, silent_seconds=silent)
        case "unreported":
            problem = f"no process has reported it for {duration(stream.reported_seconds_ago)}"
            return StreamHealth(name=name, connected=False, silent_seconds=None, problem=problem)
        case _:  # starting, connecting, reconnecting
            problem = f"it is {stream.state}" + (f" ({stream.problem})" if stream.problem else "")
            return StreamHealth(name=name, connected=False, silent_seconds=None, problem=problem)


def _streak(run: Run | None) -> Streak | None:
    return None if run is None else Streak(since=run.since, last=run.last, count=run.count)
