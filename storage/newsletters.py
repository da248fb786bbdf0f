"""Newsletters, their issues and subscribers (docs/newsletters.md). Callers own the
transaction; nothing here commits."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from domain.contacts import EmailStatus
from domain.email_preferences import EmailType
from domain.engagement import EngagementEvent
from domain.newsletters import (
    AWAITING_FINAL,
    WITHDRAWN_REASON,
    IssueMetrics,
    IssueStatus,
    Newsletter,
    NewsletterIssue,
    Subscriber,
)
from domain.sending import OutboxStatus
from storage import models as m
from storage.audience import allows_email_type
from storage.sql import org_row, rowcount


def _newsletter(row: m.Newsletter) -> Newsletter:
    return Newsletter(
        id=row.id,
        org_id=row.org_id,
        name=row.name,
        description=row.description or "",
        sender_user_ids=tuple(int(u) for u in row.sender_user_ids or ()),
        cap_share_percent=row.cap_share_percent,
        slack_channel_id=row.slack_channel_id,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _issue(row: m.NewsletterIssue) -> NewsletterIssue:
    return NewsletterIssue(
        id=row.id,
        org_id=row.org_id,
        newsletter_id=row.newsletter_id,
        title=row.title,
        subject_template=row.subject_template,
        html_template=row.html_template or "",
        text_template=row.text_template,
        variables=dict(row.variables or {}),
        status=IssueStatus(row.status),
        slack_channel_id=row.slack_channel_id,
        slack_message_ts=row.slack_message_ts,
        card_fingerprint=row.card_fingerprint,
        card=dict(row.card) if row.card else None,
        audience_count=row.audience_count,
        planned_count=row.planned_count,
        planned_start=row.planned_start,
        planned_finish=row.planned_finish,
        plan=dict(row.plan) if row.plan else None,
        plan_cursor=row.plan_cursor,
        plan_lease_until=row.plan_lease_until,
        planned_at=row.planned_at,
        error=row.error,
        submitted_by=row.submitted_by,
        approved_by=row.approved_by,
        approved_at=row.approved_at,
        rejected_reason=row.rejected_reason,
        sent_at=row.sent_at,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        cancelled_by=row.cancelled_by,
        cancelled_at=row.cancelled_at,
        sent_before_cancel=row.sent_before_cancel,
        withdrawn_count=row.withdrawn_count,
    )


class NewsletterRepo:
    """The newsletters of an organization."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, org_id: int, *, now: datetime, **values: Any) -> Newsletter:
        """Store a newsletter."""
        row = m.Newsletter(org_id=org_id, created_at=now, updated_at=now, **values)
        self._s.add(row)
        self._s.flush()
        return _newsletter(row)

    def get(self, org_id: int, newsletter_id: int) -> Newsletter:
        """Return a newsletter or raise NotFound."""
        return _newsletter(org_row(self._s, m.Newsletter, org_id, newsletter_id, what="newsletter"))

    def list(self, org_id: int) -> builtins.list[Newsletter]:
        """Return the organization's newsletters, newest first."""
        rows = self._s.scalars(
            select(m.Newsletter)
            .where(m.Newsletter.org_id == org_id)
            .order_by(m.Newsletter.id.desc())
        )
        return [_newsletter(r) for r in rows]

    def update(self, org_id: int, newsletter_id: int, *, now: datetime, **values: Any) -> None:
        """Change columns of a newsletter."""
        self._s.execute(
            update(m.Newsletter)
            .where(m.Newsletter.org_id == org_id, m.Newsletter.id == newsletter_id)
            .values(updated_at=now, **values)
        )

    def remove(self, org_id: int, newsletter_id: int) -> bool:
        """Delete a newsletter and its issues (raise NotFound); False, deleting nothing
        (the caller rolls back), when one of its issues is scheduled or sending."""
        self.get(org_id, newsletter_id)
        i = m.NewsletterIssue
        mine = (i.org_id == org_id, i.newsletter_id == newsletter_id)
        # Conditional, not trusting an earlier read: an approval may have committed since.
        self._s.execute(delete(i).where(*mine, i.status.not_in(_BUSY)))
        if self._s.scalar(select(func.count()).select_from(i).where(*mine)):
            return False
        self._s.execute(
            delete(m.Newsletter).where(
                m.Newsletter.org_id == org_id, m.Newsletter.id == newsletter_id
            )
        )
        return True


