"""Concurrent sessions: N clients, each sending a `filter` every 100 ms.

Every client is its own Socket.IO connection to the gateway, so the system
runs N worker processes. The connections live in one Node.js process
(bench/load_generator.js), which costs less CPU per request than a Python
client on the machine it shares with the system under test. The schedule is
open loop: each session sends on its own 100 ms grid (random phase) whether
or not earlier responses came back, so a slow system is not hidden by a
slower request rate. A session with MAX_UNANSWERED requests in flight skips
its next send and counts it as shed, so overload shows up as shed requests
and latency instead of a backlog that grows until every connection drops.
Latency runs from the moment a request is emitted to its acknowledgement;
how late the client emitted against the grid is reported apart.

The CPU time of every process is read from /proc when the schedule starts and
when it ends, and sampled in between, so a worker that exits during the load
keeps the CPU time of its last sample. After the load the clients stay
connected, idle, and the Redis commands per second of the whole idle system
(workers and gateway) are counted.

    python bench/bench_concurrency.py --sessions 50 --duration 30

runs this benchmark alone with other sizes and prints its section.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from concurrency_report import build_section
from cpu_meter import CpuMeter
from harness import (
    Processes,
    counter_deltas,
    dump_json,
    log,
    memory_rollup,
    redis_server,
)
from load_generator import LoadGenerator
from report import Context, Section
from system import BellhopSystem, bellhop_system

TITLE = "Concurrent sessions"
# A flights worker takes about 290 MB of RSS, so 100 of them do not fit
# beside everything else on a 24 GiB machine. With 100,000 synthetic rows a
# worker stays near its import footprint and still runs a real filter.
DATASET = "synthetic-100k"
INTERVAL_S = 0.1
READY_TIMEOUT_S = 900.0
# A session that fails while its worker is provisioned (for example when a
# Redis call of the orchestrator times out on a busy machine) is opened again,
# as a browser would, up to READY_ATTEMPTS connections in all.
READY_ATTEMPTS = 3
READY_RETRY_DELAY_S = 5.0
CONNECT_BATCH = 10
# At 10 requests/s, 20 unanswered requests are 2 s of backlog per session.
MAX_UNANSWERED = 20
REQUEST_TIMEOUT_S = 10.0
WARMUP_TIMEOUT_S = 60.0
CPU_SAMPLE_INTERVAL_S = 0.5
SCHEDULE_SEED = 20130101
FILTERS: list[dict[str, Any]] = [
    {"where": {"region": ["north"], "weekday": [3]}, "limit": 50},
    {
        "where": {"category": ["category-01", "category-02"]},
        "range": {"amount": [10, 100]},
    },
    {"where": {"channel": ["channel-03"]}, "exclude": {"segment": ["business"]}},
    {"limit": 50},
]


@dataclass
class Plan:
    sessions: int
    duration_s: float
    idle_s: float
    gateways: int
    # LOCAL_WORKER_NICE for the orchestrator, or None for its default.
    worker_nice: int | None = None
    # Browsers offer permessage-deflate, so the clients do too by default.
    compression: bool = True


# Measured with this script and 100 sessions on a 2-core machine, before
# the gateway and worker cut their CPU per request and every run was in
# overload: two gateway replicas gave p99 4.1, 4.4 and 5.0 s, one replica
# 4.8 and 5.2 s. After the cuts, one replica used less CPU (0.48 against
# 0.61 ms per request) but gave p99 355 ms against 98 to 224 ms for two: a
# replica is one Python process, and two can use both cores.
FULL_PLAN = Plan(sessions=100, duration_s=60.0, idle_s=15.0, gateways=2)
QUICK_PLAN = Plan(sessions=5, duration_s=5.0, idle_s=3.0, gateways=2)


@dataclass
class Outcome:
    """One scheduled send: ok, rpc_error, timeout, disconnected or shed."""

    outcome: str
    lag_ms: float
    latency_ms: float | None
    done_ms: float | None
    detail: str | None

    @property
    def error(self) -> str | None:
        if self.outcome == "ok":
            return None
        return self.detail or self.outcome


@dataclass
class LoadResult:
    outcomes: list[Outcome] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)
    # Busy, idle and steal CPU seconds of the whole machine, from /proc/stat.
    machine_s: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    exited: list[str] = field(default_factory=list)
    disconnected: int = 0
    ready_s: float = 0.0
    provision_failures: list[str] = field(default_factory=list)
    # Autogroup nice of each worker, read when all were ready.
    worker_nice: list[int] = field(default_factory=list)


def _generator_config(system: BellhopSystem, plan: Plan) -> dict[str, Any]:
    return {
        "urls": system.gateway_urls,
        "sessions": plan.sessions,
        "dataset": DATASET,
        "filters": FILTERS,
        "interval_ms": INTERVAL_S * 1000,
        "duration_s": plan.duration_s,
        "max_unanswered": MAX_UNANSWERED,
        "request_timeout_ms": REQUEST_TIMEOUT_S * 1000,
        "warmup_timeout_ms": WARMUP_TIMEOUT_S * 1000,
        "connect_batch": CONNECT_BATCH,
        "ready_timeout_s": READY_TIMEOUT_S,
        "ready_attempts": READY_ATTEMPTS,
        "ready_retry_delay_ms": READY_RETRY_DELAY_S * 1000,
        "phases_ms": _phases_ms(plan.sessions),
        "per_message_deflate": plan.compression,
    }


def _phases_ms(sessions: int) -> list[float]:
    """Return each session's offset on its grid, the same in every run."""
    rng = random.Random(SCHEDULE_SEED)
    return [round(rng.uniform(0, INTERVAL_S * 1000), 3) for _ in range(sessions)]


