"""The web dashboard in a real headless browser (Debian's chromium driven by selenium), against
the real API process with real task processes.

Screenshots of the table and of a job page are kept from every run, in
`$KUBETASK_SCREENSHOTS` (default `build/screenshots/`). Without chromium, chromedriver or
selenium the module is skipped and says why (`.ci/run` installs them: scripts/install-ci-tools.sh).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select

from tests.servers import ApiServer, own_database

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
NO_BROWSER = "no chromium/chromedriver here (scripts/install-ci-tools.sh installs them)"
if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("CI"):  # in CI a missing real part fails the run
        raise RuntimeError(NO_BROWSER)
    pytest.skip(NO_BROWSER, allow_module_level=True)

pytestmark = pytest.mark.slow
SCREENSHOTS = Path(os.environ.get("KUBETASK_SCREENSHOTS", "build/screenshots"))
ROWS_JS = """return [...document.querySelectorAll('table.jobs tbody tr')].map(r => ({
  id: r.dataset.jobId, state: r.dataset.state,
  progress: Number(r.querySelector('.progress').dataset.value),
  cells: [...r.cells].map(c => c.textContent)}))"""


@pytest.fixture(scope="module")
def server(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """An installation of the module's own (its own Redis database): the table shows only
    this module's jobs."""
    url = own_database(redis_server.url)
    api = ApiServer(redis_url=url, data_dir=tmp_path_factory.mktemp("dashboard"), slots=3)
    api.start()
    yield api
    api.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chrome()


def chrome() -> Iterator[Any]:
    """A headless chromium driven by selenium, quit when the generator is closed."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)  # found above, or the module skipped
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1360,900",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def until(check: Callable[[], Any], *, timeout_s: float = 60, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = check()
        except (NoSuchElementException, StaleElementReferenceException):
            value = None  # the page is between two renders
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or check}")


def open_table(browser: Any, server: ApiServer) -> None:
    browser.get(server.base_url + "/")
    until(
        lambda: browser.find_element(By.ID, "live").get_attribute("data-live") == "live",
        timeout_s=20,
        what="the live stream",
    )


def rows(browser: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = browser.execute_script(ROWS_JS)
    return found


def row(browser: Any, job_id: str) -> dict[str, Any] | None:
    return next((r for r in rows(browser) if r["id"] == job_id), None)


def screenshot(browser: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    browser.save_screenshot(str(path))
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one
    return path


def keyed(browser: Any, selector: str, entry: str) -> dict[str, Any]:
    """The page's elements matching `selector` as a dict: `entry` is a JS arrow function of
    one element giving its [key, value]."""
    found: dict[str, Any] = browser.execute_script(
        f"return Object.fromEntries([...document.querySelectorAll({selector!r})].map({entry}))"
    )
    return found


def chart_points(browser: Any) -> dict[str, int]:
    """Each charted series and its number of points."""
    return keyed(browser, "svg.chart polyline", "p => [p.dataset.series, Number(p.dataset.points)]")


def result_rows(browser: Any) -> dict[str, dict[str, str]]:
    """The result table's top-level rows: key -> how its value shows (kind) and its text."""
    return keyed(
        browser,
        "#result > table.kv > tbody > tr",
        "r => [r.dataset.key, {kind: r.cells[1].firstElementChild.dataset.kind,"
        " text: r.cells[1].innerText}]",
    )


def figures(browser: Any) -> dict[str, str]:
    """The figures a job page shows in place of charts."""
    return keyed(browser, "#figures > tbody > tr", "r => [r.dataset.key, r.cells[1].innerText]")


def list_status(browser: Any) -> str:
    """What the table says in place of rows ("" while it shows rows)."""
    box = browser.find_element(By.ID, "list-status")
    return "" if box.get_attribute("hidden") is not None else str(box.text)


