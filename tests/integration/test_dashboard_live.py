"""The dashboard under a live load, in a real headless browser: answers that come late or
out of order, rows that change under the mouse, odd addresses, double clicks and failures
(the page as a whole is in tests/integration/test_dashboard.py, whose helpers this uses)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from tests.integration.test_dashboard import (
    banner,
    chrome,
    console_errors,
    keyed,
    list_status,
    open_table,
    row,
    rows,
    until,
)
from tests.servers import ApiServer, own_database

pytestmark = pytest.mark.slow
RUNNING = {"running"}


@pytest.fixture(scope="module")
def server(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    api = ApiServer(
        redis_url=own_database(redis_server.url),
        data_dir=tmp_path_factory.mktemp("dashboard-live"),
        slots=4,
    )
    api.start()
    yield api
    api.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chrome()


# Records the path of every request the page makes (window.requested) and, for the one path
# HELD, keeps the request back until the test calls window.release().
RECORD_AND_HOLD_JS = """
window.requested = [];
window.held = [];
const realFetch = window.fetch.bind(window);
window.fetch = (input, init) => {
  const url = String(input instanceof Request ? input.url : input);
  const path = new URL(url, location.href).pathname;
  window.requested.push(path);
  if (path !== HELD || window.released) return realFetch(input, init);
  return new Promise((go) => window.held.push(go)).then(() => realFetch(input, init));
};
window.release = () => {
  window.released = true;
  window.held.splice(0).forEach((go) => go());
};
window.renders = 0;
new MutationObserver(() => (window.renders += 1))
  .observe(document, {childList: true, subtree: true});
"""


def load_with(browser: Any, url: str, script: str) -> None:
    """Load `url` as a new document with `script` run before the page's own."""
    hook = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": script})
    try:
        browser.get("about:blank")  # a new document, not a hash change of the old one
        browser.get(url)
    finally:
        browser.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": hook["identifier"]}
        )


def facts(browser: Any) -> dict[str, str]:
    """The job page's facts (state, reason, message...) by name."""
    return keyed(browser, "dd[data-fact]", "d => [d.dataset.fact, d.textContent]")


def page_job(browser: Any) -> str:
    """The id the job page's heading shows ("" while none)."""
    found = browser.find_elements(By.CSS_SELECTOR, ".job-head h1 .mono")
    return str(found[0].text) if found else ""


def shown_state(browser: Any) -> str:
    return str(browser.find_element(By.ID, "job-state").get_attribute("data-state"))


def test_a_late_answer_for_a_job_left_behind_is_dropped(server: ApiServer, browser: Any) -> None:
    first = server.submit("noop", {"steps": 600, "step_s": 0.1}, name="left-behind")
    second = server.submit("noop", {"steps": 600, "step_s": 0.1}, name="opened-next")
    try:
        server.wait(first, RUNNING)
        server.wait(second, RUNNING)
        hold = RECORD_AND_HOLD_JS.replace("HELD", f'"/v1/jobs/{first}"')
        load_with(browser, f"{server.base_url}/#/jobs/{first}", hold)
        until(lambda: browser.execute_script("return window.held.length"), what="its read held")
        browser.execute_script("location.hash = arguments[0]", f"#/jobs/{second}")
        until(lambda: page_job(browser) == second and shown_state(browser) == "running", what="B")

        # the first job's details arrive now, after the second's
        before = browser.execute_script("const n = window.requested.length; release(); return n")
        renders = browser.execute_script("return window.renders")
        until(lambda: browser.execute_script("return window.renders") > renders + 2, what="renders")
        assert page_job(browser) == second
        assert shown_state(browser) == "running"
        later: list[str] = browser.execute_script(
            "return window.requested.slice(arguments[0])", before
        )
        assert not [path for path in later if path.startswith(f"/v1/jobs/{first}")], later

        until(lambda: browser.find_element(By.ID, "cancel").click() or True, what="cancel")
        until(lambda: shown_state(browser) == "cancelled", timeout_s=30, what="cancelled")
        assert page_job(browser) == second
        assert server.job(first)["state"] == "running"  # the job the page showed was cancelled
        assert not console_errors(browser)
    finally:
        server.client.delete(f"/v1/jobs/{first}")
        server.client.delete(f"/v1/jobs/{second}")