#: The statuses of an issue whose emails are planned or on their way: never deleted.
_BUSY = (IssueStatus.SCHEDULED.value, IssueStatus.SENDING.value)


class IssueRepo:
    """The issues of newsletters; status changes are compare-and-set."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, org_id: int, newsletter_id: int, *, now: datetime, **values: Any) -> int:
        """Store an issue; return its id."""
        row = m.NewsletterIssue(
            org_id=org_id,
            newsletter_id=newsletter_id,
            status=IssueStatus.DRAFT.value,
            created_at=now,
            updated_at=now,
            **values,
        )
        self._s.add(row)
        self._s.flush()
        return row.id

    def get(self, org_id: int, issue_id: int) -> NewsletterIssue:
        """Return an issue or raise NotFound."""
        row = org_row(self._s, m.NewsletterIssue, org_id, issue_id, what="newsletter issue")
        self._s.refresh(row)
        return _issue(row)

    def get_any(self, issue_id: int) -> NewsletterIssue | None:
        """Return an issue of any organization (the sweep), or None."""
        row = self._s.get(m.NewsletterIssue, issue_id)
        if row is None:
            return None
        self._s.refresh(row)
        return _issue(row)

    def list(self, org_id: int, newsletter_id: int) -> builtins.list[NewsletterIssue]:
        """Return a newsletter's issues, newest first."""
        rows = self._s.scalars(
            select(m.NewsletterIssue)
            .where(
                m.NewsletterIssue.org_id == org_id,
                m.NewsletterIssue.newsletter_id == newsletter_id,
            )
            .order_by(m.NewsletterIssue.id.desc())
        )
        return [_issue(r) for r in rows]

    def update(
        self,
        org_id: int,
        issue_id: int,
        *,
        now: datetime,
        expected: frozenset[IssueStatus] | None = None,
        fingerprint: str | None = None,
        holding: datetime | None = None,
        **values: Any,
    ) -> bool:
        """Change an issue if its status is one of `expected` (and, given, its card shows
        `fingerprint`, its planning lease is `holding`); True when it did (compare-and-set)."""
        i = m.NewsletterIssue
        where: list[ColumnElement[bool]] = [i.org_id == org_id, i.id == issue_id]
        if expected is not None:
            where.append(i.status.in_([s.value for s in expected]))
        if fingerprint is not None:
            where.append(i.card_fingerprint == fingerprint)
        if holding is not None:
            where.append(i.plan_lease_until == holding)
        if isinstance(values.get("status"), IssueStatus):
            values["status"] = values["status"].value
        result = self._s.execute(update(i).where(*where).values(updated_at=now, **values))
        return rowcount(result) == 1

    def remove(self, org_id: int, issue_id: int) -> bool:
        """Delete an issue unless it is scheduled or sending; True when it did."""
        i = m.NewsletterIssue
        result = self._s.execute(
            delete(i).where(i.org_id == org_id, i.id == issue_id, i.status.not_in(_BUSY))
        )
        return rowcount(result) == 1

    def unposted(self, *, limit: int) -> builtins.list[tuple[int, int]]:
        """(org id, issue id) of issues in review whose card has no message yet."""
        i = m.NewsletterIssue
        rows = self._s.execute(
            select(i.org_id, i.id)
            .where(
                i.status == IssueStatus.IN_REVIEW.value,
                i.slack_message_ts.is_(None),
                i.slack_channel_id.is_not(None),
            )
            .order_by(i.id)
            .limit(limit)
        )
        return [(int(o), int(n)) for o, n in rows]

    def claim_planning(self, *, now: datetime, lease_until: datetime) -> tuple[int, int] | None:
        """Take the planning of one scheduled, unplanned issue whose lease is free or over;
        return (org id, issue id)."""
        i = m.NewsletterIssue
        free = or_(i.plan_lease_until.is_(None), i.plan_lease_until < now)
        query = (
            select(i.org_id, i.id)
            .where(i.status == IssueStatus.SCHEDULED.value, i.planned_at.is_(None), free)
            .order_by(i.id)
            .limit(1)
        )
        if self._s.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        found = self._s.execute(query).first()
        if found is None:
            return None
        org_id, issue_id = int(found[0]), int(found[1])
        taken = self._s.execute(
            update(i)
            .where(i.id == issue_id, i.planned_at.is_(None), free)
            .values(plan_lease_until=lease_until)
        )
        if rowcount(taken) != 1:
            return None
        return org_id, issue_id

    def in_flight(self, *, limit: int) -> builtins.list[tuple[int, int]]:
        """(org id, issue id) of planned issues still scheduled or sending."""
        i = m.NewsletterIssue
        rows = self._s.execute(
            select(i.org_id, i.id)
            .where(
                i.status.in_([IssueStatus.SCHEDULED.value, IssueStatus.SENDING.value]),
                i.planned_at.is_not(None),
            )
            .order_by(i.id)
            .limit(limit)
        )
        return [(int(o), int(n)) for o, n in rows]

    def awaiting_final(self, *, limit: int) -> builtins.list[tuple[int, int]]:
        """(org id, issue id) of cancelled issues whose card waits for the final figures
        (the AWAITING_FINAL key of the stored card) and none of whose emails is queued or
        sending any more: those on their way at the cancel have all ended."""
        i, s = m.NewsletterIssue, m.EmailSend
        on_its_way = (
            select(s.id)
            .where(
                s.newsletter_issue_id == i.id,
                s.status.in_([OutboxStatus.QUEUED.value, OutboxStatus.SENDING.value]),
            )
            .correlate(i)
            .exists()
        )
        rows = self._s.execute(
            select(i.org_id, i.id)
            .where(
                i.status == IssueStatus.CANCELLED.value,
                i.card[AWAITING_FINAL].as_string().is_not(None),
                ~on_its_way,
            )
            .order_by(i.id)
            .limit(limit)
        )
        return [(int(o), int(n)) for o, n in rows]

    def send_counts(self, issue_id: int) -> dict[str, int]:
        """The issue's outbox rows by status."""
        rows = self._s.execute(
            select(m.EmailSend.status, func.count())
            .where(m.EmailSend.newsletter_issue_id == issue_id)
            .group_by(m.EmailSend.status)
        )
        return {str(status): int(n) for status, n in rows}

    def failure_reasons(
        self,
        issue_id: int,
        *,
        limit: int,
        status: OutboxStatus = OutboxStatus.FAILED,
        starting: str | None = None,
    ) -> builtins.list[tuple[str, int]]:
        """The commonest reasons the issue's rows of `status` give (why they failed, why
        they wait; only those that begin with `starting`), with their counts."""
        s = m.EmailSend
        rows = self._s.execute(
            select(s.error, func.count())
            .where(
                s.newsletter_issue_id == issue_id,
                s.status == status.value,
                *([s.error.startswith(starting, autoescape=True)] if starting else []),
            )
            .group_by(s.error)
            .order_by(func.count().desc(), s.error)
            .limit(limit)
        )
        return [(str(error or "no reason recorded"), int(n)) for error, n in rows]

    def withdraw_queued(self, org_id: int, issue_id: int) -> int:
        """Withdraw the issue's rows still queued (not `sending` under a claim, not `sent`):
        they become `failed` with WITHDRAWN_REASON. Return how many.

        A compare-and-set on `status = 'queued'`, as the outbox's own claim is: a row the
        outbox claims at the same moment is either claimed (and left alone here) or
        withdrawn (and its claim finds it no longer queued), never both."""
        s = m.EmailSend
        result = self._s.execute(
            update(s)
            .where(
                s.org_id == org_id,
                s.newsletter_issue_id == issue_id,
                s.status == OutboxStatus.QUEUED.value,
            )
            .values(
                status=OutboxStatus.FAILED.value,
                error=WITHDRAWN_REASON,
                not_before=None,
                sent_at=None,
                claimed_by=None,
                claimed_until=None,
            )
            .execution_options(synchronize_session=False)
        )
        return rowcount(result)

    def active_in(
        self, org_id: int, since: datetime, until: datetime, *, limit: int
    ) -> builtins.list[tuple[int, str, str, IssueStatus, datetime | None]]:
        """(issue id, newsletter name, title, status, expected finish) of the issues that
        sent an email in [since, until) or are being sent (planned, scheduled or sending),
        oldest first: the digest's newsletters. The finish is the planned one while the issue
        is on its way, else when it was sent or cancelled."""
        i, n, s = m.NewsletterIssue, m.Newsletter, m.EmailSend
        sent_in_period = (
            select(s.id)
            .where(
                s.org_id == org_id,
                s.newsletter_issue_id == i.id,
                s.status == OutboxStatus.SENT.value,
                s.sent_at >= since,
                s.sent_at < until,
            )
            .correlate(i)
            .exists()
        )
        on_its_way = and_(
            i.status.in_([IssueStatus.SCHEDULED.value, IssueStatus.SENDING.value]),
            i.planned_at.is_not(None),
        )
        rows = self._s.execute(
            select(i.id, n.name, i.title, i.status, i.planned_finish, i.sent_at, i.cancelled_at)
            .join(n, and_(n.id == i.newsletter_id, n.org_id == i.org_id))
            .where(i.org_id == org_id, or_(on_its_way, sent_in_period))
            .order_by(i.id)
            .limit(limit)
        ).all()
        found: builtins.list[tuple[int, str, str, IssueStatus, datetime | None]] = []
        for issue_id, name, title, status, planned_finish, sent_at, cancelled_at in rows:
            state = IssueStatus(status)
            finish = {IssueStatus.SENT: sent_at, IssueStatus.CANCELLED: cancelled_at}.get(
                state, planned_finish
            )
            found.append((int(issue_id), str(name), str(title), state, finish))
        return found

    def sends_of(
        self, issue_id: int, contact_ids: builtins.list[int]
    ) -> builtins.list[tuple[int, str, str | None]]:
        """(send id, text, HTML) of the issue's queued rows to these contacts."""
        s = m.EmailSend
        rows = self._s.execute(
            select(s.id, s.body_text, s.body_html).where(
                s.newsletter_issue_id == issue_id,
                s.contact_id.in_(contact_ids),
                s.status == OutboxStatus.QUEUED.value,
                s.tracked.is_(False),
            )
        ).all()
        return [(int(r[0]), str(r[1] or ""), r[2]) for r in rows]

    def set_tracked_html(self, rows: builtins.list[tuple[int, str]]) -> None:
        """Store the tracked HTML of queued rows (send id, HTML) and mark them tracked."""
        if not rows:
            return
        s = cast(Table, m.EmailSend.__table__)
        self._s.execute(
            update(s)
            .where(s.c.id == bindparam("send_id"), s.c.status == OutboxStatus.QUEUED.value)
            .values(body_html=bindparam("html"), tracked=True),
            [{"send_id": send_id, "html": body} for send_id, body in rows],
        )

    def newsletter_busy_until(self, account_id: int) -> datetime | None:
        """The time of the latest queued newsletter email of a mailbox."""
        return self._s.scalar(
            select(func.max(m.EmailSend.not_before)).where(
                m.EmailSend.gmail_account_id == account_id,
                m.EmailSend.status == OutboxStatus.QUEUED.value,
                m.EmailSend.newsletter_issue_id.is_not(None),
            )
        )

    def metrics(self, org_id: int, issue_id: int) -> IssueMetrics:
        """The issue's numbers (opened/clicked left None; the service fills them).

        A bounce counts when its event names one of the issue's sends. An unsubscribe
        (an opt-out, or newsletters turned off) counts when the contact's last email sent
        at or before it was this issue's."""
        counts = self.send_counts(issue_id)
        s = m.EmailSend
        ev = m.ContactEngagementEvent
        issue_sends = select(s.id).where(
            s.org_id == org_id, s.newsletter_issue_id == issue_id, s.status == "sent"
        )
        bounced = (
            self._s.scalar(
                select(func.count(func.distinct(ev.contact_id))).where(
                    ev.org_id == org_id,
                    ev.event == EngagementEvent.BOUNCED.value,
                    ev.email_send_id.in_(issue_sends),
                )
            )
            or 0
        )
        last = s.__table__.alias("last_send")
        last_send = (
            select(last.c.id)
            .where(
                last.c.org_id == ev.org_id,
                last.c.contact_id == ev.contact_id,
                last.c.status == "sent",
                last.c.sent_at <= ev.occurred_at,
            )
            .order_by(last.c.sent_at.desc(), last.c.id.desc())
            .limit(1)
            .correlate(ev)
            .scalar_subquery()
        )
        received = select(s.contact_id).where(
            s.org_id == org_id, s.newsletter_issue_id == issue_id, s.status == "sent"
        )
        rows = self._s.execute(
            select(ev.contact_id, ev.event, ev.detail, last_send)
            .where(
                ev.org_id == org_id,
                ev.contact_id.in_(received),
                ev.event.in_(
                    [EngagementEvent.OPTED_OUT.value, EngagementEvent.EMAIL_PREFERENCE.value]
                ),
            )
            .order_by(ev.occurred_at, ev.id)
        ).all()
        ours = set(self._s.scalars(issue_sends))
        everything: set[int] = set()
        newsletter: set[int] = set()
        for contact_id, event, detail, send_id in rows:
            if send_id not in ours:
                continue
            if event == EngagementEvent.OPTED_OUT.value:
                everything.add(int(contact_id))
            elif (
                isinstance(detail, dict)
                and detail.get("email_type") == EmailType.NEWSLETTER.value
                and detail.get("subscribed") is False
            ):
                newsletter.add(int(contact_id))
        newsletter -= everything
        queued = counts.get(OutboxStatus.QUEUED.value, 0) + counts.get(
            OutboxStatus.SENDING.value, 0
        )
        withdrawn = int(
            self._s.scalar(
                select(func.count()).where(
                    s.org_id == org_id,
                    s.newsletter_issue_id == issue_id,
                    s.status == OutboxStatus.FAILED.value,
                    s.error == WITHDRAWN_REASON,
                )
            )
            or 0
        )
        return IssueMetrics(
            planned=sum(counts.values()),
            queued=queued,
            sent=counts.get(OutboxStatus.SENT.value, 0),
            failed=counts.get(OutboxStatus.FAILED.value, 0) - withdrawn,
            withdrawn=withdrawn,
            bounced=int(bounced),
            unsubscribed=len(everything) + len(newsletter),
            unsubscribed_newsletter=len(newsletter),
            unsubscribed_everything=len(everything),
            opened=None,
            clicked=None,
        )

    def tracked_counts(self, org_id: int, issue_id: int) -> tuple[int, int]:
        """(contacts who opened, contacts who clicked) of the issue's tracked sends."""
        s, t = m.EmailSend, m.EmailTrackingEvent
        rows = self._s.execute(
            select(t.kind, func.count(func.distinct(s.contact_id)))
            .join(s, and_(s.id == t.email_send_id, s.org_id == t.org_id))
            .where(
                t.org_id == org_id,
                s.newsletter_issue_id == issue_id,
                s.tracked.is_(True),
                t.by_bot.is_(False),
            )
            .group_by(t.kind)
        ).all()
        by_kind = {str(kind): int(n) for kind, n in rows}
        return by_kind.get("open", 0), by_kind.get("click", 0)


