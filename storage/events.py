"""Idempotency keys: each Slack event, Pub/Sub message or Gmail message is handled once.

`EventKeyStore` is a named owner of its transaction: it claims a key and commits at once,
outside any unit of work. Bolt's middleware drops a retried Slack event before any listener
or use case runs, so there is no unit of work to join; and the claim must be committed
before the event is handled, or the retry Slack sends while the first delivery is still
being handled would find no key and be handled twice.
"""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage import models as m
from storage.db import SessionFactory


def claim_event_key(session: Session, source: str, key: str, *, org_id: int | None = None) -> bool:
    """Record `key` for `source`; return False if it was recorded before (a duplicate)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(m.ProcessedEvent)
        .values(source=source, event_key=key[:255], org_id=org_id)
        .on_conflict_do_nothing(index_elements=["source", "event_key"])
        .returning(m.ProcessedEvent.id)
    )
    # RETURNING, not rowcount: drivers disagree on rowcount for ON CONFLICT DO NOTHING.
    return session.execute(stmt).first() is not None


class EventKeys:
    """Idempotency keys inside a unit of work."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def claim(self, source: str, key: str, *, org_id: int | None = None) -> bool:
        """Record a key; False if it was recorded before."""
        return claim_event_key(self._s, source, key, org_id=org_id)


class EventKeyStore:
    """Idempotency keys claimed in a transaction of their own, one statement each (see the
    module's docstring for why this store commits)."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def claim(self, source: str, key: str, *, org_id: int | None = None) -> bool:
        """Record a key and commit; False if it was recorded before (a duplicate)."""
        with self._sessions() as session:
            first = EventKeys(session).claim(source, key, org_id=org_id)
            session.commit()
        return first
