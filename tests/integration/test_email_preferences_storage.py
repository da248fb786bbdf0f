"""Email-type preferences in the database, on SQLite and PostgreSQL: changing them (with
the history and the cadences they stop), the audience, the send-time check, CSV import."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.audience import AudienceCriteria
from domain.catalog import Catalog
from domain.clock import FixedClock
from domain.deps import Deps
from domain.email_preferences import EmailType
from domain.imports import ImportKind
from domain.suppression import Suppression
from storage import models as m
from storage.importer import import_csv
from storage.outbox import OutboxRepo
from storage.uow import UnitOfWork
from tests.support.builders import make_contact, make_org

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


@pytest.fixture
def org(session: Session) -> m.Organization:
    return make_org(session)


def contact(session: Session, email: str) -> m.Contact:
    session.expire_all()
    return session.scalars(select(m.Contact).where(m.Contact.email == email)).one()


def enroll(session: Session, org: m.Organization, row: m.Contact, *, step: int) -> m.Enrollment:
    job = m.Job(org_id=org.id, name=f"Job {row.email} {step}", status="running")
    session.add(job)
    session.flush()
    enrollment = m.Enrollment(
        org_id=org.id, job_id=job.id, contact_id=row.id, status="active", step=step
    )
    session.add(enrollment)
    session.flush()
    return enrollment


def history(session: Session, row: m.Contact) -> list[dict[str, object]]:
    session.expire_all()
    return [
        dict(r.detail)
        for r in session.scalars(
            select(m.ContactEngagementEvent)
            .where(m.ContactEngagementEvent.contact_id == row.id)
            .order_by(m.ContactEngagementEvent.id)
        )
    ]


def test_turning_follow_ups_off_is_stored_recorded_and_stops_cadences_past_their_first_email(
    session: Session, org: m.Organization, uow: UnitOfWork, clock: FixedClock
) -> None:
    dana = make_contact(session, org, email="dana@a.com")
    fresh = enroll(session, org, dana, step=0)
    under_way = enroll(session, org, dana, step=2)
    session.commit()
    suppression = Suppression(lambda: uow, clock=clock)

    change = suppression.change_email_preferences(
        org.id, dana.id, {EmailType.FOLLOW_UP: False}, source="unsubscribe_page"
    )

    assert change is not None
    assert change.changed == {EmailType.FOLLOW_UP: False}
    assert change.stopped_enrollments == 1
    assert contact(session, "dana@a.com").email_preferences == {
        "newsletter": True,
        "campaign": True,
        "follow_up": False,
        "announcement": True,
    }
    session.expire_all()
    assert (session.get(m.Enrollment, fresh.id) or fresh).status == "active"
    stopped = session.get(m.Enrollment, under_way.id)
    assert stopped is not None
    assert (stopped.status, stopped.stop_reason) == ("stopped", "unsubscribed from follow-ups")
    assert history(session, dana) == [
        {"email_type": "follow_up", "subscribed": False, "source": "unsubscribe_page"}
    ]
    # The same change again records nothing more.
    again = suppression.change_email_preferences(
        org.id, dana.id, {EmailType.FOLLOW_UP: False}, source="one_click"
    )
    assert again is not None
    assert again.changed == {}
    assert len(history(session, dana)) == 1
    prefs = suppression.email_preferences(org.id, dana.id)
    assert prefs is not None
    assert not prefs.allows(EmailType.FOLLOW_UP)
    assert suppression.email_preferences(org.id, dana.id + 999) is None


def test_turning_campaign_emails_off_stops_every_running_cadence(
    session: Session, org: m.Organization, uow: UnitOfWork, clock: FixedClock
) -> None:
    dana = make_contact(session, org, email="dana@a.com")
    ids = [enroll(session, org, dana, step=s).id for s in (0, 1)]
    session.commit()

    change = Suppression(lambda: uow, clock=clock).change_email_preferences(
        org.id, dana.id, {EmailType.CAMPAIGN: False}, source="one_click"
    )

    assert change is not None
    assert change.stopped_enrollments == 2
    session.expire_all()
    rows = [session.get(m.Enrollment, i) for i in ids]
    assert [(r.status, r.stop_reason) for r in rows if r] == [
        ("stopped", "unsubscribed from campaign emails"),
        ("stopped", "unsubscribed from campaign emails"),
    ]
    assert contact(session, "dana@a.com").opted_out_at is None


def test_the_audience_leaves_out_who_turned_campaign_emails_off(
    session: Session, org: m.Organization, uow: UnitOfWork, clock: FixedClock
) -> None:
    make_contact(session, org, email="ok@a.com")
    make_contact(session, org, email="news-off@a.com", email_preferences={"newsletter": False})
    make_contact(session, org, email="on@a.com", email_preferences={"campaign": True})
    make_contact(session, org, email="off@a.com", email_preferences={"campaign": False})
    make_contact(session, org, email="follow-off@a.com", email_preferences={"follow_up": False})
    session.commit()
    catalog = Catalog(Deps(uow=lambda: uow, clock=clock))

    size = catalog.calculate_audience_size(org.id, AudienceCriteria(), sample_size=100)

    assert sorted(member.email for member in size.sample) == [
        "follow-off@a.com",
        "news-off@a.com",
        "ok@a.com",
        "on@a.com",
    ]
    assert size.count == 4


def test_the_send_time_check_refuses_a_type_the_contact_turned_off(
    session: Session, org: m.Organization, clock: FixedClock
) -> None:
    make_contact(session, org, email="dana@a.com", email_preferences={"follow_up": False})
    make_contact(session, org, email="ray@a.com", email_preferences={"campaign": False})
    session.flush()
    outbox = OutboxRepo(session)

    assert outbox.recipient_block(org.id, "dana@a.com", email_type=EmailType.FOLLOW_UP) == (
        "dana@a.com unsubscribed from follow-up emails; nothing was sent."
    )
    assert outbox.recipient_block(org.id, "dana@a.com", email_type=EmailType.CAMPAIGN) is None
    assert outbox.recipient_block(org.id, "dana@a.com", email_type=EmailType.TRANSACTIONAL) is None
    assert outbox.recipient_block(org.id, "dana@a.com") is None
    # Campaign emails off: their follow-ups are off too.
    assert "unsubscribed from follow-up emails" in (
        outbox.recipient_block(org.id, "ray@a.com", email_type=EmailType.FOLLOW_UP) or ""
    )


def run_import(
    session_factory: Callable[[], Session], org: m.Organization, text: str
) -> list[tuple[int, str]]:
    report = import_csv(
        session_factory,
        org_id=org.id,
        kind=ImportKind.CONTACTS,
        lines=io.StringIO(text, newline=""),
        now=NOW,
        dry_run=False,
    )
    return [(e.row, e.reason) for e in report.sorted_errors()]


def test_csv_import_turns_types_off_and_never_back_on(
    session: Session, session_factory: Callable[[], Session], org: m.Organization
) -> None:
    make_contact(session, org, email="known@a.com", email_preferences={"campaign": False})
    session.commit()

    errors = run_import(
        session_factory,
        org,
        "email,email_preferences\n"
        "new@a.com,newsletter:off;campaign:on\n"
        "known@a.com,campaign:on; follow_up:no\n"
        "plain@a.com,\n"
        "bad@a.com,promos:off\n"
        "worse@a.com,transactional:off\n",
    )

    assert errors == [
        (
            5,
            "bad email_preferences 'promos:off': unknown email type 'promos': use one of"
            " newsletter, campaign, follow_up, announcement, transactional (write type:on or"
            " type:off separated by ; with types among newsletter, campaign, follow_up,"
            " announcement, transactional)",
        ),
        (
            6,
            "bad email_preferences 'transactional:off': transactional cannot be turned off"
            " (write type:on or type:off separated by ; with types among newsletter, campaign,"
            " follow_up, announcement, transactional)",
        ),
    ]
    assert contact(session, "new@a.com").email_preferences == {"newsletter": False}
    assert contact(session, "known@a.com").email_preferences == {
        "campaign": False,
        "follow_up": False,
    }
    assert contact(session, "plain@a.com").email_preferences == {}
    assert session.scalars(select(m.Contact).where(m.Contact.email == "bad@a.com")).all() == []
    # The same file again changes nothing: no row is rewritten.
    stamp = contact(session, "known@a.com").updated_at
    run_import(session_factory, org, "email,email_preferences\nknown@a.com,follow_up:off\n")
    assert contact(session, "known@a.com").updated_at == stamp
