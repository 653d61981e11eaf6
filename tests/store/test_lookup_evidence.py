"""The lost-answer lookup's evidence in the store (SQLite and PostgreSQL): what the chat list showed
of the bridge's own chats, judged into the proof (issue 20 item 5)."""

from __future__ import annotations

from bridge.lookup_proof import MIN_CARRIED, NOT_CARRIED_AFTER_SECONDS, Sighting, judge
from bridge.model import Outcome
from bridge.store import Store
from bridge.store.schema import lookup_evidence
from tests._clock import Clock
from tests._sends import CASE, finished


def sent(store: Store, chat_id: str) -> None:
    finished(store, Outcome(status="sent", chat_id=chat_id, message="Hello"))


def test_chats_of_our_own_that_carry_our_ticket_id_prove_the_lookup(store: Store, clock: Clock) -> None:
    for n in range(MIN_CARRIED):
        sent(store, str(200 + n))
    assert judge(store.lookup_evidence.recent()).state == "unproven"
    clock.advance(4)
    # A chat the bridge did not create (another integration's) is no evidence either way.
    seen = [Sighting(str(200 + n), CASE) for n in range(MIN_CARRIED)] + [Sighting("999", None)]
    assert store.lookup_evidence.observe(seen) == MIN_CARRIED
    proof = judge(store.lookup_evidence.recent())
    assert (proof.state, proof.carried, proof.latest and proof.latest.chat_id) == ("proven", MIN_CARRIED, "202")
    assert proof.max_delay == 4
    assert "4 s" in proof.detail


def test_a_tenant_that_leaves_out_ticket_id_null_contradicts_the_proof(store: Store, clock: Clock) -> None:
    for n in range(MIN_CARRIED):
        sent(store, str(300 + n))
    store.lookup_evidence.observe([Sighting(str(300 + n), CASE) for n in range(MIN_CARRIED)])
    clock.advance(1)
    sent(store, "310")
    store.lookup_evidence.observe([Sighting("310", None)])
    # Not settled yet (the tenant may fill it a little later), but not trusted meanwhile.
    waiting = judge(store.lookup_evidence.recent())
    assert waiting.state == "unproven"
    assert "latest chat yet: chat 310 still showed no ticket id" in waiting.detail
    clock.advance(NOT_CARRIED_AFTER_SECONDS)
    store.lookup_evidence.observe([Sighting("310", None)])
    proof = judge(store.lookup_evidence.recent())
    assert proof.state == "contradicted"
    assert "chat 310" in proof.detail
    assert "has not shown that its chat list carries our ticket id" in proof.detail


def test_evidence_only_moves_forward_and_keeps_no_number(store: Store, clock: Clock) -> None:
    sent(store, "400")
    store.lookup_evidence.observe([Sighting("400", CASE)])
    clock.advance(5)
    assert store.lookup_evidence.observe([Sighting("400", None)]) == 0
    [evidence] = store.lookup_evidence.recent()
    assert evidence.carried
    assert {c.name for c in lookup_evidence.columns} == {
        "chat_id", "sent_at", "first_seen_at", "last_seen_at", "carried_at", "other"
    }  # fmt: skip