def banner(browser: Any) -> str:
    box = browser.find_element(By.ID, "banner")
    return "" if box.get_attribute("hidden") is not None else str(box.text)


def console_errors(browser: Any) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_a_submitted_job_appears_and_its_row_progresses_live_to_succeeded(
    server: ApiServer, browser: Any
) -> None:
    open_table(browser, server)
    job_id = server.submit("noop", {"steps": 12, "step_s": 0.15}, name="live-row")

    seen: list[dict[str, Any]] = []

    def finished() -> bool:
        current = row(browser, job_id)
        if current is not None:
            seen.append(current)
        return current is not None and current["state"] == "succeeded"

    until(finished, timeout_s=60, what="the row to reach succeeded")
    states = [s["state"] for s in seen]
    assert "running" in states
    order = ["queued", "pending", "running", "succeeded"]
    assert [order.index(s) for s in states] == sorted(order.index(s) for s in states)
    partial = {s["progress"] for s in seen if s["state"] == "running"} - {0.0, 1.0}
    assert partial, "the progress bar moved between 0 and 100% while it ran"
    progress = [s["progress"] for s in seen]
    assert progress == sorted(progress)  # never goes backwards
    assert seen[-1]["progress"] == 1.0
    assert seen[-1]["cells"][1] == "live-row"
    assert seen[-1]["cells"][2] == "noop"
    assert seen[-1]["cells"][6]  # a duration once finished
    assert not console_errors(browser)


def test_a_train_job_page_shows_stage_charts_result_and_log_tail(
    server: ApiServer, browser: Any
) -> None:
    job_id = server.submit(
        "train", {"epochs": 4, "threads": 1}, name="fault-classifier", labels={"team": "ml"}
    )
    open_table(browser, server)
    train_row = until(
        lambda: (found := row(browser, job_id)) and found["state"] == "running" and found,
        what="the train job to run",
    )
    assert train_row["cells"][1:3] == ["fault-classifier", "train"]
    click(browser, f'tr[data-job-id="{job_id}"] a')  # again if a live render replaced the row
    until(lambda: browser.current_url.endswith(f"#/jobs/{job_id}"), what="the job page")

    def state() -> str:
        return str(browser.find_element(By.ID, "job-state").get_attribute("data-state"))

    until(lambda: state() == "succeeded", timeout_s=90, what="the page to show succeeded")
    # one point per epoch for each metric, loss and accuracy charted apart
    expected = {"loss": 4, "val_loss": 4, "accuracy": 4, "val_accuracy": 4}
    until(lambda: chart_points(browser) == expected, timeout_s=10, what="the metric charts")
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert [c.get_attribute("data-chart") for c in charts] == ["loss", "accuracy"]
    facts = {
        e.get_attribute("data-fact"): e.text
        for e in browser.find_elements(By.CSS_SELECTOR, "dd[data-fact]")
    }
    assert facts["stage"] == "train"
    assert facts["message"] == server.job(job_id)["message"]  # its own word once it ended
    assert facts["last report"] == "epoch 4/4"
    assert facts["labels"] == "team=ml"
    result = result_rows(browser)
    assert result["best_val_accuracy"]["kind"] == "number"
    assert result["model"] == {"kind": "path", "text": f"{job_id}/model.pt"}
    assert result["metrics"]["kind"] == "nested"  # collapsed
    until(
        lambda: "train task succeeded" in browser.find_element(By.ID, "logs").text,
        what="the log tail",
    )
    assert browser.find_element(By.ID, "cancel").get_attribute("disabled") is not None
    browser.set_window_size(1360, 1250)
    screenshot(browser, "dashboard-job.png")
    browser.set_window_size(1360, 900)
    assert not console_errors(browser)


