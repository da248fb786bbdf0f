"""What a reply card's "View thread" and "Open contact" read: the conversation of the
card's Gmail thread, and the contact with their engagement and open enrollments.

Each is a few bounded queries on indexes whatever the history: our sends by
`(org_id, gmail_thread_id)`; their messages by `(org_id, contact_id)` (inbound mail has no
index on its thread), plus the card's own message by id; the engagement timeline by
`(org_id, contact_id)`. Only the visible reply text of inbound mail (`reply_text`: quoted
history cut, hidden HTML dropped by the parser) is ever read. Nothing here writes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from domain.card_details import (
    MAX_ANSWERED_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_THREAD_MESSAGES,
    MAX_TIMELINE_EVENTS,
    CardThread,
    ContactOverview,
    OpenEnrollment,
    ThreadMessage,
    clip_message,
)
from domain.errors import NotFound
from storage import models as m
from storage.engagement import EngagementViews

#: Enrollments still running: the campaigns that may email the contact again.
_OPEN_ENROLLMENTS = ("active", "paused")
#: How many of them "Open contact" lists.
MAX_ENROLLMENTS = 10


class CardDetailsViews:
    """The read models behind a card's "View thread" and "Open contact"."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def thread(self, org_id: int, card_id: int) -> CardThread:
        """Return the conversation of a card's Gmail thread, oldest first, or raise NotFound."""
        c = m.Card
        card = self._s.execute(
            select(c.id, c.contact_id, c.inbound_email_id, c.action_payload).where(
                c.org_id == org_id, c.id == card_id
            )
        ).one_or_none()
        if card is None:
            raise NotFound(f"card {card_id} not found")
        payload: dict[str, Any] = dict(card.action_payload or {})
        i = m.InboundEmail
        inbound = None
        if card.inbound_email_id is not None:
            inbound = self._s.execute(
                select(
                    i.id, i.gmail_thread_id, i.conversation_id, i.contact_id, i.gmail_account_id
                ).where(i.org_id == org_id, i.id == card.inbound_email_id)
            ).one_or_none()
        thread_id = (inbound.gmail_thread_id if inbound else None) or payload.get("gmail_thread_id")
        found: list[tuple[datetime | None, int, ThreadMessage]] = []
        left_out = 0

        s = m.EmailSend
        ours_message_ids: set[str] = set()
        if thread_id:
            ours = and_(s.org_id == org_id, s.gmail_thread_id == thread_id, s.status == "sent")
            rows = self._s.execute(
                select(s.id, s.sent_at, s.to_email, s.subject, s.body_text, s.message_id)
                .where(ours)
                .order_by(s.sent_at.desc(), s.id.desc())
                .limit(MAX_THREAD_MESSAGES)
            ).all()
            if len(rows) == MAX_THREAD_MESSAGES:
                left_out += self._count(s, ours) - len(rows)
            for row in rows:
                ours_message_ids.add(row.message_id)
                text, cut = clip_message(row.body_text or "")
                message = ThreadMessage(
                    direction="us",
                    at=row.sent_at,
                    address=row.to_email,
                    subject=row.subject,
                    text=text,
                    truncated=cut,
                )
                found.append((row.sent_at, row.id, message))

        theirs = []
        if inbound is not None:
            theirs.append(i.id == inbound.id)
            contact_id = inbound.contact_id or card.contact_id
            same = []
            if thread_id:
                same.append(i.gmail_thread_id == thread_id)
            if inbound.conversation_id is not None:
                same.append(i.conversation_id == inbound.conversation_id)
            if contact_id is not None and same:
                theirs.append(and_(i.contact_id == contact_id, or_(*same)))
        if theirs:
            mailbox = self._mailbox(inbound.gmail_account_id if inbound else None)
            where = and_(i.org_id == org_id, or_(*theirs))
            replies = self._s.execute(
                select(
                    i.id,
                    i.received_at,
                    i.from_email,
                    i.subject,
                    i.reply_text,
                    i.message_id_header,
                    i.label_ids,
                    i.to_emails,
                )
                .where(where)
                .order_by(i.received_at.desc(), i.id.desc())
                .limit(MAX_THREAD_MESSAGES)
            ).all()
            if len(replies) == MAX_THREAD_MESSAGES:
                left_out += self._count(i, where) - len(replies)
            for reply in replies:
                if reply.message_id_header and reply.message_id_header in ours_message_ids:
                    continue  # our own send, as the rep's mailbox received a copy of it
                # The rep's own mail in the thread (sent by hand from Gmail) is ours.
                by_hand = "SENT" in (reply.label_ids or []) or (
                    bool(mailbox) and (reply.from_email or "").casefold() == mailbox
                )
                answered = inbound is not None and reply.id == inbound.id
                text, cut = clip_message(
                    reply.reply_text or "",
                    MAX_ANSWERED_CHARS if answered else MAX_MESSAGE_CHARS,
                )
                message = ThreadMessage(
                    direction="us" if by_hand else "them",
                    at=reply.received_at,
                    # Ours names whom we wrote to, theirs who wrote.
                    address=(reply.to_emails or [None])[0] if by_hand else reply.from_email,
                    subject=reply.subject,
                    text=text,
                    truncated=cut,
                    answered=answered,
                )
                found.append((reply.received_at, reply.id, message))
        # Oldest first; a message without a date goes last (it cannot be placed).
        dated = sorted((f for f in found if f[0] is not None), key=lambda f: (f[0], f[1]))
        undated = sorted((f for f in found if f[0] is None), key=lambda f: f[1])
        ordered = [message for _, _, message in dated + undated]
        left_out += max(0, len(ordered) - MAX_THREAD_MESSAGES)
        return CardThread(
            card_id=card_id,
            gmail_thread_id=thread_id,
            messages=tuple(ordered[-MAX_THREAD_MESSAGES:]),
            left_out=left_out,
        )

    def contact_overview(self, org_id: int, contact_id: int, *, now: datetime) -> ContactOverview:
        """Return a contact with their latest engagement and open enrollments, or raise
        NotFound."""
        ct, cl = m.Contact, m.Client
        row = self._s.execute(
            select(
                ct.id,
                ct.email,
                ct.first_name,
                ct.last_name,
                ct.title,
                ct.opted_out_at,
                ct.email_status,
                ct.paused_until,
                ct.pause_reason,
                cl.name.label("company_name"),
            )
            .outerjoin(cl, and_(cl.id == ct.client_id, cl.org_id == org_id))
            .where(ct.org_id == org_id, ct.id == contact_id)
        ).one_or_none()
        if row is None:
            raise NotFound(f"contact {contact_id} not found")
        views = EngagementViews(self._s)
        history = views.contact_history(
            org_id, contact_id, now=now, limit=MAX_TIMELINE_EVENTS, cursor=None, newest=True
        )
        total = views.count_entries(org_id, contact_id)
        en, job, camp = m.Enrollment, m.Job, m.MarketingCampaign
        enrollments = tuple(
            OpenEnrollment(
                enrollment_id=r.id,
                job_id=r.job_id,
                job_name=r.job_name,
                campaign_name=r.campaign_name,
                step=r.step,
                status=r.status,
                next_due_at=r.next_due_at,
                paused_until=r.paused_until,
            )
            for r in self._s.execute(
                select(
                    en.id,
                    en.job_id,
                    job.name.label("job_name"),
                    camp.name.label("campaign_name"),
                    en.step,
                    en.status,
                    en.next_due_at,
                    en.paused_until,
                )
                .join(job, job.id == en.job_id)
                .outerjoin(camp, camp.id == job.campaign_id)
                .where(
                    en.org_id == org_id,
                    en.contact_id == contact_id,
                    en.status.in_(_OPEN_ENROLLMENTS),
                )
                .order_by(en.id.desc())
                .limit(MAX_ENROLLMENTS)
            )
        )
        name = " ".join(p for p in (row.first_name, row.last_name) if p) or row.email
        return ContactOverview(
            contact_id=row.id,
            name=name,
            email=row.email,
            title=row.title,
            company_name=row.company_name,
            opted_out_at=row.opted_out_at,
            email_status=row.email_status,
            paused_until=row.paused_until,
            pause_reason=row.pause_reason,
            history=history,
            enrollments=enrollments,
            earlier_events=max(0, total - len(history.entries)),
        )

    def _count(self, model: type[m.Base], where: Any) -> int:
        return int(self._s.scalar(select(func.count()).select_from(model).where(where)) or 0)

    def _mailbox(self, account_id: int | None) -> str:
        """The address of the mailbox a message arrived in (lower case), or ""."""
        if account_id is None:
            return ""
        email = self._s.scalar(select(m.GmailAccount.email).where(m.GmailAccount.id == account_id))
        return (email or "").casefold()
