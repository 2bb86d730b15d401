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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import BenchError
from node_child import NODE_MODULES, NodeChild

SCRIPT = Path(__file__).resolve().parent / "sequential_client.js"
MAX_LINE_BYTES = 16 * 2**20
CLOSE_TIMEOUT_S = 10.0
# Seconds added to the client's own timeouts before this process stops waiting.
READ_MARGIN_S = 30.0


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


class SequentialClient(NodeChild):
    """A running sequential_client.js process, with its stderr in a log file."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        log_path: Path,
        request_timeout_s: float,
    ) -> None:
        super().__init__(proc, log_path, "the Node.js client")
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
        proc = await cls.spawn(SCRIPT, config, log_path, MAX_LINE_BYTES)
        return cls(proc, log_path, request_timeout_s)

    async def wait_ready(self, ready_timeout_s: float) -> dict[str, Any]:
        """Wait for the `ready` line and return it, with session_id and node_version."""
        return await self._read_event("ready", ready_timeout_s + READ_MARGIN_S)

    async def _read_event(self, event: str, timeout_s: float) -> dict[str, Any]:
        """Read the next line and raise BenchError unless it is the named event."""
        message = await self.next_event(event, timeout_s)
        if message["event"] != event:
            raise BenchError(f"{self.name} wrote {message!r}, not {event!r}")
        return message

    async def run_block(self, target: str, count: int, request: Any) -> Block:
        """Make count sequential calls on target ("path" or "echo")."""
        command = {"target": target, "count": count, "request": request}
        # A client that has exited leaves its `failed` line or its exit code
        # to the read below.
        await self.send_line(json.dumps(command))
        timeout_s = count * self.request_timeout_s + READ_MARGIN_S
        message = await self._read_event("block", timeout_s)
        return Block(message["elapsed_ms"], message["took_ms"])

    async def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        await super().close(timeout_s)


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
