"""The Node.js load generator and the CPU meter of the concurrency benchmark.

The generator runs against tests/bench/slow_gateway.py, which acknowledges
every request after a fixed delay, so the cap on unanswered requests is
reached and the generator must shed sends instead of queueing them.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import (
    REPO,
    ServiceProcess,
    free_port,
    skip_or_fail,
    wait_for_port,
)

BENCH_DIR = REPO / "bench"
sys.path.insert(0, str(BENCH_DIR))

from cpu_meter import CpuMeter  # noqa: E402
from harness import BenchError  # noqa: E402
from load_generator import LoadGenerator  # noqa: E402
from node_child import find_node  # noqa: E402

ACK_DELAY_S = 0.6
INTERVAL_MS = 100
DURATION_S = 1.0
MAX_UNANSWERED = 3


@pytest.fixture(scope="module")
def slow_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start slow_gateway.py on a free port and return its URL."""
    try:
        find_node()
    except BenchError as exc:
        skip_or_fail(str(exc))
    port = free_port()
    script = Path(__file__).with_name("slow_gateway.py")
    argv = [sys.executable, str(script), "--port", str(port)]
    argv += ["--delay-s", str(ACK_DELAY_S)]
    server = ServiceProcess(
        "slow-gateway", argv, dict(os.environ), tmp_path_factory.mktemp("slow")
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _config(url: str, sessions: int, dataset: str = "synthetic-100k") -> dict[str, Any]:
    return {
        "urls": [url],
        "sessions": sessions,
        "dataset": dataset,
        "filters": [{"limit": 1}],
        "interval_ms": INTERVAL_MS,
        "duration_s": DURATION_S,
        "max_unanswered": MAX_UNANSWERED,
        "request_timeout_ms": 5000,
        "warmup_timeout_ms": 5000,
        "connect_batch": 2,
        "ready_timeout_s": 10,
        "ready_attempts": 2,
        "ready_retry_delay_ms": 100,
        "phases_ms": [INTERVAL_MS * n / sessions for n in range(sessions)],
        "per_message_deflate": True,
    }


async def _run_schedule(
    config: dict[str, Any], log_path: Path
) -> tuple[list[str], dict[str, Any]]:
    """Run the generator to its results; return the events seen and the results."""
    generator = await LoadGenerator.start(config, log_path)
    try:
        events = []
        for event in ("connected", "ready", "load_start", "load_end"):
            events.append((await generator.wait_for(event))["event"])
        results = await generator.wait_for("results")
    finally:
        await generator.close()
    assert generator.proc.returncode == 0
    return events, results


def test_generator_sheds_past_cap(slow_gateway: str, tmp_path: Path) -> None:
    events, results = asyncio.run(
        _run_schedule(_config(slow_gateway, sessions=2), tmp_path / "gen.log")
    )
    records = results["records"]
    per_session = Counter(record["session"] for record in records)
    outcomes = Counter(record["outcome"] for record in records)
    sent_per_session = int(DURATION_S * 1000 / INTERVAL_MS)

    assert events == ["connected", "ready", "load_start", "load_end"]
    assert per_session == {0: sent_per_session, 1: sent_per_session}
    assert set(outcomes) == {"ok", "shed"}
    assert outcomes["ok"] >= 2 * MAX_UNANSWERED
    assert outcomes["shed"] >= 2 * MAX_UNANSWERED
    assert results["disconnected"] == 0


def test_generator_records_latency(slow_gateway: str, tmp_path: Path) -> None:
    _, results = asyncio.run(
        _run_schedule(_config(slow_gateway, sessions=1), tmp_path / "gen.log")
    )
    records = results["records"]
    answered = [r for r in records if r["outcome"] == "ok"]
    shed = [r for r in records if r["outcome"] == "shed"]

    assert answered
    assert min(r["latency_ms"] for r in answered) >= ACK_DELAY_S * 1000
    assert all(r["latency_ms"] is None for r in shed)
    assert all(r["lag_ms"] >= 0 for r in records)


def test_generator_fails_on_failed_session(slow_gateway: str, tmp_path: Path) -> None:
    config = _config(slow_gateway, sessions=1, dataset="broken")

    async def run() -> None:
        generator = await LoadGenerator.start(config, tmp_path / "gen.log")
        try:
            await generator.wait_for("ready")
        finally:
            await generator.close()

    with pytest.raises(BenchError, match="state failed.*attempt 2"):
        asyncio.run(run())


def test_cpu_meter_keeps_exited_process() -> None:
    burn = "import time\nend = time.process_time() + 0.3\n"
    burn += "while time.process_time() < end: pass\ntime.sleep(0.2)\n"
    proc = subprocess.Popen([sys.executable, "-c", burn])
    meter = CpuMeter({"burner": proc.pid})
    meter.start()
    while proc.poll() is None:
        meter.sample()
        time.sleep(0.05)
    meter.stop()

    assert "burner" in meter.exited
    assert meter.used_s()["burner"] >= 0.2
    assert meter.machine_used_s()["busy"] > 0
