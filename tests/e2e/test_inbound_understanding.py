"""Inbound mail understood end to end: a message delivered to the rep's Gmail (stand-in),
pushed through Pub/Sub, synced and parsed, then claimed by the pipeline's worker, which
classifies it, links it to the campaign email it answers and acts on it.

Real corpus emails (tests/corpus) and labelled replies (integrations/offline_data) are
delivered; the tests assert what is stored: the classification and who decided it, the
links (send, conversation, contact, client), the send marked replied, enrollment changes
and opt-outs, and what the API shows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from bot.app import _mailbox_services
from bot.gmail_inbound import build_gmail_inbound
from domain.classification import Classification, ClassifyRequest
from domain.clock import FixedClock
from domain.errors import ExternalServiceError
from domain.understanding import MAX_PIPELINE_ATTEMPTS, Understanding
from domain.unsubscribe_address import build_unsubscribe_address
from integrations.gmail.sync import SyncSettings
from jobs.gmail_sync import GmailInboundProcessor
from sandbox.pubsub import DEFAULT_PUSH_SERVICE_ACCOUNT
from storage import models as m
from storage.uow import UnitOfWork
from tests.support.builders import make_contact
from tests.support.corpus import corpus_dir
from tests.support.gmail_app import DANA, RAY, REP_EMAIL, GmailWorld, gmail_world
from tests.support.google import GoogleServer, make_email

pytestmark = pytest.mark.slow
AUDIENCE = "https://salesbot.example.com/api/integrations/gmail/push"
LABELLED = Path(__file__).resolve().parents[2] / "integrations/offline_data/labelled_replies.jsonl"


def labelled(index: int) -> dict[str, Any]:
    """One hand-labelled reply of the offline classifier's set."""
    with LABELLED.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            if number == index:
                row: dict[str, Any] = json.loads(line)
                return row
    raise IndexError(index)


POSITIVE = 56  # "Yes, send me your turn times and fee schedule." (info_request)
NEGATIVE = 84  # "No thanks. We're happy with our current appraisal panel."
REMOVE = 291  # "Please remove me from your mailing list."
AMC_ORDER = 0  # New Appraisal Order #AO-482913, fee $525.00


@dataclass
class Inbound:
    """The app with the rep's mailbox connected, a running campaign and one email sent."""

    world: GmailWorld
    google: GoogleServer
    clock: FixedClock
    processor: GmailInboundProcessor
    campaign_id: int
    job_id: int
    enrollments: dict[str, int]
    send_id: int
    send_message_id: str
    send_thread_id: str

    @property
    def sessions(self) -> Callable[[], Session]:
        return self.world.session_factory

    def deliver(self, raw: bytes, *, run: bool = True) -> m.InboundEmail:
        """Deliver a message, push, sync, run the pipeline; return its stored row."""
        gmail_id = self.google.google.gmail.deliver(REP_EMAIL, raw)
        self.push_and_run(run=run)
        return self.email(gmail_id)

    def push_and_run(self, *, run: bool = True) -> None:
        headers, body = self.google.google.push_request(REP_EMAIL, audience=AUDIENCE)
        answer = self.world.client.post("/api/integrations/gmail/push", json=body, headers=headers)
        assert answer.status_code == 204, answer.text
        self.processor.run_pending()
        if run:
            self.world.runtime.inbound_worker.run_until_idle()

    def email(self, gmail_id: str) -> m.InboundEmail:
        with self.sessions() as session:
            return session.scalars(
                select(m.InboundEmail).where(m.InboundEmail.gmail_message_id == gmail_id)
            ).one()

    def enrollment(self, contact: str) -> m.Enrollment:
        with self.sessions() as session:
            row = session.get(m.Enrollment, self.enrollments[contact])
            assert row is not None
            return row

    def engagement(self, contact: str) -> list[tuple[str, int | None, int | None]]:
        """A contact's engagement history: (event, inbound email, send), oldest first."""
        with self.sessions() as session:
            contact_id = session.scalars(
                select(m.Contact.id).where(m.Contact.email == contact)
            ).one()
            rows = session.execute(
                select(
                    m.ContactEngagementEvent.event,
                    m.ContactEngagementEvent.inbound_email_id,
                    m.ContactEngagementEvent.email_send_id,
                )
                .where(m.ContactEngagementEvent.contact_id == contact_id)
                .order_by(m.ContactEngagementEvent.occurred_at, m.ContactEngagementEvent.id)
            ).all()
        return [(r[0], r[1], r[2]) for r in rows if r[0] != "sent"]

    def contact(self, email: str) -> m.Contact:
        with self.sessions() as session:
            return session.scalars(select(m.Contact).where(m.Contact.email == email)).one()

    def send(self) -> m.EmailSend:
        with self.sessions() as session:
            row = session.get(m.EmailSend, self.send_id)
            assert row is not None
            return row

    def reply(self, body: str, *, sender: str = DANA, subject: str = "Re: Turn times") -> bytes:
        """A reply to the campaign email, as Dana's mail client writes it."""
        return make_email(
            sender=sender,
            to=REP_EMAIL,
            subject=subject,
            body=body,
            in_reply_to=self.send_message_id,
            references=[self.send_message_id],
        )

    def api(self, path: str) -> Any:
        answer = self.world.client.get(path, headers=self.world.auth())
        assert answer.status_code == 200, answer.text
        return answer.json()


