"""Inbound mail in the sandbox: an email lands in a rep's stand-in mailbox and Gmail's push follows.

The console's "deliver an email" form and `salesbot demo` use `deliver_and_push`: the raw message
is stored in the Google stand-in's mailbox as received mail (threaded by In-Reply-To, as Gmail
threads), then the Pub/Sub push Gmail would publish is POSTed to Salesbot's push endpoint with
a signed OIDC token for the configured audience, so the real verification, history sync and
inbound pipeline run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import httpx

from sandbox.google import GoogleStandIn

PUSH_PATH = "/api/integrations/gmail/push"


@dataclass(frozen=True)
class Delivered:
    """The stored message and what the push endpoint answered."""

    gmail_id: str
    push_status: int

    @property
    def accepted(self) -> bool:
        """True when Salesbot took the push (2xx)."""
        return 200 <= self.push_status < 300


def compose(
    *,
    from_addr: str,
    to_addr: str,
    subject: str,
    body: str,
    in_reply_to: str | None = None,
    headers: dict[str, str] | None = None,
    at: datetime | None = None,
) -> bytes:
    """Build a plain-text RFC 5322 message; `in_reply_to` is the Message-ID it answers."""
    if not from_addr.strip() or "@" not in from_addr:
        raise ValueError("the sender needs an email address (name@example.com)")
    if not to_addr.strip() or "@" not in to_addr:
        raise ValueError("the recipient needs an email address (name@example.com)")
    message = EmailMessage()
    message["From"] = from_addr
    message["To"] = to_addr
    message["Subject"] = subject
    message["Date"] = format_datetime(at or datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=from_addr.rsplit("@", 1)[-1].strip("> "))
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    return message.as_bytes()


def deliver_and_push(
    google: GoogleStandIn,
    *,
    mailbox: str,
    raw: bytes,
    app_url: str,
    audience: str,
    timeout: float = 10.0,
) -> Delivered:
    """Store `raw` in `mailbox` as received mail, then push Gmail's notification to the app."""
    gmail_id = google.gmail.deliver(mailbox, raw)
    headers, body = google.push_request(mailbox, audience=audience)
    response = httpx.post(
        app_url.rstrip("/") + PUSH_PATH, json=body, headers=headers, timeout=timeout
    )
    return Delivered(gmail_id=gmail_id, push_status=response.status_code)
