"""The original polling queue against Bellhop's blocking drain.

Latency: one worker of each design serves flights on a private Redis. This
process LPUSHes a filter request, waits for its response on the results
channel and then waits a random 0..50 ms, so requests land at random points
of the polling cycle. Both designs answer with the same dispatcher and
engine; only the queue wait differs.

Idle cost: N workers of each design wait on empty queues, and the Redis
commands they cause are read from INFO (total_commands_processed, which
includes the commands a Lua script runs, and commandstats) over a window.
Bellhop's are real worker processes (`python -m bellhop_worker.main`) on the
tiny synthetic-1k dataset with the default block timeout (2 s) and heartbeat
interval (3 s); the polling ones are bench/polling_worker.py without a
dataset, polling every 50 ms.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis as redis_py
from bellhop_shared.keys import Keys, new_session_id
from harness import (
    BenchError,
    Processes,
    RedisServer,
    Stats,
    bench_env,
    counter_deltas,
    log,
    redis_server,
    rss_bytes,
    summarize,
    terminate_pids,
    wait_until,
)
from report import Context, Section, Target, stats_header, stats_row

TITLE = "Polling against the blocking drain"
POLL_INTERVAL_MS = 50.0
IDLE_DATASET = "synthetic-1k"
# "Close to zero" for an idle Bellhop worker: no more than its heartbeat, one
# SET every 3 s (WORKER_HEARTBEAT_INTERVAL_S), with some margin.
IDLE_TARGET_PER_WORKER = 0.5
LATENCY_FILTERS = {
    "flights": {"where": {"carrier": ["UA", "AA"], "month": [7]}, "limit": 50},
    IDLE_DATASET: {"where": {"region": ["north"], "weekday": [3]}, "limit": 50},
}
KEYS = Keys()


@dataclass
class Plan:
    requests: int
    latency_dataset: str
    idle_workers: int
    idle_window_s: float
    settle_s: float


FULL_PLAN = Plan(400, "flights", idle_workers=100, idle_window_s=30.0, settle_s=5.0)
QUICK_PLAN = Plan(20, IDLE_DATASET, idle_workers=3, idle_window_s=3.0, settle_s=1.0)


# Starting workers ----------------------------------------------------------


def start_bellhop_worker(
    processes: Processes, redis: RedisServer, session_id: str, dataset: str
) -> subprocess.Popen[bytes]:
    env = bench_env(REDIS_URL=redis.url, WORKER_IDLE_TIMEOUT_S="3600")
    argv = [sys.executable, "-m", "bellhop_worker.main"]
    # Session ids may start with "-", so each value is joined to its option.
    argv += [f"--session={session_id}", f"--dataset={dataset}"]
    return processes.start(f"worker-{session_id[:8]}", argv, env)


def start_polling_worker(
    processes: Processes, redis: RedisServer, session_id: str, dataset: str | None
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "bench/polling_worker.py", "--url", redis.url]
    argv += [f"--session={session_id}", f"--ready-key={_ready_key(session_id)}"]
    argv += ["--interval-ms", f"{POLL_INTERVAL_MS:g}"]
    if dataset is not None:
        argv += ["--dataset", dataset]
    return processes.start(f"polling-{session_id[:8]}", argv, bench_env())


def _ready_key(session_id: str) -> str:
    return f"bench:polling:{session_id}:ready"


def is_ready(client: redis_py.Redis, session_id: str, design: str) -> bool:
    if design == "polling":
        return bool(client.exists(_ready_key(session_id)))
    text = client.get(KEYS.worker(session_id))
    return bool(text) and json.loads(text)["state"] == "ready"


def all_ready(
    client: redis_py.Redis,
    sessions: list[str],
    procs: list[subprocess.Popen[bytes]],
    design: str,
) -> bool:
    """Return True when every worker is ready; raise when one has exited."""
    exited = [proc for proc in procs if proc.poll() is not None]
    if exited:
        raise BenchError(
            f"{len(exited)} {design} workers exited before ready, the first with "
            f"status {exited[0].returncode}; see its log in the bench work directory"
        )
    return all(is_ready(client, sid, design) for sid in sessions)


# Latency -------------------------------------------------------------------


def _round_trip_ms(
    client: redis_py.Redis,
    pubsub: redis_py.client.PubSub,
    session_id: str,
    number: int,
    params: dict[str, Any],
) -> float:
    request_id = f"bench-{number}"
    request = {"jsonrpc": "2.0", "id": request_id, "method": "filter"}
    text = json.dumps({**request, "params": params})
    started = time.perf_counter()
    client.lpush(KEYS.queue(session_id), text)
    deadline = started + 30
    while time.perf_counter() < deadline:
        message = pubsub.get_message(timeout=1.0)
        if message and message["type"] == "message":
            response = json.loads(message["data"])
            if response.get("id") == request_id:
                elapsed_ms = (time.perf_counter() - started) * 1000
                if "result" not in response:
                    raise RuntimeError(f"filter failed: {response}")
                return elapsed_ms
    raise RuntimeError(f"no response to {request_id} within 30 s")


def measure_latency(
    processes: Processes, redis: RedisServer, design: str, plan: Plan
) -> Stats:
    session_id = new_session_id()
    start = start_polling_worker if design == "polling" else start_bellhop_worker
    proc = start(processes, redis, session_id, plan.latency_dataset)
    client = redis.client()
    try:
        wait_until(
            lambda: all_ready(client, [session_id], [proc], design),
            120,
            f"{design} worker",
        )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(KEYS.results(session_id))
        jitter = random.Random(20130101)
        samples = []
        for number in range(plan.requests + 5):
            params = LATENCY_FILTERS[plan.latency_dataset]
            samples.append(_round_trip_ms(client, pubsub, session_id, number, params))
            time.sleep(jitter.uniform(0, POLL_INTERVAL_MS / 1000))
        pubsub.close()
        return summarize(samples[5:])
    finally:
        client.close()
        processes.stop(proc)


# Idle cost -----------------------------------------------------------------


@dataclass
class IdleCost:
    design: str
    workers: int
    window_s: float
    commands: dict[str, int]
    rss_median_bytes: int | None

    @property
    def total_per_s(self) -> float:
        return self.commands.get("total", 0) / self.window_s

    @property
    def per_worker_per_s(self) -> float:
        return self.total_per_s / self.workers


def measure_idle(
    processes: Processes, redis: RedisServer, design: str, plan: Plan
) -> IdleCost:
    start: Callable[..., subprocess.Popen[bytes]]
    start = start_polling_worker if design == "polling" else start_bellhop_worker
    dataset = None if design == "polling" else IDLE_DATASET
    sessions = [new_session_id() for _ in range(plan.idle_workers)]
    procs = [start(processes, redis, sid, dataset) for sid in sessions]
    client = redis.client()
    try:
        wait_until(
            lambda: all_ready(client, sessions, procs, design),
            900,
            f"{len(sessions)} idle {design} workers",
            1.0,
        )
        # Let every worker finish its start-up commands before the window.
        time.sleep(plan.settle_s)
        commands = _count_commands(redis, plan.idle_window_s)
        rss = [rss_bytes(proc.pid) for proc in procs]
        rss_median = int(statistics.median([r for r in rss if r])) if any(rss) else None
    finally:
        client.close()
        terminate_pids([proc.pid for proc in procs])
    return IdleCost(design, len(sessions), plan.idle_window_s, commands, rss_median)


def _count_commands(redis: RedisServer, window_s: float) -> dict[str, int]:
    """Return the commands Redis processed in window_s, less this process's INFO."""
    before = redis.counters()
    time.sleep(window_s)
    after = redis.counters()
    deltas = counter_deltas(before, after)
    own_info = deltas.pop("info", 0)
    deltas["total"] = deltas.get("total", 0) - own_info
    return deltas


