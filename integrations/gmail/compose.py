"""Build outgoing RFC 5322 messages with the standard `email` package.

Every message is multipart/alternative (text and HTML), UTF-8, with non-ASCII headers
as RFC 2047 encoded words. Campaign emails carry `List-Unsubscribe` (the signed HTTPS
link and a mailto) with `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058)
and an unsubscribe link in the footer. Follow-ups carry `In-Reply-To` and `References`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, make_msgid
from typing import Any, Final
from urllib.parse import quote, urlsplit

from domain.errors import InvalidInput
from domain.mail import text_to_html

_MAX_REFERENCES: Final = 20


class _OutboundPolicy(EmailPolicy):
    """SMTP line endings; List-Unsubscribe folded between its URLs, never encoded.

    The default folder turns an over-long URL into RFC 2047 encoded words, which mail
    clients cannot follow; RFC 5322 allows lines up to 998 characters. Message ids stay
    on their header's line.
    """

    def fold_binary(self, name: str, value: Any) -> bytes:
        if name.lower() in ("message-id", "in-reply-to"):
            return f"{name}: {str(value).strip()}{self.linesep}".encode("ascii")
        if name.lower() == "list-unsubscribe":
            parts = [p.strip() for p in str(value).split(",") if p.strip()]
            folded = ("," + self.linesep + " ").join(parts)
            return f"{name}: {folded}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


OUTBOUND_POLICY: Final = _OutboundPolicy(linesep="\r\n")


@dataclass(frozen=True)
class Unsubscribe:
    """How a recipient opts out: the signed one-click URL and a mailto address."""

    url: str
    mailto: str | None = None

    def header(self) -> str:
        """Return the `List-Unsubscribe` value: HTTPS first, as RFC 8058 asks."""
        links = [f"<{self.url}>"]
        if self.mailto:
            links.append(f"<mailto:{self.mailto}?subject={quote('unsubscribe')}>")
        return ", ".join(links)


def message_id_domain(public_base_url: str) -> str:
    """Return the domain our Message-IDs end with: the host of PUBLIC_BASE_URL."""
    return urlsplit(public_base_url).hostname or "salesbot.invalid"


def new_message_id(domain: str) -> str:
    """Return a new, globally unique Message-ID (`<...@domain>`), brackets included."""
    return make_msgid(idstring="salesbot", domain=domain)


def _text_footer(unsubscribe: Unsubscribe) -> str:
    return f"\n\n--\nTo stop receiving these emails, unsubscribe: {unsubscribe.url}\n"


def _html_footer(unsubscribe: Unsubscribe) -> str:
    link = html.escape(unsubscribe.url)
    return (
        '<p style="color:#777;font-size:12px;margin-top:24px">'
        f'To stop receiving these emails, <a href="{link}">unsubscribe</a>.</p>'
    )


def _address(name: str | None, email: str, *, field: str) -> Address:
    try:
        return Address(display_name=(name or "").strip(), addr_spec=email.strip())
    except (ValueError, IndexError) as exc:
        raise InvalidInput(f"{email!r} is not an email address", field=field) from exc


def _message_id(value: str) -> str:
    value = value.strip()
    return value if value.startswith("<") else f"<{value}>"


def compose_email(
    *,
    message_id: str,
    date: datetime,
    from_email: str,
    from_name: str | None,
    to_email: str,
    to_name: str | None,
    subject: str,
    body_text: str,
    body_html: str | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    unsubscribe: Unsubscribe | None = None,
) -> bytes:
    """Return the RFC 5322 bytes of one outgoing email; raise InvalidInput on bad headers."""
    if "\n" in subject or "\r" in subject:
        raise InvalidInput("The subject must be one line.", field="subject")
    message = EmailMessage(policy=OUTBOUND_POLICY)
    try:
        message["From"] = _address(from_name, from_email, field="from")
        message["To"] = _address(to_name, to_email, field="to")
        message["Subject"] = subject.strip()
        message["Date"] = format_datetime(date)
        message["Message-ID"] = _message_id(message_id)
        if in_reply_to:
            message["In-Reply-To"] = _message_id(in_reply_to)
        kept = [_message_id(r) for r in references if r.strip()][-_MAX_REFERENCES:]
        if in_reply_to and _message_id(in_reply_to) not in kept:
            kept.append(_message_id(in_reply_to))
        if kept:
            message["References"] = " ".join(kept)
        if unsubscribe is not None:
            message["List-Unsubscribe"] = unsubscribe.header()
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    except ValueError as exc:
        raise InvalidInput(f"a header of this email is not valid: {exc}") from exc
    text = body_text.rstrip() + "\n"
    rich = body_html if body_html is not None else text_to_html(body_text)
    if unsubscribe is not None:
        if unsubscribe.url not in text:
            text = text.rstrip("\n") + _text_footer(unsubscribe)
        if unsubscribe.url not in rich:
            closing = rich.lower().rfind("</body>")
            footer = _html_footer(unsubscribe)
            rich = rich[:closing] + footer + rich[closing:] if closing >= 0 else rich + footer
    message.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(rich, subtype="html", charset="utf-8", cte="quoted-printable")
    return message.as_bytes()
