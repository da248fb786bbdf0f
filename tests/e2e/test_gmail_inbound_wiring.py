"""The app as composed for production: a connected mailbox's push is synced with its own
stored credentials (no service factory given by the test)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from sandbox.pubsub import DEFAULT_PUSH_SERVICE_ACCOUNT
from storage import models as m
from tests.support.gmail_app import REP_EMAIL, GmailWorld, gmail_world
from tests.support.google import GoogleServer, make_email

pytestmark = pytest.mark.slow
AUDIENCE = "https://salesbot.example.com/api/integrations/gmail/push"


@pytest.fixture
def world(
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: FixedClock,
    google: GoogleServer,
) -> Iterator[GmailWorld]:
    extra = {"PUBSUB_AUDIENCE": AUDIENCE, "PUBSUB_SERVICE_ACCOUNT": DEFAULT_PUSH_SERVICE_ACCOUNT}
    with gmail_world(engine, session_factory, clock, google, extra_settings=extra) as built:
        yield built


def test_a_push_for_a_connected_mailbox_is_synced_with_its_stored_credentials(
    world: GmailWorld, google: GoogleServer
) -> None:
    assert world.connect().status_code == 200
    reply = make_email(
        sender="dana@pinnacle.example.com",
        to=REP_EMAIL,
        subject="Re: Turn times in Travis County",
        body="Thanks Maria, send me your fee schedule.",
    )
    google.google.gmail.deliver(REP_EMAIL, reply)
    headers, body = google.google.push_request(REP_EMAIL, audience=AUDIENCE)
    answer = world.client.post("/api/integrations/gmail/push", json=body, headers=headers)
    assert answer.status_code == 204, answer.text
    world.client.app.state.gmail_inbound.processor.run_pending()  # type: ignore[attr-defined]
    with world.session_factory() as session:
        stored = session.scalars(select(m.InboundEmail)).all()
    assert [(e.from_email, e.subject, e.status) for e in stored] == [
        ("dana@pinnacle.example.com", "Re: Turn times in Travis County", "parsed")
    ]
