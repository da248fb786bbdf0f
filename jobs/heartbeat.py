"""The worker's heartbeat: a periodic job that says the background work is running.

Every process that runs the background work (`salesbot worker`, `salesbot serve`) rewrites
its row of `worker_heartbeats` every `BEAT_EVERY` from its periodic scheduler, and deletes it
when it stops. `/readyz` calls the deployment not ready when the newest beat is older than
`STALE_AFTER`: no process runs the drafting, the outbox or the Slack work left after acks
(or its scheduler is stuck). Every process beats (no lock): each says it is alive.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime

from domain.clock import Clock
from storage.heartbeats import BEAT_EVERY, STALE_AFTER, WorkerHeartbeats

log = logging.getLogger(__name__)

__all__ = ["BEAT_EVERY", "STALE_AFTER", "Heartbeat"]


class Heartbeat:
    """Beats for this process under `name` (its lease name: host, pid, random suffix)."""

    NAME = "worker-heartbeat"

    def __init__(self, heartbeats: WorkerHeartbeats, clock: Clock, *, name: str) -> None:
        self._heartbeats = heartbeats
        self._clock = clock
        self.name = name
        self._started_at: datetime | None = None

    def run_once(self) -> int:
        """Write this process's beat; return 0 (one beat a run is all there is to do)."""
        now = self._clock.now()
        if self._started_at is None:
            self._started_at = now
        self._heartbeats.beat(
            self.name,
            host=socket.gethostname()[:255],
            pid=os.getpid(),
            started_at=self._started_at,
            at=now,
        )
        return 0

    def forget(self) -> None:
        """Delete this process's row as it stops (never raises: stopping goes on)."""
        if self._started_at is None:
            return
        try:
            self._heartbeats.forget(self.name)
        except Exception:  # noqa: BLE001 - e.g. the database away: the row goes stale instead
            log.warning("could not delete the worker heartbeat", exc_info=True)
