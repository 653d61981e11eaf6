"""Operator commands: ``bridge send``, ``bridge sends list|show|retry``, ``bridge check``.

Each prints a table readable in a terminal, or JSON with ``--json``. They work on the store the
running bridge uses; sends they queue are processed by a running ``bridge serve`` (or worker).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio

from bridge.check import run_checks
from bridge.errors import ConfigError
from bridge.model import NewSend
from bridge.record_ids import is_record_id, to18
from bridge.sends import FINAL, REACHED_CCAI, RETRYABLE, iso, public_view, retry, wait_for_outcome
from bridge.settings import load_settings
from bridge.store import Store

WORKER_SILENT_SECONDS = 60.0  # a worker reports every few seconds; silent this long means gone
LIST_COLUMNS = ("id", "created_at", "source", "ticket_id", "status", "attempts", "chat_id", "write_back", "error")


def add_commands(commands: Any) -> None:
    """Register the operator sub-commands on the ``bridge`` parser."""
    send = commands.add_parser("send", help="queue an SMS for a Case (processed by the running bridge)")
    send.add_argument("case_id")
    send.add_argument("--message", help="text to send instead of the configured template")
    send.add_argument("--agent-email", help="assign the chat to this CCAI agent")
    send.add_argument("--agent-id", type=int, help="assign the chat to this CCAI agent id")
    send.add_argument("--wait", nargs="?", type=float, const=30.0, metavar="SECONDS", help="wait for the outcome")
    send.add_argument("--json", action="store_true")
    send.set_defaults(handler=_send)

    sends = commands.add_parser("sends", help="list, show and retry sends")
    actions = sends.add_subparsers(required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="recent sends, newest first")
    listing.add_argument("--status", choices=("queued", "sending", *FINAL))
    listing.add_argument("--ticket", help="only sends for this Case id")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)
    show = actions.add_parser("show", help="one send in full")
    show.add_argument("send_id", type=int)
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_show)
    again = actions.add_parser("retry", help="queue finished sends again")
    which = again.add_mutually_exclusive_group(required=True)
    which.add_argument("send_id", type=int, nargs="?")
    which.add_argument("--status", choices=("failed", "skipped", "unknown"))
    again.add_argument("--force", action="store_true", help="also retry sends that may have reached the customer")
    again.set_defaults(handler=_retry)

    status = commands.add_parser("status", help="queue, workers and Salesforce API usage")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)

    purge = commands.add_parser("purge", help="delete finished sends older than the retention period")
    purge.add_argument("--older-than-days", type=float, help="default: BRIDGE_RETENTION_DAYS (at least 2)")
    purge.set_defaults(handler=_purge)

    check = commands.add_parser("check", help="verify the configuration against both platforms")
    check.add_argument("--json", action="store_true")
    check.set_defaults(handler=_check)


def _store() -> Store:
    return Store.from_url(load_settings().database_url)


def _send(args: argparse.Namespace) -> int:
    if not is_record_id(args.case_id) or not args.case_id.startswith("500"):
        raise ConfigError(f"{args.case_id!r} is not a Case id (15 or 18 letters and digits, starting 500).")
    overrides = {
        key: value
        for key, value in (("message", args.message), ("agent_email", args.agent_email), ("agent_id", args.agent_id))
        if value is not None
    }
    store = _store()
    try:
        send_id, _, _ = store.create(
            NewSend(
                dedupe_key=f"cli:{uuid.uuid4().hex}", source="cli", ticket_id=to18(args.case_id), overrides=overrides
            )
        )
        row = anyio.run(lambda: wait_for_outcome(store, send_id, timeout=args.wait or 0.0))
    finally:
        store.close()
    view = public_view(row)
    if args.json:
        print(json.dumps(view, indent=2))
    else:
        print(f"Send {send_id} for Case {view['ticket_id']}: {view['status']}")
        if view["status"] in FINAL:
            print(_detail(view))
        elif args.wait:
            print("Still pending: is a `bridge serve` (or worker) running against this store?")
    if row["status"] == "sent" or (not args.wait and row["status"] not in FINAL):
        return 0
    return 1 if row["status"] in FINAL else 3


def _list(args: argparse.Namespace) -> int:
    store = _store()
    try:
        rows = [public_view(r) for r in store.find(status=args.status, ticket_id=args.ticket, limit=args.limit)]
    finally:
        store.close()
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        print(table(rows, LIST_COLUMNS, widths={"error": 48}))
    else:
        print("No sends match.")
    return 0


def _show(args: argparse.Namespace) -> int:
    store = _store()
    try:
        row = store.get(args.send_id)
    finally:
        store.close()
    if row is None:
        print(f"There is no send {args.send_id}.", file=sys.stderr)
        return 1
    view = public_view(row)
    print(json.dumps(view, indent=2) if args.json else "\n".join(f"{k:>17}: {_cell(v)}" for k, v in view.items()))
    return 0


def _retry(args: argparse.Namespace) -> int:
    store = _store()
    try:
        if args.send_id is not None:
            message = retry(store, args.send_id, force=args.force)
            print(message)
            return 0 if "queued again" in message else 1
        if args.status in REACHED_CCAI and not args.force:
            print(
                f"Sends that are {args.status} may already have reached the customer; retrying them can text "
                "someone a second time. Add --force to do it anyway.",
                file=sys.stderr,
            )
            return 1
        ids = [row["id"] for row in store.find(status=args.status, limit=1_000_000)]
        _each_with_progress(ids, lambda send_id: retry(store, send_id, force=args.status not in RETRYABLE))
    finally:
        store.close()
    print(f"{len(ids)} {args.status} send(s) queued again.")
    return 0


def _each_with_progress(ids: Sequence[int], action: Callable[[int], object]) -> None:
    for done, send_id in enumerate(ids, start=1):
        action(send_id)
        if sys.stderr.isatty() and (done % 50 == 0 or done == len(ids)):
            print(f"\r{done}/{len(ids)}", end="", file=sys.stderr, flush=True)
    if sys.stderr.isatty() and ids:
        print(file=sys.stderr)


def _status(args: argparse.Namespace) -> int:
    store = _store()
    try:
        summary = store.queue_summary()
        workers = store.status_items("worker:")
        usage = store.status_items("salesforce:api_usage").get("salesforce:api_usage")
        now = time.time()
    finally:
        store.close()
    live = {
        key.removeprefix("worker:"): now - at for key, (_, at) in workers.items() if now - at < WORKER_SILENT_SECONDS
    }
    report = {
        **summary,
        "workers": {name: round(age, 1) for name, age in sorted(live.items())},
        "salesforce_api_usage": None if usage is None else {**usage[0], "as_of": iso(usage[1])},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary["by_status"].items())) or "empty"
    oldest = summary["oldest_queued_seconds"]
    print(f"Sends:               {counts}")
    print(f"Oldest queued:       {'-' if oldest is None else f'{oldest:.0f} s'}")
    print(f"Write-backs pending: {summary['writebacks_pending']}")
    print(
        f"Workers alive:       {len(live)}" + "".join(f"\n  {n} (seen {a:.0f} s ago)" for n, a in sorted(live.items()))
    )
    if usage is None:
        print("Salesforce API usage: not reported yet")
    else:
        print(f"Salesforce API usage: {usage[0]['used']:,} of {usage[0]['total']:,} today (as of {iso(usage[1])})")
    return 0


def _purge(args: argparse.Namespace) -> int:
    settings = load_settings()
    days = settings.bridge_retention_days if args.older_than_days is None else args.older_than_days
    if days < 2:
        raise ConfigError(
            "Keep at least 2 days: redelivered events and idempotency keys are recognised by what is kept."
        )
    store = Store.from_url(settings.database_url)
    removed = 0
    try:
        cutoff = time.time() - days * 86400
        while batch := store.purge(cutoff, batch=1000, once=True):
            removed += batch
            if sys.stderr.isatty():
                print(f"\rremoved {removed}", end="", file=sys.stderr, flush=True)
    finally:
        store.close()
    if sys.stderr.isatty() and removed:
        print(file=sys.stderr)
    print(f"Removed {removed} finished send(s) older than {days:g} days.")
    return 0


def _check(args: argparse.Namespace) -> int:
    settings = load_settings()
    findings = anyio.run(run_checks, settings)
    if args.json:
        print(json.dumps([f.as_dict() for f in findings], indent=2))
    else:
        for finding in findings:
            print(f"{'ok' if finding.ok else 'FAIL':<5} {finding.area:<18} {finding.detail}")
        failed = sum(1 for f in findings if not f.ok)
        print(f"\n{'All checks passed.' if not failed else f'{failed} check(s) failed.'}")
    return 0 if all(f.ok for f in findings) else 1


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, widths: Mapping[str, int]) -> str:
    """A plain text table; long cells are cut to ``widths`` so rows stay on one line."""
    cells = [[_cell(row.get(c), widths.get(c)) for c in columns] for row in rows]
    sizes = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().replace("_", " ").ljust(sizes[i]) for i, c in enumerate(columns))]
    lines += ["  ".join(value.ljust(sizes[i]) for i, value in enumerate(line)).rstrip() for line in cells]
    return "\n".join(lines)


def _cell(value: Any, width: int | None = None) -> str:
    text = "-" if value is None else str(value).replace("\n", " ")
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


def _detail(view: Mapping[str, Any]) -> str:
    if view["status"] == "sent":
        return f"CCAI chat id {view['chat_id']}, to {view['end_user_number']}."
    return f"Reason: {view['error']}"
