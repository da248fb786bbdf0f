"""The Gmail API for one mailbox, through google-api-python-client and google-auth.

Credentials are built from a mailbox's stored tokens; google-auth refreshes the access
token when it has expired (or when Gmail answers 401), and the caller stores the new
one (`token_update`). Every failure becomes a `GmailError` that says whether Gmail
certainly did not act on the request, might have, or will not without a new consent.
The client library's own retries stay off: a retried send could go out twice, so the
outbox decides when to try again. Tokens and message bodies never appear in errors or logs.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import urlsplit

import httplib2
import requests
from google.auth import exceptions as auth_exceptions
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from domain.mailboxes import RevokeResult
from domain.sending import FailureKind, MailboxError

SCOPE_GMAIL_READONLY: Final = "https://www.googleapis.com/auth/gmail.readonly"
SCOPE_GMAIL_SEND: Final = "https://www.googleapis.com/auth/gmail.send"
SCOPE_GMAIL_MODIFY: Final = "https://www.googleapis.com/auth/gmail.modify"
SCOPE_USERINFO_EMAIL: Final = "https://www.googleapis.com/auth/userinfo.email"
GMAIL_SCOPES: Final = (
    SCOPE_GMAIL_READONLY,
    SCOPE_GMAIL_SEND,
    SCOPE_GMAIL_MODIFY,
    SCOPE_USERINFO_EMAIL,
)
# Without these Salesbot cannot do its work; userinfo.email is asked for but not needed
# (the address comes from the mailbox's own profile).
REQUIRED_SCOPES: Final = frozenset({SCOPE_GMAIL_READONLY, SCOPE_GMAIL_SEND, SCOPE_GMAIL_MODIFY})

_LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
_RATE_REASONS: Final = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
_QUOTA_REASONS: Final = frozenset({"dailyLimitExceeded", "quotaExceeded"})
_RETRY_AFTER_IN_MESSAGE = re.compile(r"Retry after (\S+)")


@dataclass(frozen=True)
class GoogleConfig:
    """Where Google is (the real one or the stand-in) and Salesbot's OAuth client."""

    client_id: str
    client_secret: str
    token_uri: str
    auth_uri: str
    gmail_api_url: str

    @property
    def revoke_uri(self) -> str:
        """The revocation endpoint next to the token endpoint (Google: oauth2.googleapis.com)."""
        base = self.token_uri.rstrip("/")
        if base.endswith("/token"):
            return base[: -len("/token")] + "/revoke"
        return "https://oauth2.googleapis.com/revoke"

    @property
    def loopback(self) -> bool:
        """True when the OAuth endpoints are plain-http stand-ins on this machine."""
        uris = (self.token_uri, self.auth_uri)
        return all(
            urlsplit(u).scheme == "http" and urlsplit(u).hostname in _LOOPBACK_HOSTS for u in uris
        )


class GmailError(MailboxError):
    """A Gmail or Google OAuth call failed; `kind` says whether anything may have happened."""


@dataclass(frozen=True)
class GmailMessageRef:
    """Gmail's ids of a message."""

    id: str
    thread_id: str


@dataclass(frozen=True)
class TokenUpdate:
    """An access token google-auth obtained with the refresh token."""

    access_token: str
    expires_at: datetime | None


def encode_raw(raw: bytes) -> str:
    """Encode RFC 822 bytes for `messages.send(body={"raw": ...})` (base64url)."""
    return base64.urlsafe_b64encode(raw).decode("ascii")


