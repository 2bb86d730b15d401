"""Node.js benchmark clients, run as child processes that write JSON lines.

bench/load_generator.js and bench/sequential_client.js both take their config
as a JSON argument, read commands on stdin, write one JSON object with an
`event` field per line on stdout, and exit on a `close` line or at the end of
stdin. Both load socket.io-client from the gateway's node_modules, which
`make install` fills.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

from harness import REPO, BenchError

NODE_MODULES = REPO / "services" / "gateway" / "node_modules"


def find_node() -> str:
    """Return the node binary; raise BenchError without it or socket.io-client."""
    node = shutil.which("node")
    if node is None:
        raise BenchError(
            "node is not on PATH, and this benchmark runs socket.io-client on "
            "Node.js; install Node.js 18 or newer, then run `make install`"
        )
    if not (NODE_MODULES / "socket.io-client").is_dir():
        raise BenchError(
            f"socket.io-client is missing from {NODE_MODULES}; run `make install`"
        )
    return node


class NodeChild:
    """A running Node.js client; its stderr goes to a log file."""

    def __init__(
        self, proc: asyncio.subprocess.Process, log_path: Path, name: str
    ) -> None:
        self.proc = proc
        self.log_path = log_path
        self.name = name

    @property
    def pid(self) -> int:
        return self.proc.pid

    @staticmethod
    async def spawn(
        script: Path, config: dict[str, Any], log_path: Path, max_line_bytes: int
    ) -> asyncio.subprocess.Process:
        """Start script with config, stdin and stdout as pipes."""
        env = {**os.environ, "NODE_PATH": str(NODE_MODULES)}
        with log_path.open("wb") as log_file:
            return await asyncio.create_subprocess_exec(
                find_node(),
                str(script),
                json.dumps(config),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_file,
                env=env,
                cwd=REPO,
                # Its own scheduling group, as harness.Processes starts services.
                start_new_session=True,
                limit=max_line_bytes,
            )

    async def next_event(
        self, expected: str, timeout_s: float | None
    ) -> dict[str, Any]:
        """Read the next event line; raise BenchError on `failed`, exit or timeout.

        expected names the event the caller waits for, in the error messages.
        """
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(timeout_s):
                line = await self.proc.stdout.readline()
        except TimeoutError:
            raise BenchError(
                f"{self.name} wrote no {expected!r} event within {timeout_s:g} s; "
                f"see {self.log_path}"
            ) from None
        if not line:
            await self.proc.wait()
            raise BenchError(
                f"{self.name} exited with code {self.proc.returncode} before its "
                f"{expected!r} event; see {self.log_path}"
            )
        message: dict[str, Any] = json.loads(line)
        if message["event"] == "failed":
            raise BenchError(f"{self.name} failed: {message['message']}")
        return message

    async def send_line(self, text: str) -> None:
        """Write one line to stdin. A client that has exited shows on the next read."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(text.encode() + b"\n")
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass

    async def close(self, timeout_s: float) -> None:
        """Ask the client to disconnect and exit; kill it after timeout_s."""
        if self.proc.returncode is not None:
            return
        assert self.proc.stdin is not None
        await self.send_line("close")
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
