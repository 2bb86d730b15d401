"""A bare Socket.IO echo server: the floor that the gateway is measured against.

It acknowledges every `rpc` event with the payload it received, and does
nothing else. It runs under uvicorn with the gateway's server settings, so
the difference between the two is Bellhop's own work.

    python bench/echo_server.py --port 8765
"""

from __future__ import annotations

import argparse
from typing import Any

import socketio
import uvicorn


def create_app() -> socketio.ASGIApp:
    server = socketio.AsyncServer(async_mode="asgi", logger=False)

    async def rpc(sid: str, payload: Any) -> Any:
        return payload

    server.on("rpc", rpc)
    return socketio.ASGIApp(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port to bind")
    args = parser.parse_args()
    uvicorn.run(
        create_app(),
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        access_log=False,
        # The gateway's default (GATEWAY_WS_COMPRESSION=false). Clients that
        # offer permessage-deflate, as socket.io-client on Node.js does, would
        # otherwise get every frame compressed here and not at the gateway.
        ws_per_message_deflate=False,
    )


if __name__ == "__main__":
    main()
