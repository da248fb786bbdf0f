"""Repositories of the Gmail connection: mailboxes with encrypted tokens, consents in
progress, which addresses a user may connect, and the outbox.

The outbox is `email_sends`: a row is written (with our own Message-ID) and committed
before Gmail is called, claimed by compare-and-set (rows and mailboxes locked with
SKIP LOCKED on PostgreSQL; SQLite's writer lock serialises claims), and finished by
compare-and-set on the claim. Callers own the transaction; nothing here commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from domain.errors import NotFound
from domain.mailboxes import (
    AccountStatus,
    AccountTokens,
    ConsumedState,
    GmailAccountView,
    MailboxAllowance,
    MailboxTaken,
)
from storage import models as m
from storage.accounts import UserRepo
from storage.models import gmail as mg


class TokenCipher(Protocol):
    """Encrypts tokens for a binary column (SecretBox in production)."""

    def encrypt_bytes(self, plaintext: str) -> bytes:
        """Encrypt text."""
        ...

    def decrypt_bytes(self, token: bytes) -> str:
        """Decrypt what encrypt_bytes made."""
        ...


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


# --- mailboxes ------------------------------------------------------------------------------


def _account(row: m.GmailAccount) -> GmailAccountView:
    return GmailAccountView(
        id=row.id,
        org_id=row.org_id,
        user_id=row.user_id,
        email=row.email,
        status=AccountStatus(row.status),
        scopes=tuple(row.scopes or ()),
        daily_send_cap=row.daily_send_cap,
        min_send_interval_seconds=row.min_send_interval_seconds,
        next_send_at=row.next_send_at,
        disconnected_at=row.disconnected_at,
        disconnected_reason=row.disconnected_reason,
    )


class GmailAccountRepo:
    """Mailboxes of reps; tokens are encrypted on the way in and decrypted on the way out."""

    def __init__(self, session: Session, cipher: TokenCipher) -> None:
        self._s = session
        self._cipher = cipher

    def save_connection(
        self,
        org_id: int,
        *,
        user_id: int,
        email: str,
        scopes: Sequence[str],
        refresh_token: str,
        access_token: str | None,
        access_token_expires_at: datetime | None,
        daily_send_cap: int,
        min_send_interval_seconds: int,
        now: datetime,
    ) -> GmailAccountView:
        """Store a fresh consent: the mailbox becomes the user's only connected one.

        Raise MailboxTaken when the mailbox is connected for another user: it stays theirs.
        """
        email = email.strip().lower()
        row = self._s.scalars(
            select(m.GmailAccount)
            .where(m.GmailAccount.org_id == org_id, m.GmailAccount.email == email)
            .with_for_update()
        ).one_or_none()
        if (
            row is not None
            and row.user_id is not None
            and row.user_id != user_id
            and row.status == AccountStatus.CONNECTED.value
        ):
            raise MailboxTaken(email, owner=user_label(self._s, org_id, row.user_id))
        others = self._s.scalars(
            select(m.GmailAccount).where(
                m.GmailAccount.org_id == org_id,
                m.GmailAccount.user_id == user_id,
                m.GmailAccount.email != email,
                m.GmailAccount.status == AccountStatus.CONNECTED.value,
            )
        )
        for other in others:
            self._disconnect_row(other, reason=f"replaced by {email}", now=now)
        if row is None:
            row = m.GmailAccount(
                org_id=org_id,
                email=email,
                daily_send_cap=daily_send_cap,
                min_send_interval_seconds=min_send_interval_seconds,
            )
            self._s.add(row)
        row.user_id = user_id
        row.status = AccountStatus.CONNECTED.value
        row.scopes = list(scopes)
        row.refresh_token_encrypted = self._cipher.encrypt_bytes(refresh_token)
        row.access_token_encrypted = (
            self._cipher.encrypt_bytes(access_token) if access_token else None
        )
        row.access_token_expires_at = access_token_expires_at
        row.disconnected_at = None
        row.disconnected_reason = None
        row.updated_at = now
        self._s.flush()
        return _account(row)

    def get(self, account_id: int) -> GmailAccountView:
        """Return a mailbox or raise NotFound."""
        row = self._s.get(m.GmailAccount, account_id)
        if row is None:
            raise NotFound(f"Gmail account {account_id} not found")
        self._s.refresh(row)
        return _account(row)

    def for_user(
        self, org_id: int, user_id: int, *, connected_only: bool = False
    ) -> GmailAccountView | None:
        """Return the user's mailbox: the connected one, else the one changed last."""
        query = select(m.GmailAccount).where(
            m.GmailAccount.org_id == org_id, m.GmailAccount.user_id == user_id
        )
        if connected_only:
            query = query.where(m.GmailAccount.status == AccountStatus.CONNECTED.value)
        connected_first = (m.GmailAccount.status == AccountStatus.CONNECTED.value).desc()
        row = self._s.scalars(
            query.order_by(connected_first, m.GmailAccount.updated_at.desc()).limit(1)
        ).first()
        return None if row is None else _account(row)

    def tokens(self, account_id: int) -> AccountTokens | None:
        """Return a connected mailbox's decrypted tokens, or None once disconnected."""
        row = self._s.get(m.GmailAccount, account_id)
        if row is None or row.refresh_token_encrypted is None:
            return None
        self._s.refresh(row)
        if row.status != AccountStatus.CONNECTED.value or row.refresh_token_encrypted is None:
            return None
        access = row.access_token_encrypted
        return AccountTokens(
            refresh_token=self._cipher.decrypt_bytes(row.refresh_token_encrypted),
            access_token=self._cipher.decrypt_bytes(access) if access else None,
            access_token_expires_at=row.access_token_expires_at,
        )

    def save_access_token(
        self, account_id: int, *, access_token: str, expires_at: datetime | None, now: datetime
    ) -> None:
        """Keep a refreshed access token (only while the mailbox is connected)."""
        self._s.execute(
            update(m.GmailAccount)
            .where(
                m.GmailAccount.id == account_id,
                m.GmailAccount.status == AccountStatus.CONNECTED.value,
            )
            .values(
                access_token_encrypted=self._cipher.encrypt_bytes(access_token),
                access_token_expires_at=expires_at,
                updated_at=now,
            )
        )

    def mark_disconnected(self, account_id: int, *, reason: str, now: datetime) -> bool:
        """Forget a mailbox's tokens and say why; True if it was connected until now."""
        row = self._s.get(m.GmailAccount, account_id)
        if row is None:
            return False
        self._s.refresh(row)
        was_connected = row.status == AccountStatus.CONNECTED.value
        self._disconnect_row(row, reason=reason, now=now)
        self._s.flush()
        return was_connected

    def sends_since(self, account_id: int, since: datetime) -> int:
        """Count a mailbox's sends (made or in flight) since a moment."""
        return OutboxRepo(self._s).sends_since(account_id, since)

    @staticmethod
    def _disconnect_row(row: m.GmailAccount, *, reason: str, now: datetime) -> None:
        if row.status == AccountStatus.CONNECTED.value or row.disconnected_reason is None:
            row.disconnected_at = now
            row.disconnected_reason = reason
        row.status = AccountStatus.DISCONNECTED.value
        row.refresh_token_encrypted = None
        row.access_token_encrypted = None
        row.access_token_expires_at = None
        row.updated_at = now


