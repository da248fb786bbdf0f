"""Helpers for tests that drive the real Google clients against the Google stand-in."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import requests
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build

from sandbox.google import GoogleStandIn, GoogleUrls, start_google_stand_in
from sandbox.google_oauth import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, TokenSet
from sandbox.server import RunningServer


class SteppingClock:
    """A clock that stands still until told to move; starts at the real time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now = time.time()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def set_to_real_time(self) -> None:
        """Jump to the real time."""
        with self._lock:
            self._now = time.time()

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        with self._lock:
            self._now += seconds


@dataclass(frozen=True)
class GoogleServer:
    """A running Google stand-in, its URLs and its clock."""

    google: GoogleStandIn
    server: RunningServer
    urls: GoogleUrls
    clock: SteppingClock


@contextmanager
def running_google_stand_in() -> Iterator[GoogleServer]:
    """Serve a Google stand-in with a stepping clock for the duration of the block."""
    clock = SteppingClock()
    google, server = start_google_stand_in(GoogleStandIn(clock=clock))
    try:
        yield GoogleServer(google=google, server=server, urls=GoogleUrls(server.url), clock=clock)
    finally:
        server.stop()


def user_credentials(urls: GoogleUrls, tokens: TokenSet) -> Credentials:
    """Build user credentials the way Salesbot does, from stored tokens."""
    return Credentials(
        tokens.access_token,
        refresh_token=tokens.refresh_token,
        token_uri=urls.token_uri,
        client_id=SANDBOX_CLIENT_ID,
        client_secret=SANDBOX_CLIENT_SECRET,
    )


def gmail_service(urls: GoogleUrls, credentials: Credentials) -> Any:
    """Build the Gmail client exactly as Salesbot does."""
    return build(
        "gmail",
        "v1",
        credentials=credentials,
        static_discovery=True,
        cache_discovery=False,
        client_options={"api_endpoint": urls.gmail_api_url},
    )


def make_email(
    *,
    sender: str,
    to: str,
    subject: str = "Turn times in Travis County",
    body: str = "Hi Dana, turn times are down to 5 days.",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    cc: str | None = None,
    bcc: str | None = None,
    html: str | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (),
    date: datetime | None = None,
) -> bytes:
    """Build RFC 822 bytes; `attachments` are (filename, mime type, content)."""
    message = EmailMessage()
    message["Date"] = format_datetime(date if date is not None else datetime.now(UTC))
    message["From"] = sender
    message["To"] = to
    if cc:
        message["Cc"] = cc
    if bcc:
        message["Bcc"] = bcc
    message["Subject"] = subject
    if message_id:
        message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    if references:
        message["References"] = " ".join(references)
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for filename, mime_type, content in attachments:
        maintype, subtype = mime_type.split("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes()


def encode_raw(raw: bytes) -> str:
    """Encode RFC 822 bytes for `messages.send(body={"raw": ...})`."""
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_raw(value: str) -> bytes:
    """Decode a `raw` or `data` field of a Gmail answer."""
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def follow_consent(authorization_url: str) -> str:
    """Open the consent URL as the user's browser would and return the redirect location."""
    response = requests.get(authorization_url, allow_redirects=False, timeout=10)
    if response.status_code != 302:
        raise AssertionError(f"consent answered {response.status_code}: {response.text}")
    return str(response.headers["Location"])
