"""Concurrent sessions: N clients, each sending a `filter` every 100 ms.

Every client is its own Socket.IO connection to the gateway, so the system
runs N worker processes. The schedule is open loop: each session sends on
its own 100 ms grid (random phase) whether or not earlier responses came back,
so a slow system is not hidden by a slower request rate. Latency runs from
the moment a request is emitted to its acknowledgement; how late the client
emitted against the grid is reported apart, since the load generator shares
the machine with everything it measures.

After the load the clients stay connected, idle, and the Redis commands per
second of the whole idle system (workers and gateway) are counted.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from harness import (
    Processes,
    Stats,
    counter_deltas,
    cpu_seconds,
    log,
    memory_rollup,
    redis_server,
    summarize,
)
from report import Context, Section, Target, ms, stats_header, stats_row
from sio_client import SessionClient, filter_request
from system import BellhopSystem, bellhop_system

TITLE = "Concurrent sessions"
# A flights worker takes about 290 MB of RSS, so 100 of them do not fit
# beside everything else on a 24 GiB machine. With 100,000 synthetic rows a
# worker stays near its import footprint and still runs a real filter.
DATASET = "synthetic-100k"
INTERVAL_S = 0.1
P99_TARGET_MS = 50.0
READY_TIMEOUT_S = 900.0
CONNECT_BATCH = 10
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


# NOTE: a gateway replica runs out of Redis connections well before 100
# sessions: each session's results subscription keeps a connection of the
# replica's pool, whose redis-py 8 default max_connections is 100, and every
# queue push borrows another. Two replicas of 50 busy sessions each failed
# with MaxConnectionsError on this machine, so the load is spread over four
# until the gateway is fixed.
FULL_PLAN = Plan(sessions=100, duration_s=60.0, idle_s=15.0, gateways=4)
QUICK_PLAN = Plan(sessions=5, duration_s=5.0, idle_s=3.0, gateways=2)


@dataclass
class Outcome:
    latency_ms: float
    lag_ms: float
    error: str | None


@dataclass
class LoadResult:
    outcomes: list[Outcome] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0


async def _connect_all(system: BellhopSystem, sessions: int) -> list[SessionClient]:
    """Connect in small batches (each connect provisions a worker), then wait."""
    clients: list[SessionClient] = []
    auth = {"dataset": DATASET}
    urls = system.gateway_urls
    for first in range(0, sessions, CONNECT_BATCH):
        batch = [SessionClient() for _ in range(min(CONNECT_BATCH, sessions - first))]
        await asyncio.gather(
            *(
                client.connect(urls[(first + offset) % len(urls)], auth)
                for offset, client in enumerate(batch)
            )
        )
        clients += batch
    log(f"concurrency: {len(clients)} connected; waiting for their workers")
    await asyncio.gather(*(c.wait_ready(READY_TIMEOUT_S) for c in clients))
    await asyncio.gather(*(_warm_up(c) for c in clients))
    return clients


async def _warm_up(client: SessionClient) -> None:
    """Send each filter shape once, so first-call costs stay out of the load."""
    for number, params in enumerate(FILTERS):
        await client.call(filter_request(-1 - number, params), timeout_s=60.0)


async def _one_request(
    client: SessionClient, number: int, scheduled: float, outcomes: list[Outcome]
) -> None:
    sent = time.perf_counter()
    request = filter_request(number, FILTERS[number % len(FILTERS)])
    try:
        response = await client.call(request, timeout_s=30.0)
        error = None if "result" in response else str(response.get("error"))
    except Exception as exc:  # a timeout or a dropped connection is an error too
        error = f"{type(exc).__name__}: {exc}"
    elapsed_ms = (time.perf_counter() - sent) * 1000
    outcomes.append(Outcome(elapsed_ms, (sent - scheduled) * 1000, error))


async def _drive_session(
    client: SessionClient,
    start: float,
    end: float,
    phase: float,
    outcomes: list[Outcome],
) -> None:
    tasks = []
    number = 0
    while (scheduled := start + phase + number * INTERVAL_S) < end:
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(
            asyncio.create_task(_one_request(client, number, scheduled, outcomes))
        )
        number += 1
    await asyncio.gather(*tasks)


def _pids(system: BellhopSystem) -> dict[str, int]:
    pids = {f"worker {sid[:6]}": pid for sid, pid in system.worker_pids().items()}
    for number, pid in enumerate(system.gateway_pids):
        pids[f"gateway {number}"] = pid
    pids["redis-server"] = system.redis.pid
    pids["client (this process)"] = os.getpid()
    return pids


async def _run_load(
    system: BellhopSystem, clients: list[SessionClient], duration_s: float
) -> LoadResult:
    result = LoadResult()
    pids = _pids(system)
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    rng = random.Random(20130101)
    start = time.perf_counter() + 0.5
    end = start + duration_s
    await asyncio.gather(
        *(
            _drive_session(c, start, end, rng.uniform(0, INTERVAL_S), result.outcomes)
            for c in clients
        )
    )
    result.wall_s = time.perf_counter() - start
    # A process that exited during the load has no CPU time left to read.
    after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    result.cpu_s = {
        name: after[name] - before[name] for name in pids if after[name] > 0
    }
    return result


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


async def _run_async(ctx: Context) -> Section:
    plan = QUICK_PLAN if ctx.quick else FULL_PLAN
    processes = Processes(ctx.log_dir("concurrency"))
    try:
        with redis_server(processes) as redis:
            settings = {"MAX_WORKERS": str(plan.sessions + 10)}
            with bellhop_system(
                processes, redis, gateways=plan.gateways, **settings
            ) as system:
                started = time.perf_counter()
                clients = await _connect_all(system, plan.sessions)
                ready_s = time.perf_counter() - started
                try:
                    log(f"concurrency: load for {plan.duration_s:g} s")
                    load = await _run_load(system, clients, plan.duration_s)
                    memory = _memory(system)
                    idle = await _idle_commands(system, plan.idle_s)
                finally:
                    await asyncio.gather(
                        *(c.close() for c in clients), return_exceptions=True
                    )
    finally:
        processes.stop_all()
    return _section(plan, load, memory, idle, ready_s)


def _cores(load: LoadResult) -> dict[str, float]:
    """Return the CPU cores each group of processes used during the load."""
    groups: dict[str, float] = {}
    for name, seconds in load.cpu_s.items():
        group = name
        if name.startswith("worker "):
            group = "workers (sum)"
        elif name.startswith("gateway "):
            group = "gateways (sum)"
        groups[group] = groups.get(group, 0.0) + seconds / load.wall_s
    return groups


def _section(
    plan: Plan,
    load: LoadResult,
    memory: dict[str, Any],
    idle: dict[str, int],
    ready_s: float,
) -> Section:
    ok = [o for o in load.outcomes if o.error is None]
    errors = [o for o in load.outcomes if o.error is not None]
    latency = summarize([o.latency_ms for o in ok])
    lag = summarize([o.lag_ms for o in load.outcomes])
    throughput = len(ok) / load.wall_s
    offered = plan.sessions / INTERVAL_S
    cores = _cores(load)
    idle_per_s = idle.get("total", 0) / plan.idle_s

    section = Section(TITLE)
    section.targets = [
        Target(
            f"{plan.sessions} sessions x 10 filters/s: errors",
            "0",
            str(len(errors)),
            not errors,
        ),
        Target(
            f"{plan.sessions} sessions x 10 filters/s: p99",
            f"< {P99_TARGET_MS:g} ms",
            f"{ms(latency.p99)} ms",
            latency.p99 < P99_TARGET_MS,
        ),
    ]

    section.data = {
        "dataset": DATASET,
        "sessions": plan.sessions,
        "duration_s": plan.duration_s,
        "requests": len(load.outcomes),
        "ok": len(ok),
        "errors": len(errors),
        "error_samples": sorted({o.error for o in errors if o.error})[:5],
        "throughput_per_s": throughput,
        "latency": latency.as_dict(),
        "send_lag": lag.as_dict(),
        "cores": cores,
        "memory": memory,
        "idle_commands": idle,
        "idle_commands_per_s": idle_per_s,
        "all_ready_s": ready_s,
    }

    section.lines = _lines(
        plan,
        latency,
        lag,
        throughput,
        offered,
        errors,
        cores,
        memory,
        idle_per_s,
        ready_s,
    )
    return section


def _lines(
    plan: Plan,
    latency: Stats,
    lag: Stats,
    throughput: float,
    offered: float,
    errors: list[Outcome],
    cores: dict[str, float],
    memory: dict[str, Any],
    idle_per_s: float,
    ready_s: float,
) -> list[str]:
    error_kinds = sorted({o.error for o in errors if o.error})
    lines = [
        f"{plan.sessions} sessions on `{DATASET}` (one worker process each), each "
        f"sending a `filter` every {INTERVAL_S * 1000:g} ms for {plan.duration_s:g} s "
        f"through {plan.gateways} gateway replicas (sessions alternate between "
        "them); the load generator is one asyncio process with one "
        f"Socket.IO connection per session. The filters rotate over {len(FILTERS)} "
        "shapes (facet values, a range, an exclusion, no condition), all with every "
        f"facet counted. All {plan.sessions} workers were ready {ready_s:.0f} s after "
        "the first connect.",
        "",
        f"Throughput: {throughput:.0f} answered requests/s (offered {offered:.0f}/s). "
        f"Errors: {len(errors)}"
        + (f" ({'; '.join(error_kinds[:3])})" if errors else "")
        + ".",
        "",
        *stats_header(),
        stats_row("request latency (emit to acknowledgement)", latency),
        stats_row("client emit lag behind its 100 ms grid", lag),
        "",
        "CPU cores used during the load (CPU seconds / wall seconds, from /proc):",
        "",
        "| process | cores |",
        "|---|---:|",
        *(f"| {name} | {value:.2f} |" for name, value in cores.items()),
        f"| all | {sum(cores.values()):.2f} |",
        "",
    ]
    if memory.get("workers"):
        mib = 2**20
        lines += [
            f"Memory per worker ({memory['workers']} workers, from "
            f"/proc/<pid>/smaps_rollup): RSS median "
            f"{memory['rss_median'] / mib:.0f} MiB "
            f"(max {memory['rss_max'] / mib:.0f}), PSS median "
            f"{memory['pss_median'] / mib:.0f} MiB, private (USS) median "
            f"{memory['uss_median'] / mib:.0f} MiB; PSS of all workers together "
            f"{memory['pss_total'] / 2**30:.1f} GiB. RSS counts the shared pages of "
            "numpy and pyarrow in every worker; PSS shares them out. RSS of one "
            f"gateway {(memory['gateway_rss'] or 0) / mib:.0f} MiB.",
            "",
        ]
    lines.append(
        f"Idle afterwards, all {plan.sessions} clients still connected: "
        f"{idle_per_s:.0f} Redis commands/s for the whole system "
        f"({idle_per_s / plan.sessions:.2f} per session) over {plan.idle_s:g} s."
    )
    return lines


def run(ctx: Context) -> Section:
    return asyncio.run(_run_async(ctx))
