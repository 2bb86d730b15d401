"""Read process facts from Linux /proc: start time, state, command line, environment.

A pid alone can be reused by an unrelated process after the original exits, so
the local provider identifies a worker by its pid together with its start
time (field 22 of /proc/<pid>/stat, in clock ticks since boot).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
# Zombie and dead processes no longer run, even while /proc still lists them.
_GONE_STATES = {"Z", "X", "x"}


@dataclass(frozen=True)
class ProcessStat:
    state: str
    start_ticks: int

    @property
    def is_running(self) -> bool:
        return self.state not in _GONE_STATES


def read_stat(pid: int) -> ProcessStat | None:
    """Return the state and start time of pid, or None when it does not exist."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and ")", so split after
    # the last ")"; what follows starts at field 3 (state).
    fields = text.rsplit(")", 1)[1].split()
    return ProcessStat(state=fields[0], start_ticks=int(fields[19]))


def is_same_process_running(pid: int, start_ticks: int) -> bool:
    """Return True when pid runs and is the process that started at start_ticks."""
    stat = read_stat(pid)
    return stat is not None and stat.is_running and stat.start_ticks == start_ticks


def read_cmdline(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def read_environ(pid: int) -> dict[str, str]:
    """Return the environment pid started with (empty when unreadable)."""
    try:
        raw = (PROC / str(pid) / "environ").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}
    pairs = (part.decode(errors="replace") for part in raw.split(b"\0") if part)
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


def iter_pids() -> Iterator[int]:
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            yield int(entry.name)
