"""Run bench/load_generator.js, the Node.js load generator, and read its events.

The generator keeps every Socket.IO connection of the concurrent-sessions
benchmark in one Node.js process, which costs less CPU per request than
python-socketio's AsyncClient, so the load generator takes less of the CPU
it shares with the system under test. It writes one JSON event per line on
stdout (see the header of load_generator.js) and keeps its connections open
until `close` is called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from node_child import NodeChild

SCRIPT = Path(__file__).resolve().parent / "load_generator.js"
# The `results` event carries one record per request: about 6 MB for 60,000.
MAX_LINE_BYTES = 256 * 2**20
CLOSE_TIMEOUT_S = 30.0


class LoadGenerator(NodeChild):
    """A running load_generator.js process; its stderr goes to a log file."""

    @classmethod
    async def start(cls, config: dict[str, Any], log_path: Path) -> LoadGenerator:
        proc = await cls.spawn(SCRIPT, config, log_path, MAX_LINE_BYTES)
        return cls(proc, log_path, "the load generator")

    async def wait_for(self, event: str) -> dict[str, Any]:
        """Read events until the named one; raise BenchError on `failed` or exit."""
        while True:
            message = await self.next_event(event, None)
            if message["event"] == event:
                return message

    async def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        await super().close(timeout_s)
