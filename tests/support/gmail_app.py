"""Build the real app with Gmail pointed at the Google stand-in, and drive it like a rep."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bot.app import Runtime, build_app, build_runtime
from domain.clock import Clock
from domain.email_preferences import EmailType
from domain.outbox import Outbox
from handlers.api.deps import Services
from handlers.api.gmail import GmailIntegration
from integrations.crypto import LinkSigner, SecretBox
from integrations.gmail.sender import GmailSender
from sandbox.gmail_api import SentMessage
from sandbox.google import GoogleStandIn
from sandbox.google_oauth import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
from storage import models as m
from storage.uow import UnitOfWork
from tests.support.accounts import create_org, create_token, ensure_user
from tests.support.api import TEST_SECRET_KEY, make_settings
from tests.support.builders import make_client, make_contact
from tests.support.google import GoogleServer, follow_consent

REP_EMAIL = "maria@lonestar.example.com"
OTHER_REP_EMAIL = "jose@lonestar.example.com"
REP_SLACK_ID = "U0MARIA01"
DANA = "dana@pinnacle.example.com"
RAY = "ray@pinnacle.example.com"


def google_settings(server: GoogleServer) -> dict[str, object]:
    """Settings that point Salesbot's Google clients at the stand-in, with its OAuth client."""
    return {
        **server.urls.as_env(),
        "GOOGLE_CLIENT_ID": SANDBOX_CLIENT_ID,
        "GOOGLE_CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
    }


def parse_raw(raw: bytes) -> EmailMessage:
    """Parse RFC 822 bytes with the stdlib's modern policy."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def raw_header(raw: bytes, name: str) -> str:
    """Return a header as it is on the wire, folding (CRLF and a space) kept."""
    lines = raw.split(b"\r\n\r\n", 1)[0].decode("ascii").split("\r\n")
    for index, line in enumerate(lines):
        if line.lower().startswith(name.lower() + ":"):
            kept = [line]
            for following in lines[index + 1 :]:
                if following[:1] not in (" ", "\t"):
                    break
                kept.append(following)
            return "\r\n".join(kept)
    raise KeyError(name)


@dataclass
class GmailWorld:
    """The app under test, the Google stand-in and an org with two reps and two contacts."""

    client: TestClient
    runtime: Runtime
    server: GoogleServer
    session_factory: Callable[[], Session]
    org_id: int
    rep_id: int
    other_rep_id: int
    token: str
    other_token: str
    userless_token: str
    contact_ids: dict[str, int] = field(default_factory=dict)

    @property
    def google(self) -> GoogleStandIn:
        """The Google stand-in."""
        return self.server.google

    @property
    def gmail(self) -> GmailIntegration:
        """The app's Gmail integration."""
        assert self.runtime.gmail is not None
        return self.runtime.gmail

    def auth(self, token: str | None = None) -> dict[str, str]:
        """Return the Authorization header of a token (the rep's by default)."""
        return {"Authorization": f"Bearer {token or self.token}"}

    def connect_link(self, token: str | None = None) -> str:
        """Ask the app for the link that starts a consent, as an API client does."""
        answer = self.client.get("/api/integrations/gmail/connect", headers=self.auth(token))
        assert answer.status_code == 200, answer.text
        return str(answer.json()["authorization_url"])

    def consent_url(self, token: str | None = None) -> str:
        """Open the connect link in this test's browser (it keeps the consent cookie) and
        return Google's consent URL it redirects to."""
        return open_connect_link(self.client, self.connect_link(token))

    def callback_path(self, consent_url: str) -> str:
        """Consent at the stand-in as the browser would; return the callback path and query."""
        return consent_callback_path(consent_url)

    def connect(self, email: str = REP_EMAIL, *, token: str | None = None) -> Any:
        """Connect a mailbox: consent URL, the user's consent at Google, the callback."""
        return connect_gmail(self.client, self.google, email, token=token or self.token)

    def send(self, token: str | None = None, **body: Any) -> Any:
        """POST /api/email/send with sensible defaults for the fields not given."""
        payload = {
            "to": DANA,
            "to_name": "Dana Whitfield",
            "subject": "Turn times in Travis County are down to 5 days",
            "body_text": "Hi Dana,\n\nOur turn times are down to 5 days.\n\nMaria",
            **body,
        }
        return self.client.post("/api/email/send", json=payload, headers=self.auth(token))

    def drain(self) -> int:
        """Run the outbox until idle; return the rows it handled."""
        return self.gmail.outbox.run_until_idle()

    def sent(self, email: str = REP_EMAIL) -> list[SentMessage]:
        """Messages the stand-in received through messages.send from a mailbox."""
        return self.google.gmail.sent(email)

    def sends(self) -> list[m.EmailSend]:
        """The outbox rows, oldest first."""
        with self.session_factory() as session:
            return list(session.scalars(select(m.EmailSend).order_by(m.EmailSend.id)))

    def account(self, email: str = REP_EMAIL) -> m.GmailAccount:
        """The stored mailbox row."""
        with self.session_factory() as session:
            return session.scalars(
                select(m.GmailAccount).where(m.GmailAccount.email == email)
            ).one()

    def set_throttle(self, *, cap: int, interval: int, email: str = REP_EMAIL) -> None:
        """Change a mailbox's daily cap and minimum spacing (they are per mailbox)."""
        with self.session_factory() as session:
            row = session.scalars(select(m.GmailAccount).where(m.GmailAccount.email == email)).one()
            row.daily_send_cap = cap
            row.min_send_interval_seconds = interval
            session.commit()


