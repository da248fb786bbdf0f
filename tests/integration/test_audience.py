"""The audience builder's query, criterion by criterion, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from domain.audience import AudienceCriteria
from domain.catalog import Catalog
from domain.clock import FixedClock
from domain.deps import Deps
from storage import models as m
from storage.uow import UnitOfWork
from tests.support.builders import make_client, make_contact, make_order, make_org


@pytest.fixture
def org(session: Session) -> m.Organization:
    return make_org(session)


def emails(uow: UnitOfWork, org: m.Organization, clock: FixedClock, **criteria: object) -> set[str]:
    catalog = Catalog(Deps(uow=lambda: uow, clock=clock))
    size = catalog.calculate_audience_size(
        org.id, AudienceCriteria.model_validate(criteria), sample_size=100
    )
    assert size.count == len(size.sample)
    return {member.email for member in size.sample}


def test_opted_out_bounced_and_complained_contacts_never_appear(
    session: Session, org: m.Organization, uow: UnitOfWork, clock: FixedClock
) -> None:
    make_contact(session, org, email="ok@a.com")
    make_contact(session, org, email="out@a.com", opted_out_at=clock.now())
    make_contact(session, org, email="bounced@a.com", email_status="bounced")
    make_contact(session, org, email="complained@a.com", email_status="complained")
    session.commit()
    assert emails(uow, org, clock) == {"ok@a.com"}


def test_another_orgs_contacts_never_appear(
    session: Session, org: m.Organization, uow: UnitOfWork, clock: FixedClock
) -> None:
    make_contact(session, org, email="mine@a.com")
    make_contact(session, make_org(session), email="theirs@a.com")
    session.commit()
    assert emails(uow, org, clock) == {"mine@a.com"}


def test_role_codes_categories_and_exclusions_narrow_the_audience(
    session: Session, org: m.Organization, uow: UnitOfWork, clock: FixedClock
) -> None:
    make_contact(session, org, email="lo@a.com", role_code="LO", role_category="loan_origination")
    make_contact(session, org, email="proc@a.com", role_code="PROC", role_category="processing")
    make_contact(session, org, email="vm@a.com", role_code="VM", role_category="vendor_management")
    make_contact(session, org, email="none@a.com", role_code=None, role_category=None)
    session.commit()
    assert emails(uow, org, clock, target_role_codes=["LO", "PROC"]) == {"lo@a.com", "proc@a.com"}
    assert emails(uow, org, clock, target_role_categories=["vendor_management"]) == {"vm@a.com"}
    assert emails(uow, org, clock, exclude_role_codes=["LO"]) == {
        "proc@a.com",
        "vm@a.com",
        "none@a.com",
    }


def test_include_tags_need_any_and_exclude_tags_need_none(
    session: Session, org: m.Organization, uow: UnitOfWork, clock: FixedClock
) -> None:
    make_contact(session, org, email="a@a.com", tags=["lender", "texas"])
    make_contact(session, org, email="b@a.com", tags=["amc"])
    make_contact(session, org, email="c@a.com", tags=["lender", "do-not-call"])
    make_contact(session, org, email="d@a.com", tags=[])
    session.commit()
    assert emails(uow, org, clock, include_tags=["lender", "amc"]) == {
        "a@a.com",
        "b@a.com",
        "c@a.com",
    }
    assert emails(uow, org, clock, exclude_tags=["do-not-call"]) == {
        "a@a.com",
        "b@a.com",
        "d@a.com",
    }
    assert emails(uow, org, clock, include_tags=["lender"], exclude_tags=["do-not-call"]) == {
        "a@a.com"
    }


def test_min_lead_score_and_states(
    session: Session, org: m.Organization, uow: UnitOfWork, clock: FixedClock
) -> None:
    make_contact(session, org, email="hi@a.com", lead_score=80, state="TX")
    make_contact(session, org, email="lo@a.com", lead_score=20, state="TX")
    make_contact(session, org, email="unscored@a.com", lead_score=None, state="CA")
    session.commit()
    assert emails(uow, org, clock, min_lead_score=50) == {"hi@a.com"}
    assert emails(uow, org, clock, states=["ca"]) == {"unscored@a.com"}


def test_stale_clients_are_those_whose_last_order_is_older_than_n_days(
    session: Session, org: m.Organization, uow: UnitOfWork, clock: FixedClock
) -> None:
    stale = make_client(session, org)
    fresh = make_client(session, org)
    never = make_client(session, org)
    make_order(session, org, stale, ordered_at=clock.now() - timedelta(days=143))
    make_order(session, org, stale, ordered_at=clock.now() - timedelta(days=300))
    make_order(session, org, fresh, ordered_at=clock.now() - timedelta(days=10))
    make_contact(session, org, stale, email="stale@a.com")
    make_contact(session, org, fresh, email="fresh@a.com")
    make_contact(session, org, never, email="never@a.com")
    make_contact(session, org, None, email="noclient@a.com")
    session.commit()
    assert emails(uow, org, clock, stale_client_days=90) == {"stale@a.com", "never@a.com"}
    assert emails(uow, org, clock, stale_client_days=90, include_never_ordered=False) == {
        "stale@a.com"
    }
    assert emails(uow, org, clock, stale_client_days=200) == {"never@a.com"}


def test_min_days_since_contacted_keeps_never_contacted_and_long_ago(
    session: Session, org: m.Organization, uow: UnitOfWork, clock: FixedClock
) -> None:
    make_contact(session, org, email="never@a.com", last_contacted_at=None)
    make_contact(
        session, org, email="old@a.com", last_contacted_at=clock.now() - timedelta(days=60)
    )
    make_contact(
        session, org, email="recent@a.com", last_contacted_at=clock.now() - timedelta(days=3)
    )
    session.commit()
    assert emails(uow, org, clock, min_days_since_contacted=30) == {"never@a.com", "old@a.com"}


def test_the_sample_is_capped_and_the_count_is_not(
    session: Session, org: m.Organization, uow: UnitOfWork, clock: FixedClock
) -> None:
    for n in range(15):
        make_contact(session, org, email=f"c{n:02d}@a.com")
    session.commit()
    size = Catalog(Deps(uow=lambda: uow, clock=clock)).calculate_audience_size(
        org.id, AudienceCriteria()
    )
    assert size.count == 15
    assert len(size.sample) == 10
