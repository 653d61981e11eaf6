"""The CRM gateway over the wire: simple-salesforce → TLS → the simulated org on 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter

from bridge.errors import SalesforceAuthError, SalesforceRequestError, SalesforceUnavailable
from bridge.salesforce import SalesforceGateway, TimeoutSession
from bridge.salesforce_auth import SalesforceCredentials
from bridge.sandbox.cases import sample_cases
from bridge.sandbox.salesforce import SalesforceSimulator, create_salesforce_app
from bridge.sandbox.servers import TlsFiles, free_port, make_tls_files
from tests.conftest import wait_for

CASE_1, CASE_2, CASE_3 = (c["Id"] for c in sample_cases()[:3])
KEYS: dict[str, str] = {}
FIELDS = ["Id", "CaseNumber", "Owner.Type", "Owner.Email", "ContactMobile", "ContactPhone", "Account.Name"]


@dataclass
class Org:
    sim: SalesforceSimulator
    url: str
    tls: TlsFiles

    def gateway(self, *, token: str = "good-token", ca: str | None = None) -> SalesforceGateway:
        credentials = SalesforceCredentials(mode="token", instance_url=self.url, access_token=token)
        return SalesforceGateway(
            credentials=credentials, api_version="61.0", timeout=5, ca_bundle=ca or str(self.tls.ca)
        )

    def login_gateway(self, credentials: SalesforceCredentials) -> SalesforceGateway:
        """A gateway whose *.salesforce.com login URLs reach this org (simple-salesforce builds them
        from the domain, so they are redirected at the HTTP layer)."""
        session = TimeoutSession(5, ca_bundle=str(self.tls.ca))
        session.mount("https://", RedirectAdapter(urlsplit(self.url).netloc))
        return SalesforceGateway(credentials=credentials, api_version="61.0", timeout=5, session=session)


class RedirectAdapter(HTTPAdapter):
    """Sends requests for *.salesforce.com to the local org instead."""

    def __init__(self, netloc: str) -> None:
        super().__init__()
        self.netloc = netloc

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        parts = urlsplit(request.url or "")
        if (parts.hostname or "").endswith(".salesforce.com"):
            request.url = urlunsplit(("https", self.netloc, parts.path, parts.query, ""))
        return super().send(request, *args, **kwargs)


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Org]:
    tls = make_tls_files(Path(tmp_path_factory.mktemp("tls")))
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (Path(tmp_path_factory.mktemp("keys")) / "key.pem").write_bytes(
        private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    sim = SalesforceSimulator(
        access_token="good-token",
        clients={"client-id": "client-secret"},
        jwt_keys={
            "client-id": private_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
        },
        users={"bridge@acme.example": "password" + "securitytoken"},
    )
    KEYS["pem"] = private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
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
    org.sim.logins.clear()
    org.sim.valid_tokens.clear()
    org.sim.valid_tokens.add("good-token")


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


def test_case_updates_and_tasks_go_in_one_composite_call_without_auto_assignment(org: Org) -> None:
    updates = [(CASE_1, {"CCAI_SMS_Status__c": "Sent", "CCAI_Chat_Id__c": "114"})] * 150 + [
        ("5005g00000SBX99AAH", {"CCAI_SMS_Status__c": "Failed"})
    ] * 100
    tasks = [{"WhatId": CASE_1, "Subject": "SMS", "Status": "Completed"}] * 3
    case_results, task_results = org.gateway().write_back(updates, tasks)
    assert len(case_results) == 250
    assert case_results[0].ok
    assert (case_results[-1].ok, case_results[-1].error_code) == (False, "ENTITY_IS_DELETED")
    assert all(r.ok for r in task_results)
    assert len(org.sim.tasks) == 3
    assert org.sim.cases[CASE_1]["CCAI_Chat_Id__c"] == "114"
    assert [(c["method"], c["path"], c["auto_assign"]) for c in org.sim.calls] == [
        ("POST", "/services/data/v61.0/composite", "FALSE")
    ] * 2  # 250 Cases need two calls of at most 200 records each
    subrequests = [s for c in org.sim.calls for s in c["subrequests"]]
    assert [(s["method"], s["auto_assign"]) for s in subrequests] == [
        ("PATCH", "FALSE"),
        ("POST", "FALSE"),
        ("PATCH", "FALSE"),
    ]


def test_a_refused_subrequest_fails_its_records_only(org: Org) -> None:
    tasks = [{"WhatId": CASE_1, "Subject": "SMS", "Nope__c": 1}]
    case_results, task_results = org.gateway().write_back([(CASE_1, {"CCAI_SMS_Status__c": "Sent"})], tasks)
    assert case_results[0].ok
    assert (task_results[0].ok, task_results[0].error_code) == (False, "INVALID_FIELD")


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
    credentials = SalesforceCredentials(mode="token", instance_url=f"https://127.0.0.1:{free_port()}", access_token="t")
    gateway = SalesforceGateway(credentials=credentials, api_version="61.0", timeout=2)
    with pytest.raises(SalesforceUnavailable, match="Could not reach Salesforce"):
        gateway.read_tickets([CASE_1], ["Id"])


LOGINS = {
    "client_credentials": {"client_id": "client-id", "client_secret": "client-secret", "domain": "acme.my"},
    "password": {"username": "bridge@acme.example", "password": "password", "security_token": "securitytoken"},
}


def credentials_for(mode: str) -> SalesforceCredentials:
    if mode == "jwt":
        values = {"username": "bridge@acme.example", "client_id": "client-id", "domain": "login"}
        return SalesforceCredentials(mode="jwt", private_key=KEYS["pem"], **values)
    return SalesforceCredentials(mode=mode, **LOGINS[mode])  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["client_credentials", "jwt", "password"])
def test_each_login_mode_gets_a_session_and_renews_it_once_when_it_expires(org: Org, mode: str) -> None:
    gateway = org.login_gateway(credentials_for(mode))
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
    with pytest.raises(
        SalesforceAuthError, match=r"token has expired or was revoked\. Set a new SALESFORCE_ACCESS_TOKEN"
    ):
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
    org: Org, mode: str, change: dict[str, str], message: str
) -> None:
    values = {**LOGINS[mode], **change}
    gateway = org.login_gateway(SalesforceCredentials(mode=mode, **values))  # type: ignore[arg-type]
    with pytest.raises(SalesforceAuthError, match=message) as caught:
        gateway.read_tickets([CASE_1], ["Id"])
    assert "wrong" not in str(caught.value)
    assert "client-secret" not in repr(credentials_for("client_credentials"))


def test_describe_lists_fields_and_relationships(org: Org) -> None:
    fields = org.gateway().describe("Case")
    assert fields["CCAI_Chat_Id__c"]["updateable"]
    assert fields["OwnerId"]["relationshipName"] == "Owner"
