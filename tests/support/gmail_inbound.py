"""A rep's mailbox in the Google stand-in, connected in the database, with its inbound wiring."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import google_auth_httplib2
import httplib2
from fastapi import FastAPI
from fastapi.testclient import TestClient
from googleapiclient.discovery import build
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from handlers.api.errors import install_error_handlers
from handlers.gmail_push import PUSH_PATH, GmailPushDeps, router
from integrations.gmail.sync import GmailSync, SyncSettings
from integrations.pubsub_auth import PushVerifier
from jobs.gmail_sync import GmailInboundProcessor
from sandbox.google import GoogleStandIn
from sandbox.google_oauth import TokenSet
from sandbox.pubsub import DEFAULT_PUSH_SERVICE_ACCOUNT
from storage import models as m
from storage.inbound import SqlInboundStore
from storage.models import GmailPushNotification
from tests.support.builders import make_org
from tests.support.google import GoogleServer, gmail_service, user_credentials

REP = "rep@appraisalfirm.example"
DANA = "dana@pinnaclelending.example"
AUDIENCE = "https://salesbot.example/api/integrations/gmail/push"
TOPIC = "projects/salesbot-sandbox/topics/gmail"


class MonotonicStub:
    """A monotonic clock for the certificate cache that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Mailbox:
    """The rep's mailbox: Gmail side (stand-in), database side, and the inbound pieces."""

    stand_in: GoogleServer
    session_factory: Callable[[], Session]
    org_id: int
    account_id: int
    tokens: TokenSet
    clock: FixedClock
    store: SqlInboundStore
    sync: GmailSync
    processor: GmailInboundProcessor
    verifier: PushVerifier
    certs_clock: MonotonicStub

    @property
    def google(self) -> GoogleStandIn:
        return self.stand_in.google

    def service(self, _account_id: int = 0) -> Any:
        """Build the Gmail client of the rep's mailbox (the `service_for_account` callable)."""
        return gmail_service(self.stand_in.urls, user_credentials(self.stand_in.urls, self.tokens))

    def pausing_service(self, path_part: str, reached: threading.Event, go: threading.Event) -> Any:
        """Build a Gmail client that stops after the first answer of a URL containing a part."""
        credentials = user_credentials(self.stand_in.urls, self.tokens)
        http = google_auth_httplib2.AuthorizedHttp(
            credentials, http=_PausingHttp(path_part, reached, go)
        )
        return build(
            "gmail",
            "v1",
            http=http,
            static_discovery=True,
            cache_discovery=False,
            client_options={"api_endpoint": self.stand_in.urls.gmail_api_url},
        )

    def deliver(self, raw: bytes, **options: Any) -> str:
        """Deliver mail into the rep's INBOX; return its Gmail id."""
        return self.google.gmail.deliver(REP, raw, **options)

    def push_request(self, **body_options: Any) -> tuple[dict[str, str], dict[str, Any]]:
        """Return the headers and body of a push announcing the mailbox's current state."""
        return self.google.push_request(REP, audience=AUDIENCE, **body_options)

    def app(self) -> FastAPI:
        """A FastAPI app serving the push router on this mailbox's store and verifier."""
        app = FastAPI()
        install_error_handlers(app)
        app.state.gmail_push = GmailPushDeps(
            store=self.store, clock=self.clock, verifier=self.verifier, on_stored=lambda: None
        )
        app.include_router(router)
        return app

    def post_push(self, client: TestClient, **body_options: Any) -> Any:
        headers, body = self.push_request(**body_options)
        return client.post(PUSH_PATH, json=body, headers=headers)

    def account(self) -> m.GmailAccount:
        with self.session_factory() as session:
            row = session.get(m.GmailAccount, self.account_id)
            assert row is not None
            return row

    def inbound(self) -> list[m.InboundEmail]:
        with self.session_factory() as session:
            return list(session.scalars(select(m.InboundEmail).order_by(m.InboundEmail.id)))

    def notifications(self) -> list[GmailPushNotification]:
        n = GmailPushNotification
        with self.session_factory() as session:
            return list(session.scalars(select(n).order_by(n.id)))

    def count_inbound(self) -> int:
        with self.session_factory() as session:
            return int(session.scalar(select(func.count()).select_from(m.InboundEmail)) or 0)

    def gmail_calls(self, route: str) -> int:
        return sum(1 for call in self.google.gmail.calls if call.route == route)


def connect_mailbox(
    stand_in: GoogleServer,
    session_factory: Callable[[], Session],
    *,
    history_id: int | None = None,
    last_synced_at: datetime | None = None,
    sync_settings: SyncSettings | None = None,
    status: str = "connected",
    never_synced: bool = False,
) -> Mailbox:
    """Create the rep's mailbox in the stand-in and its connected account in the database.

    The account's history pointer is the mailbox's current history id unless given, and
    none at all for a mailbox `never_synced` (just connected, before its first watch). Pass
    the test's rolled-back `session_factory`, or one on `committed_engine` for threads.
    """
    google = stand_in.google
    google.add_mailbox(REP)
    tokens = google.oauth.issue_grant(REP)
    clock = FixedClock(datetime.now(UTC))
    with session_factory() as session:
        org = make_org(session)
        account = m.GmailAccount(
            org_id=org.id,
            email=REP,
            status=status,
            history_id=None
            if never_synced
            else (history_id if history_id is not None else google.gmail.history_id(REP)),
            last_synced_at=None
            if never_synced
            else (last_synced_at if last_synced_at is not None else clock.now()),
        )
        session.add(account)
        session.commit()
        org_id, account_id = org.id, account.id
    store = SqlInboundStore(session_factory)
    urls = stand_in.urls

    def service(_account_id: int) -> Any:
        return gmail_service(urls, user_credentials(urls, tokens))

    sync = GmailSync(store, service, clock, settings=sync_settings)
    certs_clock = MonotonicStub()
    return Mailbox(
        stand_in=stand_in,
        session_factory=session_factory,
        org_id=org_id,
        account_id=account_id,
        tokens=tokens,
        clock=clock,
        store=store,
        sync=sync,
        processor=GmailInboundProcessor(
            sync=sync, store=store, session_factory=session_factory, clock=clock, topic=TOPIC
        ),
        verifier=PushVerifier(
            audience=AUDIENCE,
            service_account=DEFAULT_PUSH_SERVICE_ACCOUNT,
            certs_url=urls.certs_url,
            clock=certs_clock,
        ),
        certs_clock=certs_clock,
    )


def wait_for(condition: Callable[[], bool], *, timeout: float = 15.0) -> bool:
    """Poll `condition` until it holds or the timeout passes; return whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


class _PausingHttp(httplib2.Http):
    """An httplib2.Http that holds the first answer of a URL until told to go on."""

    def __init__(self, path_part: str, reached: threading.Event, go: threading.Event) -> None:
        super().__init__()
        self._part = path_part
        self._reached = reached
        self._go = go
        self._paused = False

    def request(self, uri: str, *args: Any, **kwargs: Any) -> Any:
        answer = super().request(uri, *args, **kwargs)
        if self._part in uri and not self._paused:
            self._paused = True
            self._reached.set()
            if not self._go.wait(30):
                raise TimeoutError("the test never let the paused request go on")
        return answer
