"""The dashboard in a real browser: the operating system's headless Chromium, driven by Selenium,
against ``bridge serve`` and the sandbox platforms as real processes. Signing in, reading the list,
opening a send and retrying it, with the browser's own authentication, cookies and form handling.

Chromium and chromedriver come from Debian's packages (``apt-get install chromium chromium-driver``;
``.ci/run`` installs them in CI); Selenium is given both paths, so it never downloads a browser of
its own. Without them the test is skipped, except in CI (``CI=true`` or BRIDGE_TEST_REQUIRE_BROWSER),
where it fails.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from bridge.model import SendRecord
from bridge.sandbox.cases import outbound_message, sample_cases
from bridge.sandbox.servers import SANDBOX_DASHBOARD_PASSWORD
from bridge.store import Store
from tests._processes import BridgeProcess, SandboxProcess, all_written, wait_for

pytestmark = pytest.mark.e2e

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
MOBILE, NATIONAL, NO_PHONE = (c["Id"] for c in sample_cases()[:3])
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    # Nothing but the bridge on 127.0.0.1: no updates, sync or other background traffic.
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[webdriver.Chrome]:
    missing = ", ".join(str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists())
    if missing:
        install = "apt-get install -y chromium chromium-driver"
        message = f"needs Debian's chromium and chromium-driver ({missing} missing: {install})"
        if os.environ.get("CI") == "true" or os.environ.get("BRIDGE_TEST_REQUIRE_BROWSER"):
            pytest.fail(f"The browser test is required in CI and {message}.")
        pytest.skip(message)
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager, should it ever run, stays offline
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(15)
    driver.set_window_size(1280, 1000)
    try:
        yield driver
    finally:
        driver.quit()


def arrive(driver: webdriver.Chrome, selector: str) -> WebElement:
    """The element once the page a click led to shows it (a click returns before the page loads)."""
    found: WebElement = WebDriverWait(driver, 10).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, selector))
    )
    return found


def stored(bridge: BridgeProcess, case_id: str) -> tuple[SendRecord, list[str]]:
    """The case's send and its timeline's events, read from the bridge's own store."""
    store = Store.from_url(bridge.env["DATABASE_URL"])
    try:
        [send] = store.history.find(ticket_id=case_id)
        return send, [step.event for step in store.history.timeline(send.id)]
    finally:
        store.close()


