"""End-to-end `filter` latency on flights, against the floor of the same path.

Measured path: a Socket.IO client -> gateway -> Redis list -> worker ->
Redis pub/sub -> gateway -> client, one request at a time, with the selective
filter carrier in (UA, AA) and month 7 (50 ids and every facet count).

Two clients measure it, each with its own session: the JavaScript
socket.io-client on Node.js (bench/sequential_client.js), which is the library
browsers run and the one the targets are judged on, and python-socketio's
AsyncClient in this process.

Floor, measured in the same run and interleaved with the paths in blocks, so
a change in the machine's load hits all of them alike:
- Socket.IO round trip: each client calls a bare python-socketio server
  under uvicorn that acknowledges the request with the recorded filter
  response, so the client receives and decodes the same bytes as on the
  path.
- Redis round trip: this process LPUSHes the request text and waits on a
  subscription. Another process BLPOPs it and PUBLISHes the recorded filter
  response.
A client's floor is the sum of its Socket.IO round trip and the shared Redis
round trip.

Then, for the cost breakdown, a run of requests with the CPU time of every
process read from /proc before and after, and (unless disabled) a py-spy
recording of the gateway and the worker, both driven by the Python client.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from harness import (
    Processes,
    RedisServer,
    Stats,
    bench_env,
    cpu_seconds,
    free_port,
    log,
    memory_rollup,
    port_is_open,
    redis_server,
    summarize,
    wait_until,
)
from node_child import find_node
from profiling import (
    find_py_spy,
    profile_markdown,
    start_recording,
    summarize_collapsed,
)
from report import Context, Section, Target, ms, stats_header, stats_row
from sequential_client import (
    SequentialClient,
    sequential_client,
    socket_io_client_version,
)
from sio_client import SessionClient, filter_request
from system import BellhopSystem, bellhop_system

TITLE = "End-to-end filter latency"
FILTER_PARAMS: dict[str, Any] = {
    "where": {"carrier": ["UA", "AA"], "month": [7]},
    "limit": 50,
}
P50_FLOOR_FACTOR = 3.0
P99_TARGET_MS = 20.0
READY_TIMEOUT_S = 300.0
REQUEST_TIMEOUT_S = 30.0


@dataclass
class Plan:
    blocks: int
    block_size: int
    warmup: int
    accounting_requests: int
    profile_s: float


FULL_PLAN = Plan(
    blocks=20, block_size=100, warmup=100, accounting_requests=1000, profile_s=15
)
QUICK_PLAN = Plan(
    blocks=2, block_size=50, warmup=20, accounting_requests=100, profile_s=2
)


@dataclass
class Samples:
    """Latencies in ms. The unprefixed lists are the python-socketio client's."""

    path_ms: list[float] = field(default_factory=list)
    echo_ms: list[float] = field(default_factory=list)
    redis_ms: list[float] = field(default_factory=list)
    took_ms: list[float] = field(default_factory=list)
    node_path_ms: list[float] = field(default_factory=list)
    node_echo_ms: list[float] = field(default_factory=list)
    node_took_ms: list[float] = field(default_factory=list)


class RedisRoundTrip:
    """The pushing half of the bare Redis round trip (see the module docstring)."""

    def __init__(self, server: RedisServer, request_text: str) -> None:
        self.queue = "floor:queue"
        self.channel = "floor:results"
        self._client = server.client(decode=False)
        self._pubsub = self._client.pubsub()
        self._pubsub.subscribe(self.channel)
        self._request = request_text.encode()
        # Wait for the confirmation, so the first timed push cannot be missed.
        wait_until(lambda: self._next_message("subscribe", 0.1), 10, "SUBSCRIBE")

    def _next_message(self, kind: str, timeout_s: float) -> bool:
        message = self._pubsub.get_message(timeout=timeout_s)
        return message is not None and message["type"] == kind

    def once_ms(self) -> float:
        started = time.perf_counter()
        self._client.lpush(self.queue, self._request)
        wait_until(lambda: self._next_message("message", 1.0), 10, "the responder")
        return (time.perf_counter() - started) * 1000

    def close(self) -> None:
        self._pubsub.close()
        self._client.close()