def _seed(session_factory: Callable[[], Session]) -> dict[str, Any]:
    with session_factory() as session:
        org = create_org(session, slug="lonestar", name="Lone Star Appraisals")
        rep_id = ensure_user(session, org.id, email=REP_EMAIL, name="María López")
        other_id = ensure_user(session, org.id, email=OTHER_REP_EMAIL, name="Jose Ruiz")
        rep = session.get(m.User, rep_id)
        assert rep is not None
        rep.slack_user_id = REP_SLACK_ID
        _, token = create_token(session, org.id, name="maria", user_id=rep_id)
        _, other_token = create_token(session, org.id, name="jose", user_id=other_id)
        _, userless = create_token(session, org.id, name="integration")
        org_row = session.get(m.Organization, org.id)
        assert org_row is not None
        lender = make_client(session, org_row, name="Pinnacle Lending", domain="pinnacle.example")
        contacts = {
            email: make_contact(
                session, org_row, lender, email=email, first_name=email.split("@")[0].title()
            ).id
            for email in (DANA, RAY)
        }
        session.commit()
    return {
        "org_id": org.id,
        "rep_id": rep_id,
        "other_rep_id": other_id,
        "token": token,
        "other_token": other_token,
        "userless_token": userless,
        "contact_ids": contacts,
    }


@contextmanager
def gmail_world(
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: Clock,
    server: GoogleServer,
    *,
    extra_settings: dict[str, object] | None = None,
    start_background: bool = False,
) -> Iterator[GmailWorld]:
    """Build the app on the given sessions; with `start_background` the outbox runs too."""
    seeded = _seed(session_factory)
    settings = make_settings(
        engine.url.render_as_string(hide_password=False),
        **{**google_settings(server), **(extra_settings or {})},
    )
    services = Services(engine=engine, session_factory=session_factory, clock=clock)
    runtime = build_runtime(settings, services=services)
    app = build_app(settings, runtime=runtime, start_background=start_background)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield GmailWorld(
            client=client,
            runtime=runtime,
            server=server,
            session_factory=session_factory,
            **seeded,
        )


@contextmanager
def connected_gmail_world(
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: Clock,
    server: GoogleServer,
    **options: Any,
) -> Iterator[GmailWorld]:
    """The app with the rep's Gmail connected, its daily cap and spacing out of the way."""
    with gmail_world(engine, session_factory, clock, server, **options) as built:
        built.connect()
        built.set_throttle(cap=400, interval=0)
        yield built


def unsubscribe_url(org_id: int, contact_id: int, email_type: EmailType | None = None) -> str:
    """The unsubscribe link the app puts in a contact's campaign emails (with the email's
    type, as the app signs it, when one is given)."""
    claims: dict[str, object] = {"o": org_id, "c": contact_id}
    if email_type is not None:
        claims["t"] = email_type.value
    token = LinkSigner(TEST_SECRET_KEY, purpose="unsubscribe").sign(claims)
    return f"http://testserver/unsubscribe/{token}"


def outbox_replica(
    world: GmailWorld, clock: Clock, *, name: str, sleep: Callable[[float], None] | None = None
) -> Outbox:
    """Another outbox on the same database, as another replica (or a restart) builds it."""
    cipher = SecretBox(TEST_SECRET_KEY)
    return Outbox(
        uow=lambda: UnitOfWork(world.session_factory, cipher=cipher),
        sender=GmailSender(world.gmail.config, message_id_domain="testserver"),
        clock=clock,
        unsubscribe_url=unsubscribe_url,
        name=name,
        sleep=sleep or (lambda _s: None),
    )


def connect_gmail(
    browser: TestClient,
    google: GoogleStandIn,
    email: str,
    *,
    token: str | None = None,
    link: str | None = None,
) -> Any:
    """A user connects the mailbox `email` as from Slack's App Home or an API client: opens
    the connect link (`link`, or the one the API gives for `token`) in their browser,
    consents at Google, lands on the callback; return the callback's answer."""
    google.add_mailbox(email)
    google.oauth.set_consenting_user(email)
    if link is None:
        answer = browser.get(
            "/api/integrations/gmail/connect", headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 200, answer.text
        link = str(answer.json()["authorization_url"])
    return browser.get(consent_callback_path(open_connect_link(browser, link)))


def consent_callback_path(consent_url: str) -> str:
    """Consent at the stand-in as the browser would; return the callback path and query."""
    location = urlsplit(follow_consent(consent_url))
    return f"{location.path}?{location.query}"


def open_connect_link(browser: TestClient, link: str) -> str:
    """Open a connect link as the user's browser does; return Google's consent URL."""
    parts = urlsplit(link)
    redirect = browser.get(f"{parts.path}?{parts.query}", follow_redirects=False)
    assert redirect.status_code == 302, redirect.text
    return str(redirect.headers["location"])


def consent_query(url: str) -> dict[str, str]:
    """Return the query parameters of a consent URL, one value each."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def decode_b64url(value: str) -> bytes:
    """Decode unpadded base64url."""
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
