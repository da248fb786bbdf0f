"""Wiring of Gmail from settings: connecting reps' mailboxes, the mailer and its outbox worker.

Gmail is wired only when GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET are set; without them
the Gmail routes answer 503 (handlers/api/gmail.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.settings import Settings
from domain.email_preferences import UnsubscribeLinks
from domain.errors import ExternalServiceError
from domain.mailboxes import Mailboxes, MailboxPace
from domain.outbox import DisconnectListener, Outbox
from domain.ports import EmailTracker
from domain.sending import SendLimits, default_daily_cap
from handlers.api.deps import Services
from handlers.api.gmail import CALLBACK_PATH, GmailIntegration
from integrations.crypto import LinkSigner
from integrations.gmail.client import GoogleConfig
from integrations.gmail.compose import message_id_domain
from integrations.gmail.oauth import GmailAuthorization
from integrations.gmail.sender import GmailSender
from jobs.outbox import OutboxWorker
from storage.accounts import user_slack_id
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)


def build_gmail_integration(
    settings: Settings,
    services: Services,
    *,
    uow: Callable[[], UnitOfWork],
    unsubscribe_url: UnsubscribeLinks,
    unsubscribe_token: Callable[[int, int], str] | None = None,
    client_for_org: Callable[[int], WebClient] | None = None,
    limits: SendLimits | None = None,
    tracker: EmailTracker | None = None,
) -> GmailIntegration | None:
    """Wire Gmail when GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET are set; None otherwise."""
    if not settings.GOOGLE_CLIENT_ID or not settings.GOOGLE_CLIENT_SECRET:
        return None
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    config = GoogleConfig(
        client_id=settings.GOOGLE_CLIENT_ID,
        client_secret=settings.GOOGLE_CLIENT_SECRET,
        token_uri=settings.GOOGLE_TOKEN_URI,
        auth_uri=settings.GOOGLE_AUTH_URI,
        gmail_api_url=settings.GMAIL_API_URL,
    )
    send_limits = limits or SendLimits()
    mailboxes = Mailboxes(
        uow,
        clock=services.clock,
        google=GmailAuthorization(config, redirect_uri=base + CALLBACK_PATH),
        state_signer=LinkSigner(settings.SALESBOT_SECRET_KEY, purpose="gmail-oauth-state"),
        pace=MailboxPace(
            daily_cap=lambda email: default_daily_cap(email, send_limits),
            min_send_interval_seconds=send_limits.min_send_interval_seconds,
            window=send_limits.window,
        ),
    )
    mailer = Outbox(
        uow=uow,
        sender=GmailSender(config, message_id_domain=message_id_domain(base)),
        clock=services.clock,
        unsubscribe_url=unsubscribe_url,
        unsubscribe_token=unsubscribe_token,
        limits=send_limits,
        tracker=tracker,
    )
    integration = GmailIntegration(
        config=config,
        mailboxes=mailboxes,
        mailer=mailer,
        outbox=OutboxWorker(mailer, clock=services.clock),
        connect_signer=LinkSigner(settings.SALESBOT_SECRET_KEY, purpose="gmail-connect"),
        public_base_url=base,
    )
    if client_for_org is not None:
        mailer.on_disconnected = tell_rep_in_slack(integration, services, client_for_org)
    return integration


def tell_rep_in_slack(
    gmail: GmailIntegration, services: Services, client_for_org: Callable[[int], WebClient]
) -> DisconnectListener:
    """Return a listener that DMs a rep whose mailbox was disconnected by Google."""

    def tell(org_id: int, user_id: int | None, email: str, reason: str) -> None:
        with services.session_factory() as session:
            slack_id = user_slack_id(session, org_id, user_id)
        if slack_id is None or user_id is None:
            log.warning("disconnected rep has no Slack id", extra={"org_id": org_id})
            return
        link = gmail.gmail_connect_link(user_id, org_id)
        text = (
            f":warning: Salesbot can no longer send from {email}: {reason}. Emails waiting to"
            f" go out are on hold. <{link}|Reconnect Gmail> (the link works for an hour; the App"
            " Home always has a fresh one), then press Retry on the blocked cards."
        )
        try:
            client_for_org(org_id).chat_postMessage(channel=slack_id, text=text)
        except (SlackApiError, ExternalServiceError) as exc:
            log.warning("could not tell the rep in Slack", extra={"reason": str(exc)[:200]})

    return tell
