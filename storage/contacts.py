"""Contacts as drafting and display read them, and the few writes outreach makes to them.

`ContactContextRepo` is the contact read model (a contact with its client and order
history, the names a card shows) and it also writes: it records that a contact was
emailed (`touch_contacted`) and applies an update_profile task's changes (the engagement
history is storage/engagement.py's).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from domain.contacts import ContactContext, ContactMatch, normalize_email
from domain.errors import NotFound
from storage import models as m
from storage.sql import org_row


class ContactContextRepo:
    """Builds the contact context templates and cards are made from; records what outreach
    did to a contact (emailed, profile changes)."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def contact_context(self, org_id: int, contact_id: int, *, now: datetime) -> ContactContext:
        """Return a contact with its client and order history."""
        found = self.contact_contexts(org_id, [contact_id], now=now).get(contact_id)
        if found is None:
            raise NotFound(f"contact {contact_id} not found")
        return found

    def contact_contexts(
        self, org_id: int, contact_ids: list[int], *, now: datetime
    ) -> dict[int, ContactContext]:
        """Return the contexts of many contacts with four queries, whatever their number."""
        if not contact_ids:
            return {}
        o = m.AppraisalOrder
        rows = self._s.execute(
            select(m.Contact, m.Client)
            .outerjoin(m.Client, (m.Client.id == m.Contact.client_id) & (m.Client.org_id == org_id))
            .where(m.Contact.org_id == org_id, m.Contact.id.in_(contact_ids))
        ).all()
        clients = {client.id: client for _, client in rows if client is not None}
        last_year: dict[int, int] = dict.fromkeys(clients, 0)
        year_before: dict[int, int] = dict.fromkeys(clients, 0)
        last_address: dict[int, str | None] = {}
        year_ago = now - timedelta(days=365)
        starts = [year_ago] + [
            c.last_ordered_at - timedelta(days=365) for c in clients.values() if c.last_ordered_at
        ]
        if clients:
            # One pass over the batch's recent orders gives every count (bounded by two
            # years of orders of at most a batch of clients).
            orders = self._s.execute(
                select(o.client_id, o.ordered_at, o.property_address)
                .where(
                    o.org_id == org_id,
                    o.client_id.in_(list(clients)),
                    o.ordered_at > min(starts),
                )
                .order_by(o.client_id, o.ordered_at)
            )
            for client_id, ordered_at, address in orders:
                last = clients[client_id].last_ordered_at
                if ordered_at >= year_ago:
                    last_year[client_id] += 1
                if last is not None and last - timedelta(days=365) < ordered_at <= last:
                    year_before[client_id] += 1
                last_address[client_id] = address
        contexts: dict[int, ContactContext] = {}
        for contact, client in rows:
            cid = client.id if client is not None else None
            contexts[contact.id] = ContactContext(
                contact_id=contact.id,
                email=contact.email,
                first_name=contact.first_name,
                last_name=contact.last_name,
                title=contact.title,
                role_code=contact.role_code,
                state=contact.state,
                client_id=cid,
                company_name=client.name if client else None,
                company_domain=client.domain if client else None,
                last_order_at=client.last_ordered_at if client else None,
                orders_last_year=last_year.get(cid, 0) if cid else 0,
                orders_year_before_last=year_before.get(cid, 0) if cid else 0,
                last_property_address=last_address.get(cid) if cid else None,
                last_contacted_at=contact.last_contacted_at,
                last_replied_at=contact.last_replied_at,
                opted_out=contact.opted_out_at is not None,
                email_status=contact.email_status,
                phone=contact.phone,
            )
        return contexts

    def find_contacts(self, org_id: int, query: str, *, limit: int = 10) -> list[ContactMatch]:
        """Find an organization's contacts by their exact address, else by the start of their
        first name, last name, full name or address (any case), by name; at most `limit`.

        The prefix search reads the organization's contacts (no index serves `lower()`);
        it answers a person's slash command, not a loop.
        """
        ct, cl = m.Contact, m.Client
        columns = (
            ct.id,
            ct.email,
            ct.first_name,
            ct.last_name,
            ct.lead_score,
            ct.engagement_score,
            cl.name.label("client_name"),
        )
        base = select(*columns).outerjoin(cl, (cl.id == ct.client_id) & (cl.org_id == org_id))
        rows = self._s.execute(
            base.where(ct.org_id == org_id, ct.email == normalize_email(query)).limit(1)
        ).all()
        if not rows:
            prefix = " ".join(query.split()).lower()
            first = func.lower(func.coalesce(ct.first_name, ""))
            last = func.lower(func.coalesce(ct.last_name, ""))
            rows = self._s.execute(
                base.where(
                    ct.org_id == org_id,
                    or_(
                        first.startswith(prefix, autoescape=True),
                        last.startswith(prefix, autoescape=True),
                        (first + " " + last).startswith(prefix, autoescape=True),
                        func.lower(ct.email).startswith(prefix, autoescape=True),
                    ),
                )
                .order_by(last, first, ct.id)
                .limit(limit)
            ).all()
        return [
            ContactMatch(
                contact_id=row.id,
                name=" ".join(p for p in (row.first_name, row.last_name) if p) or row.email,
                email=row.email,
                client_name=row.client_name,
                lead_score=row.lead_score,
                engagement_score=float(row.engagement_score),
            )
            for row in rows
        ]

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

    def thread_to_continue(self, enrollment_id: int | None) -> str | None:
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
        contact = org_row(self._s, m.Contact, org_id, contact_id, what="contact")
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