def _pids(system: BellhopSystem, generator: LoadGenerator) -> dict[str, int]:
    pids = {f"worker {sid[:6]}": pid for sid, pid in system.worker_pids().items()}
    for number, pid in enumerate(system.gateway_pids):
        pids[f"gateway {number}"] = pid
    pids["redis-server"] = system.redis.pid
    pids["orchestrator"] = system.orchestrator_pid
    pids["load generator"] = generator.pid
    pids["benchmark process"] = os.getpid()
    return pids


def worker_nice_values(pids: list[int]) -> list[int]:
    """Return the autogroup nice of each pid that has one (sched(7))."""
    values = []
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/autogroup").read_text()
        except OSError:
            continue
        values.append(int(text.split()[-1]))
    return values


async def _sample_cpu(meter: CpuMeter) -> None:
    while True:
        await asyncio.sleep(CPU_SAMPLE_INTERVAL_S)
        meter.sample()


async def _run_load(
    system: BellhopSystem, generator: LoadGenerator, plan: Plan
) -> LoadResult:
    """Follow the generator through its schedule, reading CPU at its edges."""
    result = LoadResult()
    await generator.wait_for("connected")
    log(f"concurrency: {plan.sessions} connected; waiting for their workers")
    ready = await generator.wait_for("ready")
    result.ready_s = float(ready["ready_s"])
    result.provision_failures = list(ready["provision_failures"])
    result.worker_nice = worker_nice_values(list(system.worker_pids().values()))

    meter = CpuMeter(_pids(system, generator))
    await generator.wait_for("load_start")
    meter.start()
    sampler = asyncio.create_task(_sample_cpu(meter))
    log(f"concurrency: load for {plan.duration_s:g} s")
    try:
        await generator.wait_for("load_end")
        meter.stop()
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler

    results = await generator.wait_for("results")
    result.outcomes = [_outcome(record) for record in results["records"]]
    result.disconnected = int(results["disconnected"])
    result.cpu_s = meter.used_s()
    result.machine_s = meter.machine_used_s()
    result.wall_s = meter.wall_s
    result.exited = sorted(meter.exited)
    return result


