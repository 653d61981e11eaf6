"""Operator commands: ``bridge send``, ``bridge sends list|show|retry``, ``bridge status``,
``bridge purge``, ``bridge check``.

Each prints a table readable in a terminal, or JSON with ``--json``. They work on the store the
running bridge uses; sends they queue are processed by a running ``bridge serve`` (or worker).
Read-only commands never create a store: an empty or old one is reported, not made.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import anyio
from pydantic import ValidationError

from bridge.api._door import first_problem
from bridge.api.opt_outs import view as optout_view
from bridge.api.sends import SendRequest, cancel_refusal, public_view, wait_for_outcome
from bridge.crm import ticket_or_number
from bridge.crm.plugin import load_plugin
from bridge.errors import ConfigError, UsageError
from bridge.model import FINAL_STATUSES, NOTHING_SENT, PENDING_STATUSES, NewSend, Overrides
from bridge.ops._arguments import moment
from bridge.ops.check import run_checks
from bridge.ops.health import limits_for, read_verdict
from bridge.ops.overview import read_overview
from bridge.ops.retries import Planned, bulk_plan, retry
from bridge.ops.status_report import status_lines, status_report, verdict_lines
from bridge.ops.timeline import readable
from bridge.phones import mask, us_e164
from bridge.services import load_settings
from bridge.settings import Settings
from bridge.store import Store
from bridge.store.database import sqlite_path
from bridge.store.migrations import latest_version
from bridge.times import iso

LIST_COLUMNS = (
    "id",
    "created_at",
    "source",
    "ticket_id",
    "status",
    "attempts",
    "reached_customer",
    "chat_id",
    "write_back",
    "error",
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the operator sub-commands on the ``bridge`` parser."""
    send = commands.add_parser("send", help="queue an SMS for a Case (processed by the running bridge)")
    send.add_argument("case_id")
    send.add_argument("--message", help="text to send instead of the configured template")
    send.add_argument("--agent-email", help="assign the chat to this CCAI agent (by email)")
    send.add_argument("--agent-id", type=int, help="assign the chat to this CCAI agent (by id)")
    send.add_argument("--wait", nargs="?", type=float, const=30.0, metavar="SECONDS", help="wait for the outcome")
    send.add_argument("--json", action="store_true", help="print the send as JSON")
    send.set_defaults(handler=_send)

    sends = commands.add_parser("sends", help="list, show and retry sends")
    actions = sends.add_subparsers(metavar="ACTION")
    listing = actions.add_parser("list", help="recent sends, newest first")
    listing.add_argument("--status", choices=(*PENDING_STATUSES, *FINAL_STATUSES))
    listing.add_argument("--ticket", help="only sends for this ticket: its id, or the CaseNumber agents quote")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument(
        "--since",
        type=moment,
        metavar="WHEN",
        help="created at or after WHEN: 2026-11-25T09:00 (UTC), or 2h, 30m, 7d ago",
    )
    listing.add_argument("--until", type=moment, metavar="WHEN", help="created before WHEN (same forms as --since)")
    listing.add_argument("--json", action="store_true", help="print the sends as JSON")
    listing.set_defaults(handler=_list)
    show = actions.add_parser("show", help="one send in full")
    show.add_argument("send_id", type=int)
    show.add_argument("--json", action="store_true", help="print the send as JSON")
    show.set_defaults(handler=_show)
    again = actions.add_parser("retry", help="queue finished sends again")
    which = again.add_mutually_exclusive_group(required=True)
    which.add_argument("send_id", type=int, nargs="?")
    which.add_argument("--status", choices=FINAL_STATUSES)
    again.add_argument("--force", action="store_true", help="also retry sends that may have reached the customer")
    again.add_argument(
        "--dry-run", action="store_true", help="with --status: list what would be retried, change nothing"
    )
    again.add_argument("--json", action="store_true", help="print the result (or the plan) as JSON")
    again.set_defaults(handler=_retry)

    cancel = actions.add_parser("cancel", help="cancel a queued or scheduled send before it is sent (logged)")
    cancel.add_argument("send_id", type=int)
    cancel.add_argument("--json", action="store_true", help="print the send as JSON")
    cancel.set_defaults(handler=_cancel)

    opt_outs = commands.add_parser("opt-outs", help="the numbers that are never texted")
    opt_actions = opt_outs.add_subparsers(metavar="ACTION")
    add = opt_actions.add_parser("add", help="never text this number again")
    add.add_argument("number", help="any common format, e.g. '(415) 555-0100'")
    add.add_argument("--note", help="why, e.g. 'replied STOP'")
    add.add_argument("--source", default="operator", help="who asked (default: operator)")
    add.add_argument("--json", action="store_true", help="print the result as JSON")
    add.set_defaults(handler=_opt_out_add)
    remove = opt_actions.add_parser("remove", help="allow texting this number again (logged)")
    remove.add_argument("number")
    remove.add_argument("--json", action="store_true", help="print the result as JSON")
    remove.set_defaults(handler=_opt_out_remove)
    check_one = opt_actions.add_parser("check", help="is this number on the list? (exit 0 yes, 1 no)")
    check_one.add_argument("number", help="any common format, e.g. '(415) 555-0100'")
    check_one.add_argument("--json", action="store_true", help="print the entry as JSON")
    check_one.set_defaults(handler=_opt_out_check)
    show_list = opt_actions.add_parser("list", help="the list, newest first, numbers masked")
    show_list.add_argument("--limit", type=int, default=50)
    show_list.add_argument("--json", action="store_true", help="print the list as JSON")
    show_list.set_defaults(handler=_opt_out_list)

    status = commands.add_parser(
        "status", help="the verdict (healthy, degraded, down), the queue, workers and API usage"
    )
    status.add_argument("--json", action="store_true", help="print the report as JSON")
    status.set_defaults(handler=_status)

    purge = commands.add_parser("purge", help="delete finished sends older than the retention period")
    purge.add_argument("--older-than-days", type=float, help="default: BRIDGE_RETENTION_DAYS (at least 2)")
    purge.add_argument("--json", action="store_true", help="print how many were removed as JSON")
    purge.set_defaults(handler=_purge)

    check = commands.add_parser("check", help="verify the configuration against both platforms")
    check.add_argument("--json", action="store_true", help="print the findings as JSON")
    check.set_defaults(handler=_check)