def test_the_cancel_button_cancels_a_running_job(server: ApiServer, browser: Any) -> None:
    job_id = server.submit("noop", {"steps": 600, "step_s": 0.1}, name="to-cancel")
    browser.get(f"{server.base_url}/#/jobs/{job_id}")
    until(
        lambda: browser.find_element(By.ID, "job-state").get_attribute("data-state") == "running",
        what="the job to run",
    )
    until(  # a progress event may re-render the button between finding and clicking it
        lambda: browser.find_element(By.ID, "cancel").click() or True, what="the cancel click"
    )
    until(
        lambda: browser.find_element(By.ID, "job-state").get_attribute("data-state") == "cancelled",
        timeout_s=30,
        what="the page to show cancelled",
    )
    assert server.client.get(f"/v1/jobs/{job_id}").json()["state"] == "cancelled"


def test_filters_narrow_the_table(server: ApiServer, browser: Any) -> None:
    failed = server.submit("noop", {"steps": 1, "fail": "exception"}, name="filter-failed")
    done = server.submit("noop", {"steps": 1}, name="filter-done")
    server.wait(failed)
    server.wait(done)
    open_table(browser, server)
    until(lambda: row(browser, failed) and row(browser, done), what="both rows")

    Select(browser.find_element(By.NAME, "state")).select_by_value("failed")
    until(lambda: {r["state"] for r in rows(browser)} == {"failed"}, what="only failed rows")
    assert row(browser, failed) is not None
    Select(browser.find_element(By.NAME, "state")).select_by_value("")
    until(lambda: row(browser, done), what="all rows back")
    search = browser.find_element(By.NAME, "q")
    search.send_keys("filter-done")
    until(lambda: [r["id"] for r in rows(browser)] == [done], what="the search to match one")


def test_text_from_jobs_is_shown_as_text_never_as_markup(server: ApiServer, browser: Any) -> None:
    markup = '<img id="pwned" src="x" onerror="document.title=\'pwned\'">'
    job_id = server.submit("noop", {"steps": 1, "fail": "exception", "fail_message": markup})
    server.wait(job_id)
    browser.get(f"{server.base_url}/#/jobs/{job_id}")
    until(lambda: markup in browser.find_element(By.CSS_SELECTOR, ".error").text, what="error")
    assert browser.find_elements(By.ID, "pwned") == []
    assert browser.title == "kubetask"


def test_everything_the_page_loads_comes_from_the_server_itself(
    server: ApiServer, browser: Any
) -> None:
    running = server.submit("noop", {"steps": 100, "step_s": 0.1}, name="epoch-sweep")
    open_table(browser, server)
    until(
        lambda: (found := row(browser, running)) and 0.2 < found["progress"] < 0.8,
        what="a row part way",
    )
    browser.set_window_size(1360, 760)
    screenshot(browser, "dashboard.png")  # the module's jobs in all their states
    browser.set_window_size(1360, 900)
    server.client.delete(f"/v1/jobs/{running}")
    urls: list[str] = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert urls, "the page loaded its assets"
    assert all(url.startswith(server.base_url) for url in urls), urls


def test_trial_events_chart_the_objective_and_the_best_so_far(
    server: ApiServer, browser: Any
) -> None:
    """What `hpo` and `nas` report per finished trial (see jobs/kinds/hpo.py on_trial)."""
    open_table(browser, server)
    trials = [
        {"trial": 0, "value": 0.5, "best_value": 0.5},
        {"trial": 1, "value": 0.7, "best_value": 0.7},
        {"trial": 2, "value": None, "best_value": 0.7},  # pruned: no value
        {"trial": 1, "value": 0.7, "best_value": 0.7},  # replayed: counted once
    ]
    events = [{"type": "progress", "seq": i + 1, "metrics": m} for i, m in enumerate(trials)]
    charts = browser.execute_script("return metricSeries(arguments[0])", events)
    assert [c["id"] for c in charts] == ["trials"]
    series = {s["name"]: s["points"] for s in charts[0]["series"]}
    assert series == {
        "value": [[0, 0.5], [1, 0.7]],
        "best_value": [[0, 0.5], [1, 0.7], [2, 0.7]],
    }


