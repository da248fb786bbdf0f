"""Audiences: the contacts a campaign's criteria or a job's target selection reach.

Every query runs in the database, streamed in id order a page at a time, never all at once.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Join,
    String,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, array
from sqlalchemy.orm import Session

from domain.audience import AudienceCriteria, AudienceMember, AudienceSize
from domain.contacts import EmailStatus
from domain.email_preferences import EmailType
from domain.jobs import TargetSelection
from storage import models as m
from storage.sql import chunks, one_of


class AudienceRepo:
    """The audience builder's query: one statement, evaluated in the database."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def conditions(
        self, org_id: int, criteria: AudienceCriteria, *, now: datetime
    ) -> list[ColumnElement[bool]]:
        """Return the WHERE conditions of an audience over contacts joined to clients."""
        dialect = self._s.get_bind().dialect.name
        c, cl = m.Contact, m.Client
        where: list[ColumnElement[bool]] = [
            c.org_id == org_id,
            c.opted_out_at.is_(None),
            c.email_status == EmailStatus.VALID.value,
            # "Not now, try me in January": nobody reaches them before then.
            or_(c.paused_until.is_(None), c.paused_until <= now),
            # A campaign's first email is a campaign email: not for who turned those off.
            allows_email_type(dialect, EmailType.CAMPAIGN),
        ]
        if criteria.target_role_codes:
            where.append(c.role_code.in_(criteria.target_role_codes))
        if criteria.target_role_categories:
            where.append(c.role_category.in_([r.value for r in criteria.target_role_categories]))
        if criteria.exclude_role_codes:
            where.append(
                or_(c.role_code.is_(None), c.role_code.not_in(criteria.exclude_role_codes))
            )
        if criteria.include_tags:
            where.append(_has_any_tag(dialect, criteria.include_tags))
        if criteria.exclude_tags:
            where.append(~_has_any_tag(dialect, criteria.exclude_tags))
        if criteria.min_lead_score is not None:
            where.append(c.lead_score >= criteria.min_lead_score)
        if criteria.states:
            where.append(c.state.in_(criteria.states))
        if criteria.stale_client_days is not None:
            cutoff = now - timedelta(days=criteria.stale_client_days)
            stale = cl.last_ordered_at < cutoff
            if criteria.include_never_ordered:
                stale = or_(stale, cl.last_ordered_at.is_(None))
            where.append(and_(cl.id.is_not(None), stale))
        if criteria.min_days_since_contacted is not None:
            cutoff = now - timedelta(days=criteria.min_days_since_contacted)
            where.append(or_(c.last_contacted_at.is_(None), c.last_contacted_at < cutoff))
        return where

    def size(
        self, org_id: int, criteria: AudienceCriteria, *, now: datetime, sample_size: int
    ) -> AudienceSize:
        """Return how many contacts match and a sample of them (lowest ids first)."""
        c, cl = m.Contact, m.Client
        where = self.conditions(org_id, criteria, now=now)
        joined = c.__table__.outerjoin(
            cl.__table__, and_(cl.id == c.client_id, cl.org_id == c.org_id)
        )
        count = self._s.execute(select(func.count()).select_from(joined).where(*where)).scalar_one()
        sample: list[AudienceMember] = []
        if count and sample_size:
            rows = self._s.execute(
                select(
                    c.id,
                    c.email,
                    c.first_name,
                    c.last_name,
                    c.role_code,
                    cl.name,
                    c.state,
                    c.lead_score,
                )
                .select_from(joined)
                .where(*where)
                .order_by(c.id)
                .limit(sample_size)
            )
            sample = [
                AudienceMember(
                    contact_id=r[0],
                    email=r[1],
                    first_name=r[2],
                    last_name=r[3],
                    role_code=r[4],
                    client_name=r[5],
                    state=r[6],
                    lead_score=r[7],
                )
                for r in rows
            ]
        return AudienceSize(count=count, sample=sample)

    def target_contact_ids(
        self, org_id: int, target: TargetSelection, *, now: datetime, batch_size: int = 1000
    ) -> Iterator[list[int]]:
        """Stream the reachable contacts a job targets, in id order, each once (with
        `stale_top`, in the ranking's order: see `_stale_top`).

        Listed contacts, the contacts of listed clients and of listed addresses are each
        streamed in id order (never a statement per list: a list of 100,000 ids would pass
        PostgreSQL's 65,535 parameters) and merged; with filters too, only the listed
        contacts that match them.
        """
        session = self._s
        c = m.Contact
        where = self.conditions(org_id, target.filters or AudienceCriteria(), now=now)
        if target.stale_top is not None:
            yield from _batched(self._stale_top(org_id, target, where), batch_size)
            return
        streams: list[Iterator[int]] = []
        if target.contact_ids:
            streams.append(
                _flatten(
                    _listed_contacts(session, where, target.contact_ids, batch_size=batch_size)
                )
            )
        if target.client_ids:
            by_client = one_of(session, c.client_id, target.client_ids, BigInteger())
            streams.append(
                _flatten(_keyset_pages(session, [*where, by_client], batch_size=batch_size))
            )
        if target.emails:
            by_email = one_of(session, c.email, target.emails, String())
            streams.append(
                _flatten(_keyset_pages(session, [*where, by_email], batch_size=batch_size))
            )
        if not streams:
            yield from _keyset_pages(session, where, batch_size=batch_size)
            return
        batch: list[int] = []
        last = 0
        for contact_id in heapq.merge(*streams):
            if contact_id == last:
                continue  # listed twice: as a contact and by its client or address
            last = contact_id
            batch.append(contact_id)
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _stale_top(
        self, org_id: int, target: TargetSelection, where: Sequence[ColumnElement[bool]]
    ) -> list[int]:
        """The reachable contacts (matching `where`) of the `stale_top` best clients of the
        stale-client ranking, in the ranking's order: each client's best contact first,
        then its other contacts by lead score. With lists, only the listed ones.

        One query: the ranking holds at most a few thousand clients.
        """
        c, r = m.Contact, m.ClientRanking
        best_first = case((c.id == r.best_contact_id, 0), else_=1)
        rows = self._s.execute(
            select(c.id, c.client_id, c.email)
            .select_from(_contacts_joined())
            .join(r, and_(r.org_id == c.org_id, r.client_id == c.client_id))
            .where(*where, r.org_id == org_id, r.rank <= target.stale_top)
            .order_by(r.rank, best_first, c.lead_score.desc().nulls_last(), c.id)
        ).all()
        if not (target.contact_ids or target.client_ids or target.emails):
            return [row.id for row in rows]
        contacts, clients = set(target.contact_ids), set(target.client_ids)
        emails = set(target.emails)
        return [
            row.id
            for row in rows
            if row.id in contacts or row.client_id in clients or row.email in emails
        ]

    def target_count(self, org_id: int, target: TargetSelection, *, now: datetime) -> int:
        """Count the reachable contacts a job targets."""
        if target.stale_top is not None:
            return sum(len(batch) for batch in self.target_contact_ids(org_id, target, now=now))
        if not (target.contact_ids or target.client_ids or target.emails):
            size = self.size(org_id, target.filters or AudienceCriteria(), now=now, sample_size=0)
            return size.count
        return sum(len(batch) for batch in self.target_contact_ids(org_id, target, now=now))


