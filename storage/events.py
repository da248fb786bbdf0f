"""Idempotency keys: each Slack event, Pub/Sub message or Gmail message is handled once."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage import models as m


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
