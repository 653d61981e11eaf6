"""The operator dashboard in-process: access, every page, the retry action and its protections."""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
import logging
import re
import uuid
from typing import Any, cast

import pytest
from starlette.testclient import TestClient
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from bridge.app import create_app
from bridge.crm.salesforce import plugin as salesforce
from bridge.lookup_proof import Sighting
from bridge.model import ActivityCount, NewSend, Outcome, Overrides
from bridge.ops import _csrf, dashboard
from bridge.ops.dashboard import activity_chart
from bridge.ops.retries import retry
from bridge.store import Store
from tests._apps import salesforce_settings, services
from tests._clock import Clock

PASSWORD = "correct horse battery staple"
OPERATOR = ("operator", PASSWORD)
CASE = "5005g00000SBX01AAH"
OTHER_CASE = "5005g00000SBX02AAH"

WORDS = salesforce.words


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


SIGNED_IN = basic(*OPERATOR)


def client_for(store: Store, *, password: str = PASSWORD) -> TestClient:
    svc = services(store, dashboard_password=password)
    return TestClient(create_app(services=svc), headers=SIGNED_IN if password else None)


def add_send(store: Store, outcome: Outcome | None = None, *, case: str = CASE, **overrides: Any) -> int:
    """A send, finished with ``outcome`` when given (as a worker would record it)."""
    new = NewSend(
        dedupe_key=f"api:{uuid.uuid4().hex}",
        source="api",
        origin="person",
        ticket_id=case,
        overrides=Overrides(**overrides),
    )
    created = store.sends.create(new)
    if outcome is not None:
        [job] = store.sends.claim("w", limit=1, lease_seconds=30)
        assert job.id == created.id
        assert store.sends.finish(job.id, outcome, token=job.token, create_task=True)
    return created.id


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "the page has no retry form"
    return match.group(1)


@pytest.fixture
def client(sqlite_store: Store) -> TestClient:
    return client_for(sqlite_store)


# -- access -------------------------------------------------------------------------------------


def test_without_a_password_there_is_no_dashboard(sqlite_store: Store) -> None:
    send_id = add_send(sqlite_store, Outcome(status="failed", reason="CCAI timed out."))
    off = client_for(sqlite_store, password="")
    assert off.get("/dashboard").status_code == 404
    assert off.get("/dashboard/sends", headers=basic("operator", "")).status_code == 404
    assert off.get(f"/dashboard/sends/{send_id}", headers=basic("operator", "")).status_code == 404
    assert off.post(f"/dashboard/sends/{send_id}/retry", headers=basic("operator", "")).status_code == 404
    assert sqlite_store.history.get(send_id).status == "failed"  # type: ignore[union-attr]


def test_wrong_or_missing_credentials_are_refused_and_counted(sqlite_store: Store) -> None:
    client = client_for(sqlite_store)
    for auth in ({"Authorization": ""}, basic("operator", "wrong"), basic("admin", PASSWORD)):
        response = client.get("/dashboard/sends", headers=auth)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith('Basic realm="bridge dashboard"')
        assert PASSWORD not in response.text
    metrics = client.get("/metrics").text
    assert 'bridge_auth_failures_total{door="dashboard"} 3.0' in metrics
    assert 'bridge_refusals_total{door="dashboard",reason="unauthorized"} 3.0' in metrics


def test_pages_are_never_cached_framed_or_scripted(client: TestClient) -> None:
    headers = client.get("/dashboard").headers
    assert headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "script-src" not in headers["content-security-policy"]  # default-src 'none': no scripts at all


# -- pages --------------------------------------------------------------------------------------


def test_the_overview_shows_queue_workers_api_usage_and_the_last_24_hours(sqlite_store: Store, clock: Clock) -> None:
    add_send(sqlite_store, Outcome(status="sent", chat_id="77"))
    add_send(sqlite_store, Outcome(status="failed", reason="CCAI refused it."))
    add_send(sqlite_store)
    clock.advance(60)
    board = sqlite_store.status
    board.beat("worker-1", host="web.1", pid=4, pass_ok=True, pass_error=None)
    board.put("salesforce:api_usage", {"used": 1234, "total": 100000})
    page = client_for(sqlite_store).get("/dashboard")
    assert page.status_code == 200
    assert '<div class="value" id="queue-depth">1</div>' in page.text
    assert "60 s" in page.text  # the oldest queued send's age
    assert "worker-1" in page.text
    assert "web.1" in page.text
    assert "1,234" in page.text
    assert "of 100,000 Salesforce API calls today" in page.text
    assert "Busiest hour: 3 send(s)" in page.text
    assert "3 send(s), 1 sent, 1 failed, 1 queued" in page.text  # the bar's tooltip