def _has_any_tag(dialect: str, tags: Sequence[str]) -> ColumnElement[bool]:
    """True where a contact carries at least one of `tags`."""
    if not tags:
        return false()
    if dialect == "postgresql":
        # jsonb ?| text[]: served by the GIN index on contacts.tags. JSONB's operators are
        # reached through the coerced column's comparator, which SQLAlchemy leaves untyped.
        tagged: ColumnElement[bool] = type_coerce(m.Contact.tags, JSONB).has_any(
            cast(array(list(tags)), ARRAY(String))
        )
        return tagged
    each = func.json_each(m.Contact.tags).table_valued("value")
    return exists(select(1).select_from(each).where(each.c.value.in_(list(tags))))


def allows_email_type(dialect: str, email_type: EmailType) -> ColumnElement[bool]:
    """True where a contact did not turn this type of email off: only a stored JSON `false`
    turns it off, as `EmailPreferences.from_stored` reads it (domain/email_preferences.py)."""
    if dialect == "postgresql":
        turned_off: ColumnElement[bool] = type_coerce(m.Contact.email_preferences, JSONB).contains(
            {email_type.value: False}
        )
        return ~turned_off
    kind = func.json_type(m.Contact.email_preferences, f"$.{email_type.value}")
    return func.coalesce(kind, "") != "false"


def _contacts_joined() -> Join:
    c, cl = m.Contact, m.Client
    return c.__table__.outerjoin(cl.__table__, (cl.id == c.client_id) & (cl.org_id == c.org_id))


def _keyset_pages(
    session: Session, where: Sequence[ColumnElement[bool]], *, batch_size: int
) -> Iterator[list[int]]:
    """Stream the ids of the contacts matching `where`, a page at a time, in id order."""
    c = m.Contact
    joined = _contacts_joined()
    last_id = 0
    while True:
        ids = list(
            session.scalars(
                select(c.id)
                .select_from(joined)
                .where(*where, c.id > last_id)
                .order_by(c.id)
                .limit(batch_size)
            )
        )
        if not ids:
            return
        yield ids
        last_id = ids[-1]


def audience_contact_ids(
    session: Session,
    org_id: int,
    criteria: AudienceCriteria,
    *,
    now: datetime,
    batch_size: int = 1000,
) -> Iterator[list[int]]:
    """Stream the ids of an audience's contacts in batches (server-side, never all at once)."""
    where = AudienceRepo(session).conditions(org_id, criteria, now=now)
    yield from _keyset_pages(session, where, batch_size=batch_size)


def _listed_contacts(
    session: Session,
    where: Sequence[ColumnElement[bool]],
    contact_ids: Sequence[int],
    *,
    batch_size: int,
) -> Iterator[list[int]]:
    """The listed contacts matching `where`, in id order: the ids sorted, then asked for a
    slice at a time, so a statement stays small whatever the list's length."""
    c = m.Contact
    joined = _contacts_joined()
    ordered = sorted(set(contact_ids))
    for part in chunks(ordered, batch_size):
        found = list(
            session.scalars(
                select(c.id)
                .select_from(joined)
                .where(*where, one_of(session, c.id, part, BigInteger()))
                .order_by(c.id)
            )
        )
        if found:
            yield found


def _batched(ids: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def _flatten(pages: Iterable[list[int]]) -> Iterator[int]:
    for page in pages:
        yield from page