def test_rows_end_at_their_jobs_state_when_records_come_late(
    server: ApiServer, browser: Any
) -> None:
    open_table(browser, server)
    browser.execute_cdp_cmd("Network.enable", {})
    slow = {"offline": False, "latency": 1500, "downloadThroughput": -1, "uploadThroughput": -1}
    browser.execute_cdp_cmd("Network.emulateNetworkConditions", slow)
    try:
        jobs = [server.submit("noop", {"steps": 2, "step_s": 0.3}) for _ in range(3)]
        for job_id in jobs:
            server.wait(job_id)

        def shown() -> dict[str, str]:
            return {r["id"]: r["state"] for r in rows(browser) if r["id"] in jobs}

        expected = {job_id: server.job(job_id)["state"] for job_id in jobs}
        assert set(expected.values()) == {"succeeded"}
        until(lambda: shown() == expected, timeout_s=30, what="the rows at their jobs' states")
        assert all(row(browser, job_id)["progress"] == 1.0 for job_id in jobs)  # type: ignore[index]
    finally:
        fast = {**slow, "latency": 0}
        browser.execute_cdp_cmd("Network.emulateNetworkConditions", fast)
        browser.execute_cdp_cmd("Network.disable", {})


def test_a_click_on_a_row_opens_its_job_while_the_rows_update(
    server: ApiServer, browser: Any
) -> None:
    busy = [server.submit("noop", {"steps": 3000, "step_s": 0.02}) for _ in range(2)]
    try:
        for job_id in busy:
            server.wait(job_id, RUNNING)
        open_table(browser, server)
        target = busy[0]
        opened = 0
        for _ in range(5):
            until(lambda: (r := row(browser, target)) and r["state"] == "running", what="row")
            link = browser.find_element(By.CSS_SELECTOR, f'tr[data-job-id="{target}"] a')
            try:  # a human click: the button is released 150 ms after it was pressed
                ActionChains(browser).click_and_hold(link).pause(0.15).release().perform()
                until(
                    lambda: browser.current_url.endswith(f"#/jobs/{target}"),
                    timeout_s=2,
                    what="the job page",
                )
                opened += 1
            except (AssertionError, WebDriverException):
                pass  # the click was lost
            browser.execute_script("location.hash = '#/'")
        assert opened == 5
    finally:
        for job_id in busy:
            server.client.delete(f"/v1/jobs/{job_id}")


def test_a_job_shows_its_own_message_once_it_stops_running(server: ApiServer, browser: Any) -> None:
    failed = server.submit("noop", {"steps": 3, "fail": "exception"}, name="says-why")
    cancelled = server.submit("noop", {"steps": 600, "step_s": 0.05}, name="says-cancelled")
    until(lambda: (server.job(cancelled)["progress"] or {}).get("message"), what="a report")
    server.client.delete(f"/v1/jobs/{cancelled}")
    for job_id in (failed, cancelled):
        job = server.wait(job_id)
        browser.get(f"{server.base_url}/#/jobs/{job_id}")
        until(lambda: page_job(browser) == job_id, what="the job page")  # noqa: B023
        shown = facts(browser)
        assert shown["message"] == job["message"], shown
        assert shown["last report"] == job["progress"]["message"]
    assert server.job(failed)["message"] == "failed after 1 attempt (exit code 1)"
    assert server.job(cancelled)["message"] == "cancelled on request"

    report = {"stage": "steps", "message": "step 4", "current": 4, "total": 10}
    messages = browser.execute_script(
        "return arguments[0].map(jobMessage)",
        [
            {"state": "running", "message": None, "progress": report},
            {
                "state": "pending",
                "reason": "RetryBackoff",
                "message": "retrying",
                "progress": report,
            },
            {"state": "queued", "message": "accepted; creating the Job", "progress": None},
        ],
    )
    assert messages == ["step 4", "retrying", "accepted; creating the Job"]


ODD_ADDRESSES = [".", "%2E", "{job}%2Fartifacts", "{job}/logs", "%E0%A4%A", ""]
JOB_PATH = re.compile(r"^/v1/jobs/[0-9a-z]{16}$")  # a record the list may read for its rows


def test_an_address_that_names_no_job_says_so_and_asks_the_api_nothing(
    server: ApiServer, browser: Any
) -> None:
    job_id = server.submit("noop", {"steps": 1})
    server.wait(job_id)
    load_with(browser, server.base_url + "/", RECORD_AND_HOLD_JS.replace("HELD", '""'))
    until(lambda: browser.find_element(By.ID, "live").get_attribute("data-live") == "live")
    console_errors(browser)  # what earlier tests left in the log
    for odd in ODD_ADDRESSES:
        address = f"#/jobs/{odd.format(job=job_id)}"
        browser.execute_script("location.hash = '#/'")
        until(lambda: browser.find_elements(By.CSS_SELECTOR, "table.jobs"), what="the list")
        browser.execute_script("location.hash = arguments[0]", address)
        error = until(lambda: browser.find_element(By.ID, "job-error").text, what=address)
        assert error.startswith("No such job:"), (address, error)
        assert browser.find_elements(By.ID, "cancel") == []
    requested: list[str] = browser.execute_script("return window.requested")
    asked = [p for p in requested if p.startswith("/v1/jobs/") and not JOB_PATH.match(p)]
    assert asked == []
    assert not console_errors(browser)  # no URIError from a bad %-escape


