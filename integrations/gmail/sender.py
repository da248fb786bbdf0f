"""The `MailSender` port on the Gmail API: send a message, find one by its Message-ID.

The outbox (domain/outbox.py) decides what to send, when and how often; this module only
composes the RFC 822 message and calls Gmail. `users.messages.send` is never retried
here: a retried send could go out twice. After an answer that was lost, the outbox asks
`find_by_message_id`, a `rfc822msgid:` search of the mailbox (Trash and Spam included),
whether the message went out before it sends anything again.
"""

from __future__ import annotations

import time
from typing import Any, Final

from domain.errors import InvalidInput
from domain.mailboxes import AccountTokens
from domain.sending import AccessTokenUpdate, FailureKind, MailboxError, MailMessage, MessageRef
from integrations import metrics
from integrations.gmail.client import GmailClient, GoogleConfig
from integrations.gmail.compose import Unsubscribe, compose_email, new_message_id


def _compose(message: MailMessage) -> bytes:
    """Build the RFC 822 bytes of a message; raise InvalidInput if it cannot be built."""
    unsubscribe = None
    if message.unsubscribe_url is not None:
        unsubscribe = Unsubscribe(
            url=message.unsubscribe_url, mailto=message.unsubscribe_mailto or message.from_email
        )
    return compose_email(
        message_id=message.message_id,
        date=message.date,
        from_email=message.from_email,
        from_name=message.from_name,
        to_email=message.to_email,
        to_name=message.to_name,
        subject=message.subject,
        body_text=message.body_text,
        body_html=message.body_html,
        in_reply_to=message.in_reply_to,
        references=message.references,
        unsubscribe=unsubscribe,
    )


def _client(config: GoogleConfig, tokens: AccountTokens) -> GmailClient:
    return GmailClient(
        config,
        refresh_token=tokens.refresh_token,
        access_token=tokens.access_token,
        access_token_expires_at=tokens.access_token_expires_at,
    )


def gmail_service(config: GoogleConfig, tokens: AccountTokens) -> Any:
    """An authorized Gmail API resource of a mailbox (inbound history sync uses it)."""
    return _client(config, tokens).service()


# A failed send call, as `salesbot_email_sends_total` counts it: not sent and tried again
# later (retry), sent or not (uncertain: the mailbox is searched first), not sent (failed).
_SEND_OUTCOMES: Final = {
    FailureKind.RATE_LIMITED: "retry",
    FailureKind.QUOTA: "retry",
    FailureKind.UNAVAILABLE: "retry",
    FailureKind.UNCERTAIN: "uncertain",
    FailureKind.REVOKED: "failed",
    FailureKind.REFUSED: "failed",
    FailureKind.NOT_FOUND: "failed",
}


class GmailMailbox:
    """One mailbox's Gmail API for one unit of work (httplib2 is not thread-safe)."""

    def __init__(self, client: GmailClient) -> None:
        self._client = client

    def send(self, message: MailMessage, *, thread_id: str | None) -> MessageRef:
        """Compose and send a message (`users.messages.send`); raise GmailError on failure."""
        started = time.monotonic()
        try:
            ref = self._client.send(_compose(message), thread_id=thread_id)
        except MailboxError as exc:
            metrics.EMAIL_SENDS.labels(_SEND_OUTCOMES.get(exc.kind, "failed")).inc()
            raise
        except InvalidInput:
            metrics.EMAIL_SENDS.labels("failed").inc()
            raise
        finally:
            metrics.EMAIL_SEND_LATENCY.observe(time.monotonic() - started)
        metrics.EMAIL_SENDS.labels("sent").inc()
        return MessageRef(id=ref.id, thread_id=ref.thread_id)

    def find_by_message_id(self, message_id: str) -> MessageRef | None:
        """Search the mailbox for our Message-ID (`rfc822msgid:`), anywhere, even in Trash."""
        ref = self._client.find_by_message_id(message_id)
        return None if ref is None else MessageRef(id=ref.id, thread_id=ref.thread_id)

    def token_update(self) -> AccessTokenUpdate | None:
        """Return the access token google-auth refreshed during the calls, if it did."""
        update = self._client.token_update()
        if update is None:
            return None
        return AccessTokenUpdate(access_token=update.access_token, expires_at=update.expires_at)


class GmailSender:
    """Sends from reps' Gmail mailboxes with the tokens the outbox hands it."""

    def __init__(self, config: GoogleConfig, *, message_id_domain: str) -> None:
        self._config = config
        self._domain = message_id_domain

    def new_message_id(self) -> str:
        """Return a new Message-ID of ours, in the app's own domain."""
        return new_message_id(self._domain)

    def check(self, message: MailMessage) -> None:
        """Raise InvalidInput if the message could not be composed; send nothing."""
        _compose(message)

    def connect(self, tokens: AccountTokens) -> GmailMailbox:
        """Open a mailbox's Gmail API with its stored tokens (no call is made yet)."""
        return GmailMailbox(_client(self._config, tokens))