@contextmanager
def opened_store(settings: Settings | None = None, *, writing: bool = False) -> Iterator[Store]:
    """The running bridge's store, which must exist and be migrated (commands never create one)."""
    settings = settings or load_settings()
    missing = (
        f"There is no bridge store at {settings.redacted_database_url()}: run `bridge migrate` (or start "
        "`bridge serve`), or point DATABASE_URL at the store the bridge uses."
    )
    sqlite_file = sqlite_path(settings.database_url)
    if sqlite_file is not None and not sqlite_file.exists():
        raise ConfigError(missing)  # connecting would create an empty file
    store = Store.from_url(settings.database_url, timeout=settings.bridge_store_timeout_seconds)
    try:
        version = store.schema_version()
        if version == 0:
            raise ConfigError(missing)
        if writing and version < latest_version():
            raise ConfigError("The store's schema is out of date: run `bridge migrate`.")
        yield store
    finally:
        store.close()


def _send(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"ticket_id": args.case_id}
    for key in ("message", "agent_email", "agent_id"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    settings = load_settings()
    crm = load_plugin(settings.bridge_crm)
    try:
        request = SendRequest.model_validate(body, context={"ticket_ids": crm.ticket_ids})
    except ValidationError as exc:
        raise UsageError(first_problem(exc)) from exc
    overrides = Overrides(**request.model_dump(exclude={"ticket_id"}, exclude_none=True))
    with opened_store(settings, writing=True) as store:
        created = store.sends.create(
            NewSend(
                dedupe_key=f"cli:{uuid.uuid4().hex}",
                source="cli",
                origin="person",
                ticket_id=request.ticket_id,
                overrides=overrides,
            )
        )
        record = anyio.run(lambda: wait_for_outcome(store, created.id, timeout=args.wait or 0.0))
    view = public_view(record)
    if args.json:
        print(json.dumps(view, indent=2))
    else:
        print(f"Send {created.id} for {crm.words.ticket} {view['ticket_id']}: {view['status']}")
        if record.final:
            print(_detail(view))
        elif record.status == "scheduled":
            print(f"Held for the recipient's send window: it goes at {view['scheduled_for']} ({record.reason or ''}).")
        elif args.wait and record.attempts == 0 and record.status == "queued":
            print("Still queued: is a `bridge serve` (or worker) running against this store? (`bridge status` says)")
        elif args.wait:
            print(f"Still {record.status} after {args.wait:g} s; `bridge sends show {created.id}` follows it.")
    if record.status == "sent" or (not args.wait and not record.final):
        return 0
    return 1 if record.final else 3


def _list(args: argparse.Namespace) -> int:
    settings = load_settings()
    ticket = number = None
    if args.ticket:
        crm = load_plugin(settings.bridge_crm)
        try:
            ticket, number = ticket_or_number(args.ticket, crm.ticket_ids, crm.words)
        except ValueError as exc:
            raise UsageError(f"--ticket {args.ticket!r}: {exc}.") from exc
    with opened_store(settings) as store:
        found = store.history.find(
            status=args.status,
            ticket_id=ticket,
            ticket_number=number,
            limit=args.limit,
            since=args.since,
            until=args.until,
        )
        rows = [public_view(r) for r in found]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        print(table(rows, LIST_COLUMNS, widths={"error": 48}))
    else:
        print("No sends match.")
    return 0


def _show(args: argparse.Namespace) -> int:
    settings = load_settings()
    with opened_store(settings) as store:
        record = store.history.get(args.send_id)
        timeline = readable(store.history.timeline(args.send_id), load_plugin(settings.bridge_crm).words)
    if record is None:
        print(f"There is no send {args.send_id}.", file=sys.stderr)
        return 1
    view = public_view(record)
    steps: list[dict[str, Any]] = [
        {"at": iso(step.at), "event": step.event, "detail": step.detail}
        | ({"until": iso(step.until), "count": step.count} if step.count > 1 else {})
        for step in timeline
    ]
    if args.json:
        print(json.dumps({**view, "timeline": steps}, indent=2))
        return 0
    print("\n".join(f"{k:>17}: {_cell(v)}" for k, v in view.items()))
    print("\n         timeline:")
    print("\n".join(f"  {s['at']}  {s['event']:<12} {_cell(s['detail'])}" for s in steps))
    return 0


def _cancel(args: argparse.Namespace) -> int:
    who = f"{getpass.getuser()} (bridge sends cancel)"
    with opened_store(writing=True) as store:
        canceled = store.sends.cancel(args.send_id, by=who)
        record = store.history.get(args.send_id)
    if record is None:
        print(f"There is no send {args.send_id}.", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({**public_view(record), "canceled": canceled}, indent=2))
    elif canceled:
        print(f"Send {args.send_id} canceled: it will not be sent, and its ticket is told so.")
    else:
        print(
            f"Send {args.send_id} is {record.status} and cannot be canceled: {cancel_refusal(record)}", file=sys.stderr
        )
    return 0 if canceled else 1


def _retry(args: argparse.Namespace) -> int:
    settings = load_settings()
    words = load_plugin(settings.bridge_crm).words
    with opened_store(settings, writing=True) as store:
        if args.send_id is not None:
            result = retry(store, args.send_id, force=args.force, words=words)
            print(result.message, file=sys.stdout if result.queued else sys.stderr)
            return 0 if result.queued else 1
        plan = bulk_plan(store.history.find(status=args.status, limit=1_000_000), force=args.force, words=words)
        if args.dry_run:
            _print_plan(plan, args.status, as_json=args.json)
            return 0
        if args.status not in NOTHING_SENT and not args.force:
            print(
                f"Sends that are {args.status} may already have reached the customer; retrying them can text "
                "someone a second time. Add --force to do it anyway.",
                file=sys.stderr,
            )
            return 1
        chosen = [p.send.id for p in plan if p.queue]
        results = _each_with_progress(
            chosen, lambda send_id: retry(store, send_id, force=args.force, words=words).queued
        )
    queued = sum(results)
    if args.json:
        print(json.dumps({"queued": queued, "left": [{"id": p.send.id, "why": p.why} for p in plan if not p.queue]}))
        return 0
    print(f"{queued} {args.status} send(s) queued again.")
    if left := len(plan) - queued:
        print(
            f"{left} were left alone: a retry cannot change their outcome, or they may have reached the customer "
            f"(`bridge sends retry --status {args.status} --dry-run` lists each and why).",
            file=sys.stderr,
        )
    return 0


def _print_plan(plan: Sequence[Planned], status: str, *, as_json: bool) -> None:
    if as_json:
        rows = [{"id": p.send.id, "ticket_id": p.send.ticket_id, "retry": p.queue, "why_not": p.why} for p in plan]
        print(json.dumps({"status": status, "would_retry": sum(p.queue for p in plan), "sends": rows}, indent=2))
        return
    rows = [{"id": p.send.id, "ticket_id": p.send.ticket_id, "retry": p.queue, "why_not": p.why} for p in plan]
    if rows:
        print(table(rows, ("id", "ticket_id", "retry", "why_not"), widths={"why_not": 80}))
    print(f"Would retry {sum(p.queue for p in plan)} of {len(plan)} {status} send(s); nothing was changed.")


def _each_with_progress(ids: Sequence[int], action: Callable[[int], bool]) -> list[bool]:
    results = []
    for done, send_id in enumerate(ids, start=1):
        results.append(action(send_id))
        if sys.stderr.isatty() and (done % 50 == 0 or done == len(ids)):
            print(f"\r{done}/{len(ids)}", end="", file=sys.stderr, flush=True)
    if sys.stderr.isatty() and ids:
        print(file=sys.stderr)
    return results


def _e164(raw: str) -> str:
    try:
        return us_e164(raw, label="The number")
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _opt_out_add(args: argparse.Namespace) -> int:
    number = _e164(args.number)
    with opened_store(writing=True) as store:
        added = store.opt_outs.add(number, source=args.source, note=args.note)
    if args.json:
        print(json.dumps({"number": mask(number), "added": added}))
        return 0
    print(f"{mask(number)} {'is now on' if added else 'was already on'} the opt-out list.")
    return 0


def _opt_out_check(args: argparse.Namespace) -> int:
    number = _e164(args.number)
    with opened_store() as store:
        entry = store.opt_outs.get(number)
    if args.json:
        print(
            json.dumps({"number": mask(number), "opted_out": entry is not None, "entry": entry and optout_view(entry)})
        )
    elif entry is None:
        print(
            f"{mask(number)} is not on the opt-out list: the bridge may text it (consent and send window permitting)."
        )
    else:
        note = f" ({entry.note})" if entry.note else ""
        print(f"{mask(number)} is on the opt-out list since {iso(entry.created_at)}, from {entry.source}{note}.")
    return 0 if entry is not None else 1


def _opt_out_remove(args: argparse.Namespace) -> int:
    number = _e164(args.number)
    with opened_store(writing=True) as store:
        removed = store.opt_outs.remove(number, by="an operator (bridge opt-outs remove)")
    if args.json:
        print(json.dumps({"number": mask(number), "removed": removed}))
        return 0 if removed else 1
    if not removed:
        print(f"{mask(number)} is not on the opt-out list.", file=sys.stderr)
        return 1
    print(f"{mask(number)} removed from the opt-out list; it can be texted again.")
    return 0


def _opt_out_list(args: argparse.Namespace) -> int:
    with opened_store() as store:
        entries, total = store.opt_outs.page(limit=args.limit)
    rows = [optout_view(e) for e in entries]
    if args.json:
        print(json.dumps({"opt_outs": rows, "total": total}, indent=2))
    elif rows:
        print(table(rows, ("number", "since", "source", "note"), widths={"note": 60}))
        if total > len(rows):
            print(f"(showing {len(rows)} of {total}; --limit shows more)")
    else:
        print("The opt-out list is empty.")
    return 0


def _status(args: argparse.Namespace) -> int:
    settings = load_settings()
    words = load_plugin(settings.bridge_crm).words
    with opened_store(settings) as store:
        overview = read_overview(store)
        verdict = read_verdict(store, limits_for(settings, words), chat_sync=settings.bridge_chat_sync_seconds > 0)
    if args.json:
        print(json.dumps({**verdict.as_dict(), **status_report(overview)}, indent=2))
    else:
        print("\n".join([*verdict_lines(verdict), "", *status_lines(overview, words)]))
    # For cron and monitors: 0 healthy, 1 degraded, 2 down.
    return verdict.exit_code


def _purge(args: argparse.Namespace) -> int:
    settings = load_settings()
    days = settings.bridge_retention_days if args.older_than_days is None else args.older_than_days
    if days < 2:
        raise UsageError(
            "--older-than-days must be at least 2: redelivered events and idempotency keys are recognised by "
            "what is kept."
        )
    removed = 0
    with opened_store(settings, writing=True) as store:
        while batch := store.sends.purge(days * 86400, batch=1000, once=True):
            removed += batch
            if sys.stderr.isatty():
                print(f"\rremoved {removed}", end="", file=sys.stderr, flush=True)
    if sys.stderr.isatty() and removed:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps({"removed": removed, "older_than_days": days}))
        return 0
    print(f"Removed {removed} finished send(s) older than {days:g} days.")
    return 0


def _check(args: argparse.Namespace) -> int:
    settings = load_settings()
    findings = anyio.run(run_checks, settings)
    if args.json:
        print(json.dumps([dataclasses.asdict(f) for f in findings], indent=2))
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
    lines = ["  ".join(c.upper().replace("_", " ").ljust(sizes[i]) for i, c in enumerate(columns)).rstrip()]
    lines += ["  ".join(value.ljust(sizes[i]) for i, value in enumerate(line)).rstrip() for line in cells]
    return "\n".join(lines)


def _cell(value: Any, width: int | None = None) -> str:
    if isinstance(value, bool):
        value = "yes" if value else "no"
    text = "-" if value is None else str(value).replace("\n", " ")
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


def _detail(view: Mapping[str, Any]) -> str:
    if view["status"] == "sent":
        return f"CCAI chat id {view['chat_id']}, to {view['end_user_number']}."
    return f"Reason: {view['error']}"
