"""The heartbeats of the processes that run the background work (`worker_heartbeats`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import Connection, delete, func, select, update

from storage import models as m
from storage.db import SessionFactory
from storage.sql import rowcount

#: How often a process running the background work beats (jobs/heartbeat.py).
BEAT_EVERY: Final = timedelta(seconds=10)
#: A newest beat older than this makes `/readyz` answer 503 (several beats missed).
STALE_AFTER: Final = timedelta(seconds=60)
#: A row not rewritten for this long belongs to a process that died without stopping.
FORGET_AFTER = timedelta(days=1)


class WorkerHeartbeats:
    """Write this process's beat; read the newest of all."""

    def __init__(self, session_factory: SessionFactory) -> None:
        self._sessions = session_factory

    def beat(self, name: str, *, host: str, pid: int, started_at: datetime, at: datetime) -> None:
        """Say that the process `name` is alive at `at` (and forget long-dead processes)."""
        hb = m.WorkerHeartbeat
        with self._sessions() as session:
            changed = session.execute(update(hb).where(hb.name == name).values(beat_at=at))
            if not rowcount(changed):
                session.add(hb(name=name, host=host, pid=pid, started_at=started_at, beat_at=at))
                session.execute(delete(hb).where(hb.beat_at < at - FORGET_AFTER))
            session.commit()

    def forget(self, name: str) -> None:
        """Delete the process's row: it stopped."""
        with self._sessions() as session:
            session.execute(delete(m.WorkerHeartbeat).where(m.WorkerHeartbeat.name == name))
            session.commit()


def newest_beat(conn: Connection) -> tuple[datetime | None, int]:
    """The newest beat of any process and how many processes have a row."""
    hb = m.WorkerHeartbeat
    newest, count = conn.execute(select(func.max(hb.beat_at), func.count())).one()
    return newest, int(count)