def test_with_tokens_the_page_asks_for_one_and_shows_only_its_tenants_jobs(
    redis_server: Any, tmp_path: Path, browser: Any
) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(
        '[{"token": "team-a-token-0123456789", "tenant": "team-a", "role": "user"},'
        ' {"token": "team-b-token-0123456789", "tenant": "team-b", "role": "user"}]'
    )
    url = own_database(redis_server.url)
    secured = ApiServer(redis_url=url, data_dir=tmp_path / "api", tokens_file=tokens)
    secured.start()
    try:
        ours, theirs = (
            secured.client.post(
                "/v1/jobs",
                json={"kind": "noop", "name": name},
                headers={"Authorization": f"Bearer {team}-token-0123456789"},
            ).json()["id"]
            for team, name in (("team-a", "ours"), ("team-b", "theirs"))
        )
        browser.get(secured.base_url + "/")
        until(
            lambda: "needs an API token" in browser.find_element(By.ID, "banner").text,
            timeout_s=20,
            what="the token banner",
        )
        assert rows(browser) == []
        until(lambda: "cannot be listed" in list_status(browser), what="not 'Loading…' forever")
        browser.execute_script("localStorage.setItem('kubetask.token', 'team-a-token-0123456789')")
        browser.refresh()
        until(lambda: row(browser, ours), timeout_s=20, what="our job's row")
        assert [r["id"] for r in rows(browser)] == [ours]
        assert theirs not in browser.page_source
    finally:
        browser.execute_script("localStorage.clear()")
        secured.close()


# Holds every job listing (GET /v1/jobs?...) until the test calls window.releaseListings(), and
# records each text the page's main view shows, so that a test sees the page while it loads.
HOLD_LISTINGS_JS = """
window.heldListings = [];
window.viewTexts = [];
const realFetch = window.fetch.bind(window);
window.fetch = (input, init) => {
  const url = String(input instanceof Request ? input.url : input);
  if (!url.includes("/v1/jobs?") || window.listingsReleased) return realFetch(input, init);
  return new Promise((go) => window.heldListings.push(go)).then(() => realFetch(input, init));
};
window.releaseListings = () => {
  window.listingsReleased = true;
  window.heldListings.splice(0).forEach((go) => go());
};
new MutationObserver(() => {
  const view = document.getElementById("view");
  if (view && window.viewTexts.at(-1) !== view.innerText) window.viewTexts.push(view.innerText);
}).observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
"""


def test_the_table_says_loading_until_its_first_page_and_empty_only_when_it_is(
    redis_server: Any, tmp_path: Path, browser: Any
) -> None:
    crowded = ApiServer(
        redis_url=own_database(redis_server.url), data_dir=tmp_path / "api", slots=1
    )
    crowded.start()
    hold = browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": HOLD_LISTINGS_JS}
    )
    try:
        browser.get(crowded.base_url + "/")
        until(lambda: list_status(browser) == "Loading…", what="loading, the listing held")
        browser.execute_script("window.releaseListings()")
        until(lambda: "No jobs yet. Submit one" in list_status(browser), what="an empty store")

        # one job holds the only slot, 59 wait for it: 60 jobs in the store, 1 process
        jobs = [crowded.submit("noop", {"steps": 600, "step_s": 0.1})]
        jobs += [crowded.submit("noop", {"steps": 1}) for _ in range(59)]
        browser.get(crowded.base_url + "/")
        until(lambda: list_status(browser) == "Loading…", what="loading, the listing held")
        assert rows(browser) == []
        browser.execute_script("window.releaseListings()")
        until(lambda: len(rows(browser)) == 60, what="the 60 rows")
        assert {r["id"] for r in rows(browser)} == set(jobs)
        shown: list[str] = browser.execute_script("return window.viewTexts")
        assert not [t for t in shown if "No jobs yet" in t or re.search(r"\b0 jobs", t)]
        assert browser.find_element(By.CSS_SELECTOR, ".filters .count").text == "60 jobs"
    finally:
        browser.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": hold["identifier"]}
        )
        crowded.close()