def user_label(session: Session, org_id: int, user_id: int | None) -> str:
    """Return how a user is named in messages: their name, else their email."""
    if user_id is None:
        return "the sender"
    user = UserRepo(session).find(org_id, user_id)
    return f"user {user_id}" if user is None else user.label


def user_slack_id(session: Session, org_id: int, user_id: int | None) -> str | None:
    """Return a user's Slack id, if they were linked to Slack."""
    user = None if user_id is None else UserRepo(session).find(org_id, user_id)
    return None if user is None else user.slack_user_id


# --- which mailboxes a user may connect ------------------------------------------------------


def _allowance(row: m.User) -> MailboxAllowance:
    return MailboxAllowance(
        user_id=row.id,
        email=row.email,
        allowed=row.gmail_address_allowed,
        allowed_by=row.gmail_address_allowed_by,
        allowed_at=row.gmail_address_allowed_at,
    )


class MailboxAllowanceRepo:
    """Which mailbox addresses the users of an organization may connect."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def for_user(self, org_id: int, user_id: int) -> MailboxAllowance:
        """Return which mailbox addresses a user may connect; NotFound for an unknown user."""
        row = self._s.scalars(
            select(m.User).where(m.User.org_id == org_id, m.User.id == user_id)
        ).one_or_none()
        if row is None:
            raise NotFound(f"user {user_id} not found")
        return _allowance(row)

    def role_of(self, org_id: int, user_id: int) -> str | None:
        """Return a user's role, or None for an unknown user."""
        return self._s.scalar(
            select(m.User.role).where(m.User.org_id == org_id, m.User.id == user_id)
        )

    def allow(
        self,
        org_id: int,
        *,
        user_email: str,
        address: str | None,
        allowed_by: str,
        now: datetime,
    ) -> MailboxAllowance:
        """Let a user connect one other address (None takes it back), recording who and when."""
        row = self._s.scalars(
            select(m.User).where(
                m.User.org_id == org_id, func.lower(m.User.email) == user_email.strip().lower()
            )
        ).one_or_none()
        if row is None:
            raise NotFound(f"no user with the email {user_email}")
        row.gmail_address_allowed = address.strip().lower() if address else None
        row.gmail_address_allowed_by = allowed_by
        row.gmail_address_allowed_at = now
        self._s.flush()
        return _allowance(row)


