"""Newsletters in the database, on SQLite and PostgreSQL: who subscribes, planning an issue
(one row per subscriber, even planned again), and the refusals that change nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from domain.deps import Deps
from domain.errors import InvalidInput
from domain.newsletter_service import Newsletters
from domain.newsletters import IssueIn, Newsletter, NewsletterIn, NewsletterIssue
from domain.outreach import Actor, StaleCard
from storage import models as m
from storage.uow import UnitOfWork
from tests.support.accounts import ensure_user
from tests.support.builders import make_client, make_contact, make_org

NOW = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


def service(uow: UnitOfWork, clock: FixedClock, *, batch: int = 1000) -> Newsletters:
    counter = iter(range(1, 10**9))
    return Newsletters(
        Deps(uow=lambda: uow, clock=clock),
        new_message_id=lambda: f"<nl-{next(counter)}@lonestar.example>",
        batch=batch,
    )


def mailbox(session: Session, org: m.Organization, user_id: int, email: str, cap: int) -> None:
    session.add(
        m.GmailAccount(
            org_id=org.id,
            user_id=user_id,
            email=email,
            status="connected",
            daily_send_cap=cap,
            min_send_interval_seconds=5,
        )
    )
    session.flush()


def test_subscribers_are_the_reachable_contacts_who_kept_newsletters(
    session: Session, uow: UnitOfWork
) -> None:
    org, other = make_org(session), make_org(session)
    lender = make_client(session, org, name="Pinnacle Lending")
    kept = make_contact(session, org, lender, email="a@x.example")
    campaign_off = make_contact(
        session, org, email="b@x.example", email_preferences={"campaign": False}
    )
    make_contact(session, org, email="c@x.example", email_preferences={"newsletter": False})
    make_contact(session, org, email="d@x.example", opted_out_at=NOW)
    make_contact(session, org, email="e@x.example", email_status="bounced")
    make_contact(session, other, email="f@x.example")
    session.commit()

    with uow:
        count = uow.newsletter_subscribers.count(org.id)
        page = uow.newsletter_subscribers.page(org.id, after=0, limit=10)
        after = uow.newsletter_subscribers.page(org.id, after=kept.id, limit=10)

    assert count == 2
    assert [s.email for s in page] == ["a@x.example", "b@x.example"]
    assert page[0].company_name == "Pinnacle Lending"
    assert [s.contact_id for s in after] == [campaign_off.id]


def setup(session: Session, *, contacts: int, cap: int = 400) -> tuple[m.Organization, int]:
    org = make_org(session)
    maria = ensure_user(session, org.id, email="maria@lonestar.example", name="Maria")
    mailbox(session, org, maria, "maria@lonestar.example", cap)
    for n in range(contacts):
        make_contact(session, org, email=f"lo{n}@pinnacle.example", first_name=f"Dana{n}")
    session.commit()
    return org, maria


def scheduled_issue(nl: Newsletters, org_id: int, maria: int) -> int:
    actor = Actor(org_id=org_id, user_id=maria, role="rep")
    newsletter = nl.create(
        actor,
        org_id,
        NewsletterIn(name="Lender Update", sender_user_ids=[maria], slack_channel_id="C0NEWS"),
    )
    issue = nl.create_issue(
        actor,
        org_id,
        newsletter.id,
        IssueIn(title="December", subject_template="News", text_template="Hi {{ first_name }}"),
    )
    submitted = nl.submit(actor, org_id, newsletter.id, issue.id)
    nl.approve(actor, issue.id, fingerprint=submitted.card_fingerprint)
    return issue.id


def sends(session: Session, issue_id: int) -> list[m.EmailSend]:
    session.expire_all()
    return list(
        session.scalars(
            select(m.EmailSend)
            .where(m.EmailSend.newsletter_issue_id == issue_id)
            .order_by(m.EmailSend.not_before)
        )
    )


def test_an_issue_planned_again_from_the_start_adds_no_second_email(
    session: Session, uow: UnitOfWork, clock: FixedClock
) -> None:
    org, maria = setup(session, contacts=5)
    nl = service(uow, clock, batch=2)
    issue_id = scheduled_issue(nl, org.id, maria)

    assert nl.plan_next() is True
    first = sends(session, issue_id)
    # As if the planning's commits were lost after its rows were stored: from the start.
    row = session.get(m.NewsletterIssue, issue_id)
    assert row is not None
    row.planned_at, row.plan_cursor, row.planned_count, row.plan_lease_until = None, 0, 0, None
    session.commit()
    assert nl.plan_next() is True

    again = sends(session, issue_id)
    assert len(first) == len(again) == 5
    assert [s.id for s in again] == [s.id for s in first]
    assert [s.body_text for s in first] == [f"Hi Dana{n}" for n in range(5)]
    assert {(s.email_type, s.status, s.from_email) for s in first} == {
        ("newsletter", "queued", "maria@lonestar.example")
    }
    # 200 a day from a 400 cap: 432 s apart.
    times = [s.not_before for s in first if s.not_before is not None]
    gaps = {(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)}
    assert gaps == {432.0}
    session.expire_all()
    planned = session.get(m.NewsletterIssue, issue_id)
    assert planned is not None
    assert (planned.status, planned.planned_count) == ("scheduled", 5)


def test_no_connected_mailbox_refuses_the_submission_and_changes_nothing(
    session: Session, uow: UnitOfWork, clock: FixedClock
) -> None:
    org = make_org(session)
    maria = ensure_user(session, org.id, email="maria@lonestar.example", name="Maria")
    make_contact(session, org)
    session.commit()
    nl = service(uow, clock)
    newsletter = nl.create(
        None,
        org.id,
        NewsletterIn(name="Lender Update", sender_user_ids=[maria], slack_channel_id="C1"),
    )
    issue = nl.create_issue(
        None, org.id, newsletter.id, IssueIn(title="Dec", subject_template="S", text_template="T")
    )

    with pytest.raises(InvalidInput) as refused:
        nl.submit(None, org.id, newsletter.id, issue.id)

    assert refused.value.message == (
        "No sender of 'Lender Update' has a connected Gmail mailbox: a sender connects Gmail"
        " from Salesbot's App Home, or add a sender who has."
    )
    session.expire_all()
    assert session.get(m.NewsletterIssue, issue.id).status == "draft"  # type: ignore[union-attr]


def test_more_subscribers_than_a_month_of_sending_refuses_the_submission_with_the_figures(
    session: Session, uow: UnitOfWork, clock: FixedClock
) -> None:
    org, maria = setup(session, contacts=31, cap=2)
    nl = service(uow, clock)
    newsletter = nl.create(
        None,
        org.id,
        NewsletterIn(name="Lender Update", sender_user_ids=[maria], slack_channel_id="C1"),
    )
    issue = nl.create_issue(
        None, org.id, newsletter.id, IssueIn(title="Dec", subject_template="S", text_template="T")
    )

    with pytest.raises(InvalidInput) as refused:
        nl.submit(None, org.id, newsletter.id, issue.id)

    assert refused.value.message.startswith(
        "31 subscribers, but 1 mailbox can send 30 emails of 'Lender Update' in 30 days"
        " (1/day at 50% of their daily caps)"
    )
    session.expire_all()
    assert session.get(m.NewsletterIssue, issue.id).status == "draft"  # type: ignore[union-attr]
    assert session.scalar(select(func.count()).select_from(m.EmailSend)) == 0


def test_a_template_that_fails_for_a_real_subscriber_is_refused_naming_them(
    session: Session, uow: UnitOfWork, clock: FixedClock
) -> None:
    org, maria = setup(session, contacts=1)
    nl = service(uow, clock)
    newsletter = nl.create(
        None,
        org.id,
        NewsletterIn(name="Lender Update", sender_user_ids=[maria], slack_channel_id="C1"),
    )
    issue = nl.create_issue(
        None,
        org.id,
        newsletter.id,
        IssueIn(
            title="Dec",
            subject_template="S",
            text_template="Hi\n{{ 10 // (first_name | length - 5) }}",
        ),
    )

    with pytest.raises(InvalidInput) as refused:
        nl.submit(None, org.id, newsletter.id, issue.id)

    assert "text_template, line 2" in refused.value.message
    assert "lo0@pinnacle.example" in refused.value.message


def in_review_issue(
    nl: Newsletters, org_id: int, maria: int, *, name: str = "Lender Update"
) -> tuple[Actor, Newsletter, NewsletterIssue]:
    actor = Actor(org_id=org_id, user_id=maria, role="rep")
    newsletter = nl.create(
        actor,
        org_id,
        NewsletterIn(name=name, sender_user_ids=[maria], slack_channel_id="C0NEWS"),
    )
    issue = nl.create_issue(
        actor,
        org_id,
        newsletter.id,
        IssueIn(title="December", subject_template="News", text_template="Hi {{ first_name }}"),
    )
    return actor, newsletter, nl.submit(actor, org_id, newsletter.id, issue.id)


def test_an_approval_that_names_no_fingerprint_is_refused_as_stale(
    session: Session, uow: UnitOfWork, clock: FixedClock
) -> None:
    org, maria = setup(session, contacts=2)
    nl = service(uow, clock)
    actor, _, submitted = in_review_issue(nl, org.id, maria)

    # A forged click whose value leaves the fingerprint out binds to nothing shown.
    with pytest.raises(StaleCard):
        nl.approve(actor, submitted.id, fingerprint=None)

    session.expire_all()
    assert session.get(m.NewsletterIssue, submitted.id).status == "in_review"  # type: ignore[union-attr]


def test_a_planning_refused_for_a_disconnected_mailbox_cancels_the_issue_with_an_escaped_note(
    session: Session, uow: UnitOfWork, clock: FixedClock
) -> None:
    org, maria = setup(session, contacts=2)
    nl = service(uow, clock)
    actor, _, submitted = in_review_issue(nl, org.id, maria, name="<!channel> Update")
    nl.approve(actor, submitted.id, fingerprint=submitted.card_fingerprint)
    # The sender's mailbox is disconnected between the approval and the planning.
    account = session.scalars(select(m.GmailAccount).where(m.GmailAccount.org_id == org.id)).one()
    account.status = "disconnected"
    session.commit()

    assert nl.plan_next() is True

    session.expire_all()
    row = session.get(m.NewsletterIssue, submitted.id)
    assert row is not None
    assert row.card is not None
    assert row.status == "cancelled"
    assert row.error is not None
    assert "has a connected Gmail mailbox" in row.error
    # The name is the organization's text: on the card it is shown, never a mention.
    assert "<!channel>" not in row.card["note"]
    assert "&lt;!channel&gt; Update" in row.card["note"]


def test_the_deletes_leave_an_issue_that_became_scheduled_in_the_meantime(
    session: Session, uow: UnitOfWork, clock: FixedClock
) -> None:
    # The use cases check the status first; an approval committed between that check and
    # the DELETE must not lose a scheduled issue (or leave its planned rows orphaned).
    org, maria = setup(session, contacts=2)
    nl = service(uow, clock)
    issue_id = scheduled_issue(nl, org.id, maria)
    newsletter_id = session.get(m.NewsletterIssue, issue_id).newsletter_id  # type: ignore[union-attr]

    with uow:
        removed_issue = uow.newsletter_issues.remove(org.id, issue_id)
        removed_newsletter = uow.newsletters.remove(org.id, newsletter_id)
        uow.commit()

    assert (removed_issue, removed_newsletter) == (False, False)
    session.expire_all()
    assert session.get(m.NewsletterIssue, issue_id).status == "scheduled"  # type: ignore[union-attr]
    assert session.get(m.Newsletter, newsletter_id) is not None


def test_a_contact_name_with_line_breaks_is_planned_as_one_line_of_the_to_header(
    session: Session, uow: UnitOfWork, clock: FixedClock
) -> None:
    org, maria = setup(session, contacts=0)
    make_contact(
        session, org, email="dana@pinnacle.example", first_name="Dana\r\nBcc: x@evil.example"
    )
    session.commit()
    nl = service(uow, clock)
    issue_id = scheduled_issue(nl, org.id, maria)

    assert nl.plan_next() is True

    # Composing refuses a header with a line break ("… is not an email address"): the
    # name is made one line, so she gets the issue under a header that cannot inject.
    [row] = sends(session, issue_id)
    assert row.to_name is not None
    assert "\r" not in row.to_name
    assert "\n" not in row.to_name
    assert row.to_name.startswith("Dana Bcc: x@evil.example")


def test_a_subscriber_skipped_at_planning_takes_no_send_slot_from_the_next_batches(
    session: Session, uow: UnitOfWork, clock: FixedClock
) -> None:
    org, maria = setup(session, contacts=0)
    # The template divides by (the first name's length - 5): Carla's row cannot render.
    for name in ("Ann", "Bob", "Carla", "Dee", "Eve", "Flo"):
        make_contact(session, org, email=f"{name.lower()}@pinnacle.example", first_name=name)
    session.commit()
    nl = service(uow, clock, batch=2)
    actor = Actor(org_id=org.id, user_id=maria, role="rep")
    newsletter = nl.create(
        actor,
        org.id,
        NewsletterIn(name="Lender Update", sender_user_ids=[maria], slack_channel_id="C0NEWS"),
    )
    issue = nl.create_issue(
        actor,
        org.id,
        newsletter.id,
        IssueIn(
            title="December",
            subject_template="News",
            text_template="Hi {{ first_name }} {{ 10 // (first_name | length - 5) }}",
        ),
    )
    submitted = nl.submit(actor, org.id, newsletter.id, issue.id)
    nl.approve(actor, issue.id, fingerprint=submitted.card_fingerprint)

    assert nl.plan_next() is True

    rows = sends(session, issue.id)
    assert [r.to_email.split("@")[0] for r in rows] == ["ann", "bob", "dee", "eve", "flo"]
    times = [r.not_before for r in rows if r.not_before is not None]
    # Five rows, five distinct slots 432 s apart (200 a day): none given twice.
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    assert (len(times), gaps) == (5, [432.0] * 4)
    session.expire_all()
    planned = session.get(m.NewsletterIssue, issue.id)
    assert planned is not None
    assert planned.planned_count == 5
    assert planned.planned_finish == times[-1]
    assert planned.error is not None
    assert planned.error.startswith("1 subscribers skipped (the template failed): carla@")
