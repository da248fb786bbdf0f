"""Repositories of the Gmail connection: mailboxes with encrypted tokens, opt-outs.

The outbox (`email_sends`) is in storage/outbox.py. Callers own the transaction; nothing
here commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from domain.errors import Conflict, NotFound
from domain.jobs import EnrollmentStatus
from domain.sending import OutboxStatus
from storage import models as m
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


def __getattr__(name: str) -> Any:
    # integrations/gmail/oauth.py still imports OutboxRepo from here; importing it lazily
    # keeps storage/outbox.py (which imports this module) free of an import cycle.
    # Removed by the mailbox use case.
    if name == "OutboxRepo":
        from storage.outbox import OutboxRepo

        return OutboxRepo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- mailboxes ------------------------------------------------------------------------------


class AccountStatus(StrEnum):
    """Whether Salesbot may use a mailbox."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True)
class GmailAccountView:
    """A connected (or once connected) mailbox, without its tokens."""

    id: int
    org_id: int
    user_id: int | None
    email: str
    status: AccountStatus
    scopes: tuple[str, ...]
    daily_send_cap: int
    min_send_interval_seconds: int
    next_send_at: datetime | None
    disconnected_at: datetime | None
    disconnected_reason: str | None

    @property
    def connected(self) -> bool:
        """True while Salesbot holds working tokens for the mailbox."""
        return self.status == AccountStatus.CONNECTED


@dataclass(frozen=True)
class AccountTokens:
    """A mailbox's decrypted tokens (never logged, never returned by the API)."""

    refresh_token: str
    access_token: str | None
    access_token_expires_at: datetime | None


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


class MailboxTaken(Conflict):
    """The mailbox is connected for another user; a consent never moves it silently."""

    def __init__(self, email: str, *, owner: str) -> None:
        super().__init__(
            f"{email} is already connected to Salesbot by {owner}, and stays with them. If it"
            f" should send for you instead, ask {owner} to disconnect it first"
            " (POST /api/integrations/gmail/disconnect), then connect again."
        )
        self.email = email
        self.owner = owner


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
    row = session.execute(
        select(m.User.name, m.User.email).where(m.User.org_id == org_id, m.User.id == user_id)
    ).one_or_none()
    if row is None:
        return f"user {user_id}"
    return str(row[0] or row[1])


def user_slack_id(session: Session, org_id: int, user_id: int | None) -> str | None:
    """Return a user's Slack id, if they were linked to Slack."""
    if user_id is None:
        return None
    return session.scalar(
        select(m.User.slack_user_id).where(m.User.org_id == org_id, m.User.id == user_id)
    )


# --- which mailboxes a user may connect ------------------------------------------------------


@dataclass(frozen=True)
class MailboxAllowance:
    """The addresses a user may connect: their own, and one other an admin allowed."""

    user_id: int
    email: str
    allowed: str | None
    allowed_by: str | None
    allowed_at: datetime | None

    def permits(self, address: str) -> bool:
        """True when the user may connect the mailbox of this address."""
        wanted = address.strip().lower()
        return wanted in {self.email.strip().lower(), (self.allowed or "").strip().lower()}


def _allowance(row: m.User) -> MailboxAllowance:
    return MailboxAllowance(
        user_id=row.id,
        email=row.email,
        allowed=row.gmail_address_allowed,
        allowed_by=row.gmail_address_allowed_by,
        allowed_at=row.gmail_address_allowed_at,
    )


