"""Run bench/load_generator.js, the Node.js load generator, and read its events.

The generator keeps every Socket.IO connection of the concurrent-sessions
benchmark in one Node.js process, which costs less CPU per request than
python-socketio's AsyncClient, so the load generator takes less of the CPU
it shares with the system under test. It writes one JSON event per line on
stdout (see the header of load_generator.js) and keeps its connections open
until `close` is called.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

from harness import REPO, BenchError

SCRIPT = Path(__file__).resolve().parent / "load_generator.js"
NODE_MODULES = REPO / "services" / "gateway" / "node_modules"
# The `results` event carries one record per request: about 6 MB for 60,000.
MAX_LINE_BYTES = 256 * 2**20
CLOSE_TIMEOUT_S = 30.0


def find_node() -> str:
    """Return the node binary; raise BenchError without it or socket.io-client."""
    node = shutil.which("node")
    if node is None:
        raise BenchError(
            "node is not on PATH; install Node.js 18 or newer to run this benchmark"
        )
    if not (NODE_MODULES / "socket.io-client").is_dir():
        raise BenchError(
            f"socket.io-client is missing from {NODE_MODULES}; run `make install`"
        )
    return node


class LoadGenerator:
    """A running load_generator.js process; its stderr goes to a log file."""

    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    async def start(cls, config: dict[str, Any], log_path: Path) -> LoadGenerator:
        env = {**os.environ, "NODE_PATH": str(NODE_MODULES)}
        with log_path.open("wb") as log_file:
            proc = await asyncio.create_subprocess_exec(
                find_node(),
                str(SCRIPT),
                json.dumps(config),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_file,
                env=env,
                cwd=REPO,
                # Its own scheduling group, apart from the services it loads.
                start_new_session=True,
                limit=MAX_LINE_BYTES,
            )
        return cls(proc, log_path)

    async def wait_for(self, event: str) -> dict[str, Any]:
        """Read events until the named one; raise BenchError on `failed` or exit."""
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                await self.proc.wait()
                raise BenchError(
                    f"the load generator exited with code {self.proc.returncode} "
                    f"before its {event!r} event; see {self.log_path}"
                )
            message = json.loads(line)
            if message["event"] == "failed":
                raise BenchError(f"the load generator failed: {message['message']}")
            if message["event"] == event:
                return dict(message)

    async def close(self) -> None:
        """Ask the generator to disconnect and exit; kill it when it does not."""
        if self.proc.returncode is not None:
            return
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(b"close\n")
            await self.proc.stdin.drain()
            self.proc.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            await asyncio.wait_for(self.proc.wait(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
