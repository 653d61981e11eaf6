"""What operators see of templates and of the CRM's push door: the template a send used (``bridge
sends show``, the dashboard), and when the last outbound message arrived (``bridge status``, the
dashboard), so that a wrong endpoint or token shows as silence."""

from __future__ import annotations

import json

import pytest

from bridge.api.sends import public_view
from bridge.crm.plugin import LAST_PUSH_KEY
from bridge.crm.salesforce import plugin as salesforce
from bridge.model import Outcome
from bridge.ops.overview import read_overview
from bridge.ops.status_report import status_lines, status_report
from bridge.store import Store
from tests.ops.test_dashboard import add_send, client_for

SENT = Outcome(status="sent", chat_id="114", message="Hello", template="resolved", template_version="f0c887fa")


def test_a_sends_template_and_version_are_shown(sqlite_store: Store) -> None:
    send_id = add_send(sqlite_store, SENT, template="resolved")
    record = sqlite_store.history.get(send_id)
    assert record is not None
    view = public_view(record)
    assert (view["template"], view["template_version"]) == ("resolved", "f0c887fa")
    page = client_for(sqlite_store).get(f"/dashboard/sends/{send_id}").text
    assert 'id="template">resolved <span class="muted">(version f0c887fa)</span>' in page


def test_a_queued_send_shows_the_template_asked_for(sqlite_store: Store) -> None:
    send_id = add_send(sqlite_store, template="awaiting_customer")
    record = sqlite_store.history.get(send_id)
    assert record is not None
    assert (public_view(record)["template"], public_view(record)["template_version"]) == ("awaiting_customer", None)


def test_no_outbound_message_yet_says_what_to_check(sqlite_store: Store) -> None:
    overview = read_overview(sqlite_store)
    assert overview.last_push is None
    lines = status_lines(overview, salesforce.words)
    assert "Last Salesforce push:  none received yet (check the endpoint and token if one is expected)" in lines
    page = client_for(sqlite_store).get("/dashboard").text
    assert "nothing received from Salesforce yet" in page


@pytest.mark.parametrize("surface", ["status", "json", "dashboard"])
def test_the_last_outbound_message_is_shown_with_its_time(sqlite_store: Store, surface: str) -> None:
    sqlite_store.status.put(LAST_PUSH_KEY, {"door": "outbound_message", "notifications": 3, "org_id": "00D"})
    overview = read_overview(sqlite_store)
    assert overview.last_push is not None
    if surface == "status":
        (line,) = [line for line in status_lines(overview, salesforce.words) if line.startswith("Last Salesforce push")]
        assert line.startswith("Last Salesforce push:  outbound message, 20")
        assert line.endswith("(3 notification(s))")
    elif surface == "json":
        report = json.loads(json.dumps(status_report(overview)))
        assert report["last_push"]["door"] == "outbound_message"
        assert report["last_push"]["notifications"] == 3
    else:
        page = client_for(sqlite_store).get("/dashboard").text
        assert "last outbound message from Salesforce (3 notification(s))" in page
