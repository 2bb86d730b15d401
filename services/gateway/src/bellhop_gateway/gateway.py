"""The Socket.IO side of one gateway replica: connect, resume, rpc, disconnect.

Replicas share sessions through Redis (records, the detached set) and reach
each other's sockets through python-socketio's AsyncRedisManager, which a
resume on one replica uses to disconnect the session's old socket on another.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from typing import Any

import redis.asyncio as aioredis
import socketio
from bellhop_shared.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    SESSION_ENDED,
    error_response,
)
from bellhop_shared.keys import new_session_id
from bellhop_shared.logging import describe_error
from bellhop_shared.redis_client import connection_options, tls_options
from bellhop_shared.states import SessionState
from redis.exceptions import RedisError

from bellhop_gateway import sio_json
from bellhop_gateway.auth import ConnectRequest, read_connect_request, reject
from bellhop_gateway.context import GatewayContext
from bellhop_gateway.grace import GraceKeeper
from bellhop_gateway.limits import Limits, QueueAdmitter
from bellhop_gateway.link import RESUMED_ELSEWHERE_MESSAGE, SessionLink
from bellhop_gateway.orchestrator import OrchestratorClient
from bellhop_gateway.pipelined import PipelinedConnection
from bellhop_gateway.rpc import IdRewriter
from bellhop_gateway.settings import GatewaySettings
from bellhop_gateway.store import (
    AttachResult,
    SessionRecord,
    SessionStore,
    hash_resume_token,
)
from bellhop_gateway.subscriber import ResultSubscriber

logger = logging.getLogger(__name__)

CONNECT_WAIT_S = 5.0
# Commands other than queue pushes (heartbeats, records) share
# GATEWAY_REDIS_CONNECTIONS connections and wait up to REDIS_POOL_WAIT_S for a
# free one, so the number of connections stays fixed however many sessions
# the replica serves. Queue pushes go through one pipelined connection.
REDIS_POOL_WAIT_S = 10.0


def _command_client(settings: GatewaySettings) -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.gateway_redis_connections,
        timeout=REDIS_POOL_WAIT_S,
        decode_responses=True,
        client_name=f"bellhop-gateway:{settings.gateway_id}",
        **connection_options(settings.redis_url),
    )
    return aioredis.Redis.from_pool(pool)


def _secret(settings: GatewaySettings) -> str | None:
    secret = settings.gateway_secret
    return secret.get_secret_value() if secret is not None else None


def _limits(settings: GatewaySettings) -> Limits:
    return Limits(
        max_message_bytes=settings.gateway_max_message_bytes,
        rate_per_s=settings.gateway_rate_limit,
        burst=settings.gateway_rate_burst,
        max_queue=settings.gateway_max_queue,
    )


class Gateway:
    """The Socket.IO server and the session links of this replica."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.id = settings.gateway_id
        keys = settings.keys
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            # Only the TLS options: the manager's pub/sub connection idles for
            # long stretches, so the shared read timeout would cut it.
            client_manager=socketio.AsyncRedisManager(
                settings.redis_url,
                channel=keys.socketio_channel,
                redis_options=tls_options(settings.redis_url),
            ),
            cors_allowed_origins=settings.cors_origins,
            max_http_buffer_size=settings.engine_max_bytes,
            logger=False,
            engineio_logger=False,
            serializer=sio_json.JsonPacket,
            json=sio_json,
        )
        redis = _command_client(settings)
        self.subscriber = ResultSubscriber(
            settings.redis_url,
            f"bellhop-gateway:{self.id}:results",
            f"gateway {self.id}",
        )
        token = settings.orchestrator_token
        orchestrator = OrchestratorClient(
            settings.orchestrator_url,
            token.get_secret_value() if token is not None else None,
            settings.orchestrator_timeout_s,
        )
        store = SessionStore(
            redis, keys, settings.record_ttl_s, settings.gateway_client_ttl_s
        )
        self.ctx = GatewayContext(
            settings=settings,
            redis=redis,
            subscriber=self.subscriber,
            keys=keys,
            store=store,
            admitter=QueueAdmitter(
                PipelinedConnection(
                    settings.redis_url, f"bellhop-gateway:{self.id}:queue"
                ),
                keys,
                _limits(settings),
            ),
            orchestrator=orchestrator,
            new_id=IdRewriter(self.id),
            sockets=self,
        )
        self.grace = GraceKeeper(
            self.id, store, orchestrator, settings.gateway_resume_grace_s
        )
        self.links: dict[str, SessionLink] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self.sio.on("connect", self.on_connect)
        self.sio.on("disconnect", self.on_disconnect)
        self.sio.on("rpc", self.on_rpc)

    async def start(self) -> None:
        if _secret(self.settings) is None:
            logger.warning(
                "gateway %s accepts anonymous sessions because GATEWAY_SECRET is "
                "unset; set it to require signed tokens",
                self.id,
            )
        self.subscriber.start()
        self._sweeper = asyncio.create_task(self.grace.run())
        logger.info(
            "gateway %s started orchestrator=%s grace_s=%g rpc_timeout_s=%g",
            self.id,
            self.settings.orchestrator_url,
            self.settings.gateway_resume_grace_s,
            self.settings.gateway_rpc_timeout_s,
        )

    async def stop(self) -> None:
        """Detach every local session so clients can resume on another replica."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        for socket_sid in list(self.links):
            await self._release(socket_sid, "gateway stopping")
        await self.ctx.orchestrator.aclose()
        await self.subscriber.stop()
        await self.ctx.admitter.aclose()
        await self.ctx.redis.aclose()
        logger.info("gateway %s stopped", self.id)

    # Socket.IO event handlers

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        request = read_connect_request(auth, _secret(self.settings))
        try:
            if request.is_resume:
                link = await self._resume(sid, request)
            else:
                link = await self._create(sid, request)
        except (RedisError, OSError) as exc:
            logger.error(
                "gateway %s connect failed error=%s", self.id, describe_error(exc)
            )
            raise reject(
                "unavailable", "The gateway cannot reach its store; retry in a moment."
            ) from None
        self.links[sid] = link
        link.start()
        logger.info(
            "gateway %s client connected session=%s user=%s dataset=%s resumed=%s",
            self.id,
            link.session_id,
            link.record.user,
            link.record.dataset,
            request.is_resume,
        )

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        await self._release(sid, str(reason))

    async def on_rpc(self, sid: str, *args: Any) -> Any:
        link = self.links.get(sid)
        if link is None:
            return error_response(
                None,
                SESSION_ENDED,
                "No session is attached to this connection; reconnect.",
            )
        if len(args) != 1:
            return error_response(
                None,
                INVALID_REQUEST,
                "Invalid request: send one request or batch per rpc event, "
                f"got {len(args)} arguments.",
            )
        try:
            return await link.call(args[0])
        except Exception:
            # The ack is the client's only answer: a bug here must not hang it.
            logger.exception("%s rpc failed", link.label)
            return error_response(
                None, INTERNAL_ERROR, "Internal error in the gateway."
            )

    # SocketChannel, used by the links

    async def emit(self, event: str, data: Any, socket_sid: str) -> None:
        # Links only serve sockets of this replica, so the Redis fan-out is skipped.
        await self.sio.emit(event, data, to=socket_sid, ignore_queue=True)

    async def disconnect(self, socket_sid: str) -> None:
        await self.sio.disconnect(socket_sid)

    async def wait_connected(self, socket_sid: str) -> bool:
        """Wait until the CONNECT packet went out, so events follow it."""
        deadline = time.monotonic() + CONNECT_WAIT_S
        while not self.sio.manager.is_connected(socket_sid, "/"):
            if time.monotonic() > deadline or socket_sid not in self.links:
                return False
            await asyncio.sleep(0.01)
        return True

    # Session attach and release

    async def _create(self, sid: str, request: ConnectRequest) -> SessionLink:
        record = SessionRecord(new_session_id(), request.user, request.dataset)
        resume_token = secrets.token_urlsafe(32)
        attachment = f"{self.id}/{sid}"
        await self.ctx.store.create(record, hash_resume_token(resume_token), attachment)
        return SessionLink(self.ctx, record, sid, resume_token, is_new=True)

    async def _resume(self, sid: str, request: ConnectRequest) -> SessionLink:
        assert request.session_id is not None and request.resume_token is not None
        record = await self.ctx.store.read(request.session_id)
        if record is None:
            raise self._not_found()
        if _secret(self.settings) is not None and record.user != request.user:
            logger.warning("gateway %s resume by another user rejected", self.id)
            raise reject("session_forbidden", "This session belongs to another user.")
        attachment = f"{self.id}/{sid}"
        client_json = json.dumps({"gateway_id": self.id, "connected_at": time.time()})
        result, previous = await self.ctx.store.attach(
            record.session_id,
            hash_resume_token(request.resume_token),
            attachment,
            client_json,
        )
        if result is AttachResult.WRONG_TOKEN:
            logger.warning(
                "gateway %s resume rejected session=%s: wrong resume token",
                self.id,
                record.session_id,
            )
            raise reject("invalid_resume_token", "The resume token does not match.")
        if result is not AttachResult.ATTACHED:
            raise self._not_found()
        if previous and previous != attachment:
            await self._take_over(record, previous)
        return SessionLink(self.ctx, record, sid, request.resume_token, is_new=False)

    def _not_found(self) -> socketio.exceptions.ConnectionRefusedError:
        return reject(
            "session_not_found",
            "No such session, or it has ended; connect with a dataset to start anew.",
        )

    async def _take_over(self, record: SessionRecord, previous: str) -> None:
        """Tell the socket that held the session it ended, then disconnect it.

        The socket may be on any replica. The event and the disconnect go
        through the Socket.IO manager's Redis channel in that order.
        """
        _, _, old_socket_sid = previous.partition("/")
        logger.info(
            "gateway %s session %s taken over from %s",
            self.id,
            record.session_id,
            previous,
        )
        ended = {
            "session_id": record.session_id,
            "resume_token": None,
            "state": SessionState.ENDED.value,
            "progress": 0.0,
            "message": RESUMED_ELSEWHERE_MESSAGE,
            "dataset": record.dataset,
            "worker_id": None,
        }
        try:
            await self.sio.emit("session", ended, to=old_socket_sid)
            await self.sio.disconnect(old_socket_sid)
        except (RedisError, OSError) as exc:
            logger.warning(
                "gateway %s take-over notice failed error=%s",
                self.id,
                describe_error(exc),
            )

    async def _release(self, sid: str, reason: str) -> None:
        """Close a socket's link and start the session's grace period."""
        link = self.links.pop(sid, None)
        if link is None:
            return
        await link.close()
        await link.wait_provisioned()
        # A finished session has nothing to resume: end it at once.
        grace_s = 0.0 if link.finished else None
        try:
            await self.grace.detach(link.session_id, link.attachment, grace_s)
        except (RedisError, OSError) as exc:
            logger.error(
                "%s detach failed error=%s; the worker stops when idle",
                link.label,
                describe_error(exc),
            )
        logger.info(
            "gateway %s client disconnected session=%s reason=%s",
            self.id,
            link.session_id,
            reason,
        )