# Report --------------------------------------------------------------------


def _idle_row(cost: IdleCost) -> str:
    ranked = sorted(
        ((n, c) for n, c in cost.commands.items() if n != "total"),
        key=lambda item: -item[1],
    )
    breakdown = ", ".join(
        f"{name} {count / cost.window_s:.1f}/s" for name, count in ranked[:6]
    )
    rss = (
        "n/a"
        if cost.rss_median_bytes is None
        else f"{cost.rss_median_bytes / 2**20:.0f}"
    )
    return (
        f"| {cost.design} | {cost.workers} | {cost.total_per_s:.1f} | "
        f"{cost.per_worker_per_s:.2f} | {rss} | {breakdown} |"
    )


def _section(
    plan: Plan, latency: dict[str, Stats], idle: dict[str, IdleCost]
) -> Section:
    bellhop, polling = idle["blocking drain"], idle["polling"]
    section = Section(TITLE)
    section.targets = [
        Target(
            f"idle Redis commands/s, {bellhop.workers} Bellhop workers",
            f"close to zero: <= {IDLE_TARGET_PER_WORKER:g}/s per worker, "
            "about one heartbeat SET per 3 s",
            f"{bellhop.total_per_s:.1f}/s ({bellhop.per_worker_per_s:.2f} per worker) "
            f"vs polling {polling.total_per_s:.0f}/s",
            bellhop.per_worker_per_s < IDLE_TARGET_PER_WORKER,
        )
    ]
    section.data = {
        "latency": {design: stats.as_dict() for design, stats in latency.items()},
        "idle": {
            design: {
                "workers": cost.workers,
                "window_s": cost.window_s,
                "commands_per_s": cost.total_per_s,
                "per_worker_per_s": cost.per_worker_per_s,
                "commands": cost.commands,
                "rss_median_bytes": cost.rss_median_bytes,
            }
            for design, cost in idle.items()
        },
    }
    section.lines = [
        f"Latency: {plan.requests} `filter` requests on `{plan.latency_dataset}` "
        "pushed straight onto "
        "the session queue (no gateway), one at a time, each after a random "
        f"0..{POLL_INTERVAL_MS:g} ms pause; time from LPUSH to the response on the "
        "results channel.",
        "",
        *stats_header(),
        *(stats_row(design, stats) for design, stats in latency.items()),
        "",
        f"Idle cost: Redis commands per second while N workers wait on empty "
        f"queues, over {plan.idle_window_s:g} s (INFO total_commands_processed, "
        "which counts the commands inside Lua scripts too; this script's own INFO "
        "calls are left out). RSS is the median resident set of one idle worker.",
        "",
        "| design | workers | commands/s | per worker | RSS MiB | busiest commands |",
        "|---|---:|---:|---:|---:|---|",
        _idle_row(polling),
        _idle_row(bellhop),
        "",
        "An idle Bellhop worker's commands come from its loop. Every block "
        "timeout (WORKER_BLOCK_TIMEOUT_S, 20 s) one BLMOVE returns empty, "
        "pipelined with a drain script that then runs one LLEN. Every "
        "heartbeat interval (3 s) one SET rewrites the heartbeat key, which the "
        "orchestrator and the gateway read.",
    ]
    return section


def run(ctx: Context) -> Section:
    plan = QUICK_PLAN if ctx.quick else FULL_PLAN
    processes = Processes(ctx.log_dir("polling"))
    latency: dict[str, Stats] = {}
    idle: dict[str, IdleCost] = {}
    try:
        with redis_server(processes) as redis:
            for design in ("polling", "blocking drain"):
                log(f"polling: latency of the {design} worker")
                latency[design] = measure_latency(processes, redis, design, plan)
        for design in ("polling", "blocking drain"):
            log(f"polling: idle cost of {plan.idle_workers} {design} workers")
            with redis_server(processes) as redis:
                idle[design] = measure_idle(processes, redis, design, plan)
    finally:
        processes.stop_all()
    return _section(plan, latency, idle)
