"""`email_campaigns`: its rows, and their refresh from the analytics read model (issue 16).

A refresh measures the campaigns with `AnalyticsViews.campaign_steps`, the statements the
analytics route runs, and replaces their rows in the caller's transaction
(domain/email_campaigns.py says why the table is kept this way). Callers own the
transaction; nothing here commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, delete, func, insert, select, text
from sqlalchemy.orm import Session

from domain.email_campaigns import MAX_SUBJECTS, EmailCampaignStep, email_campaign_rows
from domain.engagement import REPLY_EVENTS, EngagementEvent
from domain.errors import NotFound
from storage import models as m
from storage.analytics import AnalyticsViews
from storage.inbound import advisory_key

_E = m.EmailCampaign
# What changes a step's counts after its send: replies, hard bounces, opt-outs, complaints.
_CHANGING_EVENTS = frozenset(
    {
        *(event.value for event in REPLY_EVENTS),
        EngagementEvent.BOUNCED.value,
        EngagementEvent.OPTED_OUT.value,
        EngagementEvent.COMPLAINT.value,
    }
)


def _latest(*times: datetime | None) -> datetime | None:
    known = [t for t in times if t is not None]
    return max(known) if known else None


def _lock_name(campaign_id: int) -> str:
    return f"salesbot:email-campaigns:{campaign_id}"


class EmailCampaignRepo:
    """The `email_campaigns` rows of an organization's campaigns."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def campaign_ids(
        self, org_id: int, *, campaign_id: int | None, limit: int, offset: int
    ) -> list[int]:
        """Return the organization's campaigns by id (a page of them); with `campaign_id`,
        that one, NotFound when it is not the organization's."""
        c = m.MarketingCampaign
        query = select(c.id).where(c.org_id == org_id)
        if campaign_id is not None:
            found = list(self._s.scalars(query.where(c.id == campaign_id)))
            if not found:
                raise NotFound(f"campaign {campaign_id} not found")
            return found
        return list(self._s.scalars(query.order_by(c.id).limit(limit).offset(offset)))

    def refresh(self, org_id: int, campaign_ids: Sequence[int], now: datetime) -> int:
        """Rewrite these campaigns' rows from the analytics read model as of `now`; return
        how many rows they have now.

        On PostgreSQL each campaign is locked for the transaction first (in id order, so two
        refreshes never deadlock), and only then measured: a refresh that waited for another
        measures what that one committed, and two never both insert a campaign's rows.
        SQLite runs one writer at a time anyway."""
        ids = sorted(set(campaign_ids))
        if not ids:
            return 0
        if self._s.get_bind().dialect.name == "postgresql":
            for campaign_id in ids:
                self._s.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"),
                    {"key": advisory_key(_lock_name(campaign_id))},
                )
        views = AnalyticsViews(self._s)
        steps = views.campaign_steps(org_id, ids, now)
        sends = views.campaign_step_sends(org_id, ids, now, subjects=MAX_SUBJECTS)
        rows = [
            row
            for campaign_id in ids
            for row in email_campaign_rows(
                org_id=org_id,
                campaign_id=campaign_id,
                steps=steps.get(campaign_id, {}),
                sends=sends.get(campaign_id, {}),
                at=now,
            )
        ]
        self._s.execute(delete(_E).where(_E.org_id == org_id, _E.campaign_id.in_(ids)))
        if rows:
            self._s.execute(insert(_E), [row.model_dump() for row in rows])
        return len(rows)

    def rows(self, org_id: int, campaign_ids: Sequence[int]) -> list[EmailCampaignStep]:
        """Return the stored rows of these campaigns, by campaign and step (null last)."""
        if not campaign_ids:
            return []
        found = self._s.scalars(
            select(_E)
            .where(_E.org_id == org_id, _E.campaign_id.in_(sorted(set(campaign_ids))))
            .order_by(_E.campaign_id, _E.step.is_(None), _E.step)
        )
        return [
            EmailCampaignStep(
                org_id=row.org_id,
                campaign_id=row.campaign_id,
                step=row.step,
                subjects=list(row.subjects),
                sent=row.sent,
                delivered=row.delivered,
                bounced=row.bounced,
                unsubscribed=row.unsubscribed,
                replied=row.replied,
                first_sent_at=row.first_sent_at,
                last_sent_at=row.last_sent_at,
                updated_at=row.updated_at,
            )
            for row in found
        ]

    def freshness(
        self, org_id: int, *, events_since: datetime
    ) -> list[tuple[int, datetime | None, datetime | None]]:
        """Return each campaign of the organization with when its rows were written (None:
        never) and its last activity (None: none): its latest send (one index probe), or a
        later reply, bounce, opt-out or complaint since `events_since` of a contact it
        emailed (the organization's recent events of those kinds, by their index, joined to
        the campaign's sends to the contact). Older events are caught by REFRESH_EVERY."""
        c, s = m.MarketingCampaign, m.EmailSend
        refreshed = (
            select(func.min(_E.updated_at))
            .where(_E.org_id == org_id, _E.campaign_id == c.id)
            .correlate(c)
            .scalar_subquery()
        )
        # (campaign_id, sent_at) is indexed: the latest send is the top of its range.
        last_sent = (
            select(func.max(s.sent_at))
            .where(s.campaign_id == c.id, s.org_id == org_id)
            .correlate(c)
            .scalar_subquery()
        )
        e = m.ContactEngagementEvent
        # The organization's recent events of those kinds, read once and grouped by the
        # campaigns that emailed their contacts (not once per campaign).
        recent = (
            select(s.campaign_id, func.max(e.occurred_at).label("last_event"))
            .select_from(e)
            .join(s, and_(s.org_id == e.org_id, s.contact_id == e.contact_id))
            .where(
                e.org_id == org_id,
                e.event.in_(sorted(_CHANGING_EVENTS)),
                e.occurred_at >= events_since,
                s.campaign_id.is_not(None),
            )
            .group_by(s.campaign_id)
            .subquery()
        )
        return [
            (row.id, row.refreshed, _latest(row.last_sent, row.last_event))
            for row in self._s.execute(
                select(
                    c.id,
                    refreshed.label("refreshed"),
                    last_sent.label("last_sent"),
                    recent.c.last_event,
                )
                .outerjoin(recent, recent.c.campaign_id == c.id)
                .where(c.org_id == org_id)
                .order_by(c.id)
            )
        ]
