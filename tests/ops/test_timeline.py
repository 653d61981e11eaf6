"""A send's timeline folds repeated retries into one line and speaks the CRM's words."""

from __future__ import annotations

from bridge.crm import Words
from bridge.crm.salesforce import SalesforcePlugin
from bridge.model import LogEntry
from bridge.ops.timeline import readable

SALESFORCE = SalesforcePlugin.words
T0 = 1_800_000_000.0 + 4 * 3600 + 43 * 60 + 26  # 12:43:26 UTC
THROTTLED = "CCAI Platform is rate-limiting requests (HTTP 429)."


def storm(start: float, times: int, *, every: float = 6.0, reason: str = THROTTLED) -> list[LogEntry]:
    entries = []
    for n in range(times):
        at = start + n * every
        entries += [
            LogEntry(at, "attempt", "The request to CCAI Platform left."),
            LogEntry(at + 0.2, "retry", f"Retried in {n % 3 + 1} s: {reason}"),
        ]
    return entries


def test_a_429_storm_reads_as_one_line() -> None:
    entries = [
        LogEntry(T0 - 1, "received", "Received from a Salesforce outbound message."),
        *storm(T0, 12),
        LogEntry(T0 + 71, "attempt", "The request to CCAI Platform left."),
        LogEntry(T0 + 71.3, "finished", "sent (chat 88)"),
        LogEntry(T0 + 72, "written back", "ticket done, note done"),
    ]
    steps = readable(entries, SALESFORCE)
    assert [(s.event, s.detail) for s in steps] == [
        ("received", "Received from a Salesforce outbound message."),
        ("throttled", f"throttled 12× between 12:43:26 and 12:44:32 UTC: {THROTTLED}"),
        ("sent to CCAI", "The request to CCAI Platform left."),
        ("finished", "sent (chat 88)"),
        ("written back", "Case done, Task done"),
    ]
    assert (steps[1].count, steps[1].until) == (12, T0 + 66.2)


def test_a_single_retry_stays_as_it_was_and_different_reasons_are_separate_runs() -> None:
    entries = [*storm(T0, 1), *storm(T0 + 10, 3, reason="CCAI Platform answered 503."), *storm(T0 + 40, 2)]
    steps = readable(entries, SALESFORCE)
    assert [s.event for s in steps] == ["sent to CCAI", "retry", "retry", "throttled"]
    assert steps[2].detail == "retried 3× between 12:43:36 and 12:43:48 UTC: CCAI Platform answered 503."
    assert steps[1].detail == f"Retried in 1 s: {THROTTLED}"


def test_the_crms_own_words() -> None:
    zendesk = Words(crm="Zendesk", ticket="ticket", note="internal comment", ticket_id="", ticket_id_example="")
    [step] = readable([LogEntry(T0, "written back", "ticket failed, note pending: 503")], zendesk)
    assert step.detail == "ticket failed, internal comment pending: 503"
