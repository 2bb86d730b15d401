"""A bare Socket.IO server: the floor that the gateway is measured against.

It acknowledges every `rpc` event and does nothing else. With
--response-file it acknowledges with that recorded JSON-RPC response, its
id set to the request's, so the floor carries the same bytes back to the
client as the measured path does. Without the option it echoes the payload.

The acknowledgement is encoded once with orjson through the gateway's packet
class, as the gateway encodes its own. The server runs under uvicorn with the
gateway's server settings, so the difference between the two is Bellhop's
own work.

    python bench/echo_server.py --port 8765 [--response-file response.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import socketio
import uvicorn
from bellhop_gateway import sio_json


def create_app(response: dict[str, Any] | None = None) -> socketio.ASGIApp:
    server = socketio.AsyncServer(
        async_mode="asgi",
        logger=False,
        serializer=sio_json.JsonPacket,
        json=sio_json,
    )

    async def rpc(sid: str, payload: Any) -> Any:
        if response is None:
            return payload
        request_id = payload.get("id") if isinstance(payload, dict) else None
        return {**response, "id": request_id}

    server.on("rpc", rpc)
    return socketio.ASGIApp(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port to bind")
    parser.add_argument(
        "--response-file",
        type=Path,
        default=None,
        help="JSON-RPC response to acknowledge every request with (default: echo)",
    )
    args = parser.parse_args()
    response = None
    if args.response_file is not None:
        response = json.loads(args.response_file.read_text())
    uvicorn.run(
        create_app(response),
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
