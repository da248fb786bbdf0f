"""Repository of contacts' opt-outs and of what an opt-out stops (enrollments, queued emails).

The rule (the contact's choice wins) is `domain/suppression.py`; callers own the
transaction, nothing here commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from domain.jobs import EnrollmentStatus
from domain.sending import OutboxStatus
from domain.suppression import ContactSummary
from storage import models as m
from storage.sql import rowcount


class OptOutRepo:
    """Contacts' opt-outs, the enrollments they stop and the queued emails they cancel."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def summary(self, org_id: int, contact_id: int) -> ContactSummary | None:
        """Return a contact's address and opt-out state, with its organization's name."""
        row = self._s.execute(
            select(m.Contact.id, m.Contact.email, m.Contact.opted_out_at, m.Organization.name)
            .join(m.Organization, m.Organization.id == m.Contact.org_id)
            .where(m.Contact.org_id == org_id, m.Contact.id == contact_id)
        ).one_or_none()
        if row is None:
            return None
        return ContactSummary(
            contact_id=row[0], email=row[1], opted_out_at=row[2], org_name=str(row[3])
        )

    def mark_opted_out(self, org_id: int, contact_id: int, *, at: datetime) -> bool:
        """Stamp the contact's opt-out unless it has one; True if this call stamped it."""
        result = self._s.execute(
            update(m.Contact)
            .where(
                m.Contact.org_id == org_id,
                m.Contact.id == contact_id,
                m.Contact.opted_out_at.is_(None),
            )
            .values(opted_out_at=at, updated_at=at)
        )
        return rowcount(result) == 1

    def stop_enrollments(
        self, org_id: int, contact_id: int, *, reason: str, at: datetime, min_step: int = 0
    ) -> int:
        """Stop the contact's active and paused enrollments (those at `min_step` or later);
        return how many."""
        result = self._s.execute(
            update(m.Enrollment)
            .where(
                m.Enrollment.org_id == org_id,
                m.Enrollment.contact_id == contact_id,
                m.Enrollment.step >= min_step,
                m.Enrollment.status.in_(
                    [EnrollmentStatus.ACTIVE.value, EnrollmentStatus.PAUSED.value]
                ),
            )
            .values(
                status=EnrollmentStatus.STOPPED.value,
                stop_reason=reason,
                next_due_at=None,
                updated_at=at,
            )
        )
        return rowcount(result)

    def cancel_queued_emails(self, org_id: int, contact_id: int, *, email: str, reason: str) -> int:
        """Fail every queued email to the contact (by id or address); return how many."""
        result = self._s.execute(
            update(m.EmailSend)
            .where(
                m.EmailSend.org_id == org_id,
                or_(
                    m.EmailSend.contact_id == contact_id,
                    m.EmailSend.to_email.in_(sorted({email, email.lower()})),
                ),
                m.EmailSend.status == OutboxStatus.QUEUED.value,
            )
            .values(status=OutboxStatus.FAILED.value, error=reason, not_before=None)
        )
        return rowcount(result)

    def undo_opt_out(self, org_id: int, contact_id: int, *, at: datetime) -> bool:
        """Clear the contact's opt-out; True if it had one."""
        result = self._s.execute(
            update(m.Contact)
            .where(
                m.Contact.org_id == org_id,
                m.Contact.id == contact_id,
                m.Contact.opted_out_at.is_not(None),
            )
            .values(opted_out_at=None, updated_at=at)
        )
        return rowcount(result) == 1

    def email_preferences(
        self, org_id: int, contact_id: int, *, lock: bool
    ) -> Mapping[str, object] | None:
        """Return a contact's stored email preferences (`lock`: hold the row until the
        transaction ends); None if the contact does not exist."""
        query = select(m.Contact.email_preferences).where(
            m.Contact.org_id == org_id, m.Contact.id == contact_id
        )
        if lock and self._s.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        row = self._s.execute(query).one_or_none()
        if row is None:
            return None
        stored = row[0]
        return dict(stored) if isinstance(stored, dict) else {}

    def save_email_preferences(
        self, org_id: int, contact_id: int, preferences: Mapping[str, bool], *, at: datetime
    ) -> None:
        """Store a contact's email preferences."""
        self._s.execute(
            update(m.Contact)
            .where(m.Contact.org_id == org_id, m.Contact.id == contact_id)
            .values(email_preferences=dict(preferences), updated_at=at)
        )