class GmailClient:
    """One mailbox's Gmail API; build one per unit of work (httplib2 is not thread-safe)."""

    def __init__(
        self,
        config: GoogleConfig,
        *,
        refresh_token: str,
        access_token: str | None = None,
        access_token_expires_at: datetime | None = None,
    ) -> None:
        self._config = config
        self._initial_token = access_token
        self.credentials = Credentials(
            token=access_token,
            refresh_token=refresh_token,
            token_uri=config.token_uri,
            client_id=config.client_id,
            client_secret=config.client_secret,
        )
        if access_token_expires_at is not None:
            # google-auth compares naive UTC datetimes.
            self.credentials.expiry = access_token_expires_at.astimezone(UTC).replace(tzinfo=None)
        self._service: Any = None

    def service(self) -> Any:
        """The authorized googleapiclient Gmail service of this mailbox (history sync uses it)."""
        return self._gmail()

    def _gmail(self) -> Any:
        if self._service is None:
            self._service = build(
                "gmail",
                "v1",
                credentials=self.credentials,
                static_discovery=True,
                cache_discovery=False,
                client_options={"api_endpoint": self._config.gmail_api_url},
            )
        return self._service

    def send(self, raw: bytes, *, thread_id: str | None = None) -> GmailMessageRef:
        """Send RFC 822 bytes (`users.messages.send`); never retried here, a retry may duplicate."""
        body: dict[str, str] = {"raw": encode_raw(raw)}
        if thread_id:
            body["threadId"] = thread_id
        try:
            answer = self._gmail().users().messages().send(userId="me", body=body).execute()
        except Exception as exc:  # noqa: BLE001 - every failure is classified, none is hidden
            raise classify_failure(exc, sending=True) from exc
        return GmailMessageRef(id=str(answer["id"]), thread_id=str(answer["threadId"]))

    def find_by_message_id(self, message_id: str) -> GmailMessageRef | None:
        """Search the mailbox for our Message-ID (`rfc822msgid:`), anywhere, even in Trash."""
        wanted = message_id.strip().strip("<>")
        try:
            answer = (
                self._gmail()
                .users()
                .messages()
                .list(userId="me", q=f"rfc822msgid:{wanted}", includeSpamTrash=True, maxResults=5)
                .execute()
            )
        except Exception as exc:  # noqa: BLE001 - every failure is classified, none is hidden
            raise classify_failure(exc, sending=False) from exc
        found = answer.get("messages") or []
        if not found:
            return None
        return GmailMessageRef(id=str(found[0]["id"]), thread_id=str(found[0]["threadId"]))

    def profile_email(self) -> str:
        """Return the mailbox's address (`users.getProfile`)."""
        try:
            answer = self._gmail().users().getProfile(userId="me").execute()
        except Exception as exc:  # noqa: BLE001 - every failure is classified, none is hidden
            raise classify_failure(exc, sending=False) from exc
        return str(answer["emailAddress"]).lower()

    def token_update(self) -> TokenUpdate | None:
        """Return the access token google-auth refreshed during the calls, if it did."""
        token = self.credentials.token
        if not token or token == self._initial_token:
            return None
        expiry = self.credentials.expiry
        return TokenUpdate(
            access_token=str(token),
            expires_at=expiry.replace(tzinfo=UTC) if expiry is not None else None,
        )


def revoke_token(config: GoogleConfig, token: str, *, timeout: float = 10.0) -> RevokeResult:
    """Revoke a refresh (or access) token, which revokes the whole grant."""
    try:
        answer = requests.post(
            config.revoke_uri,
            data={"token": token},
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=timeout,
        )
    except requests.RequestException:
        return RevokeResult.FAILED
    if answer.status_code == 200:
        return RevokeResult.REVOKED
    if answer.status_code == 400 and _json(answer.content).get("error") == "invalid_token":
        return RevokeResult.ALREADY_INVALID
    return RevokeResult.FAILED


def classify_failure(exc: BaseException, *, sending: bool) -> GmailError:
    """Turn what a Gmail call raised into a GmailError of the right kind.

    With `sending`, failures after the request may have reached Gmail (a 5xx, a broken
    answer, a timeout) are UNCERTAIN: the message may have gone out.
    """
    if isinstance(exc, GmailError):
        return exc
    if isinstance(exc, HttpError):
        return _http_failure(exc, sending=sending)
    if isinstance(exc, auth_exceptions.RefreshError):
        return _refresh_failure(exc)
    if isinstance(exc, auth_exceptions.TransportError):
        return GmailError(
            "Google's token service could not be reached; nothing was sent.",
            kind=FailureKind.UNAVAILABLE,
        )
    if isinstance(exc, httplib2.ServerNotFoundError | ConnectionRefusedError):
        return GmailError(
            "Gmail could not be reached; nothing was sent.", kind=FailureKind.UNAVAILABLE
        )
    if isinstance(exc, http.client.HTTPException | OSError):
        if sending:
            return GmailError(
                f"Gmail's answer was lost ({type(exc).__name__}); the email may have gone out.",
                kind=FailureKind.UNCERTAIN,
            )
        return GmailError(
            f"Gmail could not be reached ({type(exc).__name__}).", kind=FailureKind.UNAVAILABLE
        )
    raise exc


