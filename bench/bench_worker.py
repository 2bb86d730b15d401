"""CPU time of one worker process per `filter` request, without the gateway.

    python bench/bench_worker.py                      # the installed worker
    python bench/bench_worker.py --compare OLD_SRC    # and another source tree

This script plays the gateway's part of the queue contract itself: it LPUSHes
one JSON-RPC request onto the session's queue, waits for the response on the
results channel, and only then sends the next one. Each worker's user and
system CPU time is read from /proc before and after a block of requests, and
the Redis commands of the block from INFO commandstats.

Workers: one on flights with the end-to-end benchmark's filter, and one on
synthetic-100k with each of the load benchmark's four filters in turn. With
--compare, a second pair runs the worker package found in OLD_SRC (a
directory that contains `bellhop_worker`, for example an exported older
`services/worker/src`). The blocks of every case are interleaved, so that a
change in the machine's load hits every variant alike, and the report gives
the median over the repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from bellhop_shared.keys import Keys
from harness import (
    CLOCK_TICKS_PER_S,
    Processes,
    RedisServer,
    bench_env,
    counter_deltas,
    log,
    redis_server,
    wait_until,
)

# Filter name -> params, per dataset.
FILTERS: dict[str, dict[str, dict[str, Any]]] = {
    "flights": {
        "carrier+month": {
            "where": {"carrier": ["UA", "AA"], "month": [7]},
            "limit": 50,
        },
    },
    "synthetic-100k": {
        "region+weekday": {
            "where": {"region": ["north"], "weekday": [3]},
            "limit": 50,
        },
        "category+range": {
            "where": {"category": ["category-01", "category-02"]},
            "range": {"amount": [10, 100]},
        },
        "channel-segment": {
            "where": {"channel": ["channel-03"]},
            "exclude": {"segment": ["business"]},
        },
        "all rows": {"limit": 50},
    },
}
KEYS = Keys()
READY_TIMEOUT_S = 300.0
RESPONSE_TIMEOUT_S = 30.0


@dataclass
class Block:
    """Per-request averages of one measured block of requests."""

    cpu_ms: float
    system_ms: float
    took_ms: float
    commands: dict[str, float]


@dataclass
class Case:
    """One filter sent to one worker, and its measured blocks."""

    worker: Worker
    name: str
    params: dict[str, Any]
    blocks: list[Block] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.worker.label} {self.name}"


@dataclass
class Worker:
    """One running worker process and the session it serves."""

    variant: str
    dataset: str
    session_id: str
    process: subprocess.Popen[bytes]

    @property
    def label(self) -> str:
        return f"{self.variant} {self.dataset}"


def start_worker(
    processes: Processes,
    server: RedisServer,
    variant: str,
    dataset: str,
    source: Path | None,
) -> Worker:
    session_id = f"bench-{variant}-{dataset}"
    env = bench_env(REDIS_URL=server.url, WORKER_IDLE_TIMEOUT_S="3600")
    env["LOG_LEVEL"] = "INFO"
    if source is not None:
        env["PYTHONPATH"] = str(source)
    argv = [sys.executable, "-m", "bellhop_worker.main"]
    argv += ["--session", session_id, "--dataset", dataset]
    proc = processes.start(f"worker-{variant}-{dataset}", argv, env)
    return Worker(variant, dataset, session_id, proc)


def wait_ready(client: redis.Redis, worker: Worker) -> None:
    def is_ready() -> bool:
        text = client.get(KEYS.worker(worker.session_id))
        return text is not None and json.loads(text)["state"] == "ready"

    wait_until(is_ready, READY_TIMEOUT_S, f"worker {worker.label} ready")


class Requester:
    """Send filter requests to one worker, one at a time, waiting for each."""

    def __init__(self, server: RedisServer, worker: Worker) -> None:
        self._client = server.client(decode=False)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(KEYS.results(worker.session_id))
        self._queue = KEYS.queue(worker.session_id)
        self._label = worker.label
        self._next_id = 0

    def close(self) -> None:
        self._pubsub.close()
        self._client.close()

    def run(self, params: dict[str, Any], count: int) -> list[float]:
        """Send count requests; return the took_ms of each response."""
        return [self._call(params)["took_ms"] for _ in range(count)]

    def _call(self, params: dict[str, Any]) -> dict[str, Any]:
        self._next_id += 1
        request = {"jsonrpc": "2.0", "id": self._next_id, "method": "filter"}
        request["params"] = params
        self._client.lpush(self._queue, json.dumps(request))
        deadline = time.monotonic() + RESPONSE_TIMEOUT_S
        while time.monotonic() < deadline:
            message = self._pubsub.get_message(timeout=1.0)
            if message is None:
                continue
            response = json.loads(message["data"])
            if response.get("id") != self._next_id:
                continue
            if "result" not in response:
                raise RuntimeError(f"{self._label} failed: {response}")
            return dict(response["result"])
        raise TimeoutError(f"{self._label}: no response to {params}")


def cpu_times(pid: int) -> tuple[float, float]:
    """Return the user and the system CPU seconds of pid, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields 14 and 15 of proc(5), counted from 1, are utime and stime; the
    # split after the command name starts at field 3.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS_PER_S, int(fields[12]) / CLOCK_TICKS_PER_S


