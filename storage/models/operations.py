"""Tables of the running deployment itself, not of any organization."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base
from storage.types import UTCDateTime


class WorkerHeartbeat(Base):
    """A process running the background work (`salesbot worker`, or `salesbot serve`) says
    it is alive: `beat_at` is rewritten every few seconds, and the row is deleted when the
    process stops. `/readyz` reads the newest beat."""

    __tablename__ = "worker_heartbeats"

    # The process's lease name: host, pid and a random suffix (bot.app._worker_name).
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    host: Mapped[str] = mapped_column(String(255), nullable=False)
    pid: Mapped[int] = mapped_column(Integer, nullable=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