def _json(content: bytes) -> dict[str, Any]:
    try:
        data = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _retry_after(resp: Any, message: str) -> float | None:
    header = resp.get("retry-after") if hasattr(resp, "get") else None
    if header:
        text = str(header).strip()
        if text.isdigit():
            return float(text)
        try:
            at = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            at = None
        if at is not None:
            return max(0.0, (at - datetime.now(UTC)).total_seconds())
    match = _RETRY_AFTER_IN_MESSAGE.search(message)
    if match:
        try:
            at = datetime.fromisoformat(match.group(1).replace("Z", "+00:00"))
        except ValueError:
            return None
        return max(0.0, (at - datetime.now(UTC)).total_seconds())
    return None


def _http_failure(exc: HttpError, *, sending: bool) -> GmailError:
    status = int(exc.resp.status)
    error = _json(exc.content).get("error")
    error = error if isinstance(error, dict) else {}
    message = str(error.get("message") or exc.reason or "")
    items = error.get("errors") if isinstance(error.get("errors"), list) else []
    reason = str(items[0].get("reason", "")) if items and isinstance(items[0], dict) else ""
    retry_after = _retry_after(exc.resp, message)
    if (
        status == 429
        or reason in _RATE_REASONS
        or "too many concurrent requests for user" in message.lower()
    ):
        if reason in _QUOTA_REASONS:
            return _quota(status, reason, retry_after)
        return GmailError(
            "Gmail asked Salesbot to slow down; nothing was sent.",
            kind=FailureKind.RATE_LIMITED,
            status=status,
            reason=reason or "rateLimitExceeded",
            retry_after=retry_after,
        )
    if reason in _QUOTA_REASONS:
        return _quota(status, reason, retry_after)
    if status >= 500:
        if sending:
            return GmailError(
                f"Gmail answered {status} ({reason or 'server error'}); the email may have gone"
                " out.",
                kind=FailureKind.UNCERTAIN,
                status=status,
                reason=reason,
            )
        return GmailError(
            f"Gmail is unavailable ({status} {reason or 'server error'}).",
            kind=FailureKind.UNAVAILABLE,
            status=status,
            reason=reason,
        )
    if status == 404:
        return GmailError(
            "Gmail does not know this thread or message.",
            kind=FailureKind.NOT_FOUND,
            status=status,
            reason=reason,
        )
    if status == 401:
        return GmailError(
            "Google did not accept Salesbot's credentials for this mailbox; reconnect Gmail.",
            kind=FailureKind.REFUSED,
            status=status,
            reason=reason,
        )
    if status == 403 and reason == "insufficientPermissions":
        return GmailError(
            "Salesbot is not allowed to do this in the mailbox; reconnect Gmail and allow"
            " every permission it asks for.",
            kind=FailureKind.REFUSED,
            status=status,
            reason=reason,
        )
    return GmailError(
        f"Gmail refused: {message or reason or status}.",
        kind=FailureKind.REFUSED,
        status=status,
        reason=reason,
    )


def _quota(status: int, reason: str, retry_after: float | None) -> GmailError:
    return GmailError(
        "Gmail says the mailbox's sending quota is used up; nothing was sent.",
        kind=FailureKind.QUOTA,
        status=status,
        reason=reason,
        retry_after=retry_after,
    )


def _refresh_failure(exc: auth_exceptions.RefreshError) -> GmailError:
    details = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
    error = str(details.get("error", ""))
    if error == "invalid_grant" or (not details and "invalid_grant" in str(exc.args[:1])):
        return GmailError(
            "Google access to this mailbox was revoked or has expired; reconnect Gmail.",
            kind=FailureKind.REVOKED,
            reason="invalid_grant",
        )
    if getattr(exc, "retryable", False):
        return GmailError(
            "Google's token service is unavailable; nothing was sent.",
            kind=FailureKind.UNAVAILABLE,
            reason=error or None,
        )
    return GmailError(
        f"Google refused to renew the access token ({error or 'refresh failed'}).",
        kind=FailureKind.REFUSED,
        reason=error or None,
    )
