"""The queue of Slack work deferred past the ack (imported by storage.models).

A listener acks a click, command, submission or event at once and leaves its slow part
(Bolt's "lazy" function) as a row here, in the request's own thread, before the ack
is returned: the request is durable before Slack hears 200, and a worker process,
not the web process, runs the work. A row is deleted when its work ran; a crashed
worker's rows come back when their lease (`not_before`) runs out.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, _counter, _created, _pk
from storage.types import BigId, UTCDateTime


class SlackDeferredCall(Base):
    """One lazy listener call: the signed request's body and the function to run with it."""

    __tablename__ = "slack_deferred_calls"
    __table_args__ = (
        Index(
            "ix_slack_deferred_calls_not_before",
            "not_before",
            postgresql_where=text("not_before IS NOT NULL"),
            sqlite_where=text("not_before IS NOT NULL"),
        ),
    )

    id: Mapped[int] = _pk()
    # The workspace's organization; null when the workspace is bound to none (the work
    # then tells the user so).
    org_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("organizations.id", ondelete="CASCADE")
    )
    team_id: Mapped[str | None] = mapped_column(String(32))
    function: Mapped[str] = mapped_column(String(100), nullable=False)
    # The request exactly as Slack sent it (already verified by the web process).
    body: Mapped[str] = mapped_column(Text, nullable=False)
    content_type: Mapped[str] = mapped_column(String(100), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    attempts: Mapped[int] = _counter()
    # Pending: when it may run; running: the end of the worker's lease; failed: null.
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
