"""Repositories of the Gmail connection: mailboxes with encrypted tokens, consents in
progress, which addresses a user may connect. The outbox (`email_sends`) is in
storage/outbox.py.

The outbox is `email_sends`: a row is written (with our own Message-ID) and committed
before Gmail is called, claimed by compare-and-set (rows and mailboxes locked with
SKIP LOCKED on PostgreSQL; SQLite's writer lock serialises claims), and finished by
compare-and-set on the claim. Callers own the transaction; nothing here commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy import delete, func, select, update
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
from storage.accounts import user_label
from storage.models import gmail as mg
from storage.outbox import OutboxRepo
from storage.sql import org_row, rowcount


class TokenCipher(Protocol):
    """Encrypts tokens for a binary column (SecretBox in production)."""

    def encrypt_bytes(self, plaintext: str) -> bytes:
        """Encrypt text."""
        ...

    def decrypt_bytes(self, token: bytes) -> str:
        """Decrypt what encrypt_bytes made."""
        ...


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
        return _allowance(org_row(self._s, m.User, org_id, user_id, what="user"))

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
        if rowcount(result) != 1:
            return None
        row = self._s.execute(
            select(state.code_verifier_encrypted, state.redirect_uri).where(state.nonce == nonce)
        ).one()
        return ConsumedState(code_verifier=self._cipher.decrypt_bytes(row[0]), redirect_uri=row[1])

    def purge(self, *, expired_before: datetime) -> int:
        """Delete consents that expired before the given time; return how many."""
        state = mg.GmailOAuthState
        return rowcount(self._s.execute(delete(state).where(state.expires_at < expired_before)))