def test_a_filter_that_matches_nothing_says_so_and_offers_to_clear_it(
    server: ApiServer, browser: Any
) -> None:
    job_id = server.submit("noop", {"steps": 1}, name="unfiltered")
    server.wait(job_id)
    open_table(browser, server)
    until(lambda: row(browser, job_id), what="the job's row")
    browser.find_element(By.NAME, "label").send_keys("team=nobody\n")
    until(lambda: "No jobs match this filter" in list_status(browser), what="the no-match note")
    assert rows(browser) == []
    assert "No jobs yet" not in browser.find_element(By.ID, "view").text
    browser.find_element(By.ID, "clear-filters").click()
    until(lambda: row(browser, job_id), what="the rows back")
    assert browser.find_element(By.NAME, "label").get_attribute("value") == ""
    assert list_status(browser) == ""


def test_an_error_banner_goes_once_the_error_is_resolved(server: ApiServer, browser: Any) -> None:
    job_id = server.submit("noop", {"steps": 1}, labels={"team": "banner"})
    server.wait(job_id)
    open_table(browser, server)
    console_errors(browser)  # what earlier tests left in the log
    label = browser.find_element(By.NAME, "label")
    label.send_keys("not-a-selector\n")  # the API answers 422: not key=value
    until(lambda: "key=value" in banner(browser), what="the error banner")
    until(lambda: "cannot be listed" in list_status(browser), what="the table to say so too")
    label.clear()
    label.send_keys("team=banner\n")
    until(lambda: row(browser, job_id), what="the fixed filter's row")
    until(lambda: banner(browser) == "", timeout_s=5, what="the banner to go")
    assert all("422" in error for error in console_errors(browser))


def test_a_finished_job_that_reported_no_metrics_says_so_and_shows_its_result_as_a_table(
    server: ApiServer, browser: Any
) -> None:
    job_id = server.submit("noop", {"steps": 2, "step_s": 0.05})
    server.wait(job_id)
    browser.get(f"{server.base_url}/#/jobs/{job_id}")
    until(
        lambda: browser.find_element(By.ID, "no-metrics").text == "This job reported no metrics.",
        what="the no-metrics note",
    )
    assert result_rows(browser)["steps"] == {"kind": "number", "text": "2"}