def _campaign(
    session: Session, org_id: int, owner_id: int, *, on_reply: str, name: str = "Q4 win-back"
) -> tuple[int, int]:
    campaign = m.MarketingCampaign(
        org_id=org_id,
        name=name,
        goal="reactivation",
        status="active",
        channels=["email"],
        cadence_days=[0, 4, 10, 21],
        on_reply=on_reply,
    )
    session.add(campaign)
    session.flush()
    job = m.Job(
        org_id=org_id,
        owner_id=owner_id,
        campaign_id=campaign.id,
        name=campaign.name,
        status="running",
        planned_at=datetime.now(UTC),
    )
    session.add(job)
    session.flush()
    return campaign.id, job.id


@pytest.fixture
def inbound(
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: FixedClock,
    google: GoogleServer,
) -> Iterator[Inbound]:
    with inbound_world(engine, session_factory, clock, google) as built:
        yield built


@contextmanager
def inbound_world(
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: FixedClock,
    google: GoogleServer,
    *,
    settings: dict[str, object] | None = None,
) -> Iterator[Inbound]:
    """The app (with `settings`), the rep's mailbox connected, a campaign, one email sent."""
    extra = {
        "PUBSUB_AUDIENCE": AUDIENCE,
        "PUBSUB_SERVICE_ACCOUNT": DEFAULT_PUSH_SERVICE_ACCOUNT,
        **(settings or {}),
    }
    with gmail_world(engine, session_factory, clock, google, extra_settings=extra) as world:
        assert world.connect().status_code == 200
        world.set_throttle(cap=400, interval=0)
        with session_factory() as session:
            campaign_id, job_id = _campaign(session, world.org_id, world.rep_id, on_reply="stop")
            enrollments = {
                email: m.Enrollment(
                    org_id=world.org_id,
                    job_id=job_id,
                    contact_id=world.contact_ids[email],
                    step=1,
                    status="active",
                    next_due_at=clock.now() + timedelta(days=4),
                )
                for email in (DANA, RAY)
            }
            session.add_all(enrollments.values())
            session.commit()
            enrollment_ids = {email: row.id for email, row in enrollments.items()}
        assert world.send().status_code in (200, 202)
        world.drain()
        with session_factory() as session:
            send = session.scalars(select(m.EmailSend)).one()
            assert send.status == "sent"
            assert send.gmail_thread_id
            # Step 2 of the cadence, as the outbox sends it for the job.
            send.job_id, send.campaign_id = job_id, campaign_id
            send.enrollment_id, send.contact_id = enrollment_ids[DANA], world.contact_ids[DANA]
            session.commit()
            send_id, message_id, thread_id = send.id, send.message_id, send.gmail_thread_id
        # The app's sync, with one fetch thread: the test's sessions share one connection.
        built = build_gmail_inbound(
            world.runtime.settings,
            world.runtime.services,
            service_for_account=_mailbox_services(world.gmail),
            sync_settings=SyncSettings(fetch_threads=1),
            on_parsed=world.runtime.inbound_worker.wake,
        )
        assert built.processor is not None
        yield Inbound(
            world=world,
            google=google,
            clock=clock,
            processor=built.processor,
            campaign_id=campaign_id,
            job_id=job_id,
            enrollments=enrollment_ids,
            send_id=send_id,
            send_message_id=message_id,
            send_thread_id=thread_id,
        )


