"""One inbound message as the detectors read it: parsed once, every read bounded.

The detectors work on `ParsedEmail` (integrations/gmail/mime.py) for bodies, DSN fields and
attached originals, plus the raw top-level header block for the headers `ParsedEmail` does
not keep (X-Autoreply, Delivered-To, ...). The full stdlib tree that flufl.bounce needs is
built only for messages that already look like bounces. Text is capped, and address and
phrase searches are written so that their cost grows linearly with the text, whatever it is.
"""

from __future__ import annotations

import email
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from functools import cached_property
from typing import Final

from domain.email_message import ParsedEmail

# Text read from a message (bodies and parts), and raw bytes handed to a full parse (a
# bounce states its failure near the top; what follows is the copy of our message).
MAX_TEXT_CHARS: Final = 256 * 1024
MAX_RAW_BYTES: Final = 256 * 1024
# A header block longer than this is not a real one; the rest is ignored.
MAX_HEADER_BYTES: Final = 256 * 1024
MAX_LINE_CHARS: Final = 2000
MAX_ADDRESSES: Final = 200

_CONTENT_PARAM = re.compile(r";\s*report-type\s*=\s*\"?([A-Za-z0-9./+-]{1,64})", re.IGNORECASE)

# An address as it appears in mail text: found from each "@" outwards, so a long run of
# characters without one costs one pass (a pattern starting at every position would not).
_LOCAL_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.!#$%&'*+/=?^_`{|}~-"
)
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*")
_MAX_LOCAL: Final = 64


def find_addresses(text: str, *, limit: int = MAX_ADDRESSES) -> Iterator[tuple[int, str]]:
    """Yield (position of "@", address) for each plausible address in the text, in order."""
    found = 0
    at = text.find("@")
    while at != -1 and found < limit:
        start = at
        while start > 0 and at - start < _MAX_LOCAL and text[start - 1] in _LOCAL_CHARS:
            start -= 1
        local = text[start:at].lstrip(".'`").rstrip(".")
        domain_match = _DOMAIN.match(text, at + 1, at + 1 + 255)
        if local and domain_match and "." in domain_match.group():
            domain = domain_match.group().rstrip("-")
            found += 1
            yield at, f"{local}@{domain}"
        at = text.find("@", at + 1)


def plausible_address(value: str) -> bool:
    """Tell whether a string is an address a bounce could be about (not a Message-ID or JSON)."""
    local, at, domain = value.rpartition("@")
    if not at or not local or len(local) > _MAX_LOCAL or len(domain) > 255:
        return False
    if any(c not in _LOCAL_CHARS for c in local) or local.startswith(".") or ".." in local:
        return False
    match = _DOMAIN.fullmatch(domain)
    if match is None or "." not in domain:
        return False
    tld = domain.rsplit(".", 1)[1]
    return tld.isalpha() and len(tld) >= 2


def normalize_address(value: str) -> str:
    """Return an address in the form we compare: no brackets or quotes, lower-case."""
    return value.strip().strip("<>\"' ").lower()


@dataclass
class MailView:
    """The message under detection: parsed form, raw headers, bounded text."""

    raw: bytes
    parsed: ParsedEmail
    notes: list[str] = field(default_factory=list)

    @cached_property
    def _header_fields(self) -> dict[str, list[str]]:
        """The top-level header fields, unfolded, by lower-case name.

        Read line by line rather than through the email package: only a few fields are
        wanted, none of them needs RFC 2047 decoding, and the package's parse of a long
        Received chain cost most of the detectors' time on ordinary replies.
        """
        head = self.raw[:MAX_HEADER_BYTES]
        ends = [at for at in (head.find(b"\n\n"), head.find(b"\n\r\n")) if at != -1]
        if ends:
            head = head[: min(ends)]
        fields: dict[str, list[str]] = {}
        name: str | None = None
        for line in head.decode("utf-8", "replace").splitlines():
            if line[:1] in (" ", "\t"):
                if name is not None and fields[name]:
                    fields[name][-1] = f"{fields[name][-1]} {line.strip()}"[:MAX_LINE_CHARS]
                continue
            key, colon, value = line.partition(":")
            if not colon or not key or " " in key.strip():
                name = None
                continue
            name = key.strip().lower()
            values = fields.setdefault(name, [])
            if len(values) < 50:
                values.append(value.strip()[:MAX_LINE_CHARS])
            else:
                name = None
        return fields

    @cached_property
    def full_message(self) -> Message | None:
        """The whole message as a stdlib tree (for flufl.bounce), parsed on first use."""
        data = self.raw[:MAX_RAW_BYTES]
        if len(self.raw) > MAX_RAW_BYTES:
            self.notes.append(f"only the first {MAX_RAW_BYTES} bytes were scanned for bounces")
        try:
            return email.message_from_bytes(data, policy=policy.compat32)
        except Exception:  # the parser has had crash bugs on hostile input
            self.notes.append("message unreadable for the bounce library")
            return None

    def header(self, name: str) -> str | None:
        """Return the first value of a top-level header, unfolded, or None."""
        values = self._header_fields.get(name.lower())
        return values[0] if values else None

    def headers(self, name: str) -> list[str]:
        """Return every value of a top-level header, unfolded."""
        return list(self._header_fields.get(name.lower(), ()))

    @cached_property
    def content_type(self) -> str:
        """Return the top-level content type, lower-case, without parameters."""
        value = self.parsed.headers.get("Content-Type") or self.header("Content-Type") or ""
        return value.split(";", 1)[0].strip().lower()

    @cached_property
    def report_type(self) -> str:
        """Return the report-type parameter of a multipart/report, lower-case, or ""."""
        if self.content_type != "multipart/report":
            return ""
        value = self.parsed.headers.get("Content-Type") or self.header("Content-Type") or ""
        match = _CONTENT_PARAM.search(value)
        return match.group(1).lower() if match else ""

    @cached_property
    def text(self) -> str:
        """Return the message's whole text, capped."""
        return self.parsed.text[:MAX_TEXT_CHARS]

    @cached_property
    def new_text(self) -> str:
        """Return the new text a person wrote (quoted history stripped), capped."""
        return (self.parsed.reply_text or "")[:MAX_TEXT_CHARS]

    @cached_property
    def subject(self) -> str:
        """Return the subject, unfolded and capped."""
        return " ".join(self.parsed.subject.split())[:MAX_LINE_CHARS]

    @cached_property
    def from_address(self) -> str:
        """Return the sender's address, normalised ("" when there is none)."""
        return normalize_address(self.parsed.from_email or "")

    @cached_property
    def from_name(self) -> str:
        """Return the sender's display name ("" when there is none)."""
        return (self.parsed.from_name or "").strip()

    @cached_property
    def recipient_addresses(self) -> frozenset[str]:
        """Return every address the message was delivered to, as far as its headers tell."""
        found = {normalize_address(a) for a in (*self.parsed.to, *self.parsed.cc)}
        values: list[str] = []
        for name in ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To"):
            values.extend(self.headers(name))
        for _name, address in getaddresses(values):
            if address:
                found.add(normalize_address(address))
        found.discard("")
        return frozenset(found)

    @cached_property
    def sent_at(self) -> datetime | None:
        """Return the Date header with the sender's own offset (so "Friday" is theirs)."""
        value = self.header("Date")
        if value:
            try:
                parsed = parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError, OverflowError):
                parsed = None
            if parsed is not None and parsed.tzinfo is not None:
                return parsed
        return self.parsed.date or self.parsed.internal_date
