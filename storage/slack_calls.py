"""The queue of Slack calls to replay: each lazy listener call, stored before the ack.

The web process enqueues (see `bot.slack_app.QueuedLazyRunner`); the replay worker
(`jobs.slack_replay`) claims calls and runs them. Claims use SKIP LOCKED on PostgreSQL, so
worker processes share the queue and a call runs once at a time; a claimed row carries a
lease, and a row whose worker died comes back when the lease runs out. A call that ran is
deleted.

A named owner of its transactions: each operation commits on its own, outside any unit of
work. A stored call must be durable before Bolt returns the ack (Slack will not send the
click again), and a claim must be visible to the other workers before the call runs (or two
would run it); neither belongs to a use case's unit of work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, delete, func, insert, select, update

from storage.db import SessionFactory
from storage.inbound import clean_text
from storage.models import Organization, SlackDeferredCall
from storage.sql import rowcount

PENDING, RUNNING, FAILED = "pending", "running", "failed"


@dataclass(frozen=True)
class NewCall:
    """A lazy listener call as the web process stores it: Slack's request, as received."""

    team_id: str | None
    function: str
    body: str
    content_type: str


@dataclass(frozen=True)
class ClaimedCall:
    """A claimed call: what the replay worker runs through Bolt."""

    id: int
    org_id: int | None
    function: str
    body: str
    content_type: str
    attempts: int


class SlackCallQueue:
    """The Slack calls waiting for the replay worker (rows of `slack_deferred_calls`), one
    short transaction per operation."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def enqueue(self, calls: Sequence[NewCall], *, now: datetime) -> list[int]:
        """Store calls with one statement; return their ids in the order given.

        Each row finds its organization by a subquery on the Slack team id.
        """
        if not calls:
            return []
        c = SlackDeferredCall
        org = select(Organization.id).where(Organization.slack_team_id == bindparam("team"))
        statement = (
            insert(c)
            .values(
                org_id=org.scalar_subquery(),
                team_id=bindparam("team"),
                status=PENDING,
                attempts=0,
                not_before=now,
                created_at=now,
            )
            .returning(c.id, sort_by_parameter_order=True)
        )
        rows = [
            {
                "team": call.team_id,
                "function": call.function,
                "body": call.body,
                "content_type": call.content_type,
            }
            for call in calls
        ]
        with self._sessions() as session:
            ids = list(session.scalars(statement, rows))
            session.commit()
        return ids

    def claim(self, *, limit: int, now: datetime, lease_until: datetime) -> list[ClaimedCall]:
        """Claim due calls (pending, or running with an expired lease), oldest first."""
        c = SlackDeferredCall
        with self._sessions() as session:
            query = (
                select(c.id)
                .where(c.not_before <= now, c.status.in_([PENDING, RUNNING]))
                .order_by(c.not_before, c.id)
                .limit(limit)
            )
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            ids = list(session.scalars(query))
            if not ids:
                return []
            rows = session.execute(
                update(c)
                .where(c.id.in_(ids))
                .values(status=RUNNING, not_before=lease_until, attempts=c.attempts + 1)
                .returning(c.id, c.org_id, c.function, c.body, c.content_type, c.attempts)
            ).all()
            session.commit()
        position = {call_id: n for n, call_id in enumerate(ids)}
        return sorted(
            (
                ClaimedCall(
                    id=r.id,
                    org_id=r.org_id,
                    function=r.function,
                    body=r.body,
                    content_type=r.content_type,
                    attempts=r.attempts,
                )
                for r in rows
            ),
            key=lambda call: position[call.id],
        )

    def done(self, call: ClaimedCall) -> bool:
        """Forget a call that ran; False when the claim had expired and another took it."""
        c = SlackDeferredCall
        with self._sessions() as session:
            result = session.execute(
                delete(c).where(c.id == call.id, c.status == RUNNING, c.attempts == call.attempts)
            )
            session.commit()
        return rowcount(result) > 0

    def failed(self, call: ClaimedCall, error: str, *, retry_at: datetime | None) -> bool:
        """Record why a call did not run: pending again at `retry_at`, or failed for good.

        False when the claim had expired and another worker took the call.
        """
        c = SlackDeferredCall
        with self._sessions() as session:
            result = session.execute(
                update(c)
                .where(c.id == call.id, c.status == RUNNING, c.attempts == call.attempts)
                .values(
                    status=PENDING if retry_at is not None else FAILED,
                    not_before=retry_at,
                    error=clean_text(error, 2000),
                )
            )
            session.commit()
        return rowcount(result) > 0

    def counts(self) -> dict[str, int]:
        """Rows by status (health and tests)."""
        with self._sessions() as session:
            rows = session.execute(
                select(SlackDeferredCall.status, func.count()).group_by(SlackDeferredCall.status)
            ).all()
        return {status: count for status, count in rows}
