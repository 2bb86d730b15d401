"""The ASGI application: Socket.IO in front, FastAPI for every other path."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import socketio
from fastapi import FastAPI

from bellhop_gateway.gateway import Gateway
from bellhop_gateway.settings import GatewaySettings
from bellhop_gateway.web import missing_bundle_message, mount_web, socket_io_bundle

logger = logging.getLogger(__name__)


def create_app(settings: GatewaySettings) -> socketio.ASGIApp:
    """Build the gateway; its lifespan starts and stops the session machinery."""
    gateway = Gateway(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if not socket_io_bundle(settings).is_file():
            logger.warning(
                "gateway %s %s", gateway.id, missing_bundle_message(settings)
            )
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    api = FastAPI(title="Bellhop gateway", lifespan=lifespan)
    mount_web(api, settings, gateway.id)
    api.state.gateway = gateway
    return socketio.ASGIApp(gateway.sio, other_asgi_app=api)
