"""The Zendesk gateway over the wire: httpx → TLS → the simulated account on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge.crm import ChatUpdate, FollowUp, Note, TicketUpdate
from bridge.crm.zendesk.gateway import note_marker
from bridge.errors import CRMAuthError, CRMRequestError, CRMUnavailable
from bridge.sandbox.zendesk_account import FIRST_BRIDGE_FIELD_ID, SANDBOX_ADMIN_EMAIL
from tests._zendesk import Account

STATUS_FIELD, ERROR_FIELD = FIRST_BRIDGE_FIELD_ID + 1, FIRST_BRIDGE_FIELD_ID + 2
CHAT_ID_FIELD, CHAT_STATUS_FIELD = FIRST_BRIDGE_FIELD_ID, FIRST_BRIDGE_FIELD_ID + 3
FIELDS = ["requester.phone", "requester.first_name", "subject", "requester.tags.sms_opt_out", "requester.own_time_zone"]


@pytest.fixture(autouse=True)
def fresh(account: Account) -> Iterator[None]:
    account.reset()
    yield
    account.close_gateways()


def value(account: Account, ticket: int, field_id: int) -> object:
    return next(f["value"] for f in account.sim.tickets[ticket]["custom_fields"] if f["id"] == field_id)


def calls(account: Account, method: str = "") -> list[tuple[str, str, int]]:
    return [(c["method"], c["path"], c["status"]) for c in account.sim.calls if c["method"].startswith(method)]


def sent(ticket: str, chat: str = "114") -> TicketUpdate:
    return TicketUpdate(ticket_id=ticket, status="sent", reason=None, chat_id=chat)


def note(ticket: str, key: str) -> Note:
    return Note(ticket_id=ticket, key=key, subject="SMS sent via CCAI Platform", body="Texted: hello.", at=0.0)


def test_tickets_are_read_with_their_requesters_in_one_call(account: Account) -> None:
    tickets = account.gateway().read_tickets(["1001", "1002", "1005", "9999", "abc", "0"], FIELDS)
    assert set(tickets) == {"1001", "1002", "1005"}
    rosa = tickets["1001"]
    assert (rosa.get("requester.phone"), rosa.get("requester.first_name"), rosa.get("subject")) == (
        "+1 415-555-0100",
        "Rosa",
        "Router will not start",
    )
    assert rosa.owner_email == "ana.agent@example.com"
    assert tickets["1002"].owner_email is None  # unassigned: nobody gets the chat
    assert tickets["1005"].get("requester.tags.sms_opt_out") is True
    assert tickets["1005"].get("requester.user_fields.sms_opt_out") is True
    # Rosa chose her zone; Ben has the account's default, which says nothing about where he is.
    assert rosa.get("requester.own_time_zone") == "America/Los_Angeles"
    assert tickets["1002"].get("requester.own_time_zone") is None
    assert [c[1] for c in calls(account)] == ["/api/v2/account/settings.json", "/api/v2/tickets/show_many.json"]


def test_a_field_no_zendesk_ticket_has_is_refused_not_read_as_empty(account: Account) -> None:
    """A Salesforce name left in [consent] would read as empty and block nobody: refused instead."""
    with pytest.raises(CRMRequestError, match=r"no field named Contact\.DoNotCall"):
        account.gateway().read_tickets(["1001"], [*FIELDS, "Contact.DoNotCall"])


def test_an_outcome_and_its_note_are_one_safe_update_with_the_bridges_tag(account: Account) -> None:
    gateway = account.gateway()
    tickets, notes = gateway.write_outcomes([sent("1001")], [note("1001", "send 1")])
    assert [r.ok for r in tickets] == [True]
    assert notes[0].ok
    assert notes[0].ref
    assert (value(account, 1001, STATUS_FIELD), value(account, 1001, CHAT_ID_FIELD)) == ("Sent", "114")
    assert "ccai_bridge" in account.sim.tickets[1001]["tags"]
    [comment] = account.sim.comments[1001]
    assert comment["public"] is False  # an internal note: the customer never sees it
    assert note_marker("send 1") in comment["body"]
    assert str(comment["id"]) == notes[0].ref
    puts = calls(account, "PUT")
    assert puts == [("PUT", "/api/v2/tickets/1001.json", 200)]


def test_a_ticket_changed_meanwhile_is_read_again_and_written_on_its_new_version(account: Account) -> None:
    account.sim.conflict_next = 2  # agents edit the ticket twice between our read and our write
    tickets, _ = account.gateway().write_outcomes([sent("1001")], [])
    assert tickets[0].ok
    assert [c[2] for c in calls(account, "PUT")] == [409, 409, 200]
    assert value(account, 1001, STATUS_FIELD) == "Sent"


def test_a_ticket_that_never_stops_changing_is_retried_later(account: Account) -> None:
    account.sim.conflict_next = 10
    tickets, notes = account.gateway().write_outcomes([sent("1001")], [note("1001", "send 1")])
    assert (tickets[0].ok, tickets[0].retryable, notes[0].retryable) == (False, True, True)
    assert value(account, 1001, STATUS_FIELD) is None
    assert 1001 not in account.sim.comments


def test_a_429_waits_as_long_as_retry_after_asks_then_succeeds(account: Account) -> None:
    account.sim.fail_next.append({"path": "/tickets/1001", "method": "PUT", "status": 429, "retry_after": 7})
    tickets, _ = account.gateway().write_outcomes([sent("1001")], [])
    assert tickets[0].ok
    assert account.sleeps == [7.0]


def test_a_retry_after_too_long_to_wait_fails_as_retryable(account: Account) -> None:
    account.sim.fail_next.append({"path": "/show_many", "status": 429, "retry_after": 120})
    with pytest.raises(CRMUnavailable, match="120 s"):
        account.gateway(max_retry_after=30.0).read_tickets(["1001"], FIELDS)
    assert account.sleeps == []


def test_a_closed_or_missing_ticket_fails_for_good_and_the_others_are_written(account: Account) -> None:
    account.sim.tickets[1004]["status"] = "closed"
    updates = [sent("1004"), sent("9999"), sent("1001")]
    tickets, _ = account.gateway().write_outcomes(updates, [])
    assert [(r.ok, r.retryable) for r in tickets] == [(False, False), (False, False), (True, False)]
    assert "closed prevents ticket update" in (tickets[0].message or "")
    assert "no ticket 9999" in (tickets[1].message or "")


def test_a_refusal_keeps_the_chat_id_a_success_wrote(account: Account) -> None:
    gateway = account.gateway()
    gateway.write_outcomes([sent("1001", "114")], [])
    gateway.write_outcomes([TicketUpdate("1001", "failed", "Consumer is in an active session.", None)], [])
    assert (value(account, 1001, CHAT_ID_FIELD), value(account, 1001, STATUS_FIELD)) == ("114", "Failed")
    assert value(account, 1001, ERROR_FIELD) == "Consumer is in an active session."


def test_a_note_whose_answer_was_lost_is_found_again_by_its_key(account: Account) -> None:
    account.sim.lose_update_answer = 1
    gateway = account.gateway()
    with pytest.raises(CRMUnavailable):
        gateway.write_outcomes([sent("1001")], [note("1001", "send 9")])
    found = gateway.existing_notes([note("1001", "send 9"), note("1001", "send 10"), note("1002", "send 11")])
    assert found == {"send 9": str(account.sim.comments[1001][0]["id"])}


def test_chat_news_lands_and_an_ended_chat_adds_a_note(account: Account) -> None:
    gateway = account.gateway()
    gateway.write_outcomes([], [note("1001", "send 1")])
    updates = [
        ChatUpdate("1001", "finished", "Ana Agent", 1_790_000_000.0, "Resolved"),
        ChatUpdate("1002", "assigned", None, None, None),
    ]
    tickets, follow_ups = gateway.write_chats(updates, [FollowUp("1001", "send 1", "The chat ended: Resolved.")])
    assert [r.ok for r in tickets] == [True, True]
    assert follow_ups[0].ok
    assert value(account, 1001, CHAT_STATUS_FIELD) == "finished"
    assert value(account, 1002, CHAT_STATUS_FIELD) == "assigned"
    _, comment = account.sim.comments[1001]
    assert (comment["public"], comment["body"].startswith("The chat ended: Resolved.")) == (False, True)


def test_without_the_bridges_fields_the_write_says_to_run_setup(account: Account) -> None:
    account.sim.ticket_fields = {i: f for i, f in account.sim.ticket_fields.items() if not f["removable"]}
    with pytest.raises(CRMRequestError, match="bridge zendesk setup"):
        account.gateway().write_outcomes([sent("1001")], [])


def test_a_refused_token_is_an_auth_error(account: Account) -> None:
    with pytest.raises(CRMAuthError, match="Couldn't authenticate you"):
        account.gateway(login=(f"{SANDBOX_ADMIN_EMAIL}/token", "wrong")).read_tickets(["1001"], FIELDS)


def test_an_opt_out_tags_the_requester_and_keeps_their_other_tags(account: Account) -> None:
    """As Salesforce ticks the Contact's opt-out box: the requester carries the tag [consent] blocks
    on, so agents see it and the ticket is blocked whatever the bridge's list says."""
    requester = account.sim.tickets[1001]["requester_id"]
    before = list(account.sim.users[requester].get("tags", []))
    opted_out = TicketUpdate(ticket_id="1001", status="opted_out", reason="Replied STOP.", chat_id=None, opted_out=True)
    [result], _ = account.gateway().write_outcomes([opted_out], [])
    assert result.ok
    tags = account.sim.users[requester]["tags"]
    assert "sms_opt_out" in tags
    assert set(before) <= set(tags)
    assert account.gateway().read_tickets(["1001"], FIELDS)["1001"].get("requester.tags.sms_opt_out") is True
    # A plain outcome tags nobody.
    other = account.sim.tickets[1002]["requester_id"]
    account.gateway().write_outcomes([sent("1002")], [])
    assert "sms_opt_out" not in account.sim.users[other].get("tags", [])
