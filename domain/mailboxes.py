"""Reps' Gmail mailboxes: which address each may connect, the consent that connects one,
what the status route shows of it, and disconnecting it.

The `state` sent to Google is a signed, expiring token naming the user it was issued
for, a nonce, and the hash of a secret kept in an HttpOnly cookie of the browser that
started the consent; the nonce's row holds the PKCE verifier (encrypted at rest) and is
consumed by compare-and-set at the callback, so a forged, expired or replayed state is
refused, and so is a consent URL finished in another browser (a forwarded link).

The mailbox Google signed in to must be the user's own address, or the one other address
an admin allowed for them (`MailboxAllowances`); a mailbox connected for another user
stays with them. Google's half of the protocol (the consent URL with PKCE, the code
exchange, the mailbox's address, revocation) is the `MailboxAuthorization` port; storage
encrypts the tokens on the way in.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from domain.clock import Clock
from domain.contacts import UserRole
from domain.errors import Conflict, ExternalServiceError, InvalidInput, NotFound, NotPermitted

if TYPE_CHECKING:
    from domain.ports import MailboxAuthorization, MailboxUnitOfWork, StateSigner

log = logging.getLogger(__name__)

# How long a consent may take from Salesbot's redirect to Google's callback.
STATE_TTL: Final = timedelta(minutes=10)
# Consents older than this are deleted when a new one starts; expired ones are refused anyway.
_STATE_RETENTION: Final = timedelta(days=1)


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


@dataclass(frozen=True)
class MailboxPace:
    """How a newly connected mailbox may send, and the window its daily cap counts over."""

    daily_cap: Callable[[str], int]  # by the mailbox's address: consumer Gmail gets less
    min_send_interval_seconds: int
    window: timedelta


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


# --- the consent ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsumedState:
    """What a consent's callback needs: the PKCE verifier and the redirect URI used."""

    code_verifier: str
    redirect_uri: str


@dataclass(frozen=True)
class ConsentRequest:
    """Google's consent URL for one consent, with the PKCE verifier it was made with."""

    url: str
    code_verifier: str
    redirect_uri: str


@dataclass(frozen=True)
class Grant:
    """What Google's token endpoint granted for an authorization code."""

    access_token: str
    refresh_token: str | None
    scopes: tuple[str, ...]
    missing_scopes: frozenset[str]  # of those Salesbot needs
    expires_at: datetime | None


@dataclass(frozen=True)
class MailboxIdentity:
    """The mailbox a grant opens, and the access token as it is after opening it."""

    email: str
    access_token: str
    access_token_expires_at: datetime | None


class RevokeResult(StrEnum):
    """What Google's revocation endpoint answered."""

    REVOKED = "revoked"
    ALREADY_INVALID = "already_invalid"  # the token was expired or revoked already
    FAILED = "failed"  # Google could not be reached or refused for another reason


class ConsentRefused(InvalidInput):
    """A consent callback that cannot connect a mailbox; the message says what to do."""


@dataclass(frozen=True)
class ConsentStart:
    """A consent just started: Google's URL, and the secret only the starting browser keeps."""

    url: str
    browser_secret: str


@dataclass(frozen=True)
class ConnectedMailbox:
    """A mailbox just connected."""

    account_id: int
    org_id: int
    user_id: int
    email: str
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class MailboxStatus:
    """What the status route shows of a user's mailbox."""

    connected: bool
    email: str | None = None
    status: str | None = None
    scopes: tuple[str, ...] = ()
    daily_send_cap: int | None = None
    min_send_interval_seconds: int | None = None
    sent_last_24h: int = 0
    disconnected_at: datetime | None = None
    disconnected_reason: str | None = None


@dataclass(frozen=True)
class Disconnection:
    """What disconnecting did: which mailbox, and whether Google confirmed the revocation."""

    email: str
    revoked: bool