def test_a_positive_reply_is_linked_to_the_campaign_email_and_stops_the_cadence(
    inbound: Inbound,
) -> None:
    row = inbound.deliver(inbound.reply(labelled(POSITIVE)["body"]))

    assert (row.status, row.category, row.sentiment, row.intent, row.classified_by) == (
        "processed",
        "OPPORTUNITY",
        "positive",
        "info_request",
        "offline",
    )
    assert (row.email_send_id, row.contact_id) == (inbound.send_id, inbound.world.contact_ids[DANA])
    assert row.client_id is not None
    assert row.conversation_id is not None
    send = inbound.send()
    assert (send.reply_email_id, send.reply_sentiment) == (row.id, "positive")
    assert send.replied_at is not None
    dana = inbound.enrollment(DANA)
    assert (dana.status, dana.stop_reason, dana.stop_email_id) == ("stopped", "replied", row.id)
    assert inbound.enrollment(RAY).status == "active"
    assert [a["action"] for a in row.actions] == ["enrollments_stopped"]
    assert row.actions[0]["enrollment_ids"] == [dana.id]
    assert inbound.engagement(DANA) == [("positive_reply", row.id, inbound.send_id)]
    assert inbound.contact(DANA).engagement_score > 0
    assert inbound.contact(DANA).last_replied_at is not None
    with inbound.sessions() as session:
        conversation = session.get(m.EmailConversation, row.conversation_id)
        assert conversation is not None
        assert (
            conversation.campaign_id,
            conversation.job_id,
            conversation.contact_id,
            conversation.first_send_id,
            conversation.sent_count,
            conversation.reply_count,
            conversation.last_sentiment,
        ) == (inbound.campaign_id, inbound.job_id, dana.contact_id, send.id, 1, 1, "positive")

    detail = inbound.api(f"/api/inbound/emails/{row.id}")
    assert detail["links"]["linked_by"] == "in_reply_to"
    assert detail["links"]["campaign_id"] == inbound.campaign_id
    assert detail["actions"][0]["action"] == "enrollments_stopped"
    timeline = inbound.api(f"/api/inbound/conversations/{row.conversation_id}")
    assert [(e["direction"], e["id"]) for e in timeline] == [
        ("sent", send.id),
        ("received", row.id),
    ]


def test_a_negative_reply_pauses_the_cadence_when_the_campaign_pauses_on_reply(
    inbound: Inbound,
) -> None:
    with inbound.sessions() as session:
        session.execute(
            update(m.MarketingCampaign)
            .where(m.MarketingCampaign.id == inbound.campaign_id)
            .values(on_reply="pause")
        )
        session.commit()
    row = inbound.deliver(inbound.reply(labelled(NEGATIVE)["body"]))

    assert (row.category, row.sentiment, row.intent) == (
        "OPPORTUNITY",
        "negative",
        "not_interested",
    )
    dana = inbound.enrollment(DANA)
    assert (dana.status, dana.paused_until, dana.stop_email_id) == ("paused", None, row.id)
    assert inbound.send().reply_sentiment == "negative"
    assert inbound.contact(DANA).opted_out_at is None
    assert inbound.engagement(DANA) == [("negative_reply", row.id, inbound.send_id)]


