"""Sending from a rep's Gmail through google-api-python-client and the Gmail stand-in.

Every test runs on SQLite and PostgreSQL. Tests with several threads or a restart use
`committed_engine`; the others run in the test's rolled-back transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from domain.clock import FixedClock, SystemClock
from domain.mail import OutgoingEmail, SendOutcome, SendStatus
from domain.unsubscribe_address import build_unsubscribe_address
from integrations.crypto import MailtoUnsubscribeTokens, SecretBox
from integrations.gmail.client import GmailClient
from integrations.gmail.compose import compose_email
from jobs.outbox import OutboxWorker
from sandbox.slack_api import DEFAULT_BOT_TOKEN
from storage import models as m
from storage.db import make_session_factory
from storage.gmail import GmailAccountRepo
from storage.outbox import OutboxRepo
from tests.support.api import TEST_SECRET_KEY
from tests.support.gmail_app import (
    DANA,
    OTHER_REP_EMAIL,
    RAY,
    REP_EMAIL,
    REP_SLACK_ID,
    GmailWorld,
    connected_gmail_world,
    gmail_world,
    outbox_replica,
    raw_header,
    unsubscribe_url,
)
from tests.support.google import GoogleServer
from tests.support.slack import ServedSlack
from tests.support.slack_app import wait_until

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


@pytest.fixture
def world(
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: FixedClock,
    google: GoogleServer,
) -> Iterator[GmailWorld]:
    with connected_gmail_world(engine, session_factory, clock, google) as built:
        yield built


@pytest.fixture
def committed_world(
    committed_engine: Engine, clock: FixedClock, google: GoogleServer
) -> Iterator[GmailWorld]:
    factory = make_session_factory(committed_engine)
    with connected_gmail_world(committed_engine, factory, clock, google) as built:
        yield built


class Sleeps:
    """A sleep that records the pause and moves the fixed clock by it instead of waiting."""

    def __init__(self, clock: FixedClock) -> None:
        self.clock = clock
        self.pauses: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.clock.advance(seconds=seconds)


def email_to_dana(world: GmailWorld, **overrides: Any) -> OutgoingEmail:
    values: dict[str, Any] = {
        "org_id": world.org_id,
        "to_email": DANA,
        "to_name": "Dana Whitfield",
        "subject": "Turn times in Travis County are down to 5 days",
        "body_text": "Hi Dana,\n\nOur turn times are down to 5 days.\n\nMaria",
        "sender_user_id": world.rep_id,
        "contact_id": world.contact_ids[DANA],
    }
    values.update(overrides)
    return OutgoingEmail(**values)


def add_card(world: GmailWorld, *, state: str = "executing", job_id: int | None = None) -> int:
    with world.session_factory() as session:
        card = m.Card(
            org_id=world.org_id,
            job_id=job_id,
            contact_id=world.contact_ids[DANA],
            type="send_email",
            state=state,
            title="Email Dana",
            action_payload={},
        )
        session.add(card)
        session.commit()
        return card.id


def content(part: Any) -> str:
    """A text part's decoded content with the wire's CRLF line breaks as newlines."""
    return str(part.get_content()).replace("\r\n", "\n")


def send_calls(world: GmailWorld) -> list[int | None]:
    return [c.status for c in world.google.gmail.calls if c.route == "messages.send"]


# --- what goes out ------------------------------------------------------------------------


def test_email_carries_our_message_id_list_unsubscribe_and_text_and_html_parts(
    world: GmailWorld,
) -> None:
    answer = world.send(subject="Délais d’évaluation à Travis — 5 jours ✓")

    assert answer.status_code == 200
    (sent,) = world.sent()
    (row,) = world.sends()
    body = answer.json()
    assert (body["status"], body["email_send_id"], body["message_id"]) == (
        "sent",
        row.id,
        row.message_id,
    )
    assert (body["gmail_message_id"], body["gmail_thread_id"]) == (sent.id, sent.thread_id)
    assert (row.status, row.from_email, row.gmail_message_id, row.attempt_count) == (
        "sent",
        REP_EMAIL,
        sent.id,
        1,
    )
    message = sent.message
    assert message["Message-ID"] == row.message_id
    assert row.message_id.startswith("<")
    assert row.message_id.endswith(".salesbot@testserver>")
    assert raw_header(sent.raw, "Subject").startswith("Subject: =?utf-8?")
    assert str(message["Subject"]) == "Délais d’évaluation à Travis — 5 jours ✓"
    assert str(message["From"]) == f"María López <{REP_EMAIL}>"
    assert str(message["To"]) == f"Dana Whitfield <{DANA}>"
    url = unsubscribe_url(world.org_id, world.contact_ids[DANA])
    token = MailtoUnsubscribeTokens(TEST_SECRET_KEY).build(world.org_id, world.contact_ids[DANA])
    mailto = build_unsubscribe_address(REP_EMAIL, token)
    assert mailto.startswith("maria+unsub-o")
    assert raw_header(sent.raw, "List-Unsubscribe") == (
        f"List-Unsubscribe: <{url}>,\r\n <mailto:{mailto}?subject=unsubscribe>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    text, rich = list(message.iter_parts())
    assert (text.get_content_type(), rich.get_content_type()) == ("text/plain", "text/html")
    assert (text.get_content_charset(), rich.get_content_charset()) == ("utf-8", "utf-8")
    assert content(text).startswith("Hi Dana,\n\nOur turn times are down to 5 days.\n")
    assert content(text).endswith(f"\n--\nTo stop receiving these emails, unsubscribe: {url}\n")
    assert f'<a href="{url}">unsubscribe</a>' in content(rich)
    assert message["In-Reply-To"] is None


def test_one_off_email_carries_no_unsubscribe_link(world: GmailWorld) -> None:
    answer = world.send(to="someone@elsewhere.example", campaign_email=False)

    assert answer.status_code == 200
    (sent,) = world.sent()
    assert sent.message["List-Unsubscribe"] is None
    plain = sent.message.get_body(("plain",))
    assert plain is not None
    assert "unsubscribe" not in content(plain)


def engagement(world: GmailWorld) -> list[tuple[int, str, int | None, datetime, float | None]]:
    """The engagement history: contact, event, send, time, score after."""
    h = m.ContactEngagementEvent
    with world.session_factory() as session:
        rows = session.execute(
            select(h.contact_id, h.event, h.email_send_id, h.occurred_at, h.score_after).order_by(
                h.id
            )
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def test_an_email_gmail_accepted_is_a_sent_event_in_the_contacts_engagement_history(
    world: GmailWorld, clock: FixedClock
) -> None:
    assert world.send().status_code == 200
    assert world.send(to="someone@elsewhere.example", campaign_email=False).status_code == 200

    (to_dana, _) = world.sends()
    assert (to_dana.status, to_dana.contact_id) == ("sent", world.contact_ids[DANA])
    # The one-off email to an address that is no contact has no history to go in.
    assert engagement(world) == [(world.contact_ids[DANA], "sent", to_dana.id, clock.now(), 0.0)]


def test_campaign_email_to_an_address_that_is_no_contact_is_refused(world: GmailWorld) -> None:
    answer = world.send(to="someone@elsewhere.example")

    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "send_failed"
    assert answer.json()["error"]["message"] == (
        "someone@elsewhere.example is not a contact, so the email could not carry an"
        " unsubscribe link; add the contact first, or send it as a one-off email."
    )
    assert world.sent() == []


def test_follow_ups_carry_thread_id_in_reply_to_and_references_and_thread_for_dana(
    world: GmailWorld,
) -> None:
    dana = world.google.add_mailbox(DANA)
    first = world.send().json()
    second = world.send(
        subject="Re: Turn times in Travis County", thread_id=first["gmail_thread_id"]
    ).json()
    third = world.send(
        subject="Re: Turn times in Travis County", thread_id=first["gmail_thread_id"]
    ).json()

    sent = world.sent()
    assert [s.thread_id for s in sent] == [first["gmail_thread_id"]] * 3
    assert [second["status"], third["status"]] == ["sent", "sent"]
    assert sent[1].message["In-Reply-To"] == first["message_id"]
    assert sent[1].message["References"] == first["message_id"]
    assert sent[2].message["In-Reply-To"] == second["message_id"]
    assert sent[2].message["References"] == f"{first['message_id']} {second['message_id']}"
    received = dana.messages()
    assert len(received) == 3
    assert len({r.thread_id for r in received}) == 1


def test_follow_up_in_a_thread_deleted_from_the_mailbox_starts_a_new_one(
    world: GmailWorld,
) -> None:
    first = world.send().json()
    world.google.gmail.delete_message(REP_EMAIL, first["gmail_message_id"])

    answer = world.send(subject="Re: Turn times", thread_id=first["gmail_thread_id"])

    assert answer.status_code == 200
    assert send_calls(world) == [200, 404, 200]
    assert answer.json()["gmail_thread_id"] != first["gmail_thread_id"]
    assert world.sent()[-1].message["In-Reply-To"] == first["message_id"]


def test_opted_out_contact_is_never_emailed(world: GmailWorld) -> None:
    with world.session_factory() as session:
        session.execute(update(m.Contact).where(m.Contact.email == DANA).values(opted_out_at=NOW))
        session.commit()

    answer = world.send()

    assert answer.status_code == 422
    assert answer.json()["error"]["message"] == (
        f"{DANA} opted out on 2026-11-25; nothing was sent."
    )
    assert world.sent() == []


def test_a_contact_deleted_while_their_campaign_email_waits_is_not_emailed(
    world: GmailWorld, clock: FixedClock
) -> None:
    world.google.gmail.fail_next("messages.send", 429, "rateLimitExceeded", retry_after=120)
    assert world.send().json()["status"] == "queued"
    with world.session_factory() as session:
        session.execute(delete(m.Contact).where(m.Contact.email == DANA))
        session.commit()

    clock.advance(seconds=151)
    world.drain()

    (row,) = world.sends()
    assert (row.status, row.error) == (
        "failed",
        f"{DANA} is no longer a contact; nothing was sent.",
    )
    assert send_calls(world) == [429]


# --- exactly once -------------------------------------------------------------------------


def test_same_card_sent_twice_sends_one_email(world: GmailWorld, clock: FixedClock) -> None:
    card_id = add_card(world)
    mailer = world.gmail.mailer

    first = mailer.send(email_to_dana(world, card_id=card_id))
    second = mailer.send(email_to_dana(world, card_id=card_id, subject="Edited meanwhile"))

    assert first.status == second.status == SendStatus.SENT
    assert (second.email_send_id, second.message_id, second.gmail_message_id) == (
        first.email_send_id,
        first.message_id,
        first.gmail_message_id,
    )
    assert len(world.sent()) == 1
    assert send_calls(world) == [200]


def test_concurrent_sends_of_one_card_from_two_replicas_send_one_email(
    committed_world: GmailWorld, clock: FixedClock
) -> None:
    world = committed_world
    card_id = add_card(world)
    mailers = [world.gmail.mailer, outbox_replica(world, clock, name="replica-2")]
    outcomes: list[SendOutcome] = []
    start = threading.Barrier(8)

    def click(n: int) -> None:
        start.wait()
        outcomes.append(mailers[n % 2].send(email_to_dana(world, card_id=card_id)))

    threads = [threading.Thread(target=click, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(world.sent()) == 1
    assert len({o.email_send_id for o in outcomes}) == 1
    assert len({o.message_id for o in outcomes}) == 1
    assert [o.status for o in outcomes].count(SendStatus.SENT) >= 1
    assert {o.status for o in outcomes} <= {SendStatus.SENT, SendStatus.QUEUED}
    assert [(r.card_id, r.status) for r in world.sends()] == [(card_id, "sent")]


@pytest.mark.parametrize("drop", ["broken", "error_500"])
def test_answer_lost_after_gmail_accepted_is_found_by_rfc822msgid_not_sent_again(
    world: GmailWorld, drop: str
) -> None:
    world.google.gmail.accept_but_drop_connection_next_send(response=drop)  # type: ignore[arg-type]

    answer = world.send()

    assert answer.status_code == 200
    (sent,) = world.sent()
    (row,) = world.sends()
    assert answer.json()["gmail_message_id"] == sent.id
    assert (row.status, row.gmail_message_id, row.attempt_count) == ("sent", sent.id, 1)
    assert [(c.route, c.status) for c in world.google.gmail.calls[-2:]] == [
        ("messages.send", None if drop == "broken" else 500),
        ("messages.list", 200),
    ]


def test_crash_between_send_and_commit_is_reconciled_on_restart_without_a_second_send(
    committed_world: GmailWorld, clock: FixedClock
) -> None:
    world = committed_world
    card_id = add_card(world)
    world.google.gmail.accept_but_drop_connection_next_send()
    world.google.gmail.fail_next("messages.list", 500, "backendError")

    queued = world.gmail.mailer.send(email_to_dana(world, card_id=card_id))

    assert queued.status == SendStatus.QUEUED
    assert queued.detail == (
        "Gmail did not confirm the send; Salesbot checks the mailbox at 15:02:00 UTC before"
        " sending anything again"
    )
    assert [r.status for r in world.sends()] == ["sending"]
    # The process is gone; a restarted replica finds the row once its lease is over.
    finished: list[tuple[int, int | None, SendOutcome]] = []
    restarted = OutboxWorker(
        outbox_replica(world, clock, name="restarted"),
        clock=clock,
        on_sent=lambda _org, send_id, card, outcome: finished.append((send_id, card, outcome)),
    )
    assert restarted.run_once() == 0
    clock.advance(minutes=3)
    assert restarted.run_once() == 1

    (sent,) = world.sent()
    (row,) = world.sends()
    assert (row.status, row.gmail_message_id, row.gmail_thread_id) == (
        "sent",
        sent.id,
        sent.thread_id,
    )
    assert [(s, c, o.status, o.gmail_message_id) for s, c, o in finished] == [
        (row.id, card_id, SendStatus.SENT, sent.id)
    ]
    assert send_calls(world) == [None]
    assert restarted.run_until_idle() == 0
    assert len(world.sent()) == 1


def test_process_dying_after_gmail_sent_and_before_any_record_is_reconciled_once(
    committed_world: GmailWorld, clock: FixedClock
) -> None:
    world = committed_world
    account_id = world.account().id
    with world.session_factory() as session:
        outbox = OutboxRepo(session)
        row = outbox.add(
            world.org_id,
            card_id=None,
            message_id="<crashed-1.salesbot@testserver>",
            not_before=NOW,
            gmail_account_id=account_id,
            sender_user_id=world.rep_id,
            contact_id=world.contact_ids[DANA],
            from_email=REP_EMAIL,
            to_email=DANA,
            subject="Turn times",
            body_text="Hi Dana",
        )
        assert row is not None
        assert outbox.claim(
            row.id,
            worker="dead-replica:1",
            slot_at=NOW,
            lease_until=NOW + timedelta(minutes=10),
            from_email=REP_EMAIL,
        )
        tokens = GmailAccountRepo(session, SecretBox(TEST_SECRET_KEY)).tokens(account_id)
        session.commit()
    assert tokens is not None
    # What the dead replica did before dying: Gmail accepted the message.
    GmailClient(world.gmail.config, refresh_token=tokens.refresh_token).send(
        compose_email(
            message_id=row.message_id,
            date=NOW,
            from_email=REP_EMAIL,
            from_name=None,
            to_email=DANA,
            to_name=None,
            subject="Turn times",
            body_text="Hi Dana",
        )
    )
    worker = OutboxWorker(outbox_replica(world, clock, name="survivor"), clock=clock)

    clock.advance(minutes=11)
    worker.run_until_idle()

    (sent,) = world.sent()
    (stored,) = world.sends()
    assert (stored.status, stored.gmail_message_id) == ("sent", sent.id)


def test_process_dying_before_gmail_saw_the_email_sends_it_once_after_the_lease(
    committed_world: GmailWorld, clock: FixedClock
) -> None:
    world = committed_world
    account_id = world.account().id
    with world.session_factory() as session:
        outbox = OutboxRepo(session)
        row = outbox.add(
            world.org_id,
            card_id=None,
            message_id="<crashed-2.salesbot@testserver>",
            not_before=NOW,
            gmail_account_id=account_id,
            sender_user_id=world.rep_id,
            contact_id=world.contact_ids[DANA],
            from_email=REP_EMAIL,
            to_email=DANA,
            subject="Turn times",
            body_text="Hi Dana",
        )
        assert row is not None
        outbox.claim(
            row.id,
            worker="dead-replica:1",
            slot_at=NOW,
            lease_until=NOW + timedelta(minutes=10),
            from_email=REP_EMAIL,
        )
        session.commit()
    worker = OutboxWorker(outbox_replica(world, clock, name="survivor"), clock=clock)

    assert worker.run_until_idle() == 0
    clock.advance(minutes=11)
    worker.run_until_idle()

    (sent,) = world.sent()
    (stored,) = world.sends()
    assert sent.message["Message-ID"] == "<crashed-2.salesbot@testserver>"
    assert (stored.status, stored.gmail_message_id, stored.attempt_count) == ("sent", sent.id, 2)
    assert [c.route for c in world.google.gmail.calls[-2:]] == ["messages.list", "messages.send"]


# --- throttles ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason", "message", "retry_after", "least", "most"),
    [
        (429, "rateLimitExceeded", None, 3, 3.0, 3.75),
        (429, "rateLimitExceeded", "Too many concurrent requests for user.", None, 2.0, 2.5),
        (403, "userRateLimitExceeded", None, None, 2.0, 2.5),
        (403, "rateLimitExceeded", None, 4, 4.0, 5.0),
    ],
)
def test_rate_limited_send_is_retried_after_retry_after_with_jitter(
    world: GmailWorld,
    clock: FixedClock,
    status: int,
    reason: str,
    message: str | None,
    retry_after: int | None,
    least: float,
    most: float,
) -> None:
    sleeps = Sleeps(clock)
    mailer = outbox_replica(world, clock, name="replica", sleep=sleeps)
    world.google.gmail.fail_next(
        "messages.send", status, reason, retry_after=retry_after, message=message
    )

    outcome = mailer.send(email_to_dana(world))

    assert outcome.status == SendStatus.SENT
    assert send_calls(world) == [status, 200]
    assert len(sleeps.pauses) == 1
    assert least <= sleeps.pauses[0] <= most
    assert len(world.sent()) == 1
    assert [r.attempt_count for r in world.sends()] == [2]


def test_long_rate_limit_queues_the_email_and_the_outbox_sends_it_after_the_pause(
    world: GmailWorld, clock: FixedClock
) -> None:
    world.google.gmail.fail_next("messages.send", 429, "rateLimitExceeded", retry_after=120)

    answer = world.send()

    assert answer.status_code == 202
    body = answer.json()
    assert body["status"] == "queued"
    retry_at = datetime.fromisoformat(body["retry_at"])
    assert NOW + timedelta(seconds=120) <= retry_at <= NOW + timedelta(seconds=150)
    assert body["detail"] == f"Gmail asked us to slow down; retrying at {retry_at:%H:%M:%S} UTC"
    assert world.drain() == 0
    clock.advance(seconds=151)
    assert world.drain() == 1
    assert send_calls(world) == [429, 200]
    assert [r.status for r in world.sends()] == ["sent"]


def test_sending_quota_used_up_at_gmail_pauses_the_mailbox_for_an_hour(
    world: GmailWorld, clock: FixedClock
) -> None:
    world.google.gmail.fail_next("messages.send", 403, "dailyLimitExceeded")

    answer = world.send()

    assert answer.status_code == 202
    assert answer.json()["detail"] == (
        f"Gmail says {REP_EMAIL} reached its sending limit; retrying at 16:00 UTC"
    )
    assert world.account().next_send_at == NOW + timedelta(hours=1)
    assert world.send(to=RAY, to_name="Ray").json()["detail"] == (
        f"Queued behind other emails from {REP_EMAIL}, sending at 16:00 UTC"
    )
    clock.advance(hours=1)
    world.drain()
    clock.advance(seconds=1)  # one send at a time: the second waits for the first
    world.drain()
    assert send_calls(world) == [403, 200, 200]


def test_daily_cap_queues_with_the_time_and_the_outbox_sends_in_the_next_window(
    world: GmailWorld, clock: FixedClock
) -> None:
    world.set_throttle(cap=2, interval=0)

    answers = [world.send(), world.send(to=RAY, to_name="Ray"), world.send()]

    assert [a.status_code for a in answers] == [200, 200, 202]
    queued = answers[2].json()
    assert queued["detail"] == (
        f"Gmail daily cap reached (2 emails in 24 h from {REP_EMAIL}), sending at Nov 26 15:00 UTC"
    )
    assert queued["retry_at"] == "2026-11-26T15:00:00+00:00"
    clock.advance(hours=23, minutes=59)
    assert world.drain() == 0
    assert len(world.sent()) == 2
    clock.advance(minutes=1, seconds=1)
    assert world.drain() == 1
    assert len(world.sent()) == 3
    status = world.client.get("/api/integrations/gmail/status", headers=world.auth()).json()
    assert status["sent_last_24h"] == 1


def test_back_to_back_sends_keep_the_mailbox_spacing(world: GmailWorld, clock: FixedClock) -> None:
    world.set_throttle(cap=400, interval=5)
    first = world.send()
    second = world.send(to=RAY, to_name="Ray")

    assert (first.status_code, second.status_code) == (200, 202)
    assert second.json()["detail"] == (
        f"Queued behind other emails from {REP_EMAIL}, sending at 15:00:05 UTC"
    )
    clock.advance(seconds=4)
    assert world.drain() == 0
    clock.advance(seconds=1)
    assert world.drain() == 1
    sent = world.sent()
    assert [s.message["To"].addresses[0].addr_spec for s in sent] == [DANA, RAY]
    with world.session_factory() as session:
        times = session.scalars(select(m.EmailSend.sent_at).order_by(m.EmailSend.id)).all()
    assert [t - times[0] for t in times] == [timedelta(0), timedelta(seconds=5)]


def test_queued_card_follows_when_the_outbox_finally_sends_it(
    world: GmailWorld, clock: FixedClock
) -> None:
    world.set_throttle(cap=1, interval=0)
    world.send()
    with world.session_factory() as session:
        job = m.Job(org_id=world.org_id, owner_id=world.rep_id, name="Win-back", status="running")
        session.add(job)
        session.commit()
        job_id = job.id
    card_id = add_card(world, job_id=job_id)

    queued = world.gmail.mailer.send(email_to_dana(world, card_id=card_id, job_id=job_id))
    world.runtime.outreach.delivery.finish_send(world.org_id, queued.email_send_id, card_id, queued)
    clock.advance(hours=24, seconds=1)
    world.drain()

    assert queued.status == SendStatus.QUEUED
    with world.session_factory() as session:
        card = session.get(m.Card, card_id)
        job_row = session.get(m.Job, job_id)
        events = session.scalars(
            select(m.ContactEngagementEvent.event).where(
                m.ContactEngagementEvent.email_send_id == queued.email_send_id
            )
        ).all()
    assert card is not None
    assert job_row is not None
    assert (card.state, card.blocked_reason, card.executed_at) == ("done", None, clock.now())
    assert (job_row.emails_sent, job_row.cards_executed) == (1, 1)
    # Recorded by the outbox when Gmail accepted it, once, whoever finished the card.
    assert events == ["sent"]


# --- tokens ---------------------------------------------------------------------------------


def test_expired_access_token_is_refreshed_and_the_new_one_stored_encrypted(
    world: GmailWorld,
) -> None:
    world.server.clock.advance(3600)

    answer = world.send()

    assert answer.status_code == 200
    refreshes = [r for r in world.google.oauth.token_requests if r.grant_type == "refresh_token"]
    assert [(r.email, r.error) for r in refreshes] == [(REP_EMAIL, None)]
    newest = world.google.oauth.issued_access_tokens(REP_EMAIL)[-1]
    account = world.account()
    assert account.access_token_encrypted is not None
    assert newest.token.encode() not in account.access_token_encrypted
    assert SecretBox(TEST_SECRET_KEY).decrypt_bytes(account.access_token_encrypted) == (
        newest.token
    )


def test_revoked_grant_disconnects_the_mailbox_and_tells_the_rep_in_slack(
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: FixedClock,
    google: GoogleServer,
    served_slack: ServedSlack,
) -> None:
    slack = served_slack.stand_in
    slack.reset()
    slack.add_user(REP_SLACK_ID, "maria", REP_EMAIL, real_name="María López")
    settings = {"SLACK_API_URL": served_slack.api_url, "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN}
    with gmail_world(engine, session_factory, clock, google, extra_settings=settings) as world:
        world.connect()
        world.google.oauth.revoke_grant(REP_EMAIL)

        answer = world.send()

        assert answer.status_code == 422
        assert answer.json()["error"]["message"] == (
            f"Gmail access for {REP_EMAIL} was revoked: reconnect Gmail from Salesbot's App"
            " Home, then Retry."
        )
        account = world.account()
        assert (account.status, account.disconnected_reason) == (
            "disconnected",
            "Google access was revoked",
        )
        assert account.refresh_token_encrypted is None
        assert [r.status for r in world.sends()] == ["failed"]
        (dm,) = slack.messages(REP_SLACK_ID)
        assert dm.text.startswith(
            f":warning: Salesbot can no longer send from {REP_EMAIL}: Google access was revoked."
        )
        assert "/api/integrations/gmail/connect?u=" in dm.text
        assert world.sent() == []
        again = world.send()
        assert again.json()["error"]["message"] == (
            "No Gmail mailbox is connected for María López: connect Gmail from Salesbot's"
            " App Home, then Retry."
        )


# --- the outbox under load ----------------------------------------------------------------


def test_replicas_racing_for_the_outbox_send_every_email_exactly_once(
    committed_world: GmailWorld, clock: FixedClock
) -> None:
    world = committed_world
    world.connect(OTHER_REP_EMAIL, token=world.other_token)
    world.set_throttle(cap=400, interval=0)
    world.set_throttle(cap=400, interval=0, email=OTHER_REP_EMAIL)
    accounts = {REP_EMAIL: world.account().id, OTHER_REP_EMAIL: world.account(OTHER_REP_EMAIL).id}
    senders = {REP_EMAIL: world.rep_id, OTHER_REP_EMAIL: world.other_rep_id}
    # Real time here: a worker that finds a mailbox busy comes back half a second later.
    wall = SystemClock()
    with world.session_factory() as session:
        outbox = OutboxRepo(session)
        for n in range(24):
            mailbox = REP_EMAIL if n % 2 else OTHER_REP_EMAIL
            outbox.add(
                world.org_id,
                card_id=None,
                message_id=f"<race-{n}.salesbot@testserver>",
                not_before=wall.now(),
                gmail_account_id=accounts[mailbox],
                sender_user_id=senders[mailbox],
                contact_id=world.contact_ids[DANA],
                to_email=DANA,
                subject=f"Email {n}",
                body_text="Hi Dana",
            )
        session.commit()
    workers = [
        OutboxWorker(outbox_replica(world, wall, name=f"replica-{n}"), clock=wall, batch=3)
        for n in range(5)
    ]
    start = threading.Barrier(10)
    errors: list[BaseException] = []

    def run(worker: OutboxWorker) -> None:
        start.wait()
        try:
            wait_until(lambda: worker.run_once() == 0 and not _pending(world), timeout=60)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    sent = world.sent(REP_EMAIL) + world.sent(OTHER_REP_EMAIL)
    ids = [s.message["Message-ID"] for s in sent]
    assert len(ids) == 24
    assert sorted(ids) == sorted(f"<race-{n}.salesbot@testserver>" for n in range(24))
    assert {r.status for r in world.sends()} == {"sent"}
    assert [r.attempt_count for r in world.sends()] == [1] * 24


def _pending(world: GmailWorld) -> bool:
    with world.session_factory() as session:
        return bool(
            session.scalar(
                select(m.EmailSend.id).where(m.EmailSend.status.in_(["queued", "sending"]))
            )
        )


def test_outbox_started_with_the_app_sends_a_spaced_email_when_its_slot_comes(
    committed_engine: Engine, clock: FixedClock, google: GoogleServer
) -> None:
    factory = make_session_factory(committed_engine)
    with gmail_world(committed_engine, factory, clock, google, start_background=True) as world:
        world.connect()
        assert world.send().status_code == 200
        assert world.send(to=RAY, to_name="Ray").status_code == 202

        clock.advance(seconds=5)
        world.gmail.outbox.wake()

        wait_until(
            lambda: [r.status for r in world.sends()] == ["sent", "sent"],
            what="the spaced email to go out",
        )
        assert len(world.sent()) == 2