def test_the_overview_shows_the_lost_answer_lookups_proof_and_its_evidence(sqlite_store: Store, clock: Clock) -> None:
    """Issue 20 item 5: the proof state, the latest chat read back and the delay observed."""
    page = client_for(sqlite_store).get("/dashboard")
    assert "lost-answer lookup: this tenant has not shown that its chat list carries our ticket id" in page.text
    assert "a lost answer ends Unknown and is not sent again" in page.text
    for chat_id in ("81", "82", "83"):
        add_send(sqlite_store, Outcome(status="sent", chat_id=chat_id))
    clock.advance(7)
    sqlite_store.lookup_evidence.observe([Sighting(c, CASE) for c in ("81", "82", "83")])
    page = client_for(sqlite_store).get("/dashboard")
    assert '<div class="value">proven</div>' in page.text
    assert "chat 83 showed our ticket id 7 s after it was sent" in page.text


def test_the_activity_chart_stacks_each_hour_and_scales_to_the_busiest() -> None:
    counts = [
        ActivityCount(hour=0, status="sent", count=2),
        ActivityCount(hour=0, status="failed", count=2),
        ActivityCount(hour=23, status="sent", count=1),
        ActivityCount(hour=24, status="sent", count=99),  # outside the window: ignored
    ]
    chart = activity_chart(0.0, counts, hours=24, height=100)
    assert chart.peak == 4
    first, last = chart.bars[0], chart.bars[-1]
    assert (first.label, first.total, last.label, last.total) == ("00:00", 4, "23:00", 1)
    assert first.segments == [("sent", 2, 50.0, 50.0), ("failed", 2, 0.0, 50.0)]
    assert last.segments == [("sent", 1, 75.0, 25.0)]
    assert chart.legend == ["sent", "failed"]


def test_activity_is_counted_by_hour_in_the_store(store: Store, clock: Clock) -> None:
    clock.now = 1_800_000_000.0 - 1_800_000_000.0 % 3600 + 1800  # half past an hour
    add_send(store, Outcome(status="sent", chat_id="1"))
    clock.advance(-3600)
    add_send(store, Outcome(status="skipped", reason="No phone number."))
    add_send(store)
    clock.advance(-24 * 3600)  # a day earlier: outside the chart
    add_send(store)
    clock.advance(25 * 3600)
    start, counts = store.history.activity(hours=24)
    assert start == clock.now - 1800 - 23 * 3600
    by_hour = sorted((c.hour, c.status, c.count) for c in counts)
    assert by_hour == [(22, "queued", 1), (22, "skipped", 1), (23, "sent", 1)]


def test_the_sends_list_filters_by_status_case_and_time(store: Store, clock: Clock) -> None:
    first = add_send(store, Outcome(status="failed", reason="CCAI refused it."))
    clock.advance(3 * 3600)
    second = add_send(store, Outcome(status="sent", chat_id="5"), case=OTHER_CASE)
    clock.advance(60)
    client = client_for(store)

    def listed(**params: str) -> list[int]:
        response = client.get("/dashboard/sends", params=params)
        assert response.status_code == 200, response.text
        return [int(i) for i in re.findall(r'<a href="/dashboard/sends/(\d+)">', response.text)]

    assert listed() == [second, first]
    assert listed(status="failed") == [first]
    assert listed(case=OTHER_CASE) == [second]
    assert listed(case=OTHER_CASE[:15]) == [second]  # the 15-character id a Salesforce list view shows
    assert listed(within="1h") == [second]
    assert listed(within="24h") == [second, first]
    assert listed(within="1h", status="failed") == []
    # The test clock starts at 2027-01-15T08:00:00Z.
    assert listed(since="2027-01-15T08:30") == [second]
    assert listed(since="2027-01-15T08:00", until="2027-01-15T08:30") == [first]
    assert "selected>last hour</option>" in client.get("/dashboard/sends", params={"within": "1h"}).text


