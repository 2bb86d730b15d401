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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flights_csv import flights_rows
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
VIEWPORTS = {"phone": (375, 812), "laptop": (1366, 900)}
LOAD_TIMEOUT_MS = 90_000
QUERY_TIMEOUT_MS = 30_000


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
def gateway_url(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Start the real orchestrator and a gateway; return the gateway's URL."""
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
    gateway_env = service_env(
        redis_url,
        PORT=str(gateway_port),
        GATEWAY_HOST="127.0.0.1",
        ORCHESTRATOR_URL=f"http://127.0.0.1:{orchestrator_port}",
        GATEWAY_RESUME_GRACE_S="20",
        **common,
    )
    gateway_env.pop("GATEWAY_SECRET", None)
    gateway = _start("gateway", "bellhop_gateway.main", gateway_env, log_dir)
    yield f"http://127.0.0.1:{gateway_port}/"
    end_sessions(f"http://127.0.0.1:{orchestrator_port}")
    gateway.stop()
    orchestrator.stop()


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
    carriers: set[str], origins: set[str], min_arr_delay: int | None = None
) -> int:
    """Count flights by reading the CSV, independently of the worker."""

    def matches(row: dict[str, str]) -> bool:
        if carriers and row["carrier"] not in carriers:
            return False
        if origins and row["origin"] not in origins:
            return False
        if min_arr_delay is None:
            return True
        return row["arr_delay"] != "NA" and int(row["arr_delay"]) >= min_arr_delay

    return sum(1 for row in flights_rows() if matches(row))


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


def open_ready_page(browser: Any, url: str, viewport: str) -> Any:
    width, height = VIEWPORTS[viewport]
    page = browser.new_page(viewport={"width": width, "height": height})
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

        OUTPUT.mkdir(exist_ok=True)
        page.screenshot(path=str(OUTPUT / f"gateway-{viewport}.png"), full_page=True)
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
