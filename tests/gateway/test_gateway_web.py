"""HTTP routes (page, client library, error page, /healthz) and the websocket."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import websockets
from support import REPO, skip_or_fail

BUNDLE = REPO / "services/gateway/node_modules/socket.io-client/dist/socket.io.min.js"


def test_page_and_assets_served(gateway: Any) -> None:
    if not BUNDLE.exists():
        skip_or_fail("socket.io-client is missing; run `npm ci` in services/gateway")

    page = httpx.get(gateway.url + "/")
    script = httpx.get(gateway.url + "/static/app.js")
    bundle = httpx.get(gateway.url + "/vendor/socket.io.min.js")
    health = httpx.get(gateway.url + "/healthz")

    assert page.status_code == 200
    assert 'id="count"' in page.text
    assert script.status_code == 200
    assert bundle.status_code == 200
    assert bundle.content == BUNDLE.read_bytes()
    assert health.json() == {"status": "ok", "gateway_id": "g-one"}


@pytest.fixture(scope="module")
def gateway_without_bundle(start_gateway: Any, tmp_path_factory: Any) -> Any:
    empty = tmp_path_factory.mktemp("no-node-modules")
    return start_gateway("g-no-bundle", GATEWAY_NODE_MODULES=str(empty))


def test_missing_bundle_gives_error_page(gateway_without_bundle: Any) -> None:
    page = httpx.get(gateway_without_bundle.url + "/")
    bundle = httpx.get(gateway_without_bundle.url + "/vendor/socket.io.min.js")

    assert page.status_code == 503
    assert "npm ci" in page.text
    assert bundle.status_code == 503
    assert "socket.io-client" in bundle.text
    assert (
        "The Socket.IO browser client is missing" in gateway_without_bundle.log_text()
    )


async def offered_extensions(url: str) -> str:
    """Open an engine.io websocket offering compression; return the reply header."""
    ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    async with websockets.connect(ws_url, compression="deflate") as socket:
        opening = await socket.recv()
        assert str(opening).startswith("0{"), opening
        return str(socket.response.headers.get("Sec-WebSocket-Extensions") or "")


def test_websocket_compression_is_off_by_default(gateway: Any) -> None:
    assert asyncio.run(offered_extensions(gateway.url)) == ""


def test_websocket_compression_can_be_turned_on(
    start_gateway: Callable[..., Any],
) -> None:
    compressed = start_gateway("g-deflate", GATEWAY_WS_COMPRESSION="true")

    extensions = asyncio.run(offered_extensions(compressed.url))

    assert "permessage-deflate" in extensions