def test_a_request_to_be_removed_opts_the_contact_out_of_every_campaign(inbound: Inbound) -> None:
    with inbound.sessions() as session:
        _, other_job = _campaign(
            session, inbound.world.org_id, inbound.world.rep_id, on_reply="stop", name="Spring"
        )
        other = m.Enrollment(
            org_id=inbound.world.org_id,
            job_id=other_job,
            contact_id=inbound.world.contact_ids[DANA],
            status="active",
        )
        session.add(other)
        session.commit()
        other_id = other.id
    row = inbound.deliver(inbound.reply(labelled(REMOVE)["body"]))

    assert (row.category, row.intent, row.classified_by, row.decided_detail) == (
        "REMOVE",
        "unsubscribe",
        "detector",
        "unsubscribe_text",
    )
    assert inbound.contact(DANA).opted_out_at is not None
    with inbound.sessions() as session:
        stopped = session.scalars(
            select(m.Enrollment).where(m.Enrollment.contact_id == inbound.world.contact_ids[DANA])
        ).all()
        history = session.scalars(
            select(m.ContactEngagementEvent.detail).where(
                m.ContactEngagementEvent.event == "opted_out"
            )
        ).all()
    assert {(e.id, e.status, e.stop_reason, e.stop_email_id) for e in stopped} == {
        (inbound.enrollments[DANA], "stopped", "opted out", row.id),
        (other_id, "stopped", "opted out", row.id),
    }
    assert history == [{"source": f"inbound email {row.id}"}]
    assert inbound.engagement(DANA) == [("opted_out", row.id, None)]
    assert [a["action"] for a in row.actions] == ["opted_out"]

    # Processing it again (salesbot inbound reclassify) does nothing twice.
    inbound.world.runtime.understanding.requeue(since=datetime(2020, 1, 1, tzinfo=UTC))
    inbound.world.runtime.inbound_worker.run_until_idle()
    again = inbound.email(row.gmail_message_id)
    assert (again.status, again.actions) == ("processed", row.actions)


def test_mail_to_our_list_unsubscribe_address_opts_out_the_contact_its_token_names(
    inbound: Inbound,
) -> None:
    token = inbound.world.runtime.unsubscribe_tokens.build(
        inbound.world.org_id, inbound.world.contact_ids[RAY]
    )
    # A mail client following the mailto: link sends a bare message, here from another address.
    raw = make_email(
        sender="assistant@pinnacle.example.com",
        to=build_unsubscribe_address(REP_EMAIL, token),
        subject="unsubscribe",
        body="",
    )
    row = inbound.deliver(raw)

    assert (row.category, row.decided_detail) == ("REMOVE", "unsubscribe_address")
    assert inbound.contact(RAY).opted_out_at is not None
    assert inbound.contact(DANA).opted_out_at is None
    assert row.actions[0]["contact_id"] == inbound.world.contact_ids[RAY]
    assert inbound.enrollment(RAY).status == "stopped"


def test_a_forged_unsubscribe_token_opts_out_nobody_but_the_sender(inbound: Inbound) -> None:
    raw = make_email(
        sender=DANA,
        to=build_unsubscribe_address(REP_EMAIL, "o1c2.forgedforgedforged"),
        subject="unsubscribe",
        body="",
    )
    row = inbound.deliver(raw)

    assert row.category == "REMOVE"
    assert inbound.contact(RAY).opted_out_at is None
    assert inbound.contact(DANA).opted_out_at is not None
    assert "could not be verified" in row.actions[0]["reason"]


def _corpus(name: str) -> bytes:
    return (corpus_dir() / name).read_bytes()


