"""Sends made as the doors and the worker would make them, for tests of what people see and retry."""

from __future__ import annotations

import uuid
from typing import Any

from bridge.api.sends import public_view
from bridge.model import FinalStatus, NewSend, Outcome, Overrides
from bridge.store import Store
from tests._clock import Clock

CASE = "5005g00000SBX01AAH"
NUMBER = "+14155550100"


def queued(store: Store, overrides: Overrides | None = None) -> int:
    new = NewSend(
        dedupe_key=f"api:{uuid.uuid4().hex}",
        source="api",
        origin="person",
        ticket_id=CASE,
        overrides=overrides or Overrides(),
    )
    return store.sends.create(new).id


def finished(store: Store, outcome: Outcome, *, overrides: Overrides | None = None, create_task: bool = False) -> int:
    send_id = queued(store, overrides)
    [job] = store.sends.claim("w", limit=1, lease_seconds=30)
    assert store.sends.finish(job.id, outcome, token=job.token, create_task=create_task)
    return send_id


def possibly_delivered(store: Store, clock: Clock, status: FinalStatus) -> int:
    """A send whose first worker died mid-request (so it may have reached the customer), then settled."""
    send_id = queued(store)
    [job] = store.sends.claim("w", limit=1, lease_seconds=30)
    assert depart(store, job.id, token=job.token, lease_seconds=30)
    clock.advance(31)
    assert store.sends.claim("w2", limit=1, lease_seconds=30) == []  # taken over: it settles first
    [again] = store.sends.claim("w2", limit=1, lease_seconds=30)
    assert again.may_have_sent
    assert store.sends.finish(again.id, Outcome(status=status, reason="gave up"), token=again.token, create_task=False)
    return send_id


def depart(store: Store, send_id: int, *, token: int, lease_seconds: float) -> bool:
    """Clear a claimed send to leave, nobody opted out: what the send step asks just before a request."""
    return store.sends.depart(
        send_id, owner="w", token=token, lease_seconds=lease_seconds, number=NUMBER, allows=lambda _: True
    )


def view(store: Store, send_id: int) -> dict[str, Any]:
    record = store.history.get(send_id)
    assert record is not None
    return public_view(record)


def prove_lookup(store: Store, *, chats: int = 3, delay: float = 1.0) -> None:
    """Evidence that this tenant's chat list carries the bridge's ticket ids (``chats`` of its own chats
    showed it, ``delay`` s after they were sent): a lookup that finds nothing is then believed."""
    from sqlalchemy import insert

    from bridge.store.schema import lookup_evidence

    store.migrate()
    with store.db.tx() as connection:
        now = store.db.now(connection)
        for n in range(chats):
            sent = now - 3600 + n
            connection.execute(
                insert(lookup_evidence).values(
                    chat_id=f"proof-{uuid.uuid4().hex[:8]}",
                    sent_at=sent,
                    first_seen_at=sent + delay,
                    last_seen_at=sent + delay,
                    carried_at=sent + delay,
                    other=False,
                )
            )


def proven(url: str) -> None:
    """The store at ``url`` migrated, as the release step leaves it, holding the evidence a bridge that
    has run a while gathered: its tenant's chat list carries the ticket ids it sends, so the lost-answer
    lookup is trusted (``tests/e2e/test_lookup_proof.py`` starts without it)."""
    store = Store.from_url(url)
    try:
        prove_lookup(store)
    finally:
        store.close()