def _outcome(record: dict[str, Any]) -> Outcome:
    return Outcome(
        outcome=record["outcome"],
        lag_ms=record["lag_ms"],
        latency_ms=record["latency_ms"],
        done_ms=record["done_ms"],
        detail=record["detail"],
    )


async def _idle_commands(system: BellhopSystem, idle_s: float) -> dict[str, int]:
    before = system.redis.counters()
    await asyncio.sleep(idle_s)
    deltas = counter_deltas(before, system.redis.counters())
    deltas["total"] = deltas.get("total", 0) - deltas.pop("info", 0)
    return deltas


def _memory(system: BellhopSystem) -> dict[str, Any]:
    rollups = [memory_rollup(pid) for pid in system.worker_pids().values()]
    found = [r for r in rollups if r is not None]
    gateway = memory_rollup(system.gateway_pid) or {}  # the first replica
    if not found:
        return {"workers": 0, "gateway_rss": gateway.get("rss")}
    return {
        "workers": len(found),
        **{
            f"{kind}_median": statistics.median(r[kind] for r in found)
            for kind in ("rss", "pss", "uss")
        },
        "rss_max": max(r["rss"] for r in found),
        "pss_total": sum(r["pss"] for r in found),
        "gateway_rss": gateway.get("rss"),
    }


async def run_plan(plan: Plan, log_dir: Path) -> Section:
    """Start a system for plan, drive its load and return the section."""
    processes = Processes(log_dir)
    try:
        with redis_server(processes) as redis:
            settings = {"MAX_WORKERS": str(plan.sessions + 10)}
            if plan.worker_nice is not None:
                settings["LOCAL_WORKER_NICE"] = str(plan.worker_nice)
            with bellhop_system(
                processes, redis, gateways=plan.gateways, **settings
            ) as system:
                config = _generator_config(system, plan)
                generator = await LoadGenerator.start(
                    config, log_dir / "load-generator.log"
                )
                try:
                    load = await _run_load(system, generator, plan)
                    memory = _memory(system)
                    idle = await _idle_commands(system, plan.idle_s)
                finally:
                    await generator.close()
    finally:
        processes.stop_all()
    return build_section(TITLE, plan, config, load, memory, idle)


def run(ctx: Context) -> Section:
    plan = QUICK_PLAN if ctx.quick else FULL_PLAN
    return asyncio.run(run_plan(plan, ctx.log_dir("concurrency")))


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sessions",
        type=int,
        default=FULL_PLAN.sessions,
        help="concurrent sessions, one worker each (default: %(default)s)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=FULL_PLAN.duration_s,
        help="seconds of load (default: %(default)s)",
    )
    parser.add_argument(
        "--idle",
        type=float,
        default=FULL_PLAN.idle_s,
        help="seconds the clients stay connected and idle after the load, "
        "while Redis commands are counted (default: %(default)s)",
    )
    parser.add_argument(
        "--gateways",
        type=int,
        default=FULL_PLAN.gateways,
        help="gateway replicas (default: %(default)s)",
    )
    parser.add_argument(
        "--worker-nice",
        type=int,
        default=FULL_PLAN.worker_nice,
        help="LOCAL_WORKER_NICE for the orchestrator, 0 to 19 "
        "(default: the orchestrator's)",
    )
    parser.add_argument(
        "--no-compression",
        action="store_true",
        help="connect without offering websocket permessage-deflate",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="directory for service logs (default: a new temp dir)",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="write the section's numbers here"
    )

    args = parser.parse_args(argv)
    if args.sessions < 1 or args.gateways < 1:
        parser.error("--sessions and --gateways must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    plan = replace(
        FULL_PLAN,
        sessions=args.sessions,
        duration_s=args.duration,
        idle_s=args.idle,
        gateways=args.gateways,
        worker_nice=args.worker_nice,
        compression=not args.no_compression,
    )
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="bellhop-concurrency-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    log(f"logs go to {work_dir}")
    section = asyncio.run(run_plan(plan, work_dir))
    print(section.markdown())
    if args.json is not None:
        dump_json(args.json, section.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