def test_a_hard_bounce_marks_the_address_bounced_and_stops_every_enrollment(
    inbound: Inbound,
) -> None:
    # lhost-postfix-03: a Postfix DSN, 5.x.x for kijitora@example.net.
    raw = _corpus("bounces/sisimai/lhost-postfix-03.eml")
    # We sent to the address (a bounce of an address we never wrote to changes nothing).
    contact_id = _enrolled_contact(inbound, "kijitora@example.net", sent=True)
    row = inbound.deliver(raw)

    assert (row.category, row.classified_by, row.decided_detail) == (
        "NOTIFICATIONS",
        "detector",
        "hard bounce",
    )
    assert row.contact_id == contact_id
    assert inbound.contact("kijitora@example.net").email_status == "bounced"
    with inbound.sessions() as session:
        enrollment = session.scalars(
            select(m.Enrollment).where(m.Enrollment.contact_id == contact_id)
        ).one()
    assert (enrollment.status, enrollment.stop_reason, enrollment.stop_email_id) == (
        "stopped",
        "bounced",
        row.id,
    )
    assert [a["action"] for a in row.actions] == ["marked_bounced"]
    # The bounce is of our send (linked by its recipient): the event names it.
    assert inbound.engagement("kijitora@example.net") == [("bounced", row.id, row.email_send_id)]
    assert row.email_send_id is not None


def _enrolled_contact(inbound: Inbound, email: str, *, sent: bool = False) -> int:
    """A contact enrolled in the job; `sent`: with a send of ours to it five days ago."""
    with inbound.sessions() as session:
        org = session.get(m.Organization, inbound.world.org_id)
        assert org is not None
        contact = make_contact(session, org, email=email)
        session.add(
            m.Enrollment(
                org_id=org.id, job_id=inbound.job_id, contact_id=contact.id, status="active"
            )
        )
        if sent:
            session.add(
                m.EmailSend(
                    org_id=org.id,
                    contact_id=contact.id,
                    job_id=inbound.job_id,
                    campaign_id=inbound.campaign_id,
                    message_id=f"<{contact.id}.bounced@salesbot.test>",
                    to_email=email,
                    subject="Turn times",
                    status="sent",
                    sent_at=inbound.clock.now() - timedelta(days=5),
                )
            )
        session.commit()
        return contact.id


def test_a_bounce_of_an_address_we_never_sent_to_changes_nothing(inbound: Inbound) -> None:
    raw = _corpus("bounces/sisimai/lhost-postfix-03.eml")
    contact_id = _enrolled_contact(inbound, "kijitora@example.net")  # no send of ours
    row = inbound.deliver(raw)

    assert row.decided_detail == "hard bounce"
    assert inbound.contact("kijitora@example.net").email_status == "valid"
    assert row.actions == []
    assert any("we did not send to" in n for n in row.notes)
    with inbound.sessions() as session:
        enrollment = session.scalars(
            select(m.Enrollment).where(m.Enrollment.contact_id == contact_id)
        ).one()
    assert enrollment.status == "active"


def test_the_third_soft_bounce_within_30_days_marks_the_address_bounced(
    inbound: Inbound,
) -> None:
    # lhost-postfix-08: a transient failure (4.x.x) for kijitora@example.com.
    raw = _corpus("bounces/sisimai/lhost-postfix-08.eml")
    contact_id = _enrolled_contact(inbound, "kijitora@example.com", sent=True)
    original = b"Message-Id: <20141124112304.8572B11F987B1@fallback7.mail.ru>"
    assert original in raw
    # Three bounce messages (each its own Message-ID); the first is delivered twice more
    # (new Gmail ids, same Message-ID) and counts once.
    first = inbound.deliver(raw)
    again = [inbound.deliver(raw) for _ in range(2)]
    assert [[a["action"] for a in r.actions] for r in again] == [["soft_bounce_counted"]] * 2
    assert all("soft bounce 1 of 3" in r.actions[0]["reason"] for r in again)
    rows = [first] + [
        inbound.deliver(
            raw.replace(original, f"Message-Id: <bounce{i}@fallback7.mail.ru>".encode())
        )
        for i in (2, 3)
    ]

    assert [r.decided_detail for r in rows] == ["soft bounce"] * 3
    assert [[a["action"] for a in r.actions] for r in rows] == [
        ["soft_bounce_counted"],
        ["soft_bounce_counted"],
        ["marked_bounced"],
    ]
    assert inbound.contact("kijitora@example.com").email_status == "bounced"
    assert all(r.contact_id == contact_id for r in rows)
    assert inbound.engagement("kijitora@example.com") == [
        ("soft_bounce", r.id, r.email_send_id) for r in [first, *again, *rows[1:]]
    ]


