"""Dynos of the fake: each one a local `sh -c <command>` process group."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .settings import FakeSettings

logger = logging.getLogger(__name__)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Dyno:
    app: str
    command: str
    type: str
    size: str
    env: dict[str, str]
    time_to_live_s: int | None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    name: str = ""
    created_at: float = field(default_factory=time.time)
    process: asyncio.subprocess.Process | None = None
    info_calls: int = 0
    stopping: bool = False

    def state(self, boot_s: float) -> str:
        return "starting" if time.time() - self.created_at < boot_s else "up"

    def to_api(self, boot_s: float) -> dict[str, Any]:
        """Return the Dyno object the Platform API would return."""
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "size": self.size,
            "state": self.state(boot_s),
            "command": self.command,
            "attach_url": None,
            "app": {
                "id": str(uuid.uuid5(uuid.NAMESPACE_DNS, self.app)),
                "name": self.app,
            },
            "release": {"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, "v1")), "version": 1},
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.created_at),
        }


class DynoRunner:
    """Starts and stops dyno processes; `dynos` maps each running dyno's id to it."""

    def __init__(self, settings: FakeSettings) -> None:
        self.settings = settings
        self.dynos: dict[str, Dyno] = {}
        self.created_total = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def app_dynos(self, app: str) -> list[Dyno]:
        return [dyno for dyno in self.dynos.values() if dyno.app == app]

    async def start(self, dyno: Dyno) -> None:
        used_names = {d.name for d in self.dynos.values()}
        while not dyno.name or dyno.name in used_names:
            dyno.name = f"{dyno.type}.{random.randint(1000, 9999)}"
        env = {**os.environ, **self.settings.config_var_map, **dyno.env}
        env["DYNO"] = dyno.name
        log_file = self._log_file(dyno)
        try:
            dyno.process = await asyncio.create_subprocess_exec(
                "sh",
                "-c",
                dyno.command,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if log_file is not None:
                log_file.close()
        self.dynos[dyno.id] = dyno
        self.created_total += 1
        logger.info(
            "dyno %s started name=%s pid=%d", dyno.id, dyno.name, dyno.process.pid
        )
        self._spawn(self._watch(dyno))

    def stop(self, dyno: Dyno) -> None:
        """Begin a stop (SIGTERM, SIGKILL after the grace) and return at once."""
        if not dyno.stopping:
            dyno.stopping = True
            self._spawn(self._stop(dyno, self.settings.stop_grace_s))

    async def kill_all(self) -> None:
        for dyno in list(self.dynos.values()):
            await self._stop(dyno, grace_s=0.0)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, dyno: Dyno) -> None:
        """Remove the dyno when its process exits; stop it at its time_to_live."""
        assert dyno.process is not None
        try:
            await asyncio.wait_for(dyno.process.wait(), dyno.time_to_live_s)
        except TimeoutError:
            logger.info("dyno %s reached its time_to_live", dyno.id)
            self.stop(dyno)
            await dyno.process.wait()
        self.dynos.pop(dyno.id, None)
        logger.info("dyno %s exited exit_code=%s", dyno.id, dyno.process.returncode)

    async def _stop(self, dyno: Dyno, grace_s: float) -> None:
        process = dyno.process
        if process is None or process.returncode is not None:
            return
        _signal_group(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace_s)
        except TimeoutError:
            logger.info("dyno %s ignored SIGTERM for %.1f s; SIGKILL", dyno.id, grace_s)
            _signal_group(process.pid, signal.SIGKILL)
            await process.wait()
        self.dynos.pop(dyno.id, None)

    def _log_file(self, dyno: Dyno) -> Any:
        if not self.settings.log_dir:
            return None
        path = Path(self.settings.log_dir) / f"dyno-{dyno.id}.log"
        return path.open("ab")


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)