def test_an_operator_reads_the_sends_opens_one_and_retries_it(
    browser: webdriver.Chrome,
    sandbox: SandboxProcess,
    start_bridge: Callable[..., BridgeProcess],
    tmp_path: Path,
) -> None:
    bridge = start_bridge()
    cases = [MOBILE, NATIONAL, NO_PHONE]
    assert bridge.post_xml(outbound_message(cases)).status_code == 200
    wait_for(lambda: all_written(sandbox, cases), what="the three Cases")

    browser.get(f"{bridge.url}/dashboard")
    assert not browser.find_elements(By.TAG_NAME, "h1")  # not signed in: the browser's prompt, no page
    # Credentials in the address, as a bookmark can hold them: Chromium keeps them for the realm.
    browser.get(f"http://operator:{SANDBOX_DASHBOARD_PASSWORD}@127.0.0.1:{bridge.port}/dashboard")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Overview"
    assert browser.find_element(By.ID, "queue-depth").text == "0"
    assert "Busiest hour: 3 send(s)." in browser.page_source
    browser.save_screenshot(str(tmp_path / "overview.png"))

    browser.find_element(By.LINK_TEXT, "Sends").click()
    rows = arrive(browser, "#sends").find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) == 3
    browser.save_screenshot(str(tmp_path / "sends.png"))
    listing = browser.find_element(By.ID, "sends").text
    assert "*******0100" in listing
    assert "415" not in listing.replace(MOBILE, "").replace(NATIONAL, "").replace(NO_PHONE, "")  # masked
    skipped = next(row for row in rows if NO_PHONE in row.text)
    assert "skipped" in skipped.text
    skipped.find_element(By.TAG_NAME, "a").click()

    assert "has no phone number" in arrive(browser, "#reason").text
    assert browser.find_element(By.ID, "reached").text == "no"
    browser.find_element(By.CSS_SELECTOR, "#retry button").click()  # the form posts with the page's token
    assert "Queued again" in arrive(browser, ".notice").text
    assert "operator at 127.0.0.1 retried send" in bridge.logs()
    assert "requeued" in stored(bridge, NO_PHONE)[1]

    # A sent one asks first: the browser will not submit the form until the box is ticked.
    browser.find_element(By.LINK_TEXT, "Sends").click()
    sent = next(
        row for row in arrive(browser, "#sends").find_elements(By.CSS_SELECTOR, "tbody tr") if MOBILE in row.text
    )
    sent.find_element(By.TAG_NAME, "a").click()
    assert arrive(browser, "#reached").text == "yes"
    browser.find_element(By.CSS_SELECTOR, "#retry button").click()
    assert not browser.find_elements(By.CSS_SELECTOR, ".notice, .error")
    assert stored(bridge, MOBILE)[0].status == "sent"
    browser.find_element(By.NAME, "confirm").click()
    browser.save_screenshot(str(tmp_path / "confirm.png"))
    browser.find_element(By.CSS_SELECTOR, "#retry button").click()
    assert "Queued again" in arrive(browser, ".notice").text
    assert "requeued" in stored(bridge, MOBILE)[1]
    assert "confirmed it may text the customer again" in bridge.logs()
    assert "did not confirm" not in bridge.logs()  # the unticked form never left the browser

    def retried_and_finished() -> bool:
        send, events = stored(bridge, NO_PHONE)
        return send.status == "skipped" and events.count("finished") == 2

    wait_for(retried_and_finished, what="the retried send to finish again", interval=0.2)
    browser.refresh()
    assert "queued again" in arrive(browser, "#timeline").text
    browser.save_screenshot(str(tmp_path / "send.png"))


PAGES = (
    "/dashboard",
    "/dashboard/sends",
    "/dashboard/sends/1",
    "/dashboard/opt-outs",
    "/dashboard/sends?status=faild",
    "/dashboard/no-such-page",
)


@pytest.mark.parametrize("width", [1366, 390])
def test_every_page_reads_at_desktop_and_phone_width(
    browser: webdriver.Chrome,
    sandbox: SandboxProcess,
    start_bridge: Callable[..., BridgeProcess],
    tmp_path: Path,
    width: int,
) -> None:
    bridge = start_bridge()
    cases = [MOBILE, NATIONAL, NO_PHONE]
    assert bridge.post_xml(outbound_message(cases)).status_code == 200
    wait_for(lambda: all_written(sandbox, cases), what="the three Cases")
    browser.set_window_size(width, 900)
    base = f"http://operator:{SANDBOX_DASHBOARD_PASSWORD}@127.0.0.1:{bridge.port}"
    for page in PAGES:
        browser.get(base + page)
        assert browser.find_element(By.TAG_NAME, "h1").text, page
        # Nothing wider than the screen: wide tables scroll inside their own box, not the page.
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{page} is {overflow} px wider than {width} px"
        name = page.strip("/").replace("/", "-").replace("?", "-").replace("=", "-") or "root"
        browser.save_screenshot(str(tmp_path / f"{name}-{width}.png"))
    browser.get(base + "/dashboard")
    assert browser.find_element(By.ID, "verdict-level").text in ("Healthy", "Degraded", "Down")
    skip = browser.find_element(By.CSS_SELECTOR, "a.skip")
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert browser.switch_to.active_element == skip  # the first thing a keyboard reaches
    browser.get(base + "/dashboard/sends?status=faild")
    assert "Nothing is listed until the filter is corrected." in browser.find_element(By.ID, "problems").text
    assert not browser.find_elements(By.CSS_SELECTOR, "#sends a[href^='/dashboard/sends/']")
    browser.get(base + "/dashboard/no-such-page")
    assert browser.find_element(By.TAG_NAME, "h1").text == "There is no such page"