def test_an_out_of_office_pauses_the_contact_until_the_day_after_their_return(
    inbound: Inbound,
) -> None:
    raw = make_email(
        sender=DANA,
        to=REP_EMAIL,
        subject="Automatic reply: Turn times",
        body="I am out of the office until Monday, December 14, 2026 with limited access "
        "to email. For urgent matters contact Ray.",
        in_reply_to=inbound.send_message_id,
    ).replace(b"Subject:", b"Auto-Submitted: auto-replied\nSubject:", 1)
    row = inbound.deliver(raw)

    assert (row.category, row.intent, row.decided_detail) == (
        "NOTIFICATIONS",
        "out_of_office",
        "out_of_office",
    )
    dana = inbound.enrollment(DANA)
    assert dana.status == "paused"
    assert dana.paused_until == datetime(2026, 12, 15, tzinfo=UTC)
    # An automatic answer is linked to the send but is not a reply to it.
    assert row.email_send_id == inbound.send_id
    assert inbound.send().replied_at is None
    assert inbound.engagement(DANA) == [("out_of_office", row.id, inbound.send_id)]


def test_an_amc_order_arrives_with_its_order_number_and_fee(inbound: Inbound) -> None:
    order = labelled(AMC_ORDER)
    raw = make_email(
        sender="orders@amc-portal.example",
        to=REP_EMAIL,
        subject=order["subject"],
        body=order["body"],
    )
    row = inbound.deliver(raw)

    assert (row.category, row.classified_by) == ("AMC_ORDER", "offline")
    assert row.entities["order_numbers"] == ["AO-482913"]
    assert row.entities["amounts"] == ["$525.00"]
    assert row.email_send_id is None
    assert row.actions == []
    listed = inbound.api("/api/inbound/emails?category=AMC_ORDER")
    assert [e["id"] for e in listed] == [row.id]
    assert inbound.api("/api/inbound/emails?linked=true&category=AMC_ORDER") == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("", id="empty body"),
        pytest.param("Bonjour, pouvez-vous m'envoyer vos délais et vos tarifs ?", id="french"),
        pytest.param("Turn times please. " * 60_000, id="1 MB body"),
    ],
)
def test_bad_input_is_classified_in_bounded_time_and_never_lost(
    inbound: Inbound, body: str
) -> None:
    row = inbound.deliver(inbound.reply(body))

    assert row.status == "processed"
    assert row.category is not None
    assert row.email_send_id == inbound.send_id
    if len(body) > 100_000:
        assert any("cut to" in note for note in row.notes)


def test_an_html_only_reply_is_read_from_its_html(inbound: Inbound) -> None:
    message = EmailMessage()
    message["From"] = DANA
    message["To"] = REP_EMAIL
    message["Subject"] = "Re: Turn times"
    message["In-Reply-To"] = inbound.send_message_id
    message.set_content("<p>Please <b>remove me</b> from your mailing list.</p>", subtype="html")
    row = inbound.deliver(message.as_bytes())

    assert (row.status, row.category) == ("processed", "REMOVE")


class _BrokenModel:
    """A model whose every call fails with a bug (not an outage): the message must fail."""

    name = "broken"

    def classify(self, request: ClassifyRequest) -> Classification:
        raise RuntimeError("model output could not be handled")

    def classify_many(
        self, requests: Sequence[ClassifyRequest]
    ) -> list[Classification | ExternalServiceError]:
        raise RuntimeError("model output could not be handled")


