"""CPU time of processes and of the whole machine over an interval, from /proc."""

from __future__ import annotations

import os
import time
from pathlib import Path

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def read_cpu_and_start(pid: int) -> tuple[float, int] | None:
    """Return (user plus system CPU seconds, start time in ticks) of pid, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    # Fields 14, 15 and 22 of proc(5), counted from 1, are utime, stime and
    # starttime; the split above starts at field 3. A zombie's fields still
    # hold its final CPU time.
    cpu_s = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S
    return cpu_s, int(fields[19])


def machine_cpu_s() -> dict[str, float]:
    """Return the CPU seconds of all CPUs since boot from /proc/stat: busy, idle, steal.

    Busy counts user, nice, system, irq and softirq time; idle includes iowait.
    Steal is time the hypervisor gave to other guests.
    """
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    user, nice, system, idle, iowait, irq, softirq, steal = (
        int(value) / CLOCK_TICKS_PER_S for value in fields
    )
    return {
        "busy": user + nice + system + irq + softirq,
        "idle": idle + iowait,
        "steal": steal,
    }


class CpuMeter:
    """CPU seconds of a fixed set of processes over an interval, from /proc.

    `sample` reads every process and keeps its last reading, so a process that
    exits before `stop` still counts with the CPU time it had at its last
    sample. A pid whose start time changed belongs to a new process and is
    treated as exited.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = dict(pids)
        self._start_ticks: dict[str, int] = {}
        self._first: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self.exited: set[str] = set()
        self.started_at = 0.0
        self.stopped_at = 0.0
        self._machine_first: dict[str, float] = {}
        self._machine_last: dict[str, float] = {}

    def start(self) -> None:
        self.started_at = time.perf_counter()
        self._machine_first = machine_cpu_s()
        for name, pid in self.pids.items():
            found = read_cpu_and_start(pid)
            if found is None:
                self.exited.add(name)
                continue
            self._first[name], self._start_ticks[name] = found
            self._last[name] = found[0]

    def sample(self) -> None:
        for name in self._first:
            if name in self.exited:
                continue
            found = read_cpu_and_start(self.pids[name])
            if found is None or found[1] != self._start_ticks[name]:
                self.exited.add(name)
            else:
                self._last[name] = found[0]

    def stop(self) -> None:
        self.sample()
        self._machine_last = machine_cpu_s()
        self.stopped_at = time.perf_counter()

    @property
    def wall_s(self) -> float:
        return self.stopped_at - self.started_at

    def used_s(self) -> dict[str, float]:
        """Return the CPU seconds each process used between start and its last read."""
        return {name: self._last[name] - self._first[name] for name in self._first}

    def machine_used_s(self) -> dict[str, float]:
        """Return the busy, idle and steal CPU seconds of the whole machine."""
        return {
            kind: self._machine_last[kind] - self._machine_first[kind]
            for kind in self._machine_first
        }
