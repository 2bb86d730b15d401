"""The resume grace period: end detached sessions that no client resumed.

A disconnect puts the session in the detached set with the time its grace
ends. Every replica sweeps that set, and the claim script lets exactly one of
them end each due session, so a session is ended even when the replica its
client left has stopped. A resume removes the session from the set first.
"""

from __future__ import annotations

import asyncio
import logging

from bellhop_shared.logging import describe_error
from redis.exceptions import RedisError

from bellhop_gateway.orchestrator import OrchestratorClient, OrchestratorError
from bellhop_gateway.store import SessionStore

logger = logging.getLogger(__name__)

# A failed DELETE is retried after this long, while the record still exists.
RETRY_DELETE_S = 15.0
MAX_BACKOFF_S = 30.0


class GraceKeeper:
    """Starts grace periods and ends the sessions whose grace ran out."""

    def __init__(
        self,
        gateway_id: str,
        store: SessionStore,
        orchestrator: OrchestratorClient,
        grace_s: float,
    ) -> None:
        self._gateway_id = gateway_id
        self._store = store
        self._orchestrator = orchestrator
        self.grace_s = grace_s
        # Sweep often enough that a session ends within about a second of its
        # grace, but not more than 4 times a second.
        self.sweep_interval_s = min(1.0, max(0.25, grace_s / 4))

    async def detach(
        self, session_id: str, attachment: str, grace_s: float | None = None
    ) -> None:
        """Start the grace period of a session its socket just left.

        grace_s overrides GATEWAY_RESUME_GRACE_S; 0 ends the session now.
        """
        grace_s = self.grace_s if grace_s is None else grace_s
        started = await self._store.detach(session_id, attachment, grace_s)
        if not started:
            logger.info(
                "gateway %s session %s is no longer held by this connection "
                "(ended, or resumed elsewhere); no grace period",
                self._gateway_id,
                session_id,
            )
            return
        logger.info(
            "gateway %s session %s detached grace_s=%g",
            self._gateway_id,
            session_id,
            grace_s,
        )
        if grace_s == 0:
            await self.sweep_once()

    async def run(self) -> None:
        """Sweep the detached set until cancelled."""
        backoff_s = self.sweep_interval_s
        while True:
            try:
                await self.sweep_once()
                backoff_s = self.sweep_interval_s
            except (RedisError, OSError) as exc:
                logger.warning(
                    "gateway %s grace sweep failed error=%s; retrying in %.1f s",
                    self._gateway_id,
                    describe_error(exc),
                    backoff_s,
                )
                backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)
            except Exception:
                # Without the sweeper no detached session would ever end.
                logger.exception("gateway %s grace sweep failed", self._gateway_id)
                backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)
            await asyncio.sleep(backoff_s)

    async def sweep_once(self) -> None:
        for session_id in await self._store.due_sessions():
            if await self._store.claim(session_id):
                await self.end_session(session_id, "grace period over, no resume")

    async def end_session(self, session_id: str, reason: str) -> None:
        """DELETE the session at the orchestrator, which stops its worker."""
        try:
            record = await self._orchestrator.delete_session(session_id)
        except OrchestratorError as exc:
            await self._retry_later(session_id, exc)
            return
        logger.info(
            "gateway %s session %s ended reason=%s known=%s",
            self._gateway_id,
            session_id,
            reason,
            record is not None,
        )

    async def _retry_later(self, session_id: str, exc: OrchestratorError) -> None:
        try:
            retry = await self._store.exists(session_id)
            if retry:
                await self._store.defer(session_id, RETRY_DELETE_S)
        except (RedisError, OSError):
            retry = False
        logger.error(
            "gateway %s session %s delete failed: %s; %s",
            self._gateway_id,
            session_id,
            exc,
            f"retrying in {RETRY_DELETE_S:g} s" if retry else "giving up",
        )
