"""The outbox (`email_sends`) and the send slots of the mailboxes.

A row is written (with our own Message-ID) and committed before Gmail is called, claimed
by compare-and-set (rows and mailboxes locked with SKIP LOCKED on PostgreSQL; SQLite's
writer lock serialises claims), and finished by compare-and-set on the claim. Callers own
the transaction; nothing here commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import ColumnElement, Table, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from domain.email_preferences import EmailPreferences, EmailType, email_type_or_none, refusal
from domain.errors import NotFound
from domain.mailboxes import AccountStatus
from domain.newsletters import WITHDRAWN_REASON
from domain.reply_actions import confirms_opt_out
from domain.sending import MailboxSlot, OutboxEmail, OutboxStatus
from storage import models as m
from storage.accounts import user_label
from storage.sql import rowcount

_CONTENT_FIELDS: Final = frozenset(
    {
        "job_id",
        "campaign_id",
        "enrollment_id",
        "contact_id",
        "gmail_account_id",
        "sender_user_id",
        "gmail_thread_id",
        "from_email",
        "to_email",
        "to_name",
        "subject",
        "body_text",
        "body_html",
        "in_reply_to",
        "references",
        "campaign_email",
        "email_type",
        "tracked",
        "newsletter_issue_id",
    }
)


def _outbox(row: m.EmailSend) -> OutboxEmail:
    return OutboxEmail(
        id=row.id,
        org_id=row.org_id,
        card_id=row.card_id,
        job_id=row.job_id,
        campaign_id=row.campaign_id,
        enrollment_id=row.enrollment_id,
        contact_id=row.contact_id,
        gmail_account_id=row.gmail_account_id,
        sender_user_id=row.sender_user_id,
        message_id=row.message_id,
        gmail_message_id=row.gmail_message_id,
        gmail_thread_id=row.gmail_thread_id,
        from_email=row.from_email,
        to_email=row.to_email,
        to_name=row.to_name,
        subject=row.subject,
        body_text=row.body_text or "",
        body_html=row.body_html,
        in_reply_to=row.in_reply_to,
        references=tuple(row.references or ()),
        campaign_email=row.campaign_email,
        email_type=email_type_or_none(row.email_type),
        status=OutboxStatus(row.status),
        attempt_count=row.attempt_count,
        not_before=row.not_before,
        sent_at=row.sent_at,
        error=row.error,
        claimed_by=row.claimed_by,
        claimed_until=row.claimed_until,
        tracked=row.tracked,
    )


def _check_content(content: dict[str, Any]) -> None:
    unknown = set(content) - _CONTENT_FIELDS
    if unknown:
        raise ValueError(f"unknown outbox fields: {', '.join(sorted(unknown))}")


def _held_by(worker: str) -> tuple[ColumnElement[bool], ...]:
    """The row is `sending` under this worker's claim."""
    return (m.EmailSend.status == OutboxStatus.SENDING.value, m.EmailSend.claimed_by == worker)


def _in_hand(worker: str | None) -> tuple[ColumnElement[bool], ...]:
    """The row is this worker's claim, or still queued when no worker is named."""
    if worker is None:
        return (m.EmailSend.status == OutboxStatus.QUEUED.value,)
    return _held_by(worker)