def test_a_message_that_fails_five_times_is_parked_visible_and_retried_by_reclassify(
    inbound: Inbound,
) -> None:
    row = inbound.deliver(inbound.reply("Can you call me tomorrow?"), run=False)
    broken = Understanding(
        lambda: UnitOfWork(inbound.sessions),
        clock=inbound.clock,
        model=_BrokenModel(),
        offline=_BrokenModel(),
    )
    for _ in range(MAX_PIPELINE_ATTEMPTS):
        assert broken.run_once().claimed >= 1
        inbound.clock.advance(hours=7)
    parked = inbound.email(row.gmail_message_id)
    assert (parked.status, parked.pipeline_attempts) == ("failed", MAX_PIPELINE_ATTEMPTS)
    assert parked.error == "RuntimeError: model output could not be handled"
    assert broken.run_once().claimed == 0  # parked: nobody takes it again
    # The fetch retry never takes a parked message back either.
    assert inbound.processor.retry_failed() == 0

    detail = inbound.api(f"/api/inbound/emails/{row.id}")
    assert (detail["status"], detail["error"]) == ("failed", parked.error)

    counts = inbound.world.runtime.understanding.requeue(
        since=datetime(2020, 1, 1, tzinfo=UTC), status="failed"
    )
    # Two parked: the reply, and the copy of our campaign email in the rep's mailbox (SENT).
    assert (counts.failed, counts.processed) == (2, 0)
    inbound.world.runtime.inbound_worker.run_until_idle()
    retried = inbound.email(row.gmail_message_id)
    assert (retried.status, retried.error, retried.email_send_id) == (
        "processed",
        None,
        inbound.send_id,
    )


def test_an_organization_rule_decides_before_any_model(inbound: Inbound) -> None:
    with inbound.sessions() as session:
        session.execute(
            update(m.User).where(m.User.id == inbound.world.rep_id).values(role="admin")
        )
        session.commit()
    created = inbound.world.client.post(
        "/api/inbound/rules",
        json={"rule_type": "sender_domain", "pattern": "amc-portal.example", "category": "AP"},
        headers=inbound.world.auth(),
    )
    assert created.status_code == 201, created.text
    order = labelled(AMC_ORDER)
    row = inbound.deliver(
        make_email(
            sender="billing@east.amc-portal.example",
            to=REP_EMAIL,
            subject=order["subject"],
            body=order["body"],
        )
    )

    assert (row.category, row.confidence, row.classified_by) == ("AP", 1.0, "rule")
    assert row.decided_detail == f"rule {created.json()['id']} (sender_domain)"


def test_a_catastrophic_rule_pattern_against_a_100_kb_subject_takes_bounded_time(
    inbound: Inbound,
) -> None:
    with inbound.sessions() as session:
        session.execute(
            update(m.User).where(m.User.id == inbound.world.rep_id).values(role="admin")
        )
        session.commit()
    created = inbound.world.client.post(
        "/api/inbound/rules",
        json={"rule_type": "subject_regex", "pattern": "(a+)+$", "category": "UPDATES"},
        headers=inbound.world.auth(),
    )
    assert created.status_code == 201, created.text
    started = time.monotonic()
    row = inbound.deliver(inbound.reply("Thanks!", subject="Re: " + "a" * 100_000 + "!"))

    assert row.status == "processed"
    # Rules read the subject's first 998 characters (RFC 5322's line limit), all a's here.
    assert (row.classified_by, row.category) == ("rule", "UPDATES")
    assert time.monotonic() - started < 30


# --- forged reports (review of issue 11): who may trigger an automatic action --------------

_GMAIL_DMARC_FAIL = (
    "mx.google.com; dkim=fail header.i=@pinnacle.example; spf=fail "
    "smtp.mailfrom=x@pinnacle.example; dmarc=fail (p=NONE sp=NONE dis=NONE) "
    "header.from=pinnacle.example"
)


