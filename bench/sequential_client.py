"""Run bench/sequential_client.js, the e2e benchmark's Node.js client, in blocks.

Browsers run the JavaScript socket.io-client, so the end-to-end latency
targets are judged on this client. It runs in its own Node.js process and
times each call there. This process sends it one command per block and
reads back the block's timings (see the header of sequential_client.js).

`Processes` in harness.py does not start it because that class points
stdin at /dev/null and stdout at a log file, and this client needs both as
pipes. `sequential_client()` stops it in every exit path instead. The
client also exits when its stdin closes (after the block in progress), so it
ends soon after this process even when this process is killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import REPO, BenchError
from load_generator import NODE_MODULES

SCRIPT = Path(__file__).resolve().parent / "sequential_client.js"
MAX_LINE_BYTES = 16 * 2**20
CLOSE_TIMEOUT_S = 10.0
# Seconds added to the client's own timeouts before this process stops waiting.
READ_MARGIN_S = 30.0


def find_node_client() -> str:
    """Return the node binary, or raise BenchError if it or the package is missing."""
    node = shutil.which("node")
    if node is None:
        raise BenchError(
            "node is not on PATH, and the e2e benchmark measures the "
            "socket.io-client library on Node.js; install Node.js (with npm), "
            "then run `make install` to add socket.io-client"
        )
    if not (NODE_MODULES / "socket.io-client").is_dir():
        raise BenchError(
            f"socket.io-client is missing from {NODE_MODULES}, and the e2e "
            "benchmark's Node.js client needs it; run `make install`"
        )
    return node


def socket_io_client_version() -> str:
    package = json.loads(
        (NODE_MODULES / "socket.io-client" / "package.json").read_text()
    )
    return str(package["version"])


@dataclass
class Block:
    """Timings of one block of sequential calls, in milliseconds."""

    elapsed_ms: list[float]
    took_ms: list[float]


class SequentialClient:
    """A running sequential_client.js process, with its stderr in a log file."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        log_path: Path,
        request_timeout_s: float,
    ) -> None:
        self.proc = proc
        self.log_path = log_path
        self.request_timeout_s = request_timeout_s

    @classmethod
    async def start(
        cls,
        gateway_url: str,
        echo_url: str,
        dataset: str,
        ready_timeout_s: float,
        request_timeout_s: float,
        log_path: Path,
    ) -> SequentialClient:
        config = {
            "gateway_url": gateway_url,
            "echo_url": echo_url,
            "dataset": dataset,
            "ready_timeout_s": ready_timeout_s,
            "request_timeout_ms": request_timeout_s * 1000,
        }
        env = {**os.environ, "NODE_PATH": str(NODE_MODULES)}
        with log_path.open("wb") as log_file:
            proc = await asyncio.create_subprocess_exec(
                find_node_client(),
                str(SCRIPT),
                json.dumps(config),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_file,
                env=env,
                cwd=REPO,
                # Its own scheduling group, as harness.Processes starts services.
                start_new_session=True,
                limit=MAX_LINE_BYTES,
            )
        return cls(proc, log_path, request_timeout_s)

    async def wait_ready(self, ready_timeout_s: float) -> dict[str, Any]:
        """Wait for the `ready` line and return it, with session_id and node_version."""
        return await self._read_event("ready", ready_timeout_s + READ_MARGIN_S)

    async def _read_event(self, event: str, timeout_s: float) -> dict[str, Any]:
        """Read the next line and raise BenchError unless it is the named event."""
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(timeout_s):
                line = await self.proc.stdout.readline()
        except TimeoutError:
            raise BenchError(
                f"the Node.js client wrote no {event!r} line within "
                f"{timeout_s:g} s; see {self.log_path}"
            ) from None
        if not line:
            await self.proc.wait()
            raise BenchError(
                f"the Node.js client exited with code {self.proc.returncode} "
                f"before its {event!r} line; see {self.log_path}"
            )
        message = json.loads(line)
        if message["event"] == "failed":
            raise BenchError(f"the Node.js client failed: {message['message']}")
        if message["event"] != event:
            raise BenchError(f"the Node.js client wrote {message!r}, not {event!r}")
        return dict(message)

    async def run_block(self, target: str, count: int, request: Any) -> Block:
        """Make count sequential calls on target ("path" or "echo")."""
        assert self.proc.stdin is not None
        command = {"target": target, "count": count, "request": request}
        try:
            self.proc.stdin.write(json.dumps(command).encode() + b"\n")
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            # The client has exited, and its `failed` line or its exit code
            # is read below.
            pass
        timeout_s = count * self.request_timeout_s + READ_MARGIN_S
        message = await self._read_event("block", timeout_s)
        return Block(message["elapsed_ms"], message["took_ms"])

    async def close(self) -> None:
        """Ask the client to disconnect and exit, and kill it after CLOSE_TIMEOUT_S."""
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


@asynccontextmanager
async def sequential_client(
    gateway_url: str,
    echo_url: str,
    dataset: str,
    ready_timeout_s: float,
    request_timeout_s: float,
    log_path: Path,
) -> AsyncIterator[SequentialClient]:
    """Start the client and stop it on exit. Call wait_ready before run_block.

    The caller may do other work between the two, such as waiting for another
    session, while the gateway provisions this client's worker.
    """
    client = await SequentialClient.start(
        gateway_url, echo_url, dataset, ready_timeout_s, request_timeout_s, log_path
    )
    try:
        yield client
    finally:
        await client.close()