# --- OAuth consents in progress -------------------------------------------------------------


class OAuthStateRepo:
    """Consents in progress, their PKCE verifiers encrypted; each is consumed once by
    compare-and-set."""

    def __init__(self, session: Session, cipher: TokenCipher) -> None:
        self._s = session
        self._cipher = cipher

    def add(
        self,
        org_id: int,
        *,
        user_id: int,
        nonce: str,
        code_verifier: str,
        redirect_uri: str,
        expires_at: datetime,
    ) -> None:
        """Remember a consent that was just started."""
        self._s.add(
            mg.GmailOAuthState(
                org_id=org_id,
                user_id=user_id,
                nonce=nonce,
                code_verifier_encrypted=self._cipher.encrypt_bytes(code_verifier),
                redirect_uri=redirect_uri,
                expires_at=expires_at,
            )
        )
        self._s.flush()

    def consume(
        self, nonce: str, *, org_id: int, user_id: int, now: datetime
    ) -> ConsumedState | None:
        """Use a consent once: None if unknown, for someone else, expired or already used."""
        state = mg.GmailOAuthState
        result = self._s.execute(
            update(state)
            .where(
                state.nonce == nonce,
                state.org_id == org_id,
                state.user_id == user_id,
                state.used_at.is_(None),
                state.expires_at > now,
            )
            .values(used_at=now)
        )
        if _rowcount(result) != 1:
            return None
        row = self._s.execute(
            select(state.code_verifier_encrypted, state.redirect_uri).where(state.nonce == nonce)
        ).one()
        return ConsumedState(code_verifier=self._cipher.decrypt_bytes(row[0]), redirect_uri=row[1])

    def purge(self, *, expired_before: datetime) -> int:
        """Delete consents that expired before the given time; return how many."""
        state = mg.GmailOAuthState
        return _rowcount(self._s.execute(delete(state).where(state.expires_at < expired_before)))


# --- the outbox -----------------------------------------------------------------------------


class OutboxStatus(StrEnum):
    """Where an outgoing email is.

    `failed` only ever means "Gmail certainly did not send it"; an attempt whose
    outcome is unknown stays `sending` until the mailbox is searched for its Message-ID.
    """

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True)
class OutboxEmail:
    """One row of the outbox."""

    id: int
    org_id: int
    card_id: int | None
    job_id: int | None
    campaign_id: int | None
    enrollment_id: int | None
    contact_id: int | None
    gmail_account_id: int | None
    sender_user_id: int | None
    message_id: str
    gmail_message_id: str | None
    gmail_thread_id: str | None
    from_email: str | None
    to_email: str
    to_name: str | None
    subject: str
    body_text: str
    body_html: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    campaign_email: bool
    status: OutboxStatus
    attempt_count: int
    not_before: datetime | None
    sent_at: datetime | None
    error: str | None
    claimed_by: str | None
    claimed_until: datetime | None


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
        status=OutboxStatus(row.status),
        attempt_count=row.attempt_count,
        not_before=row.not_before,
        sent_at=row.sent_at,
        error=row.error,
        claimed_by=row.claimed_by,
        claimed_until=row.claimed_until,
    )


