"""The explorer page in Debian's chromium, and scripts/demo.py, on the real
orchestrator and worker.

Counts shown by the page and printed by the demo are compared with counts
computed here from the flights CSV with the csv module. Screenshots at a
phone's and a laptop's width go to test-output/.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flights_csv import flights_rows, matching_rows
from support import (
    REPO,
    ServiceProcess,
    free_port,
    service_env,
    skip_or_fail,
    wait_until,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SOCKET_IO_BUNDLE = (
    REPO / "services/gateway/node_modules/socket.io-client/dist/socket.io.min.js"
)
OUTPUT = REPO / "test-output"
VIEWPORTS = {"phone": (375, 800), "laptop": (1366, 900)}
LOAD_TIMEOUT_MS = 90_000
QUERY_TIMEOUT_MS = 30_000
# The rate-limited gateway's GATEWAY_RATE_LIMIT and GATEWAY_RATE_BURST. With
# all 7 facet groups selected, the explorer sends 9 requests per batch, so 20
# requests/s admit about 2 batches a second.
LOW_RATE_LIMIT = 20
LOW_RATE_BURST = 20


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _start(
    name: str, module: str, env: dict[str, str], log_dir: Path
) -> ServiceProcess:
    process = ServiceProcess(name, [sys.executable, "-m", module], env, log_dir)
    url = f"http://127.0.0.1:{env['PORT']}"
    wait_until(lambda: _healthy(url) or process.proc.poll() is not None, 60)
    assert process.proc.poll() is None, process.log_text()
    return process


@pytest.fixture(scope="module")
def service_urls(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Start the real orchestrator and a gateway, and return both base URLs."""
    log_dir = tmp_path_factory.mktemp("browser-logs")
    orchestrator_port, gateway_port = free_port(), free_port()
    common = {
        "WORKER_IDLE_TIMEOUT_S": "120",
        "WORKER_HEARTBEAT_INTERVAL_S": "1",
        "WORKER_HEARTBEAT_TTL_S": "5",
    }
    orchestrator = _start(
        "orchestrator",
        "bellhop_orchestrator.main",
        service_env(redis_url, PORT=str(orchestrator_port), **common),
        log_dir,
    )
    orchestrator_url = f"http://127.0.0.1:{orchestrator_port}"
    gateway = _start(
        "gateway",
        "bellhop_gateway.main",
        _gateway_env(redis_url, gateway_port, orchestrator_url, **common),
        log_dir,
    )
    yield {
        "gateway": f"http://127.0.0.1:{gateway_port}/",
        "orchestrator": orchestrator_url,
    }
    end_sessions(orchestrator_url)
    gateway.stop()
    orchestrator.stop()


def _gateway_env(
    redis_url: str, port: int, orchestrator_url: str, **extra: str
) -> dict[str, str]:
    env = service_env(
        redis_url,
        PORT=str(port),
        GATEWAY_HOST="127.0.0.1",
        ORCHESTRATOR_URL=orchestrator_url,
        GATEWAY_RESUME_GRACE_S="20",
        **extra,
    )
    env.pop("GATEWAY_SECRET", None)
    return env


