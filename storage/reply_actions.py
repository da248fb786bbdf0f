"""What acting on a reply's intent reads and changes (domain/reply_actions.py): the person
a referral names (found, or added as a contact), a contact's pause ("try me in January"),
and the names and time zone a card shows. Callers own the transaction; nothing here commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from domain.contacts import normalize_email
from domain.intents import KnownPerson
from storage import models as m
from storage.sql import rowcount


def _person(row: Any) -> KnownPerson:
    return KnownPerson(
        id=row.id,
        email=row.email,
        client_id=row.client_id,
        first_name=row.first_name,
        last_name=row.last_name,
        opted_out=row.opted_out_at is not None,
        email_status=row.email_status,
    )


class ReplyActionRepo:
    """Contacts as a reply's intent finds, adds and pauses them."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def _select(self) -> Any:
        c = m.Contact
        return select(
            c.id, c.email, c.client_id, c.first_name, c.last_name, c.opted_out_at, c.email_status
        )

    def find_contact(self, org_id: int, email: str) -> KnownPerson | None:
        """Return the organization's contact with this address (any case), or None."""
        wanted = sorted({email.strip(), normalize_email(email)})
        row = self._s.execute(
            self._select()
            .where(m.Contact.org_id == org_id, m.Contact.email.in_(wanted))
            .order_by(m.Contact.id)
            .limit(1)
        ).first()
        return _person(row) if row is not None else None

    def add_contact(
        self,
        org_id: int,
        *,
        email: str,
        first_name: str | None,
        last_name: str | None,
        title: str | None,
        client_id: int | None,
        tags: Sequence[str],
        at: datetime,
    ) -> KnownPerson:
        """Add a contact, or return the one that has this address already (a race of two
        messages naming the same person adds one)."""
        address = normalize_email(email)
        dialect = self._s.get_bind().dialect.name
        dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        self._s.execute(
            dialect_insert(m.Contact)
            .values(
                org_id=org_id,
                email=address,
                first_name=(first_name or None) and first_name[:100],
                last_name=(last_name or None) and last_name[:100],
                title=(title or None) and title[:200],
                client_id=client_id,
                tags=list(tags),
                email_preferences={},
                created_at=at,
                updated_at=at,
            )
            .on_conflict_do_nothing(index_elements=["org_id", "email"])
        )
        found = self.find_contact(org_id, address)
        if found is None:  # pragma: no cover - the insert or the row it met is there
            raise RuntimeError(f"contact {address} vanished while it was added")
        return found

    def pause_contact(
        self, org_id: int, contact_id: int, *, until: datetime, reason: str, at: datetime
    ) -> bool:
        """Pause the person until a time (no outreach before it); True if it changed."""
        c = m.Contact
        result = self._s.execute(
            update(c)
            .where(c.org_id == org_id, c.id == contact_id)
            .where((c.paused_until.is_(None)) | (c.paused_until != until))
            .values(paused_until=until, pause_reason=reason[:64], updated_at=at)
        )
        return rowcount(result) == 1

    def contact_zone(self, org_id: int, contact_id: int) -> tuple[str | None, str | None]:
        """Return the contact's stored time zone and US state (either may be None)."""
        row = self._s.execute(
            select(m.Contact.timezone, m.Contact.state).where(
                m.Contact.org_id == org_id, m.Contact.id == contact_id
            )
        ).first()
        return (row[0], row[1]) if row is not None else (None, None)

    def campaign_name(self, org_id: int, campaign_id: int) -> str | None:
        """Return a campaign's name, or None when there is no such campaign."""
        return self._s.scalar(
            select(m.MarketingCampaign.name).where(
                m.MarketingCampaign.org_id == org_id, m.MarketingCampaign.id == campaign_id
            )
        )

    def client_name(self, org_id: int, client_id: int) -> str | None:
        """Return a client's name, or None when there is no such client."""
        return self._s.scalar(
            select(m.Client.name).where(m.Client.org_id == org_id, m.Client.id == client_id)
        )