class SubscriberRepo:
    """The contacts who receive newsletters: the audience's reachability rules (not opted
    out, a valid address) and newsletters not turned off (storage/audience.py's
    `allows_email_type`, read as `EmailPreferences.from_stored` reads it)."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def _where(self, org_id: int) -> list[ColumnElement[bool]]:
        c = m.Contact
        dialect = self._s.get_bind().dialect.name
        return [
            c.org_id == org_id,
            c.opted_out_at.is_(None),
            c.email_status == EmailStatus.VALID.value,
            allows_email_type(dialect, EmailType.NEWSLETTER),
        ]

    def count(self, org_id: int) -> int:
        """How many subscribers the organization has."""
        return int(
            self._s.scalar(select(func.count()).select_from(m.Contact).where(*self._where(org_id)))
            or 0
        )

    def page(self, org_id: int, *, after: int, limit: int) -> builtins.list[Subscriber]:
        """The next subscribers in contact id order after `after`."""
        c, cl = m.Contact, m.Client
        rows = self._s.execute(
            select(c.id, c.email, c.first_name, c.last_name, c.title, cl.name, c.state)
            .select_from(c)
            .outerjoin(cl, and_(cl.id == c.client_id, cl.org_id == c.org_id))
            .where(*self._where(org_id), c.id > after)
            .order_by(c.id)
            .limit(limit)
        ).all()
        return [
            Subscriber(
                contact_id=int(r[0]),
                email=str(r[1]),
                first_name=r[2],
                last_name=r[3],
                title=r[4],
                company_name=r[5],
                state=r[6],
            )
            for r in rows
        ]