def train_then_evaluate(api: ApiServer, headers: dict[str, str] | None = None) -> tuple[str, str]:
    """A model trained for one epoch, then evaluated: (the train's id, the evaluate's id)."""
    ids: list[str] = []
    for kind in ("train", "evaluate"):
        params = {"model": f"job:{ids[0]}"} if ids else {"epochs": 1, "threads": 1}
        response = api.client.post(
            "/v1/jobs", json={"kind": kind, "params": params}, headers=headers or {}
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
        until(
            lambda: (
                api.client.get(f"/v1/jobs/{ids[-1]}", headers=headers or {}).json()["state"]
                in {"succeeded", "failed", "cancelled"}
            ),
            timeout_s=120,
            what=f"the {kind} job to end",
        )
    return ids[0], ids[1]


@pytest.fixture(scope="module")
def evaluated(server: ApiServer) -> tuple[str, str]:
    """A finished evaluate of a one-epoch model: (the train's id, the evaluate's id)."""
    model, job_id = train_then_evaluate(server)
    assert server.job(job_id)["state"] == "succeeded", server.job(job_id)
    return model, job_id


def test_a_finished_evaluate_shows_its_figures_and_readable_result(
    server: ApiServer, browser: Any, evaluated: tuple[str, str]
) -> None:
    model, job_id = evaluated
    result = server.job(job_id)["result"]
    console_errors(browser)  # what earlier tests left in the log
    browser.get(f"{server.base_url}/#/jobs/{job_id}")
    until(lambda: figures(browser), what="the figures")
    shown = figures(browser)
    assert {"accuracy", "macro_f1", "weighted_f1", "loss"} <= set(shown)
    assert float(shown["accuracy"]) == pytest.approx(result["accuracy"], abs=1e-4)
    assert browser.find_elements(By.ID, "no-metrics") == []
    table = result_rows(browser)
    assert table["model"] == {"kind": "path", "text": f"{model}/model.pt"}
    assert table["metrics_file"] == {"kind": "path", "text": result["metrics_file"]}
    assert table["confusion_plot"]["kind"] == "path"
    assert table["per_class"] == {"kind": "nested", "text": f"{len(result['per_class'])} fields"}
    assert table["classes"]["kind"] == "list"
    assert "{" not in browser.find_element(By.ID, "result").text  # no raw JSON
    browser.set_window_size(1360, 1100)
    screenshot(browser, "dashboard-evaluate.png")
    browser.set_window_size(1360, 900)
    assert not console_errors(browser)


def test_the_bar_is_the_jobs_fraction_with_its_eta_and_a_failed_job_stays_where_it_stopped(
    server: ApiServer, browser: Any
) -> None:
    open_table(browser, server)
    stage_done = {"stage": "generate", "current": 96, "total": 96, "progress": 1.0}
    running = {"state": "running", "progress": {**stage_done, "fraction": 0.45, "eta_s": 65}}
    failed = {"state": "failed", "progress": {**stage_done, "fraction": 0.9}}
    shown = browser.execute_script(
        "return [...arguments].map(j => [fraction(j), etaText(j), progressCell(j).textContent,"
        " stageCount(j.progress)])",
        running,
        failed,
        {"state": "succeeded", "progress": {**stage_done, "fraction": 0.9}},
    )
    assert shown == [
        [0.45, "eta 1m 5s", "45%", "96 / 96"],
        [0.9, "", "90%", "96 / 96"],  # not the stage's 100%, and no ETA once it ended
        [1, "", "100%", "96 / 96"],
    ]


def human_size(size: int) -> str:
    """What the page shows for a size (artifacts.js humanSize)."""
    value, unit = float(size), 0
    while value >= 1024 and unit < 4:
        value, unit = value / 1024, unit + 1
    if unit == 0:
        return f"{size} B"
    shown = f"{value:.1f}" if value < 10 else str(round(value))
    return f"{shown} {['B', 'KiB', 'MiB', 'GiB', 'TiB'][unit]}"


def test_human_sizes_read_as_people_write_them(server: ApiServer, browser: Any) -> None:
    open_table(browser, server)
    sizes = [0, 812, 1023, 1024, 1536, 10 * 1024, 5 * 1024**2 + 1, 3 * 1024**3]
    shown = browser.execute_script("return arguments[0].map(humanSize)", sizes)
    assert shown == ["0 B", "812 B", "1023 B", "1.0 KiB", "1.5 KiB", "10 KiB", "5.0 MiB", "3.0 GiB"]
    assert shown == [human_size(size) for size in sizes]


def test_a_job_page_shows_inline_its_first_images_of_a_reasonable_size(
    server: ApiServer, browser: Any
) -> None:
    open_table(browser, server)

    def entry(path: str, content_type: str, size: int = 1000) -> dict[str, Any]:
        return {"path": path, "size": size, "content_type": content_type}

    items = [
        entry("confusion.png", "image/png"),
        entry("overlay.jpg", "image/jpeg"),
        entry("plot.svg", "image/svg+xml"),
        entry("robustness.csv", "text/csv"),
        entry("explanation.npz", "application/octet-stream"),
        entry("unknown-type.png", "application/octet-stream"),
        entry("huge.png", "image/png", size=21 * 1024**2),
    ] + [entry(f"many/{i:02}.png", "image/png") for i in range(20)]
    shown = browser.execute_script("return inlineImages(arguments[0]).map(e => e.path)", items)
    assert shown[:4] == ["confusion.png", "overlay.jpg", "plot.svg", "unknown-type.png"]
    assert shown[4:] == [f"many/{i:02}.png" for i in range(8)]  # 12 at most


ARTIFACTS_JS = """return [...document.querySelectorAll('#artifacts tbody tr')].map(r => ({
  path: r.dataset.path, size: Number(r.cells[1].dataset.size), shown: r.cells[1].textContent,
  href: r.querySelector('a').getAttribute('href')}))"""
IMAGE_JS = """const img = document.querySelector(`img[data-artifact="${arguments[0]}"]`);
return img && img.complete ? {width: img.naturalWidth, src: img.src} : null"""
LINK_JS = """const a = document.querySelector(`#result tr[data-key="${arguments[0]}"] > td > a`);
return a && {link: a.dataset.link, href: a.getAttribute('href'), text: a.textContent}"""
BLOB_READABLE_JS = """const done = arguments[arguments.length - 1];
fetch(arguments[0]).then(() => done(true), () => done(false))"""


def shown_image(browser: Any, path: str) -> dict[str, Any] | None:
    """The inline image of an artifact, once it has loaded: its natural width and its src."""
    image: dict[str, Any] | None = browser.execute_script(IMAGE_JS, path)
    return image if image and image["width"] > 0 else None


def click(browser: Any, selector: str) -> None:
    """Click what `selector` finds, once it is there (again if a render replaced it)."""

    def clicked() -> bool:
        browser.find_element(By.CSS_SELECTOR, selector).click()
        return True

    until(clicked, what=f"{selector} to click")


def downloaded(browser: Any, folder: Path, name: str) -> bytes:
    """Click the artifact table's link to `name`; wait for the browser to save it in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder)}
    )
    click(browser, f'a[data-artifact="{name}"]')
    saved = folder / name
    until(
        lambda: saved.exists() and not list(folder.glob("*.crdownload")),
        timeout_s=20,
        what=f"{name} to download",
    )
    return saved.read_bytes()


def test_a_job_page_lists_its_files_with_sizes_shows_its_plot_and_links_its_result_paths(
    server: ApiServer, browser: Any, evaluated: tuple[str, str]
) -> None:
    model, job_id = evaluated
    listing = server.client.get(f"/v1/jobs/{job_id}/artifacts").json()["items"]
    assert {"metrics.json", "confusion.png"} <= {entry["path"] for entry in listing}
    console_errors(browser)  # what earlier tests left in the log
    browser.get(f"{server.base_url}/#/jobs/{job_id}")
    shown = until(lambda: browser.execute_script(ARTIFACTS_JS), what="the artifact table")
    assert shown == [
        {
            "path": entry["path"],
            "size": entry["size"],
            "shown": human_size(entry["size"]),
            "href": f"/v1/jobs/{job_id}/artifacts/{entry['path']}",
        }
        for entry in listing
    ]
    image = until(lambda: shown_image(browser, "confusion.png"), what="the confusion plot")
    assert image["src"].startswith("blob:")  # fetched by the page, as it would with a token
    result = server.job(job_id)["result"]
    for key, path in (("metrics_file", "metrics.json"), ("confusion_plot", "confusion.png")):
        assert browser.execute_script(LINK_JS, key) == {
            "link": "download",
            "href": f"/v1/jobs/{job_id}/artifacts/{path}",
            "text": result[key],
        }
    assert browser.execute_script(LINK_JS, "model") == {  # another job's file: that job's page
        "link": "job",
        "href": f"#/jobs/{model}",
        "text": f"{model}/model.pt",
    }
    browser.set_window_size(1360, 1600)
    screenshot(browser, "dashboard-artifacts.png")
    browser.set_window_size(1360, 900)
    assert not console_errors(browser)

    click(browser, "#back")  # leaving the page lets its images go
    until(lambda: browser.find_elements(By.CSS_SELECTOR, "table.jobs"), what="the list")
    assert browser.execute_async_script(BLOB_READABLE_JS, image["src"]) is False


def test_a_download_link_yields_the_files_bytes(
    server: ApiServer, browser: Any, evaluated: tuple[str, str], tmp_path: Path
) -> None:
    _, job_id = evaluated
    browser.get(f"{server.base_url}/#/jobs/{job_id}")
    for path in ("metrics.json", "confusion.png"):
        expected = server.client.get(f"/v1/jobs/{job_id}/artifacts/{path}")
        assert expected.status_code == 200
        assert downloaded(browser, tmp_path, path) == expected.content


def test_the_back_link_returns_to_the_list_with_its_filters_kept(
    server: ApiServer, browser: Any
) -> None:
    failed = server.submit("noop", {"steps": 1, "fail": "exception"}, name="back-failed")
    done = server.submit("noop", {"steps": 1}, name="back-done")
    server.wait(failed)
    server.wait(done)
    open_table(browser, server)
    until(lambda: row(browser, failed) and row(browser, done), what="both rows")
    Select(browser.find_element(By.NAME, "state")).select_by_value("failed")
    until(lambda: {r["state"] for r in rows(browser)} == {"failed"}, what="only failed rows")
    assert browser.current_url.endswith("#/?state=failed")  # a reload or a shared link keeps it
    click(browser, f'tr[data-job-id="{failed}"] a')  # again if a live render replaced the row
    until(lambda: browser.find_element(By.ID, "job-state").text == "failed", what="the job page")
    browser.refresh()  # the page's memory goes; the way back does not
    until(lambda: browser.find_element(By.ID, "job-state").text == "failed", what="the job again")
    back = str(browser.execute_script("return document.getElementById('back').href"))
    assert back.endswith("#/?state=failed")
    click(browser, "#back")
    until(lambda: row(browser, failed), what="the list")
    assert Select(browser.find_element(By.NAME, "state")).first_selected_option.text == "failed"
    assert {r["state"] for r in rows(browser)} == {"failed"}

    browser.get(f"{server.base_url}/#/jobs/0000000000nojob0")  # even a job that is not there
    until(lambda: browser.find_element(By.ID, "job-error").text, what="the error")
    click(browser, "#back")
    until(lambda: row(browser, failed), what="the list from the error page")
    assert row(browser, done) is None  # still filtered


def test_with_a_token_the_plot_shows_and_the_download_works(
    redis_server: Any, tmp_path: Path, browser: Any
) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text('[{"token": "team-a-token-0123456789", "tenant": "team-a", "role": "user"}]')
    secured = ApiServer(
        redis_url=own_database(redis_server.url), data_dir=tmp_path / "api", tokens_file=tokens
    )
    secured.start()
    auth = {"Authorization": "Bearer team-a-token-0123456789"}
    try:
        _, job_id = train_then_evaluate(secured, auth)
        plot = secured.client.get(f"/v1/jobs/{job_id}/artifacts/confusion.png", headers=auth)
        assert plot.status_code == 200
        assert secured.client.get(f"/v1/jobs/{job_id}/artifacts/confusion.png").status_code == 401
        browser.get(secured.base_url + "/")
        browser.execute_script("localStorage.setItem('kubetask.token', 'team-a-token-0123456789')")
        browser.get(f"{secured.base_url}/#/jobs/{job_id}")
        until(
            lambda: shown_image(browser, "confusion.png"), what="the plot, fetched with the token"
        )
        assert downloaded(browser, tmp_path / "downloads", "confusion.png") == plot.content
        assert banner(browser) == ""
    finally:
        browser.execute_script("localStorage.clear()")
        secured.close()
