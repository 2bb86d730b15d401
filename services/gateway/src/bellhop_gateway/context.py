"""The shared state of one gateway replica: settings, clients and helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from bellhop_shared.keys import Keys

from bellhop_gateway.limits import QueueAdmitter
from bellhop_gateway.orchestrator import OrchestratorClient
from bellhop_gateway.rpc import IdRewriter
from bellhop_gateway.settings import GatewaySettings
from bellhop_gateway.store import SessionStore
from bellhop_gateway.subscriber import ResultSubscriber


class SocketChannel(Protocol):
    """The Socket.IO operations a session link needs, on this replica's server."""

    async def emit(self, event: str, data: Any, socket_sid: str) -> None: ...

    async def disconnect(self, socket_sid: str) -> None: ...

    async def wait_connected(self, socket_sid: str) -> bool: ...


@dataclass
class GatewayContext:
    settings: GatewaySettings
    redis: aioredis.Redis
    subscriber: ResultSubscriber
    keys: Keys
    store: SessionStore
    admitter: QueueAdmitter
    orchestrator: OrchestratorClient
    new_id: IdRewriter
    sockets: SocketChannel

    @property
    def gateway_id(self) -> str:
        return self.settings.gateway_id
