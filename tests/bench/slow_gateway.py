"""A stand-in gateway for the load generator's tests: every session is ready.

On connect it emits the `session` event with state `ready`, or `failed` when
the auth dataset is "broken". It acknowledges each `rpc` request with a
JSON-RPC result (count 0, took_ms 0.0) after --delay-s seconds, except
warm-up requests (negative ids), which it acknowledges at once.

    python tests/bench/slow_gateway.py --port 8765 --delay-s 0.6
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import socketio
import uvicorn


def create_app(delay_s: float) -> socketio.ASGIApp:
    server = socketio.AsyncServer(async_mode="asgi", logger=False)

    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        dataset = auth.get("dataset") if isinstance(auth, dict) else None
        state = "failed" if dataset == "broken" else "ready"
        # The client learns of the connection only after this handler returns.
        asyncio.get_running_loop().call_later(
            0.05,
            lambda: asyncio.ensure_future(
                server.emit(
                    "session",
                    {"session_id": sid, "state": state, "message": state},
                    to=sid,
                )
            ),
        )

    async def rpc(sid: str, request: dict[str, Any]) -> dict[str, Any]:
        if request["id"] >= 0:
            await asyncio.sleep(delay_s)
        result = {"count": 0, "took_ms": 0.0}
        return {"jsonrpc": "2.0", "id": request["id"], "result": result}

    server.on("connect", connect)
    server.on("rpc", rpc)
    return socketio.ASGIApp(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port to bind")
    parser.add_argument(
        "--delay-s", type=float, required=True, help="seconds before each ack"
    )
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.delay_s),
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
