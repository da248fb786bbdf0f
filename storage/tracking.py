"""The opens and clicks of tracked sends (`email_tracking_events`).

A fetch is one statement: an insert of its (send, kind, link, by_bot) row that, when the
row exists, adds a hit and moves `last_at` instead (INSERT … ON CONFLICT DO UPDATE, on
SQLite and PostgreSQL alike), so two fetches at once count two hits on one row. Reading
the send is a primary-key lookup: both stay cheap for the public routes that call them.
"""

from __future__ import annotations

from sqlalchemy import case, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from domain.tracking import TrackedSend, TrackingHit
from storage import models as m


class TrackingRepo:
    """Counts fetches of tracked pixels and links."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def tracked_send(self, org_id: int, send_id: int) -> TrackedSend | None:
        """Return an organization's tracked send; None if it is not one (or not its)."""
        send = m.EmailSend
        row = self._s.execute(
            select(send.id, send.org_id, send.contact_id, send.sent_at).where(
                send.id == send_id, send.org_id == org_id, send.tracked.is_(True)
            )
        ).one_or_none()
        if row is None:
            return None
        return TrackedSend(
            send_id=int(row.id),
            org_id=int(row.org_id),
            contact_id=row.contact_id,
            sent_at=row.sent_at,
        )

    def record_hit(self, hit: TrackingHit) -> None:
        """Count a fetch: a new (send, kind, link, by_bot) row, or one more hit of it."""
        dialect = self._s.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        table = m.EmailTrackingEvent.__table__
        stmt = insert(m.EmailTrackingEvent).values(
            org_id=hit.org_id,
            email_send_id=hit.send_id,
            contact_id=hit.contact_id,
            kind=hit.kind.value,
            link_index=hit.link_index,
            url=hit.url,
            by_bot=hit.by_bot,
            bot_reason=hit.bot_reason.value if hit.bot_reason is not None else None,
            user_agent=hit.user_agent,
            hits=1,
            first_at=hit.at,
            last_at=hit.at,
        )
        new = stmt.excluded
        self._s.execute(
            stmt.on_conflict_do_update(
                index_elements=["email_send_id", "kind", "link_index", "by_bot"],
                set_={
                    "hits": table.c.hits + 1,
                    # Two fetches may commit out of order: keep the later time.
                    "last_at": case(
                        (new.last_at > table.c.last_at, new.last_at), else_=table.c.last_at
                    ),
                },
            )
        )
