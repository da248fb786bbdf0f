"""Read models for drafting and display: a contact with its client and order history."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from domain.errors import NotFound
from domain.outreach import ContactContext
from storage import models as m


class ContextRepo:
    """Builds the contact context templates and cards are made from."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def contact_context(self, org_id: int, contact_id: int, *, now: datetime) -> ContactContext:
        """Return a contact with its client and order history."""
        row = self._s.execute(
            select(m.Contact, m.Client)
            .outerjoin(m.Client, (m.Client.id == m.Contact.client_id) & (m.Client.org_id == org_id))
            .where(m.Contact.org_id == org_id, m.Contact.id == contact_id)
        ).one_or_none()
        if row is None:
            raise NotFound(f"contact {contact_id} not found")
        contact, client = row
        last_order: datetime | None = None
        orders_last_year = 0
        orders_year_before_last = 0
        last_address: str | None = None
        if client is not None:
            o = m.AppraisalOrder
            last_order = client.last_ordered_at
            orders_last_year = (
                self._s.scalar(
                    select(func.count()).where(
                        o.org_id == org_id,
                        o.client_id == client.id,
                        o.ordered_at >= now - timedelta(days=365),
                    )
                )
                or 0
            )
            if last_order is not None:
                orders_year_before_last = (
                    self._s.scalar(
                        select(func.count()).where(
                            o.org_id == org_id,
                            o.client_id == client.id,
                            o.ordered_at > last_order - timedelta(days=365),
                            o.ordered_at <= last_order,
                        )
                    )
                    or 0
                )
                last_address = self._s.scalar(
                    select(o.property_address)
                    .where(o.org_id == org_id, o.client_id == client.id)
                    .order_by(o.ordered_at.desc())
                    .limit(1)
                )
        return ContactContext(
            contact_id=contact.id,
            email=contact.email,
            first_name=contact.first_name,
            last_name=contact.last_name,
            title=contact.title,
            role_code=contact.role_code,
            state=contact.state,
            client_id=client.id if client else None,
            company_name=client.name if client else None,
            company_domain=client.domain if client else None,
            last_order_at=last_order,
            orders_last_year=orders_last_year,
            orders_year_before_last=orders_year_before_last,
            last_property_address=last_address,
            last_contacted_at=contact.last_contacted_at,
            last_replied_at=contact.last_replied_at,
            opted_out=contact.opted_out_at is not None,
            email_status=contact.email_status,
        )

    def user_name(self, org_id: int, user_id: int | None) -> tuple[str | None, str | None]:
        """Return a user's name and email."""
        if user_id is None:
            return None, None
        row = self._s.execute(
            select(m.User.name, m.User.email).where(m.User.org_id == org_id, m.User.id == user_id)
        ).one_or_none()
        return (row[0], row[1]) if row else (None, None)

    def firm_name(self, org_id: int) -> str:
        """Return the organization's display name."""
        return self._s.scalar(select(m.Organization.name).where(m.Organization.id == org_id)) or ""

    def touch_contacted(self, org_id: int, contact_id: int, *, at: datetime) -> None:
        """Record that a contact was just emailed."""
        from sqlalchemy import update

        self._s.execute(
            update(m.Contact)
            .where(m.Contact.org_id == org_id, m.Contact.id == contact_id)
            .values(last_contacted_at=at, updated_at=at)
        )

    def engagement_event(
        self, org_id: int, contact_id: int, event: str, *, at: datetime, **detail: Any
    ) -> None:
        """Append to a contact's engagement history."""
        self._s.add(
            m.ContactEngagementEvent(
                org_id=org_id,
                contact_id=contact_id,
                event=event,
                occurred_at=at,
                email_send_id=detail.pop("email_send_id", None),
                detail=detail,
            )
        )

    def slack_id(self, org_id: int, user_id: int | None) -> str | None:
        """Return a user's Slack id."""
        if user_id is None:
            return None
        return self._s.scalar(
            select(m.User.slack_user_id).where(m.User.org_id == org_id, m.User.id == user_id)
        )

    def enrollment_thread(self, enrollment_id: int | None) -> str | None:
        """Return the Gmail thread an enrollment's emails continue."""
        if enrollment_id is None:
            return None
        return self._s.scalar(
            select(m.Enrollment.gmail_thread_id).where(m.Enrollment.id == enrollment_id)
        )

    def apply_profile_changes(
        self, org_id: int, contact_id: int, changes: dict[str, Any], *, at: datetime
    ) -> None:
        """Apply an update_profile task's changes to a contact."""
        contact = self._s.scalars(
            select(m.Contact).where(m.Contact.org_id == org_id, m.Contact.id == contact_id)
        ).one_or_none()
        if contact is None:
            raise NotFound(f"contact {contact_id} not found")
        tags = [t for t in contact.tags if t not in set(changes.get("remove_tags", []))]
        for tag in changes.get("add_tags", []):
            tag = str(tag).strip().lower()
            if tag and tag not in tags:
                tags.append(tag)
        contact.tags = tags
        if "role_code" in changes:
            contact.role_code = str(changes["role_code"]) or None
        if "title" in changes:
            contact.title = str(changes["title"]) or None
        if "lead_score" in changes:
            score = int(changes["lead_score"])
            if not 0 <= score <= 100:
                from domain.errors import InvalidInput

                raise InvalidInput("lead_score must be between 0 and 100")
            contact.lead_score = score
        contact.updated_at = at
        self._s.flush()
