"""The CRM gateway over the wire: simple-salesforce → TLS → the simulated org on 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from bridge.errors import SalesforceAuthError, SalesforceRequestError, SalesforceUnavailable
from bridge.salesforce import SalesforceGateway
from bridge.sandbox.cases import sample_cases
from bridge.sandbox.salesforce import SalesforceSimulator, create_salesforce_app
from bridge.sandbox.servers import TlsFiles, free_port, make_tls_files
from tests.conftest import wait_for

CASE_1, CASE_2, CASE_3 = (c["Id"] for c in sample_cases()[:3])
FIELDS = ["Id", "CaseNumber", "Owner.Type", "Owner.Email", "ContactMobile", "ContactPhone", "Account.Name"]


@dataclass
class Org:
    sim: SalesforceSimulator
    url: str
    tls: TlsFiles

    def gateway(self, *, token: str = "good-token", ca: str | None = None) -> SalesforceGateway:
        return SalesforceGateway(
            instance_url=self.url, access_token=token, api_version="61.0", timeout=5, ca_bundle=ca or str(self.tls.ca)
        )


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Org]:
    tls = make_tls_files(Path(tmp_path_factory.mktemp("tls")))
    sim = SalesforceSimulator(access_token="good-token")
    port = free_port()
    config = uvicorn.Config(
        create_salesforce_app(sim),
        host="127.0.0.1",
        port=port,
        ssl_certfile=str(tls.cert),
        ssl_keyfile=str(tls.key),
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="the simulated Salesforce")
    yield Org(sim=sim, url=f"https://127.0.0.1:{port}", tls=tls)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(autouse=True)
def fresh_org(org: Org) -> None:
    org.sim.cases.clear()
    org.sim.add_cases(sample_cases())
    org.sim.calls.clear()
    org.sim.fail_next.clear()
    org.sim.tasks.clear()


def test_reads_many_cases_in_one_query_with_relationships_flattened(org: Org) -> None:
    tickets = org.gateway().read_tickets([CASE_1, CASE_2[:15], CASE_3, "5005g00000SBX99AAH"], FIELDS)
    assert set(tickets) == {CASE_1, CASE_2, CASE_3}  # a 15-character id is matched; a missing Case is absent
    assert tickets[CASE_1].fields["Owner.Email"] == "ana.agent@example.com"
    assert tickets[CASE_1].fields["Account.Name"] == "Acme Corp"
    assert tickets[CASE_2].fields["Owner.Type"] == "Queue"
    assert tickets[CASE_2].fields["Owner.Email"] is None
    assert [c["path"] for c in org.sim.calls] == ["/services/data/v61.0/query/"]


def test_an_explicit_ca_bundle_wins_over_requests_ca_bundle(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    assert CASE_1 in org.gateway().read_tickets([CASE_1], ["Id"])


def test_tls_is_verified(org: Org, tmp_path: Path) -> None:
    other_ca = make_tls_files(tmp_path).ca
    with pytest.raises(SalesforceUnavailable, match="SSLError"):
        org.gateway(ca=str(other_ca)).read_tickets([CASE_1], ["Id"])


def test_a_field_that_does_not_exist_is_a_request_error_naming_it(org: Org) -> None:
    with pytest.raises(SalesforceRequestError, match="INVALID_FIELD: No such column 'Nope__c'"):
        org.gateway().read_tickets([CASE_1], ["Id", "Nope__c"])


def test_updates_go_in_collections_without_auto_assignment(org: Org) -> None:
    updates = [(CASE_1, {"CCAI_SMS_Status__c": "Sent", "CCAI_Chat_Id__c": "114"})] * 150 + [
        ("5005g00000SBX99AAH", {"CCAI_SMS_Status__c": "Failed"})
    ] * 100
    results = org.gateway().update_cases(updates)
    assert len(results) == 250
    assert results[0].ok
    assert (results[-1].ok, results[-1].error_code) == (False, "ENTITY_IS_DELETED")
    assert org.sim.cases[CASE_1]["CCAI_Chat_Id__c"] == "114"
    assert [(c["method"], c["auto_assign"]) for c in org.sim.calls] == [("PATCH", "FALSE"), ("PATCH", "FALSE")]


def test_tasks_are_created_in_one_call(org: Org) -> None:
    results = org.gateway().create_tasks([{"WhatId": CASE_1, "Subject": "SMS", "Status": "Completed"}] * 3)
    assert all(r.ok for r in results)
    assert len(org.sim.tasks) == 3
    assert len(org.sim.calls) == 1


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (503, "SERVER_UNAVAILABLE", SalesforceUnavailable),
        (403, "REQUEST_LIMIT_EXCEEDED", SalesforceUnavailable),
        (400, "MALFORMED_QUERY", SalesforceRequestError),
    ],
)
def test_errors_are_translated_by_what_a_retry_could_do(
    org: Org, status: int, code: str, error: type[Exception]
) -> None:
    org.sim.fail_next.append({"status": status, "code": code})
    with pytest.raises(error, match=code):
        org.gateway().read_tickets([CASE_1], ["Id"])


def test_an_expired_token_is_an_auth_error_without_the_token(org: Org) -> None:
    with pytest.raises(SalesforceAuthError, match="expired") as caught:
        org.gateway(token="stale-token").read_tickets([CASE_1], ["Id"])
    assert "stale-token" not in str(caught.value)


def test_an_unreachable_org_is_unavailable(tmp_path: Path) -> None:
    gateway = SalesforceGateway(
        instance_url=f"https://127.0.0.1:{free_port()}", access_token="t", api_version="61.0", timeout=2
    )
    with pytest.raises(SalesforceUnavailable, match="Could not reach Salesforce"):
        gateway.read_tickets([CASE_1], ["Id"])