def mailbox_allowance(session: Session, org_id: int, user_id: int) -> MailboxAllowance:
    """Return which mailbox addresses a user may connect; NotFound for an unknown user."""
    row = session.scalars(
        select(m.User).where(m.User.org_id == org_id, m.User.id == user_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"user {user_id} not found")
    return _allowance(row)


def allow_mailbox_address(
    session: Session,
    org_id: int,
    *,
    user_email: str,
    address: str | None,
    allowed_by: str,
    now: datetime,
) -> MailboxAllowance:
    """Let a user connect one other address (None takes it back), recording who and when."""
    row = session.scalars(
        select(m.User).where(
            m.User.org_id == org_id, func.lower(m.User.email) == user_email.strip().lower()
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"no user with the email {user_email}")
    row.gmail_address_allowed = address.strip().lower() if address else None
    row.gmail_address_allowed_by = allowed_by
    row.gmail_address_allowed_at = now
    session.flush()
    return _allowance(row)


# --- OAuth consents in progress -------------------------------------------------------------


@dataclass(frozen=True)
class ConsumedState:
    """What a consent's callback needs: the PKCE verifier and the redirect URI used."""

    code_verifier_encrypted: bytes
    redirect_uri: str


class OAuthStateRepo:
    """Consents in progress; each is consumed once by compare-and-set."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def add(
        self,
        org_id: int,
        *,
        user_id: int,
        nonce: str,
        code_verifier_encrypted: bytes,
        redirect_uri: str,
        expires_at: datetime,
    ) -> None:
        """Remember a consent that was just started."""
        self._s.add(
            mg.GmailOAuthState(
                org_id=org_id,
                user_id=user_id,
                nonce=nonce,
                code_verifier_encrypted=code_verifier_encrypted,
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
        return ConsumedState(code_verifier_encrypted=row[0], redirect_uri=row[1])

    def purge(self, *, expired_before: datetime) -> int:
        """Delete consents that expired before the given time; return how many."""
        state = mg.GmailOAuthState
        return _rowcount(self._s.execute(delete(state).where(state.expires_at < expired_before)))


# --- opt-outs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContactSummary:
    """What the unsubscribe page shows about a contact."""

    contact_id: int
    email: str
    org_name: str
    opted_out_at: datetime | None


@dataclass(frozen=True)
class OptOutResult:
    """What an opt-out changed."""

    contact_id: int
    email: str
    already_opted_out: bool
    stopped_enrollments: int
    cancelled_sends: int


def contact_summary(session: Session, org_id: int, contact_id: int) -> ContactSummary | None:
    """Return a contact's address and opt-out state, with its organization's name."""
    row = session.execute(
        select(m.Contact.id, m.Contact.email, m.Contact.opted_out_at, m.Organization.name)
        .join(m.Organization, m.Organization.id == m.Contact.org_id)
        .where(m.Contact.org_id == org_id, m.Contact.id == contact_id)
    ).one_or_none()
    if row is None:
        return None
    return ContactSummary(
        contact_id=row[0], email=row[1], opted_out_at=row[2], org_name=str(row[3])
    )


def opt_out_contact(
    session: Session, org_id: int, contact_id: int, *, at: datetime, source: str
) -> OptOutResult | None:
    """Opt a contact out at once: every enrollment stops and no queued email to them leaves.

    Repeating it changes nothing more than stopping enrollments made since; the history
    records the first opt-out only. None if the contact does not exist (any more).
    """
    contact = session.scalars(
        select(m.Contact).where(m.Contact.org_id == org_id, m.Contact.id == contact_id)
    ).one_or_none()
    if contact is None:
        return None
    already = contact.opted_out_at is not None
    if not already:
        contact.opted_out_at = at
        contact.updated_at = at
    stopped = session.execute(
        update(m.Enrollment)
        .where(
            m.Enrollment.org_id == org_id,
            m.Enrollment.contact_id == contact_id,
            m.Enrollment.status.in_([EnrollmentStatus.ACTIVE.value, EnrollmentStatus.PAUSED.value]),
        )
        .values(
            status=EnrollmentStatus.STOPPED.value,
            stop_reason="opted out",
            next_due_at=None,
            updated_at=at,
        )
    )
    cancelled = session.execute(
        update(m.EmailSend)
        .where(
            m.EmailSend.org_id == org_id,
            or_(
                m.EmailSend.contact_id == contact_id,
                m.EmailSend.to_email.in_(sorted({contact.email, contact.email.lower()})),
            ),
            m.EmailSend.status == OutboxStatus.QUEUED.value,
        )
        .values(
            status=OutboxStatus.FAILED.value,
            error=f"{contact.email} opted out; nothing was sent.",
            not_before=None,
        )
    )
    if not already:
        session.add(
            m.ContactEngagementEvent(
                org_id=org_id,
                contact_id=contact_id,
                event="opted_out",
                occurred_at=at,
                detail={"source": source},
            )
        )
    session.flush()
    return OptOutResult(
        contact_id=contact_id,
        email=contact.email,
        already_opted_out=already,
        stopped_enrollments=_rowcount(stopped),
        cancelled_sends=_rowcount(cancelled),
    )