@dataclass(frozen=True)
class MailboxSlot:
    """A mailbox as the throttle sees it, locked for the rest of the transaction."""

    account_id: int
    email: str
    connected: bool
    daily_send_cap: int
    min_send_interval_seconds: int
    next_send_at: datetime | None
    sending_until: datetime | None


_CONTENT_FIELDS = frozenset(
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
    }
)


class OutboxRepo:
    """The outbox rows: added before the Gmail call, claimed and finished by compare-and-set."""

    def __init__(self, session: Session) -> None:
        self._s = session

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
        unknown = set(content) - _CONTENT_FIELDS
        if unknown:
            raise ValueError(f"unknown outbox fields: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {
            "org_id": org_id,
            "card_id": card_id,
            "message_id": message_id,
            "status": OutboxStatus.QUEUED.value,
            "not_before": not_before,
            "attempt_count": 0,
            **content,
        }
        insert = postgresql.insert if _is_postgresql(self._s) else sqlite.insert
        stmt = insert(m.EmailSend).values(**values)
        if card_id is not None:
            stmt = stmt.on_conflict_do_nothing(index_elements=["card_id"])
        result = self._s.execute(stmt.returning(m.EmailSend.id))
        new_id = result.scalar_one_or_none()
        return None if new_id is None else self.get(new_id)

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
        unknown = set(content) - _CONTENT_FIELDS
        if unknown:
            raise ValueError(f"unknown outbox fields: {', '.join(sorted(unknown))}")
        result = self._s.execute(
            update(m.EmailSend)
            .where(m.EmailSend.id == send_id, m.EmailSend.status == OutboxStatus.FAILED.value)
            .values(
                status=OutboxStatus.QUEUED.value,
                not_before=not_before,
                error=None,
                sent_at=None,
                claimed_by=None,
                claimed_until=None,
                **content,
            )
        )
        return _rowcount(result) == 1

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

    def enrollment_thread(self, enrollment_id: int) -> str | None:
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

    def recipient_block(self, org_id: int, to_email: str) -> str | None:
        """Say why an address may not be emailed (opted out, bounced), or None if it may."""
        row = self._s.execute(
            select(m.Contact.email, m.Contact.opted_out_at, m.Contact.email_status).where(
                m.Contact.org_id == org_id,
                m.Contact.email.in_(sorted({to_email, to_email.lower()})),
            )
        ).first()
        if row is None:
            return None
        email, opted_out_at, email_status = row
        if opted_out_at is not None:
            return f"{email} opted out on {opted_out_at:%Y-%m-%d}; nothing was sent."
        if email_status != "valid":
            return f"{email} cannot receive email ({email_status}); nothing was sent."
        return None

    def contact_id_for(self, org_id: int, to_email: str) -> int | None:
        """Return the contact with this address in the organization."""
        return self._s.scalar(
            select(m.Contact.id).where(
                m.Contact.org_id == org_id,
                m.Contact.email.in_(sorted({to_email, to_email.lower()})),
            )
        )

    # claiming --------------------------------------------------------------------------

    def lock_queued(self, send_id: int) -> OutboxEmail | None:
        """Lock a queued row for claiming; None if it is not queued or another worker has it."""
        query = select(m.EmailSend).where(
            m.EmailSend.id == send_id, m.EmailSend.status == OutboxStatus.QUEUED.value
        )
        if _is_postgresql(self._s):
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
        if _is_postgresql(self._s):
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
        if _is_postgresql(self._s):
            query = query.with_for_update(skip_locked=True)
        return [_outbox(r) for r in self._s.scalars(query)]

    def lock_mailbox(self, account_id: int, *, wait: bool) -> MailboxSlot | None:
        """Lock a mailbox's throttle row; without `wait`, None if another worker holds it."""
        query = select(m.GmailAccount).where(m.GmailAccount.id == account_id)
        if _is_postgresql(self._s):
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
        return _rowcount(result) == 1

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
        result = self._s.execute(
            update(m.EmailSend)
            .where(
                m.EmailSend.id == send_id,
                or_(
                    m.EmailSend.status == OutboxStatus.QUEUED.value,
                    (m.EmailSend.status == OutboxStatus.SENDING.value)
                    & (m.EmailSend.claimed_by == worker),
                ),
            )
            .values(
                status=OutboxStatus.SENDING.value,
                claimed_by=worker,
                claimed_until=lease_until,
                sent_at=slot_at,
                from_email=from_email,
                attempt_count=m.EmailSend.attempt_count + 1,
            )
        )
        return _rowcount(result) == 1

    def extend_lease(self, send_id: int, *, worker: str, until: datetime) -> bool:
        """Renew this worker's lease of a row (reconciling it)."""
        result = self._s.execute(
            update(m.EmailSend)
            .where(
                m.EmailSend.id == send_id,
                m.EmailSend.status == OutboxStatus.SENDING.value,
            )
            .values(claimed_by=worker, claimed_until=until)
        )
        return _rowcount(result) == 1

    def release_slot(self, send_id: int, *, worker: str) -> bool:
        """Give back the send slot of an attempt Gmail refused to carry out (rate limited)."""
        result = self._s.execute(
            update(m.EmailSend)
            .where(
                m.EmailSend.id == send_id,
                m.EmailSend.status == OutboxStatus.SENDING.value,
                m.EmailSend.claimed_by == worker,
            )
            .values(sent_at=None)
        )
        return _rowcount(result) == 1

    def forget_thread(self, send_id: int) -> None:
        """Send without a Gmail thread (the thread was deleted from the mailbox)."""
        self._s.execute(
            update(m.EmailSend).where(m.EmailSend.id == send_id).values(gmail_thread_id=None)
        )

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
        result = self._s.execute(
            update(m.EmailSend)
            .where(
                m.EmailSend.id == send_id,
                m.EmailSend.status == OutboxStatus.SENDING.value,
                m.EmailSend.claimed_by == worker,
            )
            .values(
                status=OutboxStatus.SENT.value,
                gmail_message_id=gmail_message_id,
                gmail_thread_id=gmail_thread_id,
                # The slot the send was started in (what the cap and spacing count).
                sent_at=func.coalesce(m.EmailSend.sent_at, at),
                error=None,
                claimed_by=None,
                claimed_until=None,
                not_before=None,
            )
        )
        return _rowcount(result) == 1

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
        conditions = [m.EmailSend.id == send_id]
        if worker is None:
            conditions.append(m.EmailSend.status == OutboxStatus.QUEUED.value)
        else:
            conditions += [
                m.EmailSend.status == OutboxStatus.SENDING.value,
                m.EmailSend.claimed_by == worker,
            ]
        values: dict[str, Any] = {
            "status": OutboxStatus.QUEUED.value,
            "not_before": not_before,
            "error": reason,
            "claimed_by": None,
            "claimed_until": None,
        }
        if not keep_slot:
            values["sent_at"] = None
        result = self._s.execute(update(m.EmailSend).where(*conditions).values(**values))
        return _rowcount(result) == 1

    def hold(self, send_id: int, *, worker: str, until: datetime, reason: str) -> bool:
        """Keep an unconfirmed attempt `sending` until `until`, when the mailbox is searched."""
        result = self._s.execute(
            update(m.EmailSend)
            .where(
                m.EmailSend.id == send_id,
                m.EmailSend.status == OutboxStatus.SENDING.value,
                m.EmailSend.claimed_by == worker,
            )
            .values(claimed_until=until, error=reason)
        )
        return _rowcount(result) == 1

    def mark_failed(self, send_id: int, *, reason: str, worker: str | None = None) -> bool:
        """Record that the email was certainly not sent and will not be retried by itself."""
        conditions = [m.EmailSend.id == send_id]
        if worker is None:
            conditions.append(m.EmailSend.status == OutboxStatus.QUEUED.value)
        else:
            conditions += [
                m.EmailSend.status == OutboxStatus.SENDING.value,
                m.EmailSend.claimed_by == worker,
            ]
        result = self._s.execute(
            update(m.EmailSend)
            .where(*conditions)
            .values(
                status=OutboxStatus.FAILED.value,
                error=reason,
                sent_at=None,
                claimed_by=None,
                claimed_until=None,
                not_before=None,
            )
        )
        return _rowcount(result) == 1

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

    def count_by_status(self, org_id: int | None = None) -> dict[str, int]:
        """Count outbox rows by status (of one organization, or all)."""
        query = select(m.EmailSend.status, func.count()).group_by(m.EmailSend.status)
        if org_id is not None:
            query = query.where(m.EmailSend.org_id == org_id)
        return {str(status): int(n) for status, n in self._s.execute(query).all()}
