"""Opting out through the storage unit of work, on SQLite and PostgreSQL: the contact's choice
wins over a later import and over a repeated opt-out."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from domain.imports import ImportKind
from domain.suppression import Suppression
from storage import models as m
from storage.importer import import_csv
from storage.uow import UnitOfWork
from tests.support.builders import make_contact, make_org

SessionFactory = Callable[[], Session]


@pytest.fixture
def org(session: Session) -> m.Organization:
    org = make_org(session, name="Lone Star Appraisals")
    session.commit()
    return org


@pytest.fixture
def suppression(session_factory: SessionFactory, clock: FixedClock) -> Suppression:
    return Suppression(lambda: UnitOfWork(session_factory), clock=clock)


def enroll(session: Session, org: m.Organization, contact: m.Contact, status: str) -> int:
    job = m.Job(org_id=org.id, name=f"job {contact.id} {status}", status="running", params={})
    session.add(job)
    session.flush()
    enrollment = m.Enrollment(org_id=org.id, job_id=job.id, contact_id=contact.id, status=status)
    session.add(enrollment)
    session.commit()
    return enrollment.id


def opt_out_history(session: Session, contact: m.Contact) -> list[dict[str, object]]:
    session.expire_all()
    rows = session.scalars(
        select(m.ContactEngagementEvent).where(
            m.ContactEngagementEvent.contact_id == contact.id,
            m.ContactEngagementEvent.event == "opted_out",
        )
    )
    return [dict(r.detail) for r in rows]


def opted_out_at(session: Session, contact: m.Contact) -> datetime | None:
    session.expire_all()
    return session.scalar(select(m.Contact.opted_out_at).where(m.Contact.id == contact.id))


def test_an_unsubscribe_is_not_undone_by_a_later_import_that_says_not_opted_out(
    session_factory: SessionFactory,
    session: Session,
    org: m.Organization,
    suppression: Suppression,
    clock: FixedClock,
) -> None:
    dana = make_contact(session, org, email="dana@pinnacle.example.com")
    session.commit()
    suppression.opt_out(org.id, dana.id, source="one_click")

    import_csv(
        session_factory,
        org_id=org.id,
        kind=ImportKind.CONTACTS,
        lines=io.StringIO("email,opted_out\ndana@pinnacle.example.com,no\n", newline=""),
        now=datetime(2026, 12, 1, tzinfo=UTC),
        dry_run=False,
    )

    assert opted_out_at(session, dana) == clock.now()
    assert opt_out_history(session, dana) == [{"source": "one_click"}]


def test_an_unsubscribe_after_an_import_opt_out_keeps_the_imported_date(
    session_factory: SessionFactory,
    session: Session,
    org: m.Organization,
    suppression: Suppression,
) -> None:
    import_csv(
        session_factory,
        org_id=org.id,
        kind=ImportKind.CONTACTS,
        lines=io.StringIO("email,opted_out\ndana@pinnacle.example.com,2026-06-12\n", newline=""),
        now=datetime(2026, 11, 1, tzinfo=UTC),
        dry_run=False,
    )
    dana = session.scalars(select(m.Contact).where(m.Contact.org_id == org.id)).one()

    result = suppression.opt_out(org.id, dana.id, source="one_click")

    assert result is not None
    assert result.already_opted_out is True
    assert opted_out_at(session, dana) == datetime(2026, 6, 12, tzinfo=UTC)
    assert opt_out_history(session, dana) == []


def test_a_repeated_opt_out_stops_only_the_enrollment_made_since_and_records_nothing_new(
    session: Session, org: m.Organization, suppression: Suppression, clock: FixedClock
) -> None:
    dana = make_contact(session, org, email="dana@pinnacle.example.com")
    session.commit()
    first = suppression.opt_out(org.id, dana.id, source="unsubscribe_page")
    enrollment_id = enroll(session, org, dana, "active")
    clock.advance(days=1)

    again = suppression.opt_out(org.id, dana.id, source="one_click")

    assert first is not None
    assert again is not None
    assert (first.already_opted_out, again.already_opted_out) == (False, True)
    assert again.stopped_enrollments == 1
    session.expire_all()
    enrollment = session.get(m.Enrollment, enrollment_id)
    assert enrollment is not None
    assert (enrollment.status, enrollment.stop_reason) == ("stopped", "opted out")
    assert opted_out_at(session, dana) == datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
    assert opt_out_history(session, dana) == [{"source": "unsubscribe_page"}]


def test_a_contact_of_another_organization_is_not_opted_out(
    session: Session, org: m.Organization, suppression: Suppression
) -> None:
    dana = make_contact(session, org, email="dana@pinnacle.example.com")
    session.commit()

    assert suppression.opt_out(org.id + 1000, dana.id, source="one_click") is None
    assert suppression.contact(org.id + 1000, dana.id) is None
    assert opted_out_at(session, dana) is None