def test_bad_filters_are_explained(client: TestClient) -> None:
    response = client.get(
        "/dashboard/sends", params={"status": "lost", "case": "001abc", "since": "yesterday", "within": "forever"}
    )
    assert response.status_code == 400
    assert "There is no time range &#39;forever&#39;." in response.text
    assert "There is no status &#39;lost&#39;." in response.text
    assert "must be a Case id" in response.text
    assert "is not a date and time" in response.text


def test_a_bad_filter_lists_nothing_rather_than_everything(sqlite_store: Store) -> None:
    add_send(sqlite_store, Outcome(status="failed", reason="CCAI refused it."))
    page = client_for(sqlite_store).get("/dashboard/sends", params={"status": "faild"})
    assert page.status_code == 400
    assert "There is no status &#39;faild&#39;." in page.text
    assert "Nothing is listed until the filter is corrected." in page.text
    assert "/dashboard/sends/1" not in page.text  # the failed send is not shown as if it matched


def test_the_overview_leads_with_the_verdict_and_its_reasons(sqlite_store: Store, clock: Clock) -> None:
    add_send(sqlite_store)
    client = client_for(sqlite_store)
    down = client.get("/dashboard")
    assert '<strong id="verdict-level">Down</strong>' in down.text
    assert "No worker is alive, so nothing is being sent (1 send waiting)." in down.text
    clock.advance(90)
    sqlite_store.status.beat("worker-1", host="web.1", pid=4, pass_ok=True, pass_error=None)
    page = client.get("/dashboard")
    assert '<section class="verdict v-degraded"' in page.text
    assert "1 send in hand, the oldest for 1 min 30 s (1 queued, 0 sending)." in page.text
    assert page.text.index('id="verdict"') < page.text.index('id="queue-depth"')  # first thing on the page


def test_the_verdict_as_json_for_monitors_behind_the_same_sign_in(sqlite_store: Store) -> None:
    sqlite_store.status.beat("worker-1", host="web.1", pid=4, pass_ok=True, pass_error=None)
    client = client_for(sqlite_store)
    answer = client.get("/dashboard/status.json")
    assert answer.status_code == 200
    assert answer.json()["verdict"] == "healthy"
    client.headers.pop("authorization")
    assert client.get("/dashboard/status.json").status_code == 401


def test_an_unknown_dashboard_page_is_a_styled_404_with_the_way_back(client: TestClient) -> None:
    page = client.get("/dashboard/sendz")
    assert page.status_code == 404
    assert "<h1>There is no such page</h1>" in page.text
    assert '<a href="/dashboard/sends">Sends</a>' in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")


def test_the_sends_list_pages_back(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard, "PAGE_SIZE", 2)
    ids = [add_send(sqlite_store, Outcome(status="skipped", reason="No phone number.")) for _ in range(5)]
    client = client_for(sqlite_store)
    url = "/dashboard/sends?status=skipped"
    seen = []
    while True:
        page = client.get(url).text
        seen.append([int(i) for i in re.findall(r'<a href="/dashboard/sends/(\d+)">', page)])
        older = re.search(r'<a href="(/dashboard/sends\?[^"]+)" rel="next">', page)
        if older is None:
            break
        url = older.group(1).replace("&amp;", "&")
        assert "status=skipped" in url  # the filter is kept
    assert seen == [ids[4:2:-1], ids[2:0:-1], ids[:1]]


def test_a_send_shows_its_timeline_masked_number_and_no_text_it_did_not_send(sqlite_store: Store) -> None:
    sent = add_send(
        sqlite_store, Outcome(status="sent", chat_id="88", message="Hello from Acme", end_user_hint="*******0100")
    )
    failed = add_send(
        sqlite_store,
        Outcome(status="failed", reason="<script>alert(1)</script>", message="Never sent", end_user_hint="*******0101"),
    )
    client = client_for(sqlite_store)
    page = client.get(f"/dashboard/sends/{sent}").text
    assert "Hello from Acme" in page
    assert "*******0100" in page
    assert ">88<" in page
    assert "<td>received</td>" in page
    assert "<td>finished</td>" in page
    assert '<dd id="reached">yes</dd>' in page
    other = client.get(f"/dashboard/sends/{failed}").text
    assert '<dd id="reached">no</dd>' in other
    assert "Never sent" not in other
    assert "<script>alert(1)</script>" not in other
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in other
    missing = client.get("/dashboard/sends/999")
    assert (missing.status_code, "There is no send 999" in missing.text) == (404, True)