async def _timed_call(client: SessionClient, request: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    response = await client.call(request, timeout_s=REQUEST_TIMEOUT_S)
    return (time.perf_counter() - started) * 1000, response


async def _path_block(client: SessionClient, count: int, samples: Samples) -> None:
    for number in range(count):
        elapsed, response = await _timed_call(
            client, filter_request(number, FILTER_PARAMS)
        )
        if "result" not in response:
            raise RuntimeError(f"filter failed through the gateway: {response}")
        samples.path_ms.append(elapsed)
        samples.took_ms.append(float(response["result"]["took_ms"]))


async def _echo_block(client: SessionClient, count: int, samples: Samples) -> None:
    for number in range(count):
        elapsed, _ = await _timed_call(client, filter_request(number, FILTER_PARAMS))
        samples.echo_ms.append(elapsed)


async def _run_node_blocks(
    node: SequentialClient, count: int, samples: Samples
) -> None:
    """Run a path block, then an echo block, on the Node.js client."""
    request = filter_request(0, FILTER_PARAMS)  # the client sets each id
    path = await node.run_block("path", count, request)
    samples.node_path_ms += path.elapsed_ms
    samples.node_took_ms += path.took_ms
    echo = await node.run_block("echo", count, request)
    samples.node_echo_ms += echo.elapsed_ms


def _redis_block(trip: RedisRoundTrip, count: int, samples: Samples) -> None:
    for _ in range(count):
        samples.redis_ms.append(trip.once_ms())


@dataclass
class Clients:
    path: SessionClient
    echo: SessionClient
    node: SequentialClient
    trip: RedisRoundTrip
    worker_pid: int
    versions: dict[str, str]


async def _measure(clients: Clients, plan: Plan) -> Samples:
    warm = Samples()
    await _path_block(clients.path, plan.warmup, warm)
    await _echo_block(clients.echo, plan.warmup, warm)
    await _run_node_blocks(clients.node, plan.warmup, warm)
    _redis_block(clients.trip, plan.warmup, warm)
    samples = Samples()
    for _ in range(plan.blocks):
        await _path_block(clients.path, plan.block_size, samples)
        await _echo_block(clients.echo, plan.block_size, samples)
        await _run_node_blocks(clients.node, plan.block_size, samples)
        await asyncio.to_thread(_redis_block, clients.trip, plan.block_size, samples)
    return samples


async def _cpu_per_request(
    system: BellhopSystem, clients: Clients, requests: int
) -> dict[str, float]:
    """Return CPU ms per request of each process over a run of requests."""
    pids = {
        "gateway": system.gateway_pid,
        "worker": clients.worker_pid,
        "redis-server": system.redis.pid,
        "client (this process)": os.getpid(),
    }
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    await _path_block(clients.path, requests, Samples())
    wall_s = time.perf_counter() - started
    used = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    per_request = {name: 1000 * seconds / requests for name, seconds in used.items()}
    per_request["wall clock"] = 1000 * wall_s / requests
    return per_request


def _worker_memory_line(worker_pid: int) -> str:
    memory = memory_rollup(worker_pid)
    if memory is None:
        return "The worker's memory could not be read from /proc."
    mib = 2**20
    return (
        f"The flights worker's memory after these requests: RSS "
        f"{memory['rss'] / mib:.0f} MiB, PSS {memory['pss'] / mib:.0f} MiB, "
        f"private {memory['uss'] / mib:.0f} MiB (/proc/<pid>/smaps_rollup)."
    )


async def _profile(
    ctx: Context, system: BellhopSystem, clients: Clients, plan: Plan
) -> list[str]:
    py_spy = find_py_spy()
    if py_spy is None:
        return ["py-spy is not installed (`make install` adds it); no profile."]
    out_dir = ctx.log_dir("e2e")
    targets = {"gateway": system.gateway_pid, "worker": clients.worker_pid}
    recordings = [
        start_recording(py_spy, name, pid, plan.profile_s, out_dir)
        for name, pid in targets.items()
    ]
    deadline = time.monotonic() + plan.profile_s + 1.0
    while time.monotonic() < deadline:
        await _path_block(clients.path, 20, Samples())
    lines: list[str] = []
    for recording in recordings:
        error = await asyncio.to_thread(recording.wait, plan.profile_s + 30)
        if error is not None:
            lines += [error, ""]
            continue
        summary = summarize_collapsed(recording.name, recording.output)
        lines += profile_markdown(summary) + [""]
    return lines


def _start_echo_server(processes: Processes, response_file: Path) -> str:
    """Start the bare Socket.IO server and return its URL once it listens.

    It acknowledges every request with the recorded filter response.
    """
    echo_port = free_port()
    command = [sys.executable, "bench/echo_server.py", "--port", str(echo_port)]
    command += ["--response-file", str(response_file)]
    processes.start("echo-server", command, bench_env())
    wait_until(lambda: port_is_open(echo_port), 30, "the Socket.IO echo server")
    return f"http://127.0.0.1:{echo_port}"


def _start_redis_responder(
    processes: Processes, redis: RedisServer, response_file: Path
) -> RedisRoundTrip:
    trip = RedisRoundTrip(redis, json.dumps(filter_request(1, FILTER_PARAMS)))
    processes.start(
        "redis-responder",
        [
            sys.executable,
            "bench/redis_responder.py",
            "--url",
            redis.url,
            "--queue",
            trip.queue,
            "--channel",
            trip.channel,
            "--response-file",
            str(response_file),
        ],
        bench_env(),
    )
    return trip


async def _connect_clients(
    stack: AsyncExitStack, processes: Processes, system: BellhopSystem
) -> tuple[Clients, int]:
    """Connect both clients and the Redis round trip, each closed by stack."""
    path = SessionClient()
    stack.push_async_callback(path.close)
    await path.connect(system.gateway_url, {"dataset": "flights"})
    await path.wait_ready(READY_TIMEOUT_S)
    # Both floor servers send back the real filter response, so each floor
    # moves the same bytes as the path.
    _, response = await _timed_call(path, filter_request(0, FILTER_PARAMS))
    response_text = json.dumps(response, separators=(",", ":"))
    response_file = processes.log_dir / "floor-response.json"
    response_file.write_text(response_text)
    echo_url = _start_echo_server(processes, response_file)
    trip = _start_redis_responder(processes, system.redis, response_file)
    stack.callback(trip.close)
    node = await stack.enter_async_context(
        sequential_client(
            system.gateway_url,
            echo_url,
            "flights",
            READY_TIMEOUT_S,
            REQUEST_TIMEOUT_S,
            processes.log_dir / "sequential-client.log",
        )
    )
    node_ready = await node.wait_ready(READY_TIMEOUT_S)
    echo = SessionClient()
    stack.push_async_callback(echo.close)
    await echo.connect(echo_url)
    worker_pid = system.worker_pids()[str(path.session_id)]
    versions = {
        "node": f"socket.io-client {socket_io_client_version()} on Node.js "
        f"{node_ready['node_version']}",
        "python": f"python-socketio {version('python-socketio')}",
    }
    clients = Clients(path, echo, node, trip, worker_pid, versions)
    return clients, len(response_text)


async def _run_async(ctx: Context) -> Section:
    plan = QUICK_PLAN if ctx.quick else FULL_PLAN
    find_node()  # raises before any service starts when Node.js is missing
    processes = Processes(ctx.log_dir("e2e"))
    try:
        with redis_server(processes) as redis:
            with bellhop_system(processes, redis, GATEWAY_RATE_LIMIT="0") as system:
                async with AsyncExitStack() as stack:
                    clients, response_bytes = await _connect_clients(
                        stack, processes, system
                    )
                    log("e2e: measuring the paths and the floor")
                    samples = await _measure(clients, plan)
                    log("e2e: CPU accounting")
                    cpu = await _cpu_per_request(
                        system, clients, plan.accounting_requests
                    )
                    memory = _worker_memory_line(clients.worker_pid)
                    profile = (
                        await _profile(ctx, system, clients, plan)
                        if ctx.profile
                        else []
                    )
    finally:
        processes.stop_all()
    header = "Where the CPU time goes (py-spy, while requests ran back to back):"
    extra = [memory, "", header, "", *profile] if profile else [memory]
    return _section(plan, samples, cpu, extra, response_bytes, clients.versions)


@dataclass(frozen=True)
class ClientResult:
    """One client's latencies, and its floor with the shared Redis round trip."""

    label: str
    path: Stats
    echo: Stats
    took: Stats
    trip: Stats

    @property
    def floor_p50(self) -> float:
        return self.echo.p50 + self.trip.p50

    @property
    def floor_p99(self) -> float:
        return self.echo.p99 + self.trip.p99

    @property
    def ratio(self) -> float:
        return self.path.p50 / self.floor_p50


def _section(
    plan: Plan,
    samples: Samples,
    cpu: dict[str, float],
    profile: list[str],
    response_bytes: int,
    versions: dict[str, str],
) -> Section:
    trip = summarize(samples.redis_ms)
    python = ClientResult(
        "python-socketio",
        summarize(samples.path_ms),
        summarize(samples.echo_ms),
        summarize(samples.took_ms),
        trip,
    )
    node = ClientResult(
        "Node.js",
        summarize(samples.node_path_ms),
        summarize(samples.node_echo_ms),
        summarize(samples.node_took_ms),
        trip,
    )
    section = Section(TITLE)
    section.targets = [
        Target(
            "e2e filter p50 vs floor",
            f"< {P50_FLOOR_FACTOR:g} x floor",
            f"{node.ratio:.1f} x floor ({ms(node.path.p50)} ms vs "
            f"{ms(node.floor_p50)} ms), Node.js client",
            node.ratio < P50_FLOOR_FACTOR,
        ),
        Target(
            "e2e filter p99",
            f"< {P99_TARGET_MS:g} ms",
            f"{ms(node.path.p99)} ms, Node.js client",
            node.path.p99 < P99_TARGET_MS,
        ),
    ]
    # The unprefixed keys are the python-socketio client's, as before the
    # Node.js client was added; the targets use the node_ keys.
    section.data = {
        "path": python.path.as_dict(),
        "echo": python.echo.as_dict(),
        "redis_round_trip": trip.as_dict(),
        "engine_took": python.took.as_dict(),
        "floor_p50_ms": python.floor_p50,
        "p50_floor_ratio": python.ratio,
        "node_path": node.path.as_dict(),
        "node_echo": node.echo.as_dict(),
        "node_engine_took": node.took.as_dict(),
        "node_floor_p50_ms": node.floor_p50,
        "node_p50_floor_ratio": node.ratio,
        "targets_client": "node",
        "clients": versions,
        "cpu_ms_per_request": cpu,
        "response_bytes": response_bytes,
    }
    lines = _lines(plan, node, python, cpu, response_bytes, versions)
    section.lines = lines + profile
    return section


def _client_rows(client: ClientResult) -> list[str]:
    return [
        stats_row(
            f"{client.label} end to end: client, gateway, Redis, worker, Redis, "
            "gateway, client",
            client.path,
        ),
        stats_row(
            f"{client.label} floor part 1: Socket.IO round trip (client, bare "
            "server that replies with the recorded response, client)",
            client.echo,
        ),
        stats_row(
            f"{client.label} engine time inside the worker (`took_ms`)", client.took
        ),
    ]


def _floor_sentence(client: ClientResult) -> str:
    return (
        f"{client.label} client: floor (both round trips) "
        f"p50 {ms(client.floor_p50)} ms, p99 {ms(client.floor_p99)} ms. "
        f"End to end p50 is {client.ratio:.1f} x the floor, "
        f"p99 {ms(client.path.p99)} ms."
    )


def _lines(
    plan: Plan,
    node: ClientResult,
    python: ClientResult,
    cpu: dict[str, float],
    response_bytes: int,
    versions: dict[str, str],
) -> list[str]:
    lines = [
        f"One `filter` at a time on flights (336,776 rows): where carrier in "
        f"(UA, AA) and month 7, limit 50, every facet counted; the response is "
        f"{response_bytes:,} bytes of JSON. Two clients ran, each with its own "
        f"session: {versions['node']} (bench/sequential_client.js), and "
        f"{versions['python']} (AsyncClient over aiohttp) in the benchmark "
        f"process. {plan.blocks} blocks of {plan.block_size} requests ran on "
        "each of five paths in turn (python-socketio path and Socket.IO round "
        "trip, Node.js path and Socket.IO round trip, Redis round trip), after "
        f"{plan.warmup} warm-up requests each.",
        "",
        *stats_header(),
        *_client_rows(node),
        *_client_rows(python),
        stats_row(
            "floor part 2, both clients: Redis LPUSH, BLPOP, PUBLISH round trip",
            node.trip,
        ),
        "",
        "The targets are judged on the Node.js client, because socket.io-client "
        "is the library that browsers run.",
        "",
        f"{_floor_sentence(node)} Targets: p50 < {P50_FLOOR_FACTOR:g} x the "
        f"floor, p99 < {P99_TARGET_MS:g} ms.",
        "",
        f"{_floor_sentence(python)} Shown for comparison, not judged against "
        "the targets.",
        "",
        "CPU time per request of each process, from /proc utime + stime over "
        f"{plan.accounting_requests} sequential requests of the python-socketio "
        "client (1 tick = 10 ms, so small values are coarse):",
        "",
        "| process | CPU ms per request |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {ms(value)} |" for name, value in cpu.items()]
    lines.append("")
    return lines


def run(ctx: Context) -> Section:
    return asyncio.run(_run_async(ctx))