@pytest.fixture(scope="module")
def rate_limited_page_url(
    service_urls: dict[str, str],
    page_url: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """Start a second gateway with a low rate limit, on the same orchestrator."""
    port = free_port()
    env = _gateway_env(
        redis_url,
        port,
        service_urls["orchestrator"],
        GATEWAY_RATE_LIMIT=str(LOW_RATE_LIMIT),
        GATEWAY_RATE_BURST=str(LOW_RATE_BURST),
    )
    log_dir = tmp_path_factory.mktemp("rate-limited-logs")
    gateway = _start("rate-limited-gateway", "bellhop_gateway.main", env, log_dir)
    yield f"http://127.0.0.1:{port}/"
    gateway.stop()


@pytest.fixture(scope="module")
def gateway_url(service_urls: dict[str, str]) -> str:
    return service_urls["gateway"]


def end_sessions(orchestrator_url: str) -> None:
    """Delete every session, so no worker outlives the test in its grace period."""
    sessions = httpx.get(f"{orchestrator_url}/v1/sessions", timeout=10).json()
    for record in sessions:
        session_id = record["session_id"]
        httpx.delete(f"{orchestrator_url}/v1/sessions/{session_id}", timeout=30)


@pytest.fixture(scope="module")
def page_url(gateway_url: str) -> str:
    if not CHROMIUM.exists():
        skip_or_fail(f"{CHROMIUM} is missing; run scripts/install-browser.sh")
    if not SOCKET_IO_BUNDLE.exists():
        skip_or_fail("socket.io-client is missing; run `npm ci` in services/gateway")
    return gateway_url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("the playwright package is missing; run `make install`")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


def csv_count(
    carriers: set[str],
    origins: set[str],
    min_arr_delay: int | None = None,
    max_arr_delay: int | None = None,
) -> int:
    """Count flights by reading the CSV, independently of the worker."""

    def matches(row: dict[str, str]) -> bool:
        if carriers and row["carrier"] not in carriers:
            return False
        if origins and row["origin"] not in origins:
            return False
        if min_arr_delay is None and max_arr_delay is None:
            return True
        if row["arr_delay"] == "NA":
            return False
        delay = int(row["arr_delay"])
        if min_arr_delay is not None and delay < min_arr_delay:
            return False
        return max_arr_delay is None or delay <= max_arr_delay

    return sum(1 for row in flights_rows() if matches(row))


def csv_distance_count(min_distance: int) -> int:
    return sum(1 for row in flights_rows() if int(row["distance"]) >= min_distance)


def shown_count(page: Any) -> int:
    return int(page.get_attribute("#count", "data-count"))


def wait_for_count(page: Any, expected: int) -> None:
    page.wait_for_function(
        "n => document.querySelector('#count').dataset.count === String(n)",
        arg=expected,
        timeout=QUERY_TIMEOUT_MS,
    )


def facet_count(page: Any, field: str, value: str) -> int:
    text = page.text_content(
        f'[data-facet="{field}"] label[data-value="{value}"] .facet-count'
    )
    return int(text.replace(",", ""))


def check_value(page: Any, field: str, value: str) -> None:
    group = f'[data-facet="{field}"]'
    if not page.eval_on_selector(group, "element => element.open"):
        page.click(f"{group} summary")
    page.check(f'{group} input[value="{value}"]')


def range_input(field: str, bound: str) -> str:
    return f'[data-range="{field}"] input[data-bound="{bound}"]'


def enter_bound(page: Any, field: str, bound: str, text: str) -> None:
    """Type text into a range input as a user would, then leave the input."""
    selector = range_input(field, bound)
    page.fill(selector, "")
    page.locator(selector).press_sequentially(text)
    page.press(selector, "Tab")


def open_ranges(page: Any) -> None:
    if not page.eval_on_selector("#ranges-group", "element => element.open"):
        page.click("#ranges-group summary")


def screenshot(page: Any, name: str) -> None:
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


def open_ready_page(
    browser: Any, url: str, viewport: str, frames: list[str | bytes] | None = None
) -> Any:
    """Open the explorer and wait for its first count.

    When frames is given, every websocket frame that the page receives is
    appended to it.
    """
    width, height = VIEWPORTS[viewport]
    page = browser.new_page(viewport={"width": width, "height": height})
    if frames is not None:
        page.on(
            "websocket",
            lambda socket: socket.on("framereceived", lambda text: frames.append(text)),
        )
    page.goto(url)
    page.wait_for_selector('#state[data-state="ready"]', timeout=LOAD_TIMEOUT_MS)
    page.wait_for_selector("#count[data-count]", timeout=QUERY_TIMEOUT_MS)
    return page


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_page_counts_match_csv(page_url: str, browser: Any, viewport: str) -> None:
    page = open_ready_page(browser, page_url, viewport)
    try:
        assert shown_count(page) == len(flights_rows())

        check_value(page, "carrier", "UA")
        check_value(page, "carrier", "DL")
        wait_for_count(page, csv_count({"UA", "DL"}, set()))
        check_value(page, "origin", "JFK")
        expected = csv_count({"UA", "DL"}, {"JFK"})
        wait_for_count(page, expected)

        assert facet_count(page, "origin", "JFK") == expected
        assert facet_count(page, "origin", "EWR") == csv_count({"UA", "DL"}, {"EWR"})
        assert facet_count(page, "carrier", "AA") == csv_count({"AA"}, {"JFK"})
        assert float(page.text_content("#rtt")) > 0
        assert page.locator("#rows tbody tr").count() == 20
        carrier_summary = page.text_content('[data-facet="carrier"] summary')
        assert carrier_summary.strip() == "carrier (2)"

        screenshot(page, f"gateway-{viewport}")
    finally:
        page.close()


# Checkbox clicks, in order: 2 values of each of the 7 facet groups on, the
# same 14 off, 4 values on and off again, then the 4 values of FINAL_SELECTION.
TOGGLES = [
    *[("month", "1"), ("month", "7"), ("day", "1"), ("day", "15")],
    *[("carrier", "UA"), ("carrier", "AA"), ("origin", "EWR"), ("origin", "LGA")],
    *[("dest", "LAX"), ("dest", "SFO"), ("hour", "8"), ("hour", "17")],
    *[("minute", "0"), ("minute", "30")],
] * 2 + [
    *[("minute", "0"), ("hour", "8"), ("dest", "LAX"), ("day", "1")] * 2,
    *[("carrier", "UA"), ("carrier", "DL"), ("origin", "JFK"), ("month", "7")],
]
FINAL_SELECTION = {"carrier": ["UA", "DL"], "origin": ["JFK"], "month": ["7"]}
# About 12 clicks a second, a user's pace. The gap outlasts the explorer's
# 60 ms debounce, so a page without coalescing sends a batch per click.
CLICK_INTERVAL_S = 0.08

# Script that records in window.queryErrors every text that #query-error
# shows, including texts that a later query clears before the test looks.
WATCH_QUERY_ERRORS = """() => {
  window.queryErrors = [];
  const line = document.querySelector("#query-error");
  new MutationObserver(() => {
    if (line.textContent) window.queryErrors.push(line.textContent);
  }).observe(line, {childList: true, characterData: true, subtree: true});
}"""
COUNT_OR_QUERY_ERROR = """n =>
  document.querySelector("#count").dataset.count === String(n) ||
  window.queryErrors.length > 0"""


def test_rapid_clicks_stay_under_rate_limit(
    rate_limited_page_url: str, browser: Any
) -> None:
    frames: list[str | bytes] = []
    page = open_ready_page(browser, rate_limited_page_url, "laptop", frames)
    try:
        page.evaluate(WATCH_QUERY_ERRORS)
        started = time.monotonic()
        for n, (field, value) in enumerate(TOGGLES):
            page.click(f'[data-facet="{field}"] input[value="{value}"]')
            time.sleep(
                max(0.0, started + (n + 1) * CLICK_INTERVAL_S - time.monotonic())
            )
        checked = page.eval_on_selector_all(
            "#facets input:checked",
            "boxes => boxes.map(box => [box.closest('[data-facet]').dataset.facet,"
            " box.value])",
        )
        expected = len(matching_rows(FINAL_SELECTION))
        page.wait_for_function(
            COUNT_OR_QUERY_ERROR, arg=expected, timeout=QUERY_TIMEOUT_MS
        )
        page.wait_for_timeout(1000)
        errors = page.evaluate("window.queryErrors")
        rate_limited = [frame for frame in frames if '"code":-32001' in str(frame)]

        assert sorted(checked) == sorted(
            [field, value]
            for field, values in FINAL_SELECTION.items()
            for value in values
        )
        assert rate_limited, "no query was rate-limited, so no retry was tested"
        assert [text for text in errors if "Rate limited" in text] == []
        assert errors == []
        assert shown_count(page) == expected
        assert not page.is_visible("#stale")
        assert facet_count(page, "origin", "JFK") == expected
    finally:
        page.close()


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_table_shows_every_column(page_url: str, browser: Any, viewport: str) -> None:
    page = open_ready_page(browser, page_url, viewport)
    try:
        headers = page.eval_on_selector_all(
            "#rows thead th", "cells => cells.map(cell => cell.textContent)"
        )
        first_cells = page.eval_on_selector_all(
            "#rows tbody tr:first-child td", "cells => cells.map(c => c.textContent)"
        )
        page_overflow = page.evaluate(
            "document.documentElement.scrollWidth - window.innerWidth"
        )

        assert headers == list(flights_rows()[0])
        assert "dest" in headers
        assert first_cells[headers.index("dest")] == flights_rows()[0]["dest"]
        assert page_overflow <= 0
    finally:
        page.close()


def test_distance_range_matches_csv(page_url: str, browser: Any) -> None:
    page = open_ready_page(browser, page_url, "laptop")
    try:
        open_ranges(page)
        page.fill(range_input("distance", "min"), "1000")
        page.press(range_input("distance", "min"), "Tab")
        wait_for_count(page, csv_distance_count(1000))

        assert page.text_content("#ranges-group summary").strip() == "Ranges (1)"
    finally:
        page.close()


def test_time_range_matches_csv(page_url: str, browser: Any) -> None:
    page = open_ready_page(browser, page_url, "phone")
    try:
        open_ranges(page)
        page.fill(range_input("time_hour", "min"), "2013-12-01T00:00")
        page.press(range_input("time_hour", "min"), "Tab")
        since = "2013-12-01T00:00:00Z"
        expected = sum(1 for row in flights_rows() if row["time_hour"] >= since)
        wait_for_count(page, expected)

        page.locator("#ranges-group").screenshot(
            path=str(OUTPUT / "gateway-ranges-phone.png")
        )
    finally:
        page.close()


def test_range_min_above_max_flagged(page_url: str, browser: Any) -> None:
    page = open_ready_page(browser, page_url, "laptop")
    try:
        open_ranges(page)
        shown_before = shown_count(page)
        page.fill(range_input("arr_delay", "min"), "100")
        page.fill(range_input("arr_delay", "max"), "60")
        page.press(range_input("arr_delay", "max"), "Tab")
        error = '[data-range="arr_delay"] .range-error'
        page.wait_for_selector(error, state="visible", timeout=QUERY_TIMEOUT_MS)

        assert "greater than max" in page.text_content(error)
        assert page.get_attribute(range_input("arr_delay", "min"), "aria-invalid") == (
            "true"
        )
        assert page.is_visible("#stale")
        assert "greater than max" in page.text_content("#query-error")
        assert page.get_attribute(".results", "data-stale") == "true"
        # Leaving the min input may already have run the valid query for
        # [100, open] when the machine is slow; the invalid range runs none.
        assert shown_count(page) in {shown_before, csv_count(set(), set(), 100)}
        screenshot(page, "gateway-range-error-laptop")

        page.fill(range_input("arr_delay", "max"), "200")
        page.press(range_input("arr_delay", "max"), "Tab")
        wait_for_count(page, csv_count(set(), set(), 100, 200))

        assert not page.is_visible(error)
        assert not page.is_visible("#stale")
        assert not page.is_visible("#query-error")
    finally:
        page.close()


@pytest.mark.parametrize("text", ["1e", "-", "1e400"])
def test_bad_number_entry_flagged(page_url: str, browser: Any, text: str) -> None:
    page = open_ready_page(browser, page_url, "phone")
    try:
        open_ranges(page)
        enter_bound(page, "dep_delay", "min", text)
        error = '[data-range="dep_delay"] .range-error'
        page.wait_for_selector(error, state="visible", timeout=QUERY_TIMEOUT_MS)
        valid = page.eval_on_selector(
            range_input("dep_delay", "min"), "input => input.validity.valid"
        )
        page.wait_for_selector("#stale", state="visible", timeout=QUERY_TIMEOUT_MS)

        assert "dep_delay min is not a valid number" in page.text_content(error)
        assert not valid
        assert "dep_delay min" in page.text_content("#query-error")
        assert page.is_enabled("#clear")
        if text == "1e":
            screenshot(page, "gateway-bad-number-phone")

        page.fill(range_input("dep_delay", "min"), "")
        page.press(range_input("dep_delay", "min"), "Tab")
        page.wait_for_selector("#stale", state="hidden", timeout=QUERY_TIMEOUT_MS)

        assert not page.is_visible(error)
        assert not page.is_visible("#query-error")
        assert shown_count(page) == len(flights_rows())
    finally:
        page.close()


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_deleted_session_disables_filters(
    service_urls: dict[str, str], page_url: str, browser: Any, viewport: str
) -> None:
    page = open_ready_page(browser, page_url, viewport)
    try:
        session_id = page.text_content("#session-id")
        deleted = httpx.delete(
            f"{service_urls['orchestrator']}/v1/sessions/{session_id}",
            params={"reason": "ended by the browser test"},
            timeout=30,
        )
        assert deleted.status_code == 200, deleted.text
        page.wait_for_selector("#ended", state="visible", timeout=QUERY_TIMEOUT_MS)
        disabled = page.eval_on_selector_all(
            "#filters input, #clear, #histogram-field",
            "controls => controls.map(control => control.matches(':disabled'))",
        )
        message = page.text_content("#message")

        assert page.get_attribute("#state", "data-state") == "ended"
        assert len(disabled) > 20
        assert all(disabled)
        assert message
        assert page.get_attribute("#ended", "data-reason") == message
        assert message in page.text_content("#ended-reason")
        assert not page.is_visible("#progress")
        assert page.is_visible("#restart")
        assert page.is_visible("#ended-stale")
        screenshot(page, f"gateway-ended-{viewport}")

        page.click("#restart")
        page.wait_for_selector('#state[data-state="ready"]', timeout=LOAD_TIMEOUT_MS)
        assert page.text_content("#session-id") not in (session_id, "–")
        assert not page.is_visible("#ended")
    finally:
        page.close()


def test_unknown_dataset_offers_default_dataset(page_url: str, browser: Any) -> None:
    width, height = VIEWPORTS["laptop"]
    page = browser.new_page(viewport={"width": width, "height": height})
    try:
        page.goto(page_url.rstrip("/") + "/?dataset=no-such-dataset")
        page.wait_for_selector("#ended", state="visible", timeout=QUERY_TIMEOUT_MS)

        assert page.get_attribute("#state", "data-state") == "failed"
        assert "no-such-dataset" in page.text_content("#ended-reason")
        assert not page.is_visible("#ended-stale")
        assert not page.is_visible("#ranges-group")
        assert page.is_visible("#default-dataset")

        page.click("#default-dataset")
        page.wait_for_selector('#state[data-state="ready"]', timeout=LOAD_TIMEOUT_MS)
        assert "dataset=" not in page.url
        assert page.text_content("#dataset-name") == "flights"
    finally:
        page.close()


def test_range_and_histogram_match_csv(page_url: str, browser: Any) -> None:
    page = open_ready_page(browser, page_url, "laptop")
    try:
        check_value(page, "carrier", "UA")
        page.fill('[data-range="arr_delay"] input[data-bound="min"]', "60")
        page.press('[data-range="arr_delay"] input[data-bound="min"]', "Tab")
        expected = csv_count({"UA"}, set(), min_arr_delay=60)
        wait_for_count(page, expected)

        assert page.get_attribute("#histogram", "data-field") == "arr_delay"
        bars = page.eval_on_selector_all(
            "#histogram rect", "rects => rects.map(r => Number(r.dataset.count))"
        )
        outside = int(page.get_attribute("#histogram-note", "data-outside"))
        missing = int(page.get_attribute("#histogram-note", "data-missing"))
        assert len(bars) == 30
        assert sum(bars) + outside + missing == expected
    finally:
        page.close()


def test_reload_resumes_same_session(page_url: str, browser: Any) -> None:
    page = open_ready_page(browser, page_url, "laptop")
    try:
        session_id = page.text_content("#session-id")
        page.reload()
        page.wait_for_selector('#state[data-state="ready"]', timeout=LOAD_TIMEOUT_MS)
        page.wait_for_selector("#count[data-count]", timeout=QUERY_TIMEOUT_MS)
        assert page.text_content("#session-id") == session_id
        assert shown_count(page) == len(flights_rows())
    finally:
        page.close()


def test_demo_prints_csv_count(gateway_url: str) -> None:
    ws_url = gateway_url.replace("http://", "ws://").rstrip("/")
    where = {"carrier": ["UA", "DL"], "origin": ["JFK"]}
    argv = [sys.executable, str(REPO / "scripts/demo.py"), "--url", ws_url]
    argv += ["--filter", json.dumps({"where": where}), "--repeat", "3"]

    finished = subprocess.run(argv, capture_output=True, text=True, timeout=180)

    assert finished.returncode == 0, finished.stderr
    expected = csv_count({"UA", "DL"}, {"JFK"})
    assert f"count: {expected:,} rows" in finished.stdout
    assert "round trip over 3 requests" in finished.stdout


def test_demo_filters_other_dataset(gateway_url: str) -> None:
    ws_url = gateway_url.replace("http://", "ws://").rstrip("/")
    argv = [sys.executable, str(REPO / "scripts/demo.py"), "--url", ws_url]
    argv += ["--dataset", "synthetic-10k"]

    finished = subprocess.run(argv, capture_output=True, text=True, timeout=180)

    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert 'filter: {"where": {' in finished.stdout
    assert "count: " in finished.stdout


def test_stale_saved_session_starts_new(page_url: str, browser: Any) -> None:
    page = open_ready_page(browser, page_url, "laptop")
    try:
        stale = {"session_id": "x" * 43, "resume_token": "stale", "dataset": "flights"}
        page.evaluate(
            "saved => sessionStorage.setItem('bellhop.session', JSON.stringify(saved))",
            stale,
        )
        page.reload()
        page.wait_for_selector('#state[data-state="ready"]', timeout=LOAD_TIMEOUT_MS)
        assert page.text_content("#session-id") not in ("x" * 43, "–")
    finally:
        page.close()