def test_cancel_clicked_twice_cancels_once_and_says_no_error(
    server: ApiServer, browser: Any
) -> None:
    job_id = server.submit("noop", {"steps": 600, "step_s": 0.1})
    browser.get(f"{server.base_url}/#/jobs/{job_id}")
    until(lambda: shown_state(browser) == "running", what="the job to run")
    disabled = until(
        lambda: browser.execute_script(
            "const b = document.getElementById('cancel'); b.click(); b.click(); return b.disabled"
        ),
        what="the double click",
    )
    assert disabled  # at once, while the request is in flight
    until(lambda: shown_state(browser) == "cancelled", timeout_s=30, what="cancelled")
    assert banner(browser) == ""

    # a cancel that comes after the end (another tab's, a click on a page not yet updated)
    browser.execute_async_script(
        "cancelJob(arguments[0]).then(arguments[arguments.length - 1])", job_id
    )
    assert banner(browser) == ""
    until(lambda: shown_state(browser) == "cancelled", what="still cancelled")


def test_a_search_says_it_covers_only_the_loaded_rows_and_offers_more(
    redis_server: Any, tmp_path: Path, browser: Any
) -> None:
    crowded = ApiServer(
        redis_url=own_database(redis_server.url), data_dir=tmp_path / "api", slots=1
    )
    crowded.start()
    try:  # the oldest job holds the only slot; 100 newer ones fill the first page
        needle = crowded.submit("noop", {"steps": 600, "step_s": 0.1}, name="needle-on-page-two")
        crowded.wait(needle, RUNNING)  # no state change of it while the page is open
        for _ in range(100):
            crowded.submit("noop", {"steps": 1})
        open_table(browser, crowded)
        until(lambda: len(rows(browser)) == 100, what="the first page")
        browser.find_element(By.NAME, "q").send_keys("needle")
        until(lambda: "only through the jobs loaded" in list_status(browser), what="the note")
        browser.find_element(By.ID, "search-more").click()
        until(lambda: [r["id"] for r in rows(browser)] == [needle], what="the match, loaded")
    finally:
        crowded.close()


def test_a_token_that_cannot_be_sent_says_so(server: ApiServer, browser: Any) -> None:
    browser.get(server.base_url + "/")
    try:
        browser.execute_script("localStorage.setItem('kubetask.token', 'tökén-0123456789')")
        browser.refresh()
        until(lambda: "token is invalid" in banner(browser), timeout_s=10, what="the banner")
        until(lambda: "cannot be listed" in list_status(browser), what="not 'Loading…' forever")
    finally:
        browser.execute_script("localStorage.clear()")


FAIL_LOGS_JS = """
window.logFailures = 0;
const realFetch = window.fetch.bind(window);
window.fetch = (input, init) => {
  const url = String(input instanceof Request ? input.url : input);
  if (!window.serverAway || !url.includes("/logs")) return realFetch(input, init);
  window.logFailures += 1;
  return Promise.reject(new TypeError("Failed to fetch"));
};
"""


def test_the_log_tail_stays_while_the_server_cannot_be_reached(
    server: ApiServer, browser: Any
) -> None:
    job_id = server.submit("noop", {"steps": 600, "step_s": 0.1})
    try:
        load_with(browser, f"{server.base_url}/#/jobs/{job_id}", FAIL_LOGS_JS)
        logs = until(
            lambda: "stage steps" in (text := browser.find_element(By.ID, "logs").text) and text,
            what="the log tail",
        )
        browser.execute_script("window.serverAway = true")
        until(lambda: browser.execute_script("return window.logFailures") >= 1, what="a failure")
        shown = browser.find_element(By.ID, "logs").text
        assert shown.startswith(logs.splitlines()[0]), shown
        assert "no logs" not in shown
    finally:
        server.client.delete(f"/v1/jobs/{job_id}")


def test_rows_keep_their_elements_between_updates(server: ApiServer, browser: Any) -> None:
    job_id = server.submit("noop", {"steps": 40, "step_s": 0.05})
    open_table(browser, server)
    until(lambda: row(browser, job_id), what="the row")
    browser.execute_script(
        "window.kept = document.querySelector(`tr[data-job-id='${arguments[0]}']`)", job_id
    )
    server.wait(job_id)
    until(lambda: row(browser, job_id)["state"] == "succeeded", what="succeeded")  # type: ignore[index]
    same = browser.execute_script(
        "return window.kept === document.querySelector(`tr[data-job-id='${arguments[0]}']`)"
        " && window.kept.isConnected",
        job_id,
    )
    assert same