def _arf(sender: str, recipients: Sequence[str], *, extra: str = "") -> bytes:
    """An ARF spam complaint (RFC 5965) from `sender` naming `recipients`."""
    return (
        extra + "From: " + sender + "\r\nTo: " + REP_EMAIL + "\r\nSubject: report\r\n"
        "Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <x1@competitor.example>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=feedback-report; boundary=BB\r\n\r\n"
        "--BB\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n"
        "--BB\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: x/1.0\r\nVersion: 1\r\n"
        + "".join(f"Original-Rcpt-To: {r}\r\n" for r in recipients)
        + "--BB--\r\n"
    ).encode()


def _raw(headers: dict[str, str], body: str) -> bytes:
    msg = EmailMessage()
    for name, value in headers.items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes()


def test_an_outsider_s_complaint_about_mail_we_never_sent_opts_out_nobody(
    inbound: Inbound,
) -> None:
    # ARF reports naming RAY (we never wrote to RAY), and an address that is no contact.
    reports = (
        _arf("abuse@competitor.example", [RAY]),
        _arf("abuse@competitor.example", ["nobody@elsewhere.example"]),
    )
    for raw in reports:
        row = inbound.deliver(raw)

        assert row.category == "ESCALATE"
        assert (
            row.classification_reason == "complaint about mail we cannot find: a person checks it"
        )
        assert row.actions == []
    assert inbound.contact(RAY).opted_out_at is None
    assert inbound.enrollment(RAY).status == "active"


def test_an_outsider_s_bounce_of_an_address_we_never_sent_to_bounces_nobody(
    inbound: Inbound,
) -> None:
    raw = _raw(
        {
            "From": "Mail Delivery System <mailer-daemon@competitor.example>",
            "To": REP_EMAIL,
            "Subject": "Undelivered Mail Returned to Sender",
            "X-Failed-Recipients": RAY,
        },
        "This is the mail system. Your message could not be delivered.\n550 5.1.1 user unknown",
    )
    row = inbound.deliver(raw)

    assert row.actions == []
    assert inbound.contact(RAY).email_status == "valid"
    assert inbound.enrollment(RAY).status == "active"


def test_reports_failing_authentication_change_nothing_even_about_our_recipients(
    inbound: Inbound,
) -> None:
    # DANA got our send; the reports name her, but their sender fails DMARC at Gmail.
    complaint = _arf(
        "abuse@pinnacle.example", [DANA], extra=f"Authentication-Results: {_GMAIL_DMARC_FAIL}\r\n"
    )
    bounce = _raw(
        {
            "Authentication-Results": _GMAIL_DMARC_FAIL,
            "From": "mailer-daemon@pinnacle.example",
            "To": REP_EMAIL,
            "Subject": "Undelivered Mail Returned to Sender",
            "X-Failed-Recipients": DANA,
        },
        "This is the mail system. Your message could not be delivered.\n550 5.1.1 user unknown",
    )
    words = make_email(
        sender=DANA,
        to=REP_EMAIL,
        subject="Re: Turn times",
        body=labelled(REMOVE)["body"],
        in_reply_to=inbound.send_message_id,
    ).replace(b"Subject:", f"Authentication-Results: {_GMAIL_DMARC_FAIL}\nSubject:".encode(), 1)
    for raw in (complaint, bounce, words):
        row = inbound.deliver(raw)

        assert row.category == "ESCALATE"
        assert row.classification_reason is not None
        assert "fails DMARC" in row.classification_reason
        assert not [a for a in row.actions if a["action"] in ("opted_out", "marked_bounced")]
    assert inbound.contact(DANA).opted_out_at is None
    assert inbound.contact(DANA).email_status == "valid"


def test_a_complaint_about_our_send_opts_its_recipient_out(inbound: Inbound) -> None:
    row = inbound.deliver(_arf("feedback@pinnacle.example", [DANA, RAY]))

    assert inbound.contact(DANA).opted_out_at is not None
    assert inbound.contact(RAY).opted_out_at is None  # named, but never mailed by us
    assert [(a["action"], a["contact_id"]) for a in row.actions] == [
        ("opted_out", inbound.world.contact_ids[DANA])
    ]
