"""What a reply card's "View thread" and "Open contact" read, on SQLite and PostgreSQL:
the thread's sends and replies in order (the rep's mailbox copy of our own email shown
once, mail the rep sent by hand shown as ours), each message cut, the older ones counted;
the contact's latest engagement events, how many came before, and their open enrollments.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session

from domain.card_details import MAX_MESSAGE_CHARS, MAX_THREAD_MESSAGES, MAX_TIMELINE_EVENTS
from domain.clock import FixedClock
from storage import models as m
from storage.uow import UnitOfWork
from tests.support.builders import make_client, make_contact, make_org

THREAD = "thread-1"
MAILBOX = "maria@lonestar.example"


def test_the_thread_shows_our_sends_and_their_replies_in_order_each_once(
    session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    now = clock.now()
    with session_factory() as session:
        org = make_org(session)
        dana = make_contact(session, org, make_client(session, org), email="dana@pinnacle.example")
        account = m.GmailAccount(org_id=org.id, email=MAILBOX, status="connected")
        session.add(account)
        session.flush()
        session.add(
            m.EmailSend(
                org_id=org.id,
                contact_id=dana.id,
                message_id="<ours-1@lonestar.example>",
                gmail_thread_id=THREAD,
                to_email=dana.email,
                subject="Turn times",
                body_text="Hi Dana, our turn times are down.",
                status="sent",
                sent_at=now - timedelta(days=3),
            )
        )

        def inbound(n: int, **values: object) -> m.InboundEmail:
            row = m.InboundEmail(
                org_id=org.id,
                gmail_account_id=account.id,
                gmail_message_id=f"g{n}",
                gmail_thread_id=THREAD,
                contact_id=dana.id,
                status="processed",
                **values,
            )
            session.add(row)
            session.flush()
            return row

        # The rep's mailbox holds a copy of our email (label SENT): shown once, as ours.
        inbound(
            0,
            message_id_header="<ours-1@lonestar.example>",
            from_email=MAILBOX,
            reply_text="Hi Dana, our turn times are down.",
            received_at=now - timedelta(days=3),
            label_ids=["SENT"],
        )
        answered = inbound(
            1,
            from_email=dana.email,
            subject="Re: Turn times",
            reply_text="Send me your fees. " * 400,
            received_at=now - timedelta(days=2),
        )
        inbound(
            2,
            from_email=MAILBOX,
            to_emails=[dana.email],
            subject="Re: Turn times",
            reply_text="Attached, Dana.",
            received_at=now - timedelta(days=1),
            label_ids=["SENT"],
        )
        inbound(
            3,
            from_email=dana.email,
            subject="Re: Turn times",
            reply_text="Thanks! " + "x" * (MAX_MESSAGE_CHARS * 2),
            received_at=now,
        )
        card = m.Card(
            org_id=org.id,
            contact_id=dana.id,
            inbound_email_id=answered.id,
            type="reply_to_email",
            state="in_review",
            title="Reply",
            action_payload={"gmail_thread_id": THREAD},
        )
        session.add(card)
        session.commit()
        org_id, card_id = org.id, card.id

    with UnitOfWork(session_factory) as uow:
        thread = uow.card_details.thread(org_id, card_id)

    assert thread.gmail_thread_id == THREAD
    assert [(t.direction, t.address, t.answered) for t in thread.messages] == [
        ("us", "dana@pinnacle.example", False),
        ("them", "dana@pinnacle.example", True),
        ("us", "dana@pinnacle.example", False),
        ("them", "dana@pinnacle.example", False),
    ]
    assert thread.messages[1].text.startswith("Send me your fees.")
    assert not thread.messages[1].truncated  # the message the card answers: at length
    assert thread.messages[3].truncated
    assert len(thread.messages[3].text) <= MAX_MESSAGE_CHARS + 1
    assert thread.left_out == 0


def test_a_long_thread_keeps_its_newest_messages_and_counts_the_others(
    session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    now = clock.now()
    with session_factory() as session:
        org = make_org(session)
        dana = make_contact(session, org, email="dana@pinnacle.example")
        for n in range(MAX_THREAD_MESSAGES + 5):
            session.add(
                m.EmailSend(
                    org_id=org.id,
                    contact_id=dana.id,
                    message_id=f"<ours-{n}@lonestar.example>",
                    gmail_thread_id=THREAD,
                    to_email=dana.email,
                    subject=f"Step {n}",
                    body_text=f"Email {n}",
                    status="sent",
                    sent_at=now - timedelta(days=60 - n),
                )
            )
        card = m.Card(
            org_id=org.id,
            contact_id=dana.id,
            type="reply_to_email",
            state="in_review",
            title="Reply",
            action_payload={"gmail_thread_id": THREAD},
        )
        session.add(card)
        session.commit()
        org_id, card_id = org.id, card.id

    with UnitOfWork(session_factory) as uow:
        thread = uow.card_details.thread(org_id, card_id)

    assert len(thread.messages) == MAX_THREAD_MESSAGES
    assert thread.messages[-1].text == f"Email {MAX_THREAD_MESSAGES + 4}"
    assert thread.messages[0].text == "Email 5"
    assert thread.left_out == 5


def test_the_contact_overview_has_the_latest_events_and_the_open_enrollments(
    session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    now = clock.now()
    with session_factory() as session:
        org = make_org(session)
        lender = make_client(session, org, name="Pinnacle Lending")
        dana = make_contact(
            session,
            org,
            lender,
            email="dana@pinnacle.example",
            first_name="Dana",
            last_name="Whitfield",
            title="Loan Officer",
            paused_until=now + timedelta(days=30),
            pause_reason="not_now",
        )
        campaign = m.MarketingCampaign(
            org_id=org.id, name="Q4 win-back", goal="reactivation", status="active"
        )
        session.add(campaign)
        session.flush()
        jobs = []
        for status in ("active", "stopped"):
            job = m.Job(org_id=org.id, campaign_id=campaign.id, name=f"job {status}")
            session.add(job)
            session.flush()
            jobs.append(job.id)
            session.add(
                m.Enrollment(
                    org_id=org.id, job_id=job.id, contact_id=dana.id, step=1, status=status
                )
            )
        for n in range(MAX_TIMELINE_EVENTS + 3):
            session.add(
                m.ContactEngagementEvent(
                    org_id=org.id,
                    contact_id=dana.id,
                    event="replied" if n % 2 else "sent",
                    occurred_at=now - timedelta(days=40 - n),
                    score_delta=10.0 if n % 2 else 0.0,
                    score_after=float(n),
                )
            )
        session.commit()
        org_id, contact_id = org.id, dana.id

    with UnitOfWork(session_factory) as uow:
        contact = uow.card_details.contact_overview(org_id, contact_id, now=now)

    assert (contact.name, contact.title, contact.company_name) == (
        "Dana Whitfield",
        "Loan Officer",
        "Pinnacle Lending",
    )
    assert (contact.paused_until, contact.pause_reason) == (now + timedelta(days=30), "not_now")
    entries = contact.history.entries
    assert len(entries) == MAX_TIMELINE_EVENTS
    assert [e.score_after for e in entries] == [float(n) for n in range(3, MAX_TIMELINE_EVENTS + 3)]
    assert contact.earlier_events == 3
    assert [(e.job_id, e.campaign_name, e.status) for e in contact.enrollments] == [
        (jobs[0], "Q4 win-back", "active")
    ]