def test_the_opt_out_list_is_masked_and_paged(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard, "PAGE_SIZE", 2)
    opt_outs = sqlite_store.opt_outs
    for n in range(3):
        opt_outs.add(f"+1415555010{n}", source="agent", note="said stop")
    client = client_for(sqlite_store)
    first = client.get("/dashboard/opt-outs").text
    assert "(3)" in first
    assert "page 1 of 2" in first
    assert "*******0100" in first or "*******0102" in first
    assert "4155550100" not in first
    assert "said stop" in first
    assert client.get("/dashboard/opt-outs?page=2").text.count("said stop") == 1


# -- the retry action ---------------------------------------------------------------------------


def test_a_failed_send_is_retried_from_its_page(
    sqlite_store: Store, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.ops.dashboard")
    send_id = add_send(sqlite_store, Outcome(status="failed", reason="CCAI timed out."))
    page = client.get(f"/dashboard/sends/{send_id}")
    assert "Retry anyway" not in page.text
    response = client.post(
        f"/dashboard/sends/{send_id}/retry", data={"csrf": csrf_of(page.text)}, follow_redirects=False
    )
    assert (response.status_code, response.headers["location"]) == (303, f"/dashboard/sends/{send_id}?retried=1")
    record = sqlite_store.history.get(send_id)
    assert record is not None
    assert record.status == "queued"
    assert "Queued again" in client.get(response.headers["location"]).text
    assert f"the operator at testclient retried send {send_id} (failed): queued again" in caplog.text
    assert 'class="notice"' not in client.get(f"/dashboard/sends/{send_id}").text  # only right after the retry


def test_the_operators_address_is_the_proxys_client_only_behind_a_trusted_proxy(
    sqlite_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn (``proxy_headers``, ``FORWARDED_ALLOW_IPS``) replaces the peer with the forwarded client
    only when the peer is a trusted proxy; anyone else's X-Forwarded-For is not believed."""
    caplog.set_level(logging.INFO, logger="bridge.ops.dashboard")
    # uvicorn's own ASGI types are narrower than Starlette's; the two interoperate at run time.
    app = cast(ASGIApp, ProxyHeadersMiddleware(cast(Any, client_for(sqlite_store).app), trusted_hosts="10.0.0.1"))
    forwarded = {"X-Forwarded-For": "203.0.113.9"}
    sends = [add_send(sqlite_store, Outcome(status="failed", reason="CCAI timed out.")) for _ in range(2)]
    for send_id, peer, expected in zip(
        sends, ("10.0.0.1", "198.51.100.7"), ("203.0.113.9", "198.51.100.7"), strict=True
    ):
        client = TestClient(app, headers=SIGNED_IN, client=(peer, 40000))
        token = csrf_of(client.get(f"/dashboard/sends/{send_id}").text)
        client.post(f"/dashboard/sends/{send_id}/retry", data={"csrf": token}, headers=forwarded)
        assert f"the operator at {expected} retried send {send_id}" in caplog.text


@pytest.mark.parametrize(
    ("outcome", "reached"),
    [
        (Outcome(status="sent", chat_id="41", message="Your case is solved"), "yes"),
        (Outcome(status="unknown", reason="CCAI's answer was lost."), "maybe: an attempt&#39;s answer was lost"),
        (Outcome(status="suppressed", reason="Another send texted them."), "no (another send"),
    ],
)
def test_a_send_that_may_have_reached_the_customer_needs_a_confirmation(
    sqlite_store: Store, client: TestClient, caplog: pytest.LogCaptureFixture, outcome: Outcome, reached: str
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.ops.dashboard")
    send_id = add_send(sqlite_store, outcome)
    page = client.get(f"/dashboard/sends/{send_id}").text
    assert f'<dd id="reached">{reached}' in page
    assert "I understand this can text the customer a second time" in page
    assert 'name="confirm" value="yes" required' in page
    unconfirmed = client.post(f"/dashboard/sends/{send_id}/retry", data={"csrf": csrf_of(page)})
    assert unconfirmed.status_code == 400
    assert "Tick the box to confirm" in unconfirmed.text
    assert sqlite_store.history.get(send_id).status == outcome.status  # type: ignore[union-attr]
    assert f"did not confirm a retry of send {send_id} ({outcome.status})" in caplog.text
    confirmed = client.post(
        f"/dashboard/sends/{send_id}/retry", data={"csrf": csrf_of(page), "confirm": "yes"}, follow_redirects=False
    )
    assert confirmed.status_code == 303
    assert sqlite_store.history.get(send_id).status == "queued"  # type: ignore[union-attr]
    assert f"retried send {send_id} ({outcome.status}, confirmed it may text the customer again)" in caplog.text


def test_a_send_that_texted_the_customer_before_a_retry_still_asks_first(
    sqlite_store: Store, client: TestClient
) -> None:
    """Its latest outcome is failed (CCAI refused the resend), but it keeps the chat that went out."""
    send_id = add_send(sqlite_store, Outcome(status="sent", chat_id="41", message="Your case is solved"))
    assert retry(sqlite_store, send_id, force=True, words=WORDS).queued
    [job] = sqlite_store.sends.claim("w", limit=1, lease_seconds=30)
    assert sqlite_store.sends.finish(
        job.id, Outcome(status="failed", reason="Consumer is in an active session."), token=job.token, create_task=True
    )
    page = client.get(f"/dashboard/sends/{send_id}?retried=1").text
    assert '<dd id="reached">yes, before it was retried (chat 41)</dd>' in page
    assert "It reached the customer earlier (chat 41)." in page
    assert "Queued again, and finished since" in page
    assert "Your case is solved" not in page  # the latest attempt was not sent
    unconfirmed = client.post(f"/dashboard/sends/{send_id}/retry", data={"csrf": csrf_of(page)})
    assert unconfirmed.status_code == 400
    assert sqlite_store.history.get(send_id).status == "failed"  # type: ignore[union-attr]


def test_a_pending_send_offers_no_retry(sqlite_store: Store, client: TestClient) -> None:
    send_id = add_send(sqlite_store)
    page = client.get(f"/dashboard/sends/{send_id}").text
    assert "Cannot be retried: it is queued" in page
    assert 'id="retry"' not in page


def test_a_retry_without_the_pages_token_or_from_another_site_is_refused(
    sqlite_store: Store, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A page on another site can make the operator's browser post (with saved credentials), but it
    cannot read the token from our page; planting a cookie of its own does not help either."""
    send_id = add_send(sqlite_store, Outcome(status="failed", reason="CCAI timed out."))
    token = csrf_of(client.get(f"/dashboard/sends/{send_id}").text)
    url = f"/dashboard/sends/{send_id}/retry"
    nonce = "A" * 43
    stranger = TestClient(client.app, headers=SIGNED_IN)  # saved credentials, but not our cookie
    planted = TestClient(client.app, headers=SIGNED_IN, cookies={_csrf.COOKIE: nonce})
    refused = [
        client.post(url),
        client.post(url, data={"csrf": "guessed"}),
        stranger.post(url, data={"csrf": token}),
        planted.post(url, data={"csrf": nonce}),  # a plain double submit would take this
        client.post(url, data={"csrf": token}, headers={"Origin": "https://evil.example"}),
        client.post(url, data={"csrf": token}, headers={"Origin": "null"}),  # a sandboxed frame
        client.post(url, data={"csrf": token}, headers={"Referer": "https://evil.example/page"}),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    assert "did not come from the dashboard" in refused[0].text
    assert sqlite_store.history.get(send_id).status == "failed"  # type: ignore[union-attr]
    assert [s.event for s in sqlite_store.history.timeline(send_id)] == ["received", "finished"]
    assert f'bridge_refusals_total{{door="dashboard",reason="csrf"}} {len(refused)}.0' in client.get("/metrics").text
    assert f"refused a retry of send {send_id} from testclient: wrong token" in caplog.text
    assert f"refused a retry of send {send_id} from testclient: foreign origin" in caplog.text

    ours = {"Origin": "http://testserver", "Referer": f"http://testserver/dashboard/sends/{send_id}"}
    assert client.post(url, data={"csrf": token}, headers=ours, follow_redirects=False).status_code == 303
    assert sqlite_store.history.get(send_id).status == "queued"  # type: ignore[union-attr]


def test_a_token_is_only_good_for_its_own_dashboard(sqlite_store: Store) -> None:
    """The key comes from the password: another process with it takes the form (Heroku runs several web
    dynos); a dashboard with another password does not."""
    send_id = add_send(sqlite_store, Outcome(status="failed", reason="CCAI timed out."))
    client = client_for(sqlite_store)
    token = csrf_of(client.get(f"/dashboard/sends/{send_id}").text)
    cookies = dict(client.cookies)
    other = TestClient(client_for(sqlite_store, password="another").app, headers=basic("operator", "another"))
    other.cookies.update(cookies)
    assert other.post(f"/dashboard/sends/{send_id}/retry", data={"csrf": token}).status_code == 403
    twin = client_for(sqlite_store)  # a second web process with the same settings
    twin.cookies.update(cookies)
    response = twin.post(f"/dashboard/sends/{send_id}/retry", data={"csrf": token}, follow_redirects=False)
    assert response.status_code == 303


def test_the_token_cookie_is_strict_and_http_only(client: TestClient) -> None:
    cookie = TestClient(client.app, headers=SIGNED_IN).get("/dashboard").headers["set-cookie"]
    assert "bridge_dashboard_csrf=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/dashboard" in cookie


# -- personal data ------------------------------------------------------------------------------


def test_no_page_shows_a_full_number_or_a_message_that_was_not_sent(sqlite_store: Store) -> None:
    number = "+14155550123"
    failed = add_send(
        sqlite_store,
        Outcome(status="failed", reason="CCAI refused it.", message="Secret unsent text", end_user_hint="*******0123"),
    )
    given = add_send(sqlite_store, end_user_number=number)  # queued: its request's number is kept until it is done
    sqlite_store.opt_outs.add("+14155550199", source="agent", note=None)
    client = client_for(sqlite_store)
    pages = [
        "/dashboard",
        "/dashboard/sends",
        "/dashboard/sends?status=failed",
        f"/dashboard/sends/{given}",
        f"/dashboard/sends/{failed}",
        "/dashboard/opt-outs",
    ]
    html = ""
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        html += response.text
    assert "*******0123" in html
    assert "*******0199" in html
    for secret in ("4155550123", "415555 0123", "415-555-0123", "4155550199", "Secret unsent text"):
        assert secret not in html


def test_hostile_requests_are_refused_never_answered_500(sqlite_store: Store) -> None:
    """Each of these answered 500 (with a traceback in the log) before."""
    client = TestClient(create_app(services=services_with_password(sqlite_store)), raise_server_exceptions=False)
    garbled = client.get("/dashboard", headers=cast(Any, {"Authorization": b"Basic \xe9\xe9"}))
    assert garbled.status_code == 401
    for path in (
        "/dashboard/opt-outs?page=%C2%B2",  # a superscript two is a digit to str.isdigit, not to int()
        "/dashboard/sends?before=%C2%B2",
        "/dashboard/sends/9223372036854775808",  # past what SQLite's integers hold
        "/dashboard/sends/2147483648",  # past PostgreSQL's
    ):
        answer = client.get(path, headers=SIGNED_IN)
        assert answer.status_code in (200, 400, 404), (path, answer.status_code)


def services_with_password(store: Store) -> Any:
    svc = services(store, dashboard_password=PASSWORD)
    return svc


def test_an_unknown_send_says_what_to_look_for_in_ccai_in_web_words(sqlite_store: Store, clock: Clock) -> None:
    send_id = add_send(
        sqlite_store, Outcome(status="unknown", reason="The answer was lost.", end_user_hint="*******0100")
    )
    page = client_for(sqlite_store).get(f"/dashboard/sends/{send_id}")
    assert 'id="search-ccai"' in page.text
    assert "<strong>*******0100</strong>" in page.text
    assert "started between <strong>" in page.text
    assert "--" not in page.text.split('id="search-ccai"')[1].split("</div>")[0]  # no command-line flags


def test_an_operator_adds_checks_and_removes_an_opt_out_from_the_dashboard(
    sqlite_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge")
    client = client_for(sqlite_store)
    page = client.get("/dashboard/opt-outs")
    token = re.search(r'id="add">\s*<input type="hidden" name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    assert client.post("/dashboard/opt-outs", data={"number": "(415) 555-0100"}).status_code == 403  # no token
    added = client.post(
        "/dashboard/opt-outs", data={"csrf": token.group(1), "number": "(415) 555-0100", "note": "said stop"}
    )
    assert "*******0100 is now on the list: it is never texted." in added.text
    assert sqlite_store.opt_outs.get("+14155550100") is not None
    checked = client.get("/dashboard/opt-outs", params={"check": "415.555.0100"})
    assert "*******0100 is on the list since" in checked.text
    assert "from dashboard (said stop)" in checked.text
    assert client.get("/dashboard/opt-outs", params={"check": "12"}).status_code == 400
    removed = client.post(
        "/dashboard/opt-outs", data={"csrf": token.group(1), "number": "+1 415 555 0100", "action": "remove"}
    )
    assert "*******0100 is off the list: it may be texted again." in removed.text
    assert sqlite_store.opt_outs.get("+14155550100") is None
    assert "operator at testclient (dashboard) removed *******0100" in caplog.text
    assert "555-0100" not in caplog.text


def test_the_filtered_list_exports_as_csv_and_json_with_the_total(sqlite_store: Store) -> None:
    for _ in range(3):
        add_send(sqlite_store, Outcome(status="failed", reason='=HYPERLINK("http://evil")'))
    add_send(sqlite_store, Outcome(status="sent", chat_id="9", end_user_hint="*******0100"))
    client = client_for(sqlite_store)
    listing = client.get("/dashboard/sends", params={"status": "failed"})
    assert 'href="/dashboard/sends.csv?status=failed"' in listing.text
    exported = client.get("/dashboard/sends.csv", params={"status": "failed"})
    assert exported.headers["content-type"].startswith("text/csv")
    assert exported.headers["x-total-count"] == "3"
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["status"] for r in rows] == ["failed"] * 3
    assert rows[0]["error"].startswith("'=HYPERLINK")  # never a formula in a spreadsheet
    assert rows[0]["reached_customer"] == "no"
    body = client.get("/dashboard/sends.json").json()
    assert (body["total"], body["exported"]) == (4, 4)
    assert body["sends"][0]["reached_customer"] == "yes"
    assert client.get("/dashboard/sends.csv", params={"status": "faild"}).status_code == 400


def test_a_case_links_to_its_record_and_is_found_by_the_casenumber_agents_quote(store: Store) -> None:
    first = add_send(store, Outcome(status="failed", reason="CCAI refused it."))
    second = add_send(store, Outcome(status="sent", chat_id="5"), case=OTHER_CASE)
    store.sends.note_ticket_numbers({first: "00001026", second: "00001027"})
    svc = dataclasses.replace(
        services(store, dashboard_password=PASSWORD),
        crm_settings=salesforce_settings(instance_url="https://acme.my.salesforce.com"),
    )
    client = TestClient(create_app(services=svc), headers=SIGNED_IN)

    def listed(case: str) -> list[int]:
        response = client.get("/dashboard/sends", params={"case": case})
        assert response.status_code == 200, response.text
        return [int(i) for i in re.findall(r'<a href="/dashboard/sends/(\d+)">', response.text)]

    assert listed("00001026") == [first]
    assert listed("1026") == [first]  # as agents say it, without the leading zeros
    assert listed("1028") == []
    page = client.get(f"/dashboard/sends/{second}").text
    assert f'href="https://acme.my.salesforce.com/{OTHER_CASE}"' in page
    assert "CaseNumber 00001027" in page
    exported = client.get("/dashboard/sends.csv", params={"case": "1027"}).text
    assert "00001027" in exported
    assert OTHER_CASE in exported


def test_without_an_org_address_the_case_is_shown_unlinked(sqlite_store: Store) -> None:
    send_id = add_send(sqlite_store, Outcome(status="sent", chat_id="5"))
    page = client_for(sqlite_store).get(f"/dashboard/sends/{send_id}").text
    assert CASE in page
    assert "ticket-link" not in page  # SALESFORCE_DOMAIN=login names no org
