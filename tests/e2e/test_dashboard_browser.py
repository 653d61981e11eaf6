"""The dashboard in a real browser: the operating system's headless Chromium, driven by Selenium,
against ``bridge serve`` and the sandbox platforms as real processes. Signing in, reading the list,
opening a send and retrying it, with the browser's own cookie and form handling.

Chromium and chromedriver come from Debian's packages (``.ci/run`` installs them in CI); Selenium
is given both paths, so it never downloads a browser of its own. Without them the test is skipped,
unless BRIDGE_TEST_REQUIRE_BROWSER is set (CI), where it fails.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Callable, Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from bridge.sandbox.cases import outbound_message, sample_cases
from bridge.sandbox.servers import SANDBOX_DASHBOARD_PASSWORD
from tests._processes import BridgeProcess, SandboxProcess, all_written, wait_for

pytestmark = pytest.mark.e2e

MOBILE, NATIONAL, NO_PHONE = (c["Id"] for c in sample_cases()[:3])
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _system_chromium() -> tuple[str, str] | None:
    browser = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[webdriver.Chrome]:
    found = _system_chromium()
    if found is None:
        message = "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        if os.environ.get("BRIDGE_TEST_REQUIRE_BROWSER"):
            pytest.fail(f"The browser test is required in this run and {message}.")
        pytest.skip(message)
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager, should it ever run, stays offline
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=found[1]))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def sign_in(driver: webdriver.Chrome, password: str) -> None:
    """What a browser's sign-in prompt does: send Basic credentials with every request from now on."""
    token = base64.b64encode(f"operator:{password}".encode()).decode()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})


def arrive(driver: webdriver.Chrome, selector: str) -> WebElement:
    """The element once the page a click led to shows it (a click returns before the page loads)."""
    found: WebElement = WebDriverWait(driver, 15).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, selector))
    )
    return found


def test_an_operator_reads_the_sends_opens_one_and_retries_it(
    browser: webdriver.Chrome, sandbox: SandboxProcess, start_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = start_bridge()
    cases = [MOBILE, NATIONAL, NO_PHONE]
    assert bridge.post_xml(outbound_message(cases)).status_code == 200
    wait_for(lambda: all_written(sandbox, cases), what="the three Cases")

    browser.get(f"{bridge.url}/dashboard")
    assert not browser.find_elements(By.TAG_NAME, "h1")  # not signed in: the browser's prompt, no page
    sign_in(browser, SANDBOX_DASHBOARD_PASSWORD)
    browser.get(f"{bridge.url}/dashboard")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Overview"
    assert browser.find_element(By.ID, "queue-depth").text == "0"
    assert "Busiest hour: 3 send(s)." in browser.page_source

    browser.find_element(By.LINK_TEXT, "Sends").click()
    rows = arrive(browser, "#sends").find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) == 3
    listing = browser.find_element(By.ID, "sends").text
    assert "*******0100" in listing
    assert "+1 415" not in listing  # numbers are masked
    skipped = next(row for row in rows if NO_PHONE in row.text)
    assert "skipped" in skipped.text
    skipped.find_element(By.TAG_NAME, "a").click()

    assert "has no phone number" in arrive(browser, "#reason").text
    browser.find_element(By.CSS_SELECTOR, "#retry button").click()  # the form posts with the page's token
    assert "Queued again" in arrive(browser, ".notice").text
    assert "operator at 127.0.0.1 retried send" in bridge.logs()

    def retried_and_finished() -> bool:
        browser.refresh()
        timeline = browser.find_element(By.ID, "timeline").text
        return "requeued" in timeline and timeline.count("finished") == 2

    wait_for(retried_and_finished, what="the retried send to finish again", interval=0.5)
    assert len(sandbox.ccai_state()["accepted"]) == 2  # the retry could not text anyone: no number
