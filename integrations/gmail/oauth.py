"""Google's half of connecting a rep's Gmail: OAuth 2.0 consent with PKCE
(google-auth-oauthlib), the code exchange, the mailbox's address, revocation.

`GmailAuthorization` is the domain's `MailboxAuthorization` port; what a consent may
connect, and what is stored of it, is decided by `domain/mailboxes.py`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from google_auth_oauthlib.flow import Flow
from oauthlib.oauth2.rfc6749.errors import OAuth2Error
from requests import RequestException

from domain.mailboxes import ConsentRefused, ConsentRequest, Grant, MailboxIdentity, RevokeResult
from integrations.gmail.client import (
    GMAIL_SCOPES,
    REQUIRED_SCOPES,
    GmailClient,
    GoogleConfig,
    revoke_token,
)


def allow_loopback_oauth(config: GoogleConfig) -> None:
    """Let oauthlib talk plain http, only when every OAuth endpoint is a loopback stand-in."""
    if config.loopback:
        os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"


class GmailAuthorization:
    """Consent URLs, code exchanges and revocations at Google's OAuth endpoints."""

    def __init__(self, config: GoogleConfig, *, redirect_uri: str, timeout: float = 30.0) -> None:
        self._config = config
        self._redirect_uri = redirect_uri
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

    def consent_url(self, *, state: str, login_hint: str | None) -> ConsentRequest:
        """Return Google's consent URL for offline access, with a fresh PKCE verifier."""
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
        return ConsentRequest(url=str(url), code_verifier=verifier, redirect_uri=self._redirect_uri)

    def exchange_code(self, code: str, *, code_verifier: str) -> Grant:
        """Exchange an authorization code; raise ConsentRefused when Google will not."""
        token = self._fetch_token(code, code_verifier)
        scopes = tuple(_scopes(token.get("scope")))
        refresh_token = token.get("refresh_token")
        return Grant(
            access_token=str(token.get("access_token") or ""),
            refresh_token=str(refresh_token) if refresh_token else None,
            scopes=scopes,
            missing_scopes=frozenset(REQUIRED_SCOPES - set(scopes)),
            expires_at=_expiry(token),
        )

    def _fetch_token(self, code: str, verifier: str) -> Mapping[str, Any]:
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

    def open_mailbox(self, grant: Grant) -> MailboxIdentity:
        """Return the address of the mailbox a grant opens (`users.getProfile`), with the
        access token google-auth refreshed on the way, if it did; GmailError otherwise."""
        if not grant.refresh_token:
            raise ValueError("a mailbox is opened with a grant that has a refresh token")
        client = GmailClient(
            self._config,
            refresh_token=grant.refresh_token,
            access_token=grant.access_token,
            access_token_expires_at=grant.expires_at,
        )
        email = client.profile_email()
        refreshed = client.token_update()
        if refreshed is None:
            return MailboxIdentity(
                email=email,
                access_token=grant.access_token,
                access_token_expires_at=grant.expires_at,
            )
        return MailboxIdentity(
            email=email,
            access_token=refreshed.access_token,
            access_token_expires_at=refreshed.expires_at,
        )

    def revoke(self, token: str) -> RevokeResult:
        """Revoke a refresh (or access) token, which revokes the whole grant."""
        return revoke_token(self._config, token, timeout=self._timeout)

    def discard_grant(self, token: str) -> None:
        """Revoke a grant Salesbot will not keep, waiting briefly; the outcome is not needed."""
        revoke_token(self._config, token)


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
