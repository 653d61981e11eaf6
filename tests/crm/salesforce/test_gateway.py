"""The CRM gateway over the wire: simple-salesforce → TLS → the simulated org on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.crm import Note, TicketUpdate
from bridge.crm.salesforce import gateway as salesforce
from bridge.crm.salesforce.auth import LoginMode, SalesforceCredentials
from bridge.crm.salesforce.gateway import SalesforceGateway
from bridge.crm.salesforce.ids import normalize_case_id
from bridge.crm.salesforce.settings import SalesforceWriteback
from bridge.errors import CRMAuthError, CRMRequestError, CRMUnavailable
from bridge.model import SendStatus
from bridge.sandbox.cases import sample_cases
from bridge.sandbox.servers import free_port, make_tls_files
from tests._org import Org

CASE_1, CASE_2, CASE_3 = (c["Id"] for c in sample_cases()[:3])
MISSING_CASE = "5005g00000SBX99AAH"
FIELDS = ["Id", "CaseNumber", "Owner.Type", "Owner.Email", "ContactMobile", "ContactPhone", "Account.Name"]
COMPOSITE = ("POST", "/services/data/v61.0/composite", "FALSE")


@pytest.fixture(autouse=True)
def fresh_org(org: Org) -> Iterator[None]:
    org.sim.cases.clear()
    org.sim.add_cases(sample_cases())
    org.sim.calls.clear()
    org.sim.fail_next.clear()
    org.sim.tasks.clear()
    org.sim.logins.clear()
    org.sim.valid_tokens.clear()
    org.sim.valid_tokens.add("good-token")
    yield
    org.close_gateways()


# -- reading ------------------------------------------------------------------------------------


def test_reads_many_cases_in_one_query_with_relationships_flattened(org: Org) -> None:
    tickets = org.gateway().read_tickets([CASE_1, CASE_2[:15], CASE_3, MISSING_CASE], FIELDS)
    assert set(tickets) == {CASE_1, CASE_2, CASE_3}  # a 15-character id is matched; a missing Case is absent
    assert tickets[CASE_1].fields["Owner.Email"] == "ana.agent@example.com"
    assert tickets[CASE_1].fields["Account.Name"] == "Acme Corp"
    assert tickets[CASE_2].fields["Owner.Type"] == "Queue"
    assert tickets[CASE_2].fields["Owner.Email"] is None
    assert [c["path"] for c in org.sim.calls] == ["/services/data/v61.0/query/"]
    # The CaseNumber agents quote, whatever the mapping asks for (the dashboard shows and finds it).
    assert tickets[CASE_1].number == org.sim.cases[CASE_1]["CaseNumber"] is not None


def test_fields_are_found_whatever_the_configurations_letter_case(org: Org) -> None:
    """SOQL names are case-insensitive and Salesforce answers with each field's own spelling: a
    consent field configured as "contact.donotcall" read as None, and so never blocked a send."""
    org.sim.cases[CASE_1]["Contact.DoNotCall"] = True
    [ticket] = org.gateway().read_tickets([CASE_1], ["contact.donotcall", "casenumber"]).values()
    assert ticket.get("contact.donotcall") is True
    assert ticket.get("Contact.DoNotCall") is True
    assert ticket.get("casenumber") == ticket.get("CaseNumber") is not None
    # Asked once more in another spelling than the bridge's own, it is selected once: Salesforce
    # refuses "duplicate field selected".
    assert ticket.number == ticket.get("CaseNumber")


def test_an_id_that_cannot_name_a_case_is_simply_not_found(org: Org) -> None:
    """A notification about a record deleted before delivery is stored with no id; retried by an
    operator, it reached the gateway, whose ValueError failed every send of the batch."""
    assert set(org.gateway().read_tickets(["", "not-an-id", CASE_1], FIELDS)) == {CASE_1}
    assert org.gateway().read_tickets([""], FIELDS) == {}


def test_the_owner_is_read_whatever_the_mapping_asks_for(org: Org) -> None:
    tickets = org.gateway().read_tickets([CASE_1, CASE_2], ["ContactMobile"])
    assert tickets[CASE_1].owner_email == "ana.agent@example.com"  # a person owns it
    assert tickets[CASE_2].owner_email is None  # a queue owns it: nobody to assign


def test_an_explicit_ca_bundle_wins_over_requests_ca_bundle(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    assert CASE_1 in org.gateway().read_tickets([CASE_1], ["Id"])


def test_tls_is_verified(org: Org, tmp_path: Path) -> None:
    other_ca = make_tls_files(tmp_path).ca
    with pytest.raises(CRMUnavailable, match="SSLError"):
        org.gateway(ca=str(other_ca)).read_tickets([CASE_1], ["Id"])


def test_a_field_that_does_not_exist_is_a_request_error_naming_it(org: Org) -> None:
    with pytest.raises(CRMRequestError, match="INVALID_FIELD: No such column 'Nope__c'"):
        org.gateway().read_tickets([CASE_1], ["Id", "Nope__c"])


# -- writing outcomes ---------------------------------------------------------------------------


def note(case_id: str, send_id: int, body: str = "Texted +1 ***-***-0100: hello") -> Note:
    return Note(
        ticket_id=case_id,
        key=f"send {send_id}",
        subject="SMS sent via CCAI Platform",
        body=body,
        at=dt.datetime(2026, 11, 25, 9, tzinfo=dt.UTC).timestamp(),
    )


def test_an_outcome_lands_in_the_configured_case_fields_with_a_completed_task(org: Org) -> None:
    case_results, task_results = org.gateway().write_outcomes(
        [TicketUpdate(ticket_id=CASE_1, status="sent", reason=None, chat_id="114")], [note(CASE_1, 7)]
    )
    assert [r.ok for r in case_results + task_results] == [True, True]
    case = org.sim.cases[CASE_1]
    assert (case["CCAI_SMS_Status__c"], case["CCAI_Chat_Id__c"], case["CCAI_SMS_Error__c"]) == ("Sent", "114", None)
    [task] = org.sim.tasks
    assert task_results[0].ref == task["Id"]
    assert {k: task[k] for k in ("WhatId", "Subject", "Status", "Priority", "ActivityDate")} == {
        "WhatId": CASE_1,
        "Subject": "SMS sent via CCAI Platform",
        "Status": "Completed",
        "Priority": "Normal",
        "ActivityDate": "2026-11-25",
    }
    assert task["Description"].startswith("Texted +1 ***-***-0100: hello")
    assert task["Description"].endswith("[CCAI bridge send 7]")


def test_a_refusal_keeps_the_chat_id_a_success_wrote(org: Org) -> None:
    org.sim.cases[CASE_1]["CCAI_Chat_Id__c"] = "113"
    update = TicketUpdate(
        ticket_id=CASE_1, status="failed", reason="Consumer is already in an active SMS session.", chat_id=None
    )
    [result], _ = org.gateway().write_outcomes([update], [])
    assert result.ok
    case = org.sim.cases[CASE_1]
    assert (case["CCAI_SMS_Status__c"], case["CCAI_SMS_Error__c"]) == (
        "Failed",
        "Consumer is already in an active SMS session.",
    )
    assert case["CCAI_Chat_Id__c"] == "113"  # left out of the update, not erased


@pytest.mark.parametrize(
    ("status", "shown"),
    [("skipped", "Skipped"), ("suppressed", "Skipped"), ("unknown", "Unknown"), ("opted_out", "Opted Out")],
)
def test_each_outcome_has_its_picklist_value(org: Org, status: SendStatus, shown: str) -> None:
    org.gateway().write_outcomes([TicketUpdate(ticket_id=CASE_2, status=status, reason="why", chat_id=None)], [])
    assert org.sim.cases[CASE_2]["CCAI_SMS_Status__c"] == shown


def test_the_field_names_come_from_the_writeback_settings(org: Org) -> None:
    config = SalesforceWriteback(status_field="Status", error_field="Description", chat_id_field="Subject")
    update = TicketUpdate(ticket_id=CASE_3, status="sent", reason=None, chat_id="115")
    org.gateway(writeback=config).write_outcomes([update], [])
    case = org.sim.cases[CASE_3]
    assert (case["Status"], case["Description"], case["Subject"]) == ("Sent", None, "115")
    assert "CCAI_SMS_Status__c" not in case


def test_case_updates_and_tasks_go_in_one_composite_call_without_auto_assignment(org: Org) -> None:
    updates = [TicketUpdate(ticket_id=CASE_1, status="sent", reason=None, chat_id="114")] * 150 + [
        TicketUpdate(ticket_id=MISSING_CASE, status="failed", reason="x", chat_id=None)
    ] * 100
    notes = [note(CASE_1, i) for i in range(3)]
    case_results, task_results = org.gateway().write_outcomes(updates, notes)
    assert len(case_results) == 250
    assert case_results[0].ok
    deleted = case_results[-1]
    assert (deleted.ok, deleted.retryable) == (False, False)
    assert (deleted.message or "").startswith("ENTITY_IS_DELETED")
    assert all(r.ok for r in task_results)
    assert len(org.sim.tasks) == 3
    assert org.sim.cases[CASE_1]["CCAI_Chat_Id__c"] == "114"
    assert [(c["method"], c["path"], c["auto_assign"]) for c in org.sim.calls] == [COMPOSITE] * 2
    # 250 Cases need two calls of at most 200 records each.
    subrequests = [s for c in org.sim.calls for s in c["subrequests"]]
    assert [(s["method"], s["auto_assign"]) for s in subrequests] == [
        ("PATCH", "FALSE"),
        ("POST", "FALSE"),
        ("PATCH", "FALSE"),
    ]


def test_a_refused_record_fails_only_itself(org: Org) -> None:
    broken = SalesforceWriteback(chat_id_field="Nope__c")  # a field the org does not have
    update = TicketUpdate(ticket_id=CASE_1, status="sent", reason=None, chat_id="114")
    case_results, task_results = org.gateway(writeback=broken).write_outcomes([update], [note(CASE_1, 8)])
    assert (case_results[0].ok, case_results[0].retryable) == (False, False)
    assert (case_results[0].message or "").startswith("INVALID_FIELD")
    assert task_results[0].ok
    assert len(org.sim.tasks) == 1


def test_existing_notes_finds_a_task_by_its_marker(org: Org) -> None:
    gateway = org.gateway()
    gateway.write_outcomes([], [note(CASE_1, 7), note(CASE_2, 8)])
    wanted = [note(CASE_1, 7), note(CASE_1, 8), note(CASE_2, 8), note(CASE_3, 9)]
    org.sim.calls.clear()
    assert set(gateway.existing_notes(wanted)) == {"send 7", "send 8"}
    assert [c["path"] for c in org.sim.calls] == ["/services/data/v61.0/query/"]  # one query for every note
    assert set(gateway.existing_notes([note(CASE_1, 17)])) == set()  # "send 1" must not match "send 17"


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (503, "SERVER_UNAVAILABLE", CRMUnavailable),
        (403, "REQUEST_LIMIT_EXCEEDED", CRMUnavailable),
        (400, "UNABLE_TO_LOCK_ROW", CRMUnavailable),
        (400, "MALFORMED_QUERY", CRMRequestError),
    ],
)
def test_errors_are_translated_by_what_a_retry_could_do(
    org: Org, status: int, code: str, error: type[Exception]
) -> None:
    org.sim.fail_next.append({"status": status, "code": code})
    with pytest.raises(error, match=code):
        org.gateway().read_tickets([CASE_1], ["Id"])


def test_a_write_refused_as_a_whole_is_translated_too(org: Org) -> None:
    org.sim.fail_next.append({"status": 503, "code": "SERVER_UNAVAILABLE", "path": "composite"})
    with pytest.raises(CRMUnavailable, match="write the outcome back"):
        org.gateway().write_outcomes([TicketUpdate(ticket_id=CASE_1, status="sent", reason=None, chat_id="1")], [])


def test_an_expired_token_is_an_auth_error_without_the_token(org: Org) -> None:
    with pytest.raises(CRMAuthError, match="expired") as caught:
        org.gateway(token="stale-token").read_tickets([CASE_1], ["Id"])
    assert "stale-token" not in str(caught.value)


def test_an_unreachable_org_is_unavailable() -> None:
    credentials = SalesforceCredentials(mode="token", instance_url=f"https://127.0.0.1:{free_port()}", access_token="t")
    gateway = SalesforceGateway(credentials=credentials, api_version="61.0", timeout=2, writeback=SalesforceWriteback())
    try:
        with pytest.raises(CRMUnavailable, match="Could not reach Salesforce"):
            gateway.read_tickets([CASE_1], ["Id"])
    finally:
        gateway.close()


# -- logins -------------------------------------------------------------------------------------


LOGINS: dict[LoginMode, dict[str, str]] = {
    "client_credentials": {"client_id": "client-id", "client_secret": "client-secret", "domain": "acme.my"},
    "password": {"username": "bridge@acme.example", "password": "password", "security_token": "securitytoken"},
}


def credentials_for(org: Org, mode: LoginMode, **changes: str) -> SalesforceCredentials:
    if mode == "jwt":
        values = {
            "username": "bridge@acme.example",
            "client_id": "client-id",
            "domain": "login",
            "private_key": org.private_key,
        }
    else:
        values = LOGINS[mode]
    return SalesforceCredentials(mode=mode, **{**values, **changes})


@pytest.mark.parametrize("mode", ["client_credentials", "jwt", "password"])
def test_each_login_mode_gets_a_session_and_renews_it_once_when_it_expires(org: Org, mode: LoginMode) -> None:
    gateway = org.login_gateway(credentials_for(org, mode))
    assert CASE_1 in gateway.read_tickets([CASE_1], ["Id"])
    assert org.sim.logins == [mode]
    org.sim.valid_tokens.clear()  # the org expires every session mid-run
    assert CASE_1 in gateway.read_tickets([CASE_1], ["Id"])
    assert org.sim.logins == [mode, mode]
    assert gateway.logins == 2
    paths = [c["path"] for c in org.sim.calls]
    assert paths.count("/services/data/v61.0/query/") == 3  # the refused call was retried once


def test_a_bare_access_token_that_expires_says_so(org: Org) -> None:
    gateway = org.gateway()
    gateway.read_tickets([CASE_1], ["Id"])
    org.sim.valid_tokens.clear()
    with pytest.raises(CRMAuthError, match=r"token has expired or was revoked\. Set a new SALESFORCE_ACCESS_TOKEN"):
        gateway.read_tickets([CASE_1], ["Id"])
    assert len([c for c in org.sim.calls if "query" in c["path"]]) == 2  # no retry without a way to log in


@pytest.mark.parametrize(
    ("mode", "change", "message"),
    [
        ("client_credentials", {"client_secret": "wrong"}, "invalid_client"),
        ("password", {"password": "wrong"}, "INVALID_LOGIN"),
    ],
)
def test_a_refused_login_is_an_auth_error_without_secrets(
    org: Org, mode: LoginMode, change: dict[str, str], message: str
) -> None:
    gateway = org.login_gateway(credentials_for(org, mode, **change))
    with pytest.raises(CRMAuthError, match=message) as caught:
        gateway.read_tickets([CASE_1], ["Id"])
    assert "wrong" not in str(caught.value)
    assert "client-secret" not in repr(credentials_for(org, "client_credentials"))


def test_describe_lists_fields_and_relationships(org: Org) -> None:
    fields = org.gateway().describe("Case")
    assert fields["CCAI_Chat_Id__c"]["updateable"]
    assert fields["OwnerId"]["relationshipName"] == "Owner"


# -- case ids -----------------------------------------------------------------------------------


def test_case_ids_are_normalised_to_18_characters_or_refused() -> None:
    assert normalize_case_id(CASE_1[:15]) == CASE_1
    assert normalize_case_id(CASE_1[:15] + CASE_1[15:].lower()) == CASE_1  # the suffix is case-insensitive
    for bad in ("003000000000001", CASE_1[:15] + "AAA", "500", "5005g00000SBX01AAH!"):
        with pytest.raises(ValueError, match="must be a Case id"):
            normalize_case_id(bad)


def test_a_number_salesforce_echoes_in_an_error_is_masked() -> None:
    """STRING_TOO_LONG and similar errors can repeat the value: it is stored and shown, so masked."""
    refused = salesforce._record_result(
        {"success": False, "errors": [{"statusCode": "STRING_TOO_LONG", "message": "too long: +1 415 555 0100"}]}
    )
    assert refused.message is not None
    assert "555 0100" not in refused.message
    assert refused.message.startswith("STRING_TOO_LONG: too long: ")


def test_a_cleared_field_is_emptied_with_the_outcome(org: Org) -> None:
    org.sim.cases[CASE_3]["CCAI_SMS_Template__c"] = "resolved"
    update = TicketUpdate(ticket_id=CASE_3, status="sent", reason=None, chat_id="115", clear=("CCAI_SMS_Template__c",))
    (result,), _ = org.gateway().write_outcomes([update], [])
    assert result.ok
    assert org.sim.cases[CASE_3]["CCAI_SMS_Template__c"] is None