def measure_block(
    server: RedisServer, requester: Requester, case: Case, count: int
) -> None:
    """Run count requests of case and record their averages as a block."""
    pid = case.worker.process.pid
    counters_before = server.counters()
    user_before, system_before = cpu_times(pid)
    took_ms = requester.run(case.params, count)
    user_after, system_after = cpu_times(pid)
    deltas = counter_deltas(counters_before, server.counters())
    user_ms = (user_after - user_before) * 1000
    system_ms = (system_after - system_before) * 1000
    # INFO itself and the heartbeat SETs of every worker land in the counters,
    # so commands sent less than once per two requests are left out.
    commands = {
        name: calls / count
        for name, calls in deltas.items()
        if calls >= count / 2 and name != "total"
    }
    block = Block(
        cpu_ms=(user_ms + system_ms) / count,
        system_ms=system_ms / count,
        took_ms=statistics.median(took_ms),
        commands=commands,
    )
    case.blocks.append(block)


def measure(server: RedisServer, cases: list[Case], args: argparse.Namespace) -> None:
    """Warm every worker up, then measure the cases in interleaved blocks."""
    workers = list({id(case.worker): case.worker for case in cases}.values())
    client = server.client()
    for worker in workers:
        wait_ready(client, worker)
    client.close()
    requesters = {id(worker): Requester(server, worker) for worker in workers}
    for case in cases:
        requesters[id(case.worker)].run(case.params, args.warmup)
    for repeat in range(args.repeats):
        for case in cases:
            measure_block(server, requesters[id(case.worker)], case, args.requests)
        log(f"repeat {repeat + 1}/{args.repeats} done")
    for requester in requesters.values():
        requester.close()


def report(cases: list[Case]) -> str:
    lines = [
        "| case | CPU ms/request | of which system | blocks (CPU ms) "
        "| took_ms p50 | Redis commands/request |",
        "|---|---|---|---|---|---|",
    ]
    for case in cases:
        cpu_ms = [block.cpu_ms for block in case.blocks]
        system_ms = statistics.median(block.system_ms for block in case.blocks)
        took_ms = statistics.median(block.took_ms for block in case.blocks)
        commands = " ".join(
            f"{name}={calls:.2f}"
            for name, calls in sorted(case.blocks[-1].commands.items())
        )
        lines.append(
            f"| {case.label} | {statistics.median(cpu_ms):.3f} | {system_ms:.3f} "
            f"| {', '.join(f'{value:.3f}' for value in cpu_ms)} "
            f"| {took_ms:.3f} | {commands} |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> str:
    variants: list[tuple[str, Path | None]] = [("current", None)]
    if args.compare is not None:
        variants.insert(0, ("compare", args.compare.resolve()))
    processes = Processes(args.log_dir)
    try:
        with redis_server(processes) as server:
            workers = [
                start_worker(processes, server, variant, dataset, source)
                for variant, source in variants
                for dataset in FILTERS
            ]
            cases = [
                Case(worker, name, params)
                for worker in workers
                for name, params in FILTERS[worker.dataset].items()
            ]
            try:
                measure(server, cases, args)
            finally:
                # Stop the workers while their Redis is still up.
                for worker in workers:
                    processes.stop(worker.process)
    finally:
        processes.stop_all()
    return report(cases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--compare",
        type=Path,
        default=None,
        help="directory containing another bellhop_worker package to measure too",
    )
    parser.add_argument(
        "--requests", type=int, default=2000, help="requests per measured block"
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="measured blocks per case"
    )
    parser.add_argument(
        "--warmup", type=int, default=200, help="unmeasured requests per case"
    )
    parser.add_argument(
        "--log-dir",
        type=Path,
        default=Path("/tmp/bench-worker"),
        help="directory for the worker and redis-server logs",
    )
    args = parser.parse_args()
    args.log_dir.mkdir(parents=True, exist_ok=True)
    print(run(args))


if __name__ == "__main__":
    main()
