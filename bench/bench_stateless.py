"""A stateless baseline against the session worker: time per `filter` on flights.

- stateless, warm process: what a job-queue worker does for each command in a
  process that is already running: `Engine.load` of flights, then the filter.
- stateless, new process: the same in a fresh Python process per command
  (start-up and imports included), as a one-shot job or function would.
- session worker: the engine loaded once, as Bellhop's worker keeps it, then
  the filter alone.

All three run the worker's own engine in this machine's Python, so the only
difference is what is redone per command.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from bellhop_shared.catalog import load_catalog, resolve
from bellhop_worker.engine import Engine
from harness import median_ms
from report import Context, Section, ms

TITLE = "Stateless baseline"
FILTER_PARAMS: dict[str, Any] = {
    "where": {"carrier": ["UA", "AA"], "month": [7]},
    "limit": 50,
}
NEW_PROCESS_SCRIPT = """
from bellhop_shared.catalog import load_catalog, resolve
from bellhop_worker.engine import Engine
engine = Engine.load(resolve("flights", load_catalog()), None, lambda f: None)
print(engine.filter({"where": {"carrier": ["UA", "AA"], "month": [7]}})["count"])
"""


@dataclass
class Plan:
    stateless_repeats: int
    process_repeats: int
    session_repeats: int


FULL_PLAN = Plan(stateless_repeats=7, process_repeats=3, session_repeats=500)
QUICK_PLAN = Plan(stateless_repeats=1, process_repeats=1, session_repeats=50)


def _load_flights() -> Engine:
    spec = resolve("flights", load_catalog())
    assert spec is not None
    return Engine.load(spec, None, lambda fraction: None)


def _new_process_ms(repeats: int) -> tuple[float, int]:
    samples, count = [], -1
    for _ in range(repeats):
        started = time.perf_counter()
        output = subprocess.run(
            [sys.executable, "-c", NEW_PROCESS_SCRIPT],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        samples.append((time.perf_counter() - started) * 1000)
        count = int(output.strip().splitlines()[-1])
    return statistics.median(samples), count


def run(ctx: Context) -> Section:
    plan = QUICK_PLAN if ctx.quick else FULL_PLAN
    engine = _load_flights()
    expected = engine.filter(FILTER_PARAMS)["count"]
    session = median_ms(lambda: engine.filter(FILTER_PARAMS), plan.session_repeats, 10)
    stateless = median_ms(
        lambda: _load_flights().filter(FILTER_PARAMS), plan.stateless_repeats
    )
    process, process_count = _new_process_ms(plan.process_repeats)
    if process_count != expected:
        raise RuntimeError(
            f"the new-process run counted {process_count} rows, the session engine "
            f"{expected}; they must agree"
        )
    rows = [
        ("stateless, new process per command", process, plan.process_repeats),
        ("stateless, warm process: load + filter", stateless, plan.stateless_repeats),
        ("session worker: filter on the loaded engine", session, plan.session_repeats),
    ]
    section = Section(TITLE)
    section.data = {
        "session_filter_ms": session,
        "stateless_warm_ms": stateless,
        "stateless_new_process_ms": process,
        "count": expected,
    }
    section.lines = [
        "Time per `filter` on flights (where carrier in (UA, AA) and month 7, "
        f"limit 50, every facet; {expected:,} matching rows), in-process, medians.",
        "",
        "| approach | runs | median ms per command | x session |",
        "|---|---:|---:|---:|",
        *(
            f"| {name} | {runs} | {ms(value)} | {value / session:,.0f} |"
            for name, value, runs in rows
        ),
    ]
    return section
