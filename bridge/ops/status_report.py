"""What ``bridge status`` prints: the verdict first, then the queue, workers, pushes, the chat sync, the
lost-answer lookup and the event streams; as lines for a terminal or as a dict for ``--json``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from bridge.crm import Words
from bridge.ops.overview import Overview, StreamState
from bridge.ops.verdict import Verdict
from bridge.times import iso


def verdict_lines(verdict: Verdict) -> list[str]:
    lines = [f"Verdict:             {verdict.level.upper()}"]
    for reason in verdict.reasons:
        since = f" (since {iso(reason.since)})" if reason.since is not None else ""
        note = "note: " if reason.severity == "note" else ""
        lines.append(f"  - {note}{reason.sentence}{since}")
    return lines


def status_report(overview: Overview) -> dict[str, Any]:
    queue, usage, sync = overview.queue, overview.api_usage, overview.chat_sync
    return {
        "by_status": dict(queue.by_status),
        "oldest_queued_seconds": queue.oldest_queued_seconds,
        "writebacks_pending": queue.writebacks_pending,
        "workers": {
            w.id: {"host": w.host, "pid": w.pid, "seen_seconds_ago": round(w.seconds_since_beat, 1)}
            for w in overview.workers
        },
        # The key predates other CRMs; kept so that scripts reading it go on working.
        "salesforce_api_usage": None
        if usage is None
        else {"used": usage.used, "total": usage.total, "as_of": iso(usage.as_of)},
        "last_push": None
        if overview.last_push is None
        else {
            "door": overview.last_push.door,
            "at": iso(overview.last_push.at),
            "notifications": overview.last_push.notifications,
        },
        "chat_sync": None
        if sync is None
        else {
            "high_water": iso(sync.high_water),
            "polled_at": iso(sync.polled_at),
            "lag_seconds": sync.lag_seconds,
            "chats_with_news_pending": sync.chats_with_news_pending,
        },
        "lookup": None if overview.lookup is None else overview.lookup.as_json(),
        "store_went_back": None
        if overview.went_back is None
        else {
            "detected_at": iso(overview.went_back.detected_at),
            "detail": overview.went_back.detail,
            "sends_still_looked_up": overview.went_back.still_looking_up,
        },
        "streams": {
            stream.name: {
                "state": stream.state,
                "holder": stream.holder,
                "received": stream.received,
                "committed": stream.committed,
                "already_seen": stream.already_seen,
                "undecodable": stream.undecodable,
                "reconnects": stream.reconnects,
                "dead_streams": stream.dead_streams,
                "replay_fallbacks": stream.replay_fallbacks,
                "last_event_at": iso(stream.last_event_at),
                "lag_seconds": stream.lag_seconds,
                "problem": stream.problem,
                "reported_seconds_ago": stream.reported_seconds_ago,
            }
            for stream in overview.streams
        },
    }


def status_lines(overview: Overview, words: Words) -> list[str]:
    queue, workers, usage, sync = overview.queue, overview.workers, overview.api_usage, overview.chat_sync
    counts = ", ".join(f"{k} {v}" for k, v in sorted(queue.by_status.items())) or "empty"
    oldest = queue.oldest_queued_seconds
    lines = [
        f"Sends:               {counts}",
        f"Oldest queued:       {'-' if oldest is None else f'{oldest:.0f} s'}",
        f"Write-backs pending: {queue.writebacks_pending}",
        f"Workers alive:       {len(workers)}"
        + "".join(f"\n  {w.id} on {w.host} (pid {w.pid}, seen {w.seconds_since_beat:.0f} s ago)" for w in workers),
    ]
    if usage is None:
        lines.append(f"{words.crm} API usage: not reported yet")
    else:
        lines.append(f"{words.crm} API usage: {usage.used:,} of {usage.total:,} today (as of {iso(usage.as_of)})")
    push = overview.last_push
    if push is None:
        lines.append(f"Last {words.crm} push:  none received yet (check the endpoint and token if one is expected)")
    else:
        door = push.door.replace("_", " ")
        lines.append(f"Last {words.crm} push:  {door}, {iso(push.at)} ({push.notifications} notification(s))")
    if sync is None:
        lines.append("Chat sync:           not run yet")
    else:
        lines.append(
            f"Chat sync:           last poll {sync.lag_seconds:.0f} s ago, CCAI changes read up to "
            f"{iso(sync.high_water) or '-'}, {sync.chats_with_news_pending} chat(s) with news still to reach "
            f"{words.crm}"
        )
    if overview.lookup is not None:
        lines.append(f"Lost-answer lookup:  {overview.lookup.state}: {overview.lookup.detail}")
    if overview.went_back is not None:
        back = overview.went_back
        lines.append(
            f"STORE WENT BACK:     at {iso(back.detected_at)}: {back.detail} {back.still_looking_up} unfinished "
            "send(s) still to be looked up in CCAI before any is sent."
        )
    lines.extend(stream_lines(overview.streams))
    return lines


def stream_lines(streams: Sequence[StreamState]) -> list[str]:
    lines = []
    now = time.time()
    for stream in streams:
        last = "no event yet" if stream.last_event_at is None else f"last event {now - stream.last_event_at:.0f} s ago"
        lag = "" if stream.lag_seconds is None else f", lag {stream.lag_seconds:.1f} s"
        lines.append(
            f"Event stream:        {stream.name} {stream.state}"
            + (f" on {stream.holder}" if stream.holder else "")
            + f", {stream.received} received, {stream.committed} committed ({stream.already_seen} seen before), "
            f"{stream.reconnects} reconnect(s), {last}{lag}"
        )
        if stream.problem:
            lines.append(f"  last problem: {stream.problem}")
    return lines
