"""HTTP routes: the explorer page, its Socket.IO client library, and /healthz.

The browser library comes from npm (services/gateway/package.json) and is
served straight from node_modules, never copied into the repository. When it
is missing the page is replaced by an error page that explains how to install
it.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from bellhop_gateway.settings import GatewaySettings

SOCKET_IO_BUNDLE = Path("socket.io-client") / "dist" / "socket.io.min.js"


def socket_io_bundle(settings: GatewaySettings) -> Path:
    return settings.gateway_node_modules / SOCKET_IO_BUNDLE


def missing_bundle_message(settings: GatewaySettings) -> str:
    return (
        f"The Socket.IO browser client is missing: {socket_io_bundle(settings)} "
        f"does not exist. Run `npm ci` in {settings.gateway_node_modules.parent} "
        "(or set GATEWAY_NODE_MODULES to a node_modules folder that has "
        "socket.io-client), then reload."
    )


def _error_page(message: str) -> HTMLResponse:
    body = (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        "<title>Bellhop: setup needed</title>"
        "<h1>Bellhop cannot start the page</h1>"
        f"<p id=setup-error>{html.escape(message)}</p>"
    )
    return HTMLResponse(body, status_code=503)


def build_router(settings: GatewaySettings, gateway_id: str) -> APIRouter:
    router = APIRouter()
    bundle = socket_io_bundle(settings)
    index = settings.gateway_web_dir / "index.html"

    @router.get("/", include_in_schema=False)
    async def page() -> Response:
        if not bundle.is_file():
            return _error_page(missing_bundle_message(settings))
        return FileResponse(index, media_type="text/html")

    @router.get("/vendor/socket.io.min.js", include_in_schema=False)
    async def socket_io_client() -> Response:
        if not bundle.is_file():
            return Response(
                missing_bundle_message(settings),
                status_code=503,
                media_type="text/plain",
            )
        return FileResponse(bundle, media_type="text/javascript")

    @router.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "gateway_id": gateway_id})

    return router


def mount_web(app: FastAPI, settings: GatewaySettings, gateway_id: str) -> None:
    app.include_router(build_router(settings, gateway_id))
    app.mount("/static", StaticFiles(directory=settings.gateway_web_dir), name="static")