class OutboxRepo:
    """The outbox rows: added before the Gmail call, claimed and finished by compare-and-set."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def _postgresql(self) -> bool:
        return self._s.get_bind().dialect.name == "postgresql"

    def _update(self, send_id: int, *where: ColumnElement[bool], **values: Any) -> bool:
        """Update one row if it still matches `where` (compare-and-set); True if it did."""
        result = self._s.execute(
            update(m.EmailSend).where(m.EmailSend.id == send_id, *where).values(**values)
        )
        return rowcount(result) == 1

    def _end_claim(
        self,
        send_id: int,
        where: tuple[ColumnElement[bool], ...],
        *,
        status: OutboxStatus,
        **values: Any,
    ) -> bool:
        """Move a row still matching `where` to `status`; whoever claimed it holds it no more."""
        return self._update(
            send_id, *where, status=status.value, claimed_by=None, claimed_until=None, **values
        )

    # adding and reading ---------------------------------------------------------------

    def add(
        self,
        org_id: int,
        *,
        card_id: int | None,
        message_id: str,
        not_before: datetime,
        **content: Any,
    ) -> OutboxEmail | None:
        """Store a queued email; None if the card already has one (cards send once)."""
        _check_content(content)
        values: dict[str, Any] = {
            "org_id": org_id,
            "card_id": card_id,
            "message_id": message_id,
            "status": OutboxStatus.QUEUED.value,
            "not_before": not_before,
            "attempt_count": 0,
            **content,
        }
        insert = postgresql.insert if self._postgresql() else sqlite.insert
        stmt = insert(m.EmailSend).values(**values)
        if card_id is not None:
            stmt = stmt.on_conflict_do_nothing(index_elements=["card_id"])
        result = self._s.execute(stmt.returning(m.EmailSend.id))
        new_id = result.scalar_one_or_none()
        return None if new_id is None else self.get(new_id)

    def add_many(self, org_id: int, rows: Sequence[dict[str, Any]]) -> int:
        """Store queued emails in bulk (each: message_id, not_before and content); return
        how many were stored.

        One multi-row INSERT per call, no row read back: a newsletter issue plans 20,000
        rows this way. A row whose (newsletter_issue_id, contact_id) is stored already is
        skipped (ON CONFLICT DO NOTHING on the unique index): planning carried on after a
        crash never adds a subscriber's email twice.
        """
        if not rows:
            return 0
        values: list[dict[str, Any]] = []
        for row in rows:
            content = {k: v for k, v in row.items() if k not in ("message_id", "not_before")}
            _check_content(content)
            to_email = str(row["to_email"])
            values.append(
                {
                    "org_id": org_id,
                    "card_id": None,
                    "status": OutboxStatus.QUEUED.value,
                    "attempt_count": 0,
                    "to_domain": to_email.rsplit("@", 1)[-1].strip().lower()[:255] or None,
                    "references": [],
                    "message_id": row["message_id"],
                    "not_before": row["not_before"],
                    **content,
                }
            )
        insert = postgresql.insert if self._postgresql() else sqlite.insert
        table = cast(Table, m.EmailSend.__table__)
        # Core's executemany, not the ORM's bulk insert and no RETURNING: psycopg sends the
        # rows in one pipeline of one prepared statement (a multi-VALUES statement of a
        # thousand rows costs more to build and parse than to run).
        stmt = insert(table).on_conflict_do_nothing(
            index_elements=["newsletter_issue_id", "contact_id"],
            index_where=table.c.newsletter_issue_id.is_not(None),
        )
        result = self._s.execute(stmt, values)
        return max(0, rowcount(result))

    def get(self, send_id: int) -> OutboxEmail:
        """Return an outbox row or raise NotFound."""
        row = self._s.get(m.EmailSend, send_id)
        if row is None:
            raise NotFound(f"email send {send_id} not found")
        self._s.refresh(row)
        return _outbox(row)

    def get_in_org(self, org_id: int, send_id: int) -> OutboxEmail:
        """Return an outbox row of an organization or raise NotFound."""
        found = self._s.scalar(
            select(m.EmailSend.id).where(m.EmailSend.org_id == org_id, m.EmailSend.id == send_id)
        )
        if found is None:
            raise NotFound(f"email send {send_id} not found")
        return self.get(found)

    def by_card(self, card_id: int) -> OutboxEmail | None:
        """Return the outbox row of a card, if it was ever asked to send."""
        found = self._s.scalar(select(m.EmailSend.id).where(m.EmailSend.card_id == card_id))
        return None if found is None else self.get(found)

    def rearm_failed(self, send_id: int, *, not_before: datetime, **content: Any) -> bool:
        """Queue a failed row again with new content (a card retried after a failure)."""
        _check_content(content)
        return self._end_claim(
            send_id,
            (m.EmailSend.status == OutboxStatus.FAILED.value,),
            status=OutboxStatus.QUEUED,
            not_before=not_before,
            error=None,
            sent_at=None,
            **content,
        )

    def thread_message_ids(self, org_id: int, thread_id: str, *, limit: int = 20) -> list[str]:
        """Return the Message-IDs of a thread's messages we know of, oldest first."""
        sent = self._s.execute(
            select(m.EmailSend.message_id, m.EmailSend.sent_at).where(
                m.EmailSend.org_id == org_id,
                m.EmailSend.gmail_thread_id == thread_id,
                m.EmailSend.status == OutboxStatus.SENT.value,
            )
        ).all()
        received = self._s.execute(
            select(m.InboundEmail.message_id_header, m.InboundEmail.received_at).where(
                m.InboundEmail.org_id == org_id,
                m.InboundEmail.gmail_thread_id == thread_id,
                m.InboundEmail.message_id_header.is_not(None),
            )
        ).all()
        ordered = sorted(
            [(at, str(mid)) for mid, at in [*sent, *received] if mid and at is not None],
            key=lambda pair: pair[0],
        )
        ids: list[str] = []
        for _, mid in ordered:
            mid = mid.strip()
            mid = mid if mid.startswith("<") else f"<{mid}>"
            if mid not in ids:
                ids.append(mid)
        return ids[-limit:]

    def last_sent_thread(self, enrollment_id: int) -> str | None:
        """Return the Gmail thread of an enrollment's last sent email."""
        return self._s.scalar(
            select(m.EmailSend.gmail_thread_id)
            .where(
                m.EmailSend.enrollment_id == enrollment_id,
                m.EmailSend.status == OutboxStatus.SENT.value,
                m.EmailSend.gmail_thread_id.is_not(None),
            )
            .order_by(m.EmailSend.sent_at.desc())
            .limit(1)
        )

    def recipient_block(
        self,
        org_id: int,
        to_email: str,
        *,
        card_id: int | None = None,
        email_type: EmailType | None = None,
        contact_required: bool = False,
    ) -> str | None:
        """Say why an address may not be emailed (opted out, bounced, turned this type of
        email off), or None if it may.

        An opted-out address may still get the confirmation of its opt-out: the answer of
        the reply card `card_id` when that card confirms it (a fixed text, never edited)."""
        row = self._s.execute(
            select(
                m.Contact.email,
                m.Contact.opted_out_at,
                m.Contact.email_status,
                m.Contact.email_preferences,
            ).where(
                m.Contact.org_id == org_id,
                m.Contact.email.in_(sorted({to_email, to_email.lower()})),
            )
        ).first()
        if row is None:
            if contact_required:
                # A campaign email (its unsubscribe link names the contact) whose contact
                # was deleted, or whose address changed, after it was queued.
                return f"{to_email} is no longer a contact; nothing was sent."
            return None
        email, opted_out_at, email_status, stored = row
        if opted_out_at is not None and not self._confirms_opt_out(org_id, card_id):
            return f"{email} opted out on {opted_out_at:%Y-%m-%d}; nothing was sent."
        if email_status != "valid":
            return f"{email} cannot receive email ({email_status}); nothing was sent."
        if email_type is not None:
            return refusal(email, email_type, EmailPreferences.from_stored(stored))
        return None

    def withdrawn_newsletter(self, send_id: int) -> str | None:
        """Say why a newsletter row is not to be sent (its issue was cancelled), or None."""
        cancelled = self._s.scalar(
            select(m.NewsletterIssue.id)
            .join(m.EmailSend, m.EmailSend.newsletter_issue_id == m.NewsletterIssue.id)
            .where(m.EmailSend.id == send_id, m.NewsletterIssue.status == "cancelled")
        )
        return None if cancelled is None else WITHDRAWN_REASON

    def _confirms_opt_out(self, org_id: int, card_id: int | None) -> bool:
        if card_id is None:
            return False
        payload = self._s.scalar(
            select(m.Card.action_payload).where(m.Card.org_id == org_id, m.Card.id == card_id)
        )
        return isinstance(payload, dict) and confirms_opt_out(payload)

    def contact_id_for(self, org_id: int, to_email: str) -> int | None:
        """Return the contact with this address in the organization."""
        return self._s.scalar(
            select(m.Contact.id).where(
                m.Contact.org_id == org_id,
                m.Contact.email.in_(sorted({to_email, to_email.lower()})),
            )
        )

    def sender_label(self, org_id: int, user_id: int | None) -> str:
        """Return how the sending user is named: their name, else their email."""
        return user_label(self._s, org_id, user_id)

    # claiming --------------------------------------------------------------------------

    def lock_queued(self, send_id: int) -> OutboxEmail | None:
        """Lock a queued row for claiming; None if it is not queued or another worker has it."""
        query = select(m.EmailSend).where(
            m.EmailSend.id == send_id, m.EmailSend.status == OutboxStatus.QUEUED.value
        )
        if self._postgresql():
            query = query.with_for_update(skip_locked=True)
        row = self._s.scalars(query).one_or_none()
        return None if row is None else _outbox(row)

    def due_queued(self, *, now: datetime, limit: int) -> list[OutboxEmail]:
        """Lock queued rows whose time has come, oldest due first (SKIP LOCKED on PostgreSQL)."""
        query = (
            select(m.EmailSend)
            .where(
                m.EmailSend.status == OutboxStatus.QUEUED.value,
                m.EmailSend.not_before <= now,
            )
            .order_by(m.EmailSend.not_before, m.EmailSend.id)
            .limit(limit)
        )
        if self._postgresql():
            query = query.with_for_update(skip_locked=True)
        return [_outbox(r) for r in self._s.scalars(query)]

    def expired_leases(self, *, now: datetime, limit: int) -> list[OutboxEmail]:
        """Lock `sending` rows whose lease ran out (a crashed or unconfirmed attempt)."""
        query = (
            select(m.EmailSend)
            .where(
                m.EmailSend.status == OutboxStatus.SENDING.value,
                m.EmailSend.claimed_until < now,
            )
            .order_by(m.EmailSend.claimed_until, m.EmailSend.id)
            .limit(limit)
        )
        if self._postgresql():
            query = query.with_for_update(skip_locked=True)
        return [_outbox(r) for r in self._s.scalars(query)]

    def lock_mailbox(self, account_id: int, *, wait: bool) -> MailboxSlot | None:
        """Lock a mailbox's throttle row; without `wait`, None if another worker holds it."""
        query = select(m.GmailAccount).where(m.GmailAccount.id == account_id)
        if self._postgresql():
            query = query.with_for_update(skip_locked=not wait)
        row = self._s.scalars(query).one_or_none()
        if row is None:
            return None
        self._s.refresh(row)
        return MailboxSlot(
            account_id=row.id,
            email=row.email,
            connected=row.status == AccountStatus.CONNECTED.value,
            daily_send_cap=row.daily_send_cap,
            min_send_interval_seconds=row.min_send_interval_seconds,
            next_send_at=row.next_send_at,
            sending_until=row.sending_until,
        )

    def hold_mailbox(self, account_id: int, *, until: datetime) -> None:
        """Mark a send from the mailbox in flight until `until` (call with the row locked)."""
        self._s.execute(
            update(m.GmailAccount)
            .where(m.GmailAccount.id == account_id)
            .values(sending_until=until)
        )

    def release_mailbox(self, account_id: int, *, held_until: datetime) -> bool:
        """End this send's hold of the mailbox; False if the hold had expired and moved on."""
        result = self._s.execute(
            update(m.GmailAccount)
            .where(m.GmailAccount.id == account_id, m.GmailAccount.sending_until == held_until)
            .values(sending_until=None)
        )
        return rowcount(result) == 1

    def push_next_send(self, account_id: int, at: datetime) -> None:
        """Make the mailbox's next send wait until `at` (never brings it earlier)."""
        account = m.GmailAccount
        self._s.execute(
            update(account)
            .where(
                account.id == account_id,
                or_(account.next_send_at.is_(None), account.next_send_at < at),
            )
            .values(next_send_at=at)
        )

    def sends_since(self, account_id: int, since: datetime) -> int:
        """Count a mailbox's sends (made or in flight) since a moment."""
        return (
            self._s.scalar(
                select(func.count()).where(
                    m.EmailSend.gmail_account_id == account_id, m.EmailSend.sent_at > since
                )
            )
            or 0
        )

    def send_time_since(self, account_id: int, since: datetime, *, offset: int) -> datetime | None:
        """Return the time of the `offset`-th send (0 = oldest) of a mailbox since a moment."""
        return self._s.scalar(
            select(m.EmailSend.sent_at)
            .where(m.EmailSend.gmail_account_id == account_id, m.EmailSend.sent_at > since)
            .order_by(m.EmailSend.sent_at)
            .offset(offset)
            .limit(1)
        )

    def claim(
        self,
        send_id: int,
        *,
        worker: str,
        slot_at: datetime,
        lease_until: datetime,
        from_email: str,
    ) -> bool:
        """Take a queued row (or re-take one this worker holds) for an attempt now."""
        return self._update(
            send_id,
            or_(
                m.EmailSend.status == OutboxStatus.QUEUED.value,
                (m.EmailSend.status == OutboxStatus.SENDING.value)
                & (m.EmailSend.claimed_by == worker),
            ),
            status=OutboxStatus.SENDING.value,
            claimed_by=worker,
            claimed_until=lease_until,
            sent_at=slot_at,
            from_email=from_email,
            attempt_count=m.EmailSend.attempt_count + 1,
        )

    def extend_lease(self, send_id: int, *, worker: str, until: datetime) -> bool:
        """Renew this worker's lease of a row (reconciling it)."""
        return self._update(
            send_id,
            m.EmailSend.status == OutboxStatus.SENDING.value,
            claimed_by=worker,
            claimed_until=until,
        )

    def release_slot(self, send_id: int, *, worker: str) -> bool:
        """Give back the send slot of an attempt Gmail refused to carry out (rate limited)."""
        return self._update(send_id, *_held_by(worker), sent_at=None)

    def forget_thread(self, send_id: int) -> None:
        """Send without a Gmail thread (the thread was deleted from the mailbox)."""
        self._update(send_id, gmail_thread_id=None)

    # finishing ---------------------------------------------------------------------------

    def mark_sent(
        self,
        send_id: int,
        *,
        worker: str,
        gmail_message_id: str,
        gmail_thread_id: str,
        at: datetime,
    ) -> bool:
        """Record that Gmail accepted the message; False if the claim was lost meanwhile."""
        return self._end_claim(
            send_id,
            _held_by(worker),
            status=OutboxStatus.SENT,
            gmail_message_id=gmail_message_id,
            gmail_thread_id=gmail_thread_id,
            # The slot the send was started in (what the cap and spacing count).
            sent_at=func.coalesce(m.EmailSend.sent_at, at),
            error=None,
            not_before=None,
        )

    def requeue(
        self,
        send_id: int,
        *,
        not_before: datetime,
        reason: str,
        worker: str | None = None,
        keep_slot: bool = False,
    ) -> bool:
        """Put a row back in the queue: certainly not sent, to be tried at `not_before`."""
        slot: dict[str, Any] = {} if keep_slot else {"sent_at": None}
        return self._end_claim(
            send_id,
            _in_hand(worker),
            status=OutboxStatus.QUEUED,
            not_before=not_before,
            error=reason,
            **slot,
        )

    def hold(self, send_id: int, *, worker: str, until: datetime, reason: str) -> bool:
        """Keep an unconfirmed attempt `sending` until `until`, when the mailbox is searched."""
        return self._update(send_id, *_held_by(worker), claimed_until=until, error=reason)

    def mark_failed(self, send_id: int, *, reason: str, worker: str | None = None) -> bool:
        """Record that the email was certainly not sent and will not be retried by itself."""
        return self._end_claim(
            send_id,
            _in_hand(worker),
            status=OutboxStatus.FAILED,
            error=reason,
            sent_at=None,
            not_before=None,
        )

    def next_due_at(self) -> datetime | None:
        """Return when the outbox next has work: a queued row's time or a lease's end."""
        queued = self._s.scalar(
            select(func.min(m.EmailSend.not_before)).where(
                m.EmailSend.status == OutboxStatus.QUEUED.value
            )
        )
        leases = self._s.scalar(
            select(func.min(m.EmailSend.claimed_until)).where(
                m.EmailSend.status == OutboxStatus.SENDING.value
            )
        )
        candidates = [t for t in (queued, leases) if t is not None]
        return min(candidates) if candidates else None

    def replace_body_html(self, send_id: int, body_html: str) -> None:
        """Store the HTML a queued row is sent with (its tracked HTML, made once its id is
        known)."""
        self._update(send_id, m.EmailSend.status == OutboxStatus.QUEUED.value, body_html=body_html)

    def count_by_status(self, org_id: int | None = None) -> dict[str, int]:
        """Count outbox rows by status (of one organization, or all)."""
        query = select(m.EmailSend.status, func.count()).group_by(m.EmailSend.status)
        if org_id is not None:
            query = query.where(m.EmailSend.org_id == org_id)
        return {str(status): int(n) for status, n in self._s.execute(query).all()}
