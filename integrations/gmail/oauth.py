"""Connect a rep's Gmail: OAuth 2.0 consent with PKCE (google-auth-oauthlib), status, disconnect.

The `state` sent to Google is a signed, expiring token naming the user it was issued
for, a nonce, and the hash of a secret kept in an HttpOnly cookie of the browser that
started the consent; the nonce's row holds the PKCE verifier (encrypted) and is consumed by
compare-and-set at the callback, so a forged, expired or replayed state is refused, and so
is a consent URL finished in another browser (a forwarded link).

The mailbox Google signed in to must be the user's own address, or the one other address
an admin allowed for them (`users.gmail_address_allowed`); a mailbox connected for another
user stays with them. Refresh and access tokens are stored encrypted (Fernet keyed from
SALESBOT_SECRET_KEY).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from google_auth_oauthlib.flow import Flow
from oauthlib.oauth2.rfc6749.errors import OAuth2Error
from requests import RequestException
from sqlalchemy.orm import Session

from domain.clock import Clock
from domain.errors import InvalidInput, NotFound
from integrations.crypto import LinkSigner, SecretBox
from integrations.gmail.client import (
    GMAIL_SCOPES,
    REQUIRED_SCOPES,
    GmailClient,
    GmailError,
    GoogleConfig,
    RevokeResult,
    revoke_token,
)
from integrations.gmail.sender import SendLimits, default_daily_cap
from storage.gmail import (
    GmailAccountRepo,
    MailboxTaken,
    OAuthStateRepo,
    OutboxRepo,
    mailbox_allowance,
)

log = logging.getLogger(__name__)

STATE_TTL: Final = timedelta(minutes=10)
CALLBACK_PATH: Final = "/api/integrations/gmail/callback"


class ConsentRefused(InvalidInput):
    """A consent callback that cannot connect a mailbox; the message says what to do."""


@dataclass(frozen=True)
class ConsentStart:
    """A consent just started: Google's URL, and the secret only the starting browser keeps."""

    url: str
    browser_secret: str


def _browser_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


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


def allow_loopback_oauth(config: GoogleConfig) -> None:
    """Let oauthlib talk plain http, only when every OAuth endpoint is a loopback stand-in."""
    if config.loopback:
        os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"