def _browser_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Mailboxes:
    """The consent flow and the mailbox's connection state; each step owns its transaction."""

    def __init__(
        self,
        uow: Callable[[], MailboxUnitOfWork],
        *,
        clock: Clock,
        google: MailboxAuthorization,
        state_signer: StateSigner,
        pace: MailboxPace,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._google = google
        self._signer = state_signer
        self._pace = pace

    # consent ----------------------------------------------------------------------------

    def start_consent(self, org_id: int, user_id: int) -> ConsentStart:
        """Start a consent for a user: store its PKCE verifier, return Google's consent URL
        (hinting the user's own address) and the secret the browser must bring back to the
        callback (in a cookie). NotFound for an unknown user."""
        now = self._clock.now()
        nonce = secrets.token_urlsafe(24)
        browser_secret = secrets.token_urlsafe(32)
        with self._uow() as uow:
            login_hint = uow.mailbox_allowances.for_user(org_id, user_id).email
            state = self._signer.sign(
                {"n": nonce, "o": org_id, "u": user_id, "b": _browser_digest(browser_secret)},
                expires_in=int(STATE_TTL.total_seconds()),
            )
            request = self._google.consent_url(state=state, login_hint=login_hint)
            uow.oauth_states.purge(expired_before=now - _STATE_RETENTION)
            uow.oauth_states.add(
                org_id,
                user_id=user_id,
                nonce=nonce,
                code_verifier=request.code_verifier,
                redirect_uri=request.redirect_uri,
                expires_at=now + STATE_TTL,
            )
            uow.commit()
        return ConsentStart(url=request.url, browser_secret=browser_secret)

    def complete(
        self,
        *,
        state: str | None,
        code: str | None,
        error: str | None,
        browser_secret: str | None,
    ) -> ConnectedMailbox:
        """Finish a consent from Google's redirect; raise ConsentRefused with the reason.

        `browser_secret` is what the browser's consent cookie holds: the state is refused
        unless it is the secret given to the browser that started this consent.
        """
        if not state:
            raise ConsentRefused(
                "This page was opened without the state Salesbot gave Google; start again from"
                " Salesbot's App Home."
            )
        try:
            claims = self._signer.verify(state)
            nonce, org_id, user_id = str(claims["n"]), int(claims["o"]), int(claims["u"])
            bound_to = str(claims["b"])
        except (InvalidInput, KeyError, TypeError, ValueError):
            raise ConsentRefused(
                "This Gmail connection link is not valid or has expired; start again from"
                " Salesbot's App Home."
            ) from None
        # Checked before the state is used: a consent URL forwarded to someone else lands
        # here in their browser, without the cookie, and connects nothing.
        if not browser_secret or not hmac.compare_digest(_browser_digest(browser_secret), bound_to):
            log.warning(
                "gmail consent finished in another browser",
                extra={"org_id": org_id, "user_id": user_id},
            )
            raise ConsentRefused(
                "This Gmail connection was started in another browser (a forwarded link"
                " cannot be used), or your browser did not keep its cookie. Start again from"
                " Salesbot's App Home in Slack: press Connect Gmail in the browser where you"
                " sign in to Google."
            )
        now = self._clock.now()
        # Consumed in a transaction of its own, before Google is called: a refused or
        # failed consent has still used its state.
        with self._uow() as uow:
            consumed = uow.oauth_states.consume(nonce, org_id=org_id, user_id=user_id, now=now)
            uow.commit()
        if consumed is None:
            raise ConsentRefused(
                "This Gmail connection link was already used or has expired; start again from"
                " Salesbot's App Home."
            )
        if error:
            raise ConsentRefused(
                "Gmail was not connected: Google answered "
                f"“{error}” (was “Allow” clicked?). Start again from Salesbot's App Home."
            )
        if not code:
            raise ConsentRefused("Google sent no authorization code; start again.")
        grant = self._google.exchange_code(code, code_verifier=consumed.code_verifier)
        if grant.missing_scopes:
            self._google.discard_grant(grant.refresh_token or grant.access_token)
            raise ConsentRefused(
                "Salesbot needs to read, send and label mail; Google granted only part of it."
                " Connect again and tick every box on Google's consent screen."
            )
        if not grant.refresh_token:
            raise ConsentRefused(
                "Google sent no refresh token, so Salesbot could not work while you are away;"
                " remove Salesbot from your Google account's third-party access, then connect"
                " again."
            )
        try:
            mailbox = self._google.open_mailbox(grant)
        except ExternalServiceError as exc:
            raise ConsentRefused(
                f"Google connected the account but its mailbox could not be opened: {exc.message}"
            ) from exc
        # A refused mailbox's grant is not revoked: revoking ends every token of that Google
        # account for Salesbot, which would disconnect its owner's own connection.
        with self._uow() as uow:
            allowance = uow.mailbox_allowances.for_user(org_id, user_id)
        if not allowance.permits(mailbox.email):
            log.warning(
                "gmail consent for another address refused",
                extra={"org_id": org_id, "user_id": user_id},
            )
            raise ConsentRefused(
                f"You signed in to Google as {mailbox.email}, but your Salesbot address is"
                f" {allowance.email}. Start again from Salesbot's App Home and choose"
                f" {allowance.email} on Google's account screen. If Salesbot should send from"
                f" {mailbox.email} for you, ask an admin to allow that address first."
            )
        with self._uow() as uow:
            try:
                account = uow.gmail_accounts.save_connection(
                    org_id,
                    user_id=user_id,
                    email=mailbox.email,
                    scopes=grant.scopes,
                    refresh_token=grant.refresh_token,
                    access_token=mailbox.access_token,
                    access_token_expires_at=mailbox.access_token_expires_at,
                    daily_send_cap=self._pace.daily_cap(mailbox.email),
                    min_send_interval_seconds=self._pace.min_send_interval_seconds,
                    now=now,
                )
            except MailboxTaken as taken:
                log.warning(
                    "gmail consent for a mailbox connected by another user refused",
                    extra={"org_id": org_id, "user_id": user_id},
                )
                raise ConsentRefused(taken.message) from None
            uow.commit()
        log.info(
            "gmail connected",
            extra={
                "org_id": org_id,
                "user_id": user_id,
                "gmail_account_id": account.id,
                "allowed_by_admin": account.email != allowance.email.strip().lower(),
            },
        )
        return ConnectedMailbox(
            account_id=account.id,
            org_id=org_id,
            user_id=user_id,
            email=account.email,
            scopes=account.scopes,
        )

    # state ------------------------------------------------------------------------------

    def status(self, org_id: int, user_id: int) -> MailboxStatus:
        """Return the user's mailbox connection."""
        now = self._clock.now()
        with self._uow() as uow:
            account = uow.gmail_accounts.for_user(org_id, user_id)
            if account is None:
                return MailboxStatus(connected=False)
            sent = uow.gmail_accounts.sends_since(account.id, now - self._pace.window)
        return MailboxStatus(
            connected=account.connected,
            email=account.email,
            status=account.status.value,
            scopes=account.scopes,
            daily_send_cap=account.daily_send_cap,
            min_send_interval_seconds=account.min_send_interval_seconds,
            sent_last_24h=sent,
            disconnected_at=account.disconnected_at,
            disconnected_reason=account.disconnected_reason,
        )

    def connected_address(self, org_id: int, user_id: int) -> str | None:
        """Return the address of the user's connected mailbox, or None."""
        with self._uow() as uow:
            account = uow.gmail_accounts.for_user(org_id, user_id, connected_only=True)
        return account.email if account is not None else None

    def disconnect(self, org_id: int, user_id: int) -> Disconnection:
        """Revoke the user's grant at Google and delete the stored tokens."""
        now = self._clock.now()
        with self._uow() as uow:
            account = uow.gmail_accounts.for_user(org_id, user_id, connected_only=True)
            if account is None:
                raise NotFound("You have no connected Gmail mailbox.")
            tokens = uow.gmail_accounts.tokens(account.id)
        # Google is called outside any transaction; the tokens are forgotten whatever it says.
        result = RevokeResult.ALREADY_INVALID
        if tokens is not None:
            result = self._google.revoke(tokens.refresh_token)
        with self._uow() as uow:
            uow.gmail_accounts.mark_disconnected(
                account.id, reason="disconnected by the rep", now=now
            )
            uow.commit()
        log.info(
            "gmail disconnected",
            extra={"org_id": org_id, "user_id": user_id, "revoke": result.value},
        )
        return Disconnection(email=account.email, revoked=result != RevokeResult.FAILED)


class MailboxAllowances:
    """Which other address an admin lets a user connect; works whether Gmail is set up or not."""

    def __init__(self, uow: Callable[[], MailboxUnitOfWork], *, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    def allow_address(
        self, org_id: int, *, admin_id: int, user_email: str, address: str | None
    ) -> MailboxAllowance:
        """Let a user connect the mailbox of one other address (None takes it back);
        admins only, and who allowed it and when are recorded beside it."""
        with self._uow() as uow:
            if uow.mailbox_allowances.role_of(org_id, admin_id) != UserRole.ADMIN:
                raise NotPermitted(
                    "Only an admin can let a user connect a Gmail address other than their own."
                )
            admin = uow.mailbox_allowances.for_user(org_id, admin_id)
            allowance = uow.mailbox_allowances.allow(
                org_id,
                user_email=user_email,
                address=address,
                allowed_by=admin.email,
                now=self._clock.now(),
            )
            uow.commit()
        log.info(
            "gmail address allowance changed",
            extra={
                "org_id": org_id,
                "user_id": allowance.user_id,
                "by_user_id": admin_id,
                "allowed": allowance.allowed is not None,
            },
        )
        return allowance
