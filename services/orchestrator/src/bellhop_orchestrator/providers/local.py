"""Local provider: one subprocess per session on this machine, for development.

provider_ref is `pid:<pid>:<start ticks>`. The start time (from /proc)
distinguishes the started worker from a later process that reuses its pid, so
an orchestrator that restarts can still find and stop the workers an earlier
one started. Workers are marked with BELLHOP_PROVIDER=local in their
environment, and `list` reports only marked workers that use this
orchestrator's Redis URL and key prefix, so workers started by hand or by
another deployment are left alone.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import shlex
import signal
import sys
import time
from collections.abc import Collection
from dataclasses import dataclass

from bellhop_orchestrator.errors import ProviderError
from bellhop_orchestrator.providers import procfs
from bellhop_orchestrator.providers.base import (
    RunningWorker,
    WorkerExit,
    WorkerSpec,
    WorkerStatus,
)
from bellhop_orchestrator.settings import OrchestratorSettings

logger = logging.getLogger(__name__)

MARKER_VARIABLE = "BELLHOP_PROVIDER"
MARKER_VALUE = "local"
# The orchestrator's own secrets never reach a worker's environment.
_WITHHELD_VARIABLES = {"ORCHESTRATOR_TOKEN", "HEROKU_API_TOKEN", "GATEWAY_SECRET"}
_WORKER_PROGRAM_NAMES = ("bellhop_worker", "bellhop-worker")
_POLL_INTERVAL_S = 0.05
# Exit statuses of children that `find_exited` has not returned yet. Beyond
# this many, the oldest are dropped, and their workers are then reported with
# an unknown status.
_MAX_KEPT_EXIT_CODES = 1024


def format_ref(pid: int, start_ticks: int) -> str:
    return f"pid:{pid}:{start_ticks}"


def parse_ref(provider_ref: str) -> tuple[int, int] | None:
    """Return (pid, start ticks) from a `pid:<pid>:<ticks>` ref, else None."""
    kind, _, rest = provider_ref.partition(":")
    pid_text, _, ticks_text = rest.partition(":")
    if kind != "pid" or not pid_text.isdigit() or not ticks_text.isdigit():
        return None
    return int(pid_text), int(ticks_text)


def is_worker_command(argv: list[str]) -> bool:
    names_worker = any(name in arg for arg in argv for name in _WORKER_PROGRAM_NAMES)
    return names_worker and session_from_argv(argv) is not None


def session_from_argv(argv: list[str]) -> str | None:
    """Return the value of `--session=ID` or `--session ID`, else None."""
    for index, arg in enumerate(argv):
        if arg.startswith("--session="):
            return arg.removeprefix("--session=") or None
        if arg == "--session" and index + 1 < len(argv):
            return argv[index + 1]
    return None


# Without CAP_SYS_ADMIN the kernel accepts one autogroup nice change per
# 100 ms across the machine and returns EAGAIN for the rest (the rate limit
# is in the kernel's kernel/sched/autogroup.c).
_AUTOGROUP_ATTEMPTS = 20
_AUTOGROUP_RETRY_S = 0.11


async def lower_priority(pid: int, nice: int) -> None:
    """Make a worker yield the CPU to the gateway and orchestrator on this machine.

    Each worker runs in its own session, and where the kernel groups
    processes by session for scheduling (autogroup), every busy worker weighs
    as much as the whole group containing the services. The group's niceness is
    then what counts, so both it and the process's own are set, `nice` above
    the orchestrator's own.
    """
    if nice == 0:
        return
    target = min(19, os.getpriority(os.PRIO_PROCESS, 0) + nice)
    try:
        os.setpriority(os.PRIO_PROCESS, pid, target)
        for attempt in range(_AUTOGROUP_ATTEMPTS):
            try:
                with open(f"/proc/{pid}/autogroup", "w") as autogroup:
                    autogroup.write(str(target))
                return
            except BlockingIOError:
                if attempt == _AUTOGROUP_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(_AUTOGROUP_RETRY_S)
    except (FileNotFoundError, ProcessLookupError):
        pass  # Exited already, or a kernel without autogroup.
    except OSError as exc:
        logger.warning(
            "worker pid=%d keeps its scheduling priority (LOCAL_WORKER_NICE=%d): %s",
            pid,
            nice,
            exc.strerror or exc,
        )


@dataclass(frozen=True)
class _Child:
    """A worker this process started, and its ref, which no later process
    with the same pid shares."""

    process: asyncio.subprocess.Process
    ref: str


class LocalProvider:
    """Runs workers as child processes, each in its own process group."""

    name = "local"

    def __init__(self, settings: OrchestratorSettings) -> None:
        command = shlex.split(settings.local_worker_command)
        self._command = command or [sys.executable, "-m", "bellhop_worker.main"]
        self._redis_url = settings.redis_url
        self._key_prefix = settings.key_prefix
        self._worker_env = settings.worker_environment()
        self._stop_timeout_s = settings.local_stop_timeout_s
        self._kill_timeout_s = settings.local_kill_timeout_s
        self._nice = settings.local_worker_nice
        self._priority_tasks: set[asyncio.Task[None]] = set()
        self._children: dict[int, _Child] = {}
        self._exit_codes: dict[str, int] = {}
        self._stopping: dict[int, asyncio.Task[None]] = {}

    async def start(self, spec: WorkerSpec) -> str:
        argv = [*self._command, *spec.worker_args()]
        proc = await self._spawn(argv, spec)
        stat = procfs.read_stat(proc.pid)
        if stat is None or not stat.is_running:
            exit_code = await proc.wait()
            raise ProviderError(
                f"The worker for session {spec.session_id} exited at once with "
                f"status {exit_code}; check LOCAL_WORKER_COMMAND and the "
                "orchestrator's log."
            )
        ref = format_ref(proc.pid, stat.start_ticks)
        self._children[proc.pid] = _Child(proc, ref)
        # Runs in the background because unprivileged autogroup changes are
        # rate limited and many sessions may start at once.
        task = asyncio.create_task(lower_priority(proc.pid, self._nice))
        self._priority_tasks.add(task)
        task.add_done_callback(self._priority_tasks.discard)
        logger.info(
            "session %s started worker=%s provider=local pid=%d dataset=%s",
            spec.session_id,
            spec.worker_id,
            proc.pid,
            spec.dataset,
        )
        return ref

    async def stop(self, provider_ref: str, reason: str) -> None:
        parsed = parse_ref(provider_ref)
        if parsed is None:
            logger.warning(
                "worker ref %r is not a local ref; not stopping", provider_ref
            )
            return
        pid, start_ticks = parsed
        # The orchestrator ends this worker itself, so `find_exited` must not
        # report its exit.
        self._exit_codes.pop(provider_ref, None)
        if not procfs.is_same_process_running(pid, start_ticks):
            await self._forget(pid)
            return
        # A second SIGTERM may kill the worker before it parks its batch, so
        # concurrent stops of one worker (API and reaper) share one sequence.
        task = self._stopping.get(pid)
        if task is None:
            task = asyncio.create_task(self._stop_once(pid, start_ticks, reason))
            self._stopping[pid] = task
            task.add_done_callback(lambda _: self._stopping.pop(pid, None))
        await asyncio.shield(task)

    async def _stop_once(self, pid: int, start_ticks: int, reason: str) -> None:
        logger.info("worker pid=%d stopping with SIGTERM reason=%r", pid, reason)
        await self._terminate(pid, start_ticks)
        await self._forget(pid)

    async def list(self) -> builtins.list[RunningWorker]:
        self._drop_exited_children()
        return await asyncio.to_thread(self._scan)

    async def poll(self, provider_ref: str) -> WorkerStatus:
        parsed = parse_ref(provider_ref)
        if parsed is None:
            return WorkerStatus.UNKNOWN
        if procfs.is_same_process_running(*parsed):
            return WorkerStatus.RUNNING
        return WorkerStatus.EXITED

    async def find_exited(
        self, provider_refs: Collection[str]
    ) -> dict[str, WorkerExit]:
        exits = {}
        for ref in provider_refs:
            parsed = parse_ref(ref)
            if parsed is None or procfs.is_same_process_running(*parsed):
                continue
            exits[ref] = WorkerExit(await self._exit_code(parsed[0], ref))
        return exits

    async def aclose(self) -> None:
        self._drop_exited_children()

    async def _spawn(
        self, argv: builtins.list[str], spec: WorkerSpec
    ) -> asyncio.subprocess.Process:
        try:
            return await asyncio.create_subprocess_exec(
                *argv,
                env=self._environment(spec),
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            raise ProviderError(
                f"Cannot start the worker command {argv[0]!r}: {exc.strerror}; "
                "check LOCAL_WORKER_COMMAND or install bellhop-worker."
            ) from exc

    def _environment(self, spec: WorkerSpec) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _WITHHELD_VARIABLES}
        env.update(self._worker_env)
        env["REDIS_URL"] = self._redis_url
        env["BELLHOP_KEY_PREFIX"] = self._key_prefix
        env["WORKER_ID"] = spec.worker_id
        env[MARKER_VARIABLE] = MARKER_VALUE
        return env

    async def _terminate(self, pid: int, start_ticks: int) -> None:
        # SIGTERM lets the worker park its batch and publish; SIGKILL follows
        # only when it overruns the timeout.
        _signal_group(pid, signal.SIGTERM)
        if await self._wait_gone(pid, start_ticks, self._stop_timeout_s):
            return
        logger.warning(
            "worker pid=%d still running %.1f s after SIGTERM; sending SIGKILL",
            pid,
            self._stop_timeout_s,
        )
        _signal_group(pid, signal.SIGKILL)
        if await self._wait_gone(pid, start_ticks, self._kill_timeout_s):
            return
        logger.error(
            "worker pid=%d still running %.1f s after SIGKILL; it may be stuck "
            "in the kernel, check it with `ps`",
            pid,
            self._kill_timeout_s,
        )

    async def _wait_gone(self, pid: int, start_ticks: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while procfs.is_same_process_running(pid, start_ticks):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(_POLL_INTERVAL_S)
        return True

    async def _exit_code(self, pid: int, ref: str) -> int | None:
        """Return the exit status of the worker behind ref, None if not our child."""
        if ref in self._exit_codes:
            return self._exit_codes.pop(ref)
        child = self._children.get(pid)
        if child is None or child.ref != ref:
            return None
        try:
            exit_code = await asyncio.wait_for(
                child.process.wait(), self._kill_timeout_s
            )
        except TimeoutError:
            logger.warning("worker pid=%d exited but was not reaped in time", pid)
            return None
        del self._children[pid]
        logger.info("worker pid=%d exited exit_code=%s", pid, exit_code)
        return exit_code

    async def _forget(self, pid: int) -> None:
        """Reap our child (if it is one) so it never lingers as a zombie."""
        child = self._children.pop(pid, None)
        if child is None:
            return
        try:
            exit_code = await asyncio.wait_for(
                child.process.wait(), self._kill_timeout_s
            )
        except TimeoutError:
            logger.warning("worker pid=%d exited but was not reaped in time", pid)
            return
        logger.info("worker pid=%d exited exit_code=%s", pid, exit_code)

    def _drop_exited_children(self) -> None:
        """Forget exited children, keeping their statuses for `find_exited`."""
        for pid, child in list(self._children.items()):
            exit_code = child.process.returncode
            if exit_code is None:
                continue
            logger.info("worker pid=%d exited exit_code=%d", pid, exit_code)
            del self._children[pid]
            self._exit_codes[child.ref] = exit_code
        while len(self._exit_codes) > _MAX_KEPT_EXIT_CODES:
            del self._exit_codes[next(iter(self._exit_codes))]

    def _scan(self) -> builtins.list[RunningWorker]:
        own_pid = os.getpid()
        found = (self._inspect(pid) for pid in procfs.iter_pids() if pid != own_pid)
        return [worker for worker in found if worker is not None]

    def _inspect(self, pid: int) -> RunningWorker | None:
        argv = procfs.read_cmdline(pid)
        if not is_worker_command(argv):
            return None
        env = procfs.read_environ(pid)
        if not self._is_ours(env):
            return None
        stat = procfs.read_stat(pid)
        session_id = session_from_argv(argv)
        if stat is None or not stat.is_running or session_id is None:
            return None
        ref = format_ref(pid, stat.start_ticks)
        return RunningWorker(ref, session_id, env.get("WORKER_ID"), f"pid={pid}")

    def _is_ours(self, env: dict[str, str]) -> bool:
        return (
            env.get(MARKER_VARIABLE) == MARKER_VALUE
            and env.get("REDIS_URL") == self._redis_url
            and env.get("BELLHOP_KEY_PREFIX", "bellhop:") == self._key_prefix
        )


def _signal_group(pid: int, signum: signal.Signals) -> None:
    """Signal the worker's process group (its pgid is its pid), else the pid."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        pass