class GmailOAuth:
    """The consent flow and the mailbox's connection state."""

    def __init__(
        self,
        config: GoogleConfig,
        *,
        session_factory: Callable[[], Session],
        clock: Clock,
        secret_box: SecretBox,
        state_signer: LinkSigner,
        redirect_uri: str,
        limits: SendLimits | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._config = config
        self._sessions = session_factory
        self._clock = clock
        self._box = secret_box
        self._signer = state_signer
        self._redirect_uri = redirect_uri
        self._limits = limits or SendLimits()
        self._timeout = timeout
        allow_loopback_oauth(config)

    def _flow(self, *, code_verifier: str | None = None) -> Flow:
        client_config = {
            "web": {
                "client_id": self._config.client_id,
                "client_secret": self._config.client_secret,
                "auth_uri": self._config.auth_uri,
                "token_uri": self._config.token_uri,
                "redirect_uris": [self._redirect_uri],
            }
        }
        return Flow.from_client_config(
            client_config,
            scopes=list(GMAIL_SCOPES),
            redirect_uri=self._redirect_uri,
            code_verifier=code_verifier,
            autogenerate_code_verifier=True,
        )

    # consent ----------------------------------------------------------------------------

    def start_consent(self, org_id: int, user_id: int, *, login_hint: str | None) -> ConsentStart:
        """Start a consent for a user: store its PKCE verifier, return Google's consent URL
        and the secret the browser must bring back to the callback (in a cookie)."""
        now = self._clock.now()
        nonce = secrets.token_urlsafe(24)
        browser_secret = secrets.token_urlsafe(32)
        state = self._signer.sign(
            {"n": nonce, "o": org_id, "u": user_id, "b": _browser_digest(browser_secret)},
            expires_in=int(STATE_TTL.total_seconds()),
        )
        flow = self._flow()
        options: dict[str, str] = {
            "access_type": "offline",
            "prompt": "consent",
            "state": state,
        }
        if login_hint:
            options["login_hint"] = login_hint
        url, _ = flow.authorization_url(**options)
        verifier = flow.code_verifier
        if not verifier:
            raise RuntimeError("google-auth-oauthlib did not create a PKCE code verifier")
        with self._sessions() as session:
            repo = OAuthStateRepo(session)
            repo.purge(expired_before=now - timedelta(days=1))
            repo.add(
                org_id,
                user_id=user_id,
                nonce=nonce,
                code_verifier_encrypted=self._box.encrypt_bytes(verifier),
                redirect_uri=self._redirect_uri,
                expires_at=now + STATE_TTL,
            )
            session.commit()
        return ConsentStart(url=str(url), browser_secret=browser_secret)

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
        with self._sessions() as session:
            consumed = OAuthStateRepo(session).consume(
                nonce, org_id=org_id, user_id=user_id, now=now
            )
            session.commit()
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
        verifier = self._box.decrypt_bytes(consumed.code_verifier_encrypted)
        token = self._exchange(code, verifier)
        granted = _scopes(token.get("scope"))
        access_token = str(token.get("access_token") or "")
        refresh_token = token.get("refresh_token")
        missing = REQUIRED_SCOPES - set(granted)
        if missing:
            revoke_token(self._config, str(refresh_token or access_token))
            raise ConsentRefused(
                "Salesbot needs to read, send and label mail; Google granted only part of it."
                " Connect again and tick every box on Google's consent screen."
            )
        if not refresh_token:
            raise ConsentRefused(
                "Google sent no refresh token, so Salesbot could not work while you are away;"
                " remove Salesbot from your Google account's third-party access, then connect"
                " again."
            )
        expires_at = _expiry(token)
        client = GmailClient(
            self._config,
            refresh_token=str(refresh_token),
            access_token=access_token,
            access_token_expires_at=expires_at,
        )
        try:
            email = client.profile_email()
        except GmailError as exc:
            raise ConsentRefused(
                f"Google connected the account but its mailbox could not be opened: {exc.message}"
            ) from exc
        # A refused mailbox's grant is not revoked: revoking ends every token of that Google
        # account for Salesbot, which would disconnect its owner's own connection.
        with self._sessions() as session:
            allowance = mailbox_allowance(session, org_id, user_id)
        if not allowance.permits(email):
            log.warning(
                "gmail consent for another address refused",
                extra={"org_id": org_id, "user_id": user_id},
            )
            raise ConsentRefused(
                f"You signed in to Google as {email}, but your Salesbot address is"
                f" {allowance.email}. Start again from Salesbot's App Home and choose"
                f" {allowance.email} on Google's account screen. If Salesbot should send from"
                f" {email} for you, ask an admin to allow that address first."
            )
        refreshed = client.token_update()
        if refreshed is not None:
            access_token, expires_at = refreshed.access_token, refreshed.expires_at
        with self._sessions() as session:
            try:
                account = GmailAccountRepo(session, self._box).save_connection(
                    org_id,
                    user_id=user_id,
                    email=email,
                    scopes=granted,
                    refresh_token=str(refresh_token),
                    access_token=access_token,
                    access_token_expires_at=expires_at,
                    daily_send_cap=default_daily_cap(email, self._limits),
                    min_send_interval_seconds=self._limits.min_send_interval_seconds,
                    now=now,
                )
            except MailboxTaken as taken:
                log.warning(
                    "gmail consent for a mailbox connected by another user refused",
                    extra={"org_id": org_id, "user_id": user_id},
                )
                raise ConsentRefused(taken.message) from None
            session.commit()
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

    def _exchange(self, code: str, verifier: str) -> Mapping[str, Any]:
        flow = self._flow(code_verifier=verifier)
        try:
            return dict(flow.fetch_token(code=code, timeout=self._timeout))
        except Warning as changed:
            # oauthlib raises when Google grants other scopes than asked (the user unticked
            # a box); the token is still there, and the scope check decides.
            token = getattr(changed, "token", None)
            if token is None:
                raise
            return dict(token)
        except OAuth2Error as exc:
            raise ConsentRefused(
                f"Google refused the authorization code ({exc.error}); start again from"
                " Salesbot's App Home."
            ) from exc
        except RequestException as exc:
            raise ConsentRefused(
                "Google's token service could not be reached; try again in a minute."
            ) from exc

    # state ------------------------------------------------------------------------------

    def status(self, org_id: int, user_id: int) -> MailboxStatus:
        """Return the user's mailbox connection."""
        now = self._clock.now()
        with self._sessions() as session:
            account = GmailAccountRepo(session, self._box).for_user(org_id, user_id)
            if account is None:
                return MailboxStatus(connected=False)
            sent = OutboxRepo(session).sends_since(account.id, now - self._limits.window)
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
        with self._sessions() as session:
            account = GmailAccountRepo(session, self._box).for_user(
                org_id, user_id, connected_only=True
            )
        return account.email if account is not None else None

    def disconnect(self, org_id: int, user_id: int) -> Disconnection:
        """Revoke the user's grant at Google and delete the stored tokens."""
        now = self._clock.now()
        with self._sessions() as session:
            repo = GmailAccountRepo(session, self._box)
            account = repo.for_user(org_id, user_id, connected_only=True)
            if account is None:
                raise NotFound("You have no connected Gmail mailbox.")
            tokens = repo.tokens(account.id)
        result = RevokeResult.ALREADY_INVALID
        if tokens is not None:
            result = revoke_token(self._config, tokens.refresh_token, timeout=self._timeout)
        with self._sessions() as session:
            GmailAccountRepo(session, self._box).mark_disconnected(
                account.id, reason="disconnected by the rep", now=now
            )
            session.commit()
        log.info(
            "gmail disconnected",
            extra={"org_id": org_id, "user_id": user_id, "revoke": result.value},
        )
        return Disconnection(email=account.email, revoked=result != RevokeResult.FAILED)


def _scopes(value: object) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list | tuple):
        return [str(s) for s in value]
    return []


def _expiry(token: Mapping[str, Any]) -> datetime | None:
    expires_at = token.get("expires_at")
    if isinstance(expires_at, int | float):
        return datetime.fromtimestamp(float(expires_at), UTC)
    expires_in = token.get("expires_in")
    if isinstance(expires_in, int | float):
        # Token lifetimes run on the wall clock, which is what google-auth compares with.
        return datetime.now(UTC) + timedelta(seconds=float(expires_in))
    return None
