"""Lead scores and the stale-client ranking on SQLite and PostgreSQL: what the daily run
writes, the ranking of a hand-built world, rescoring on events and imports, the targeting
of `stale_top`, and the daily job under its lock."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from domain.audience import AudienceCriteria
from domain.catalog import Catalog
from domain.clock import FixedClock
from domain.deps import Deps
from domain.engagement import EngagementEvent, record_engagement
from domain.imports import ImportKind
from domain.jobs import TargetSelection
from domain.lead_scoring import LeadFacts, LeadScoringSettings, lead_score
from domain.targeting import Targeting
from jobs.scheduler import PeriodicJob, PeriodicScheduler
from jobs.targeting import TargetingJob
from storage import models as m
from storage.db import make_session_factory
from storage.importer import import_csv
from storage.uow import UnitOfWork
from tests.support.builders import make_client, make_contact, make_order, make_org

SessionFactory = Callable[[], Session]
# Lead scores that are the role's weight alone, so a ranking's expected order is plain.
ROLE_ONLY = {
    "lead_scoring": {
        "role_weight": 1,
        "volume_weight": 0,
        "engagement_weight": 0,
        "order_recency_weight": 0,
        "reply_recency_weight": 0,
    }
}


def targeting(session_factory: SessionFactory, clock: FixedClock) -> Targeting:
    return Targeting(Deps(uow=lambda: UnitOfWork(session_factory), clock=clock), page=3)


def orders(
    session: Session,
    org: m.Organization,
    client: m.Client,
    count: int,
    first: int,
    last: int,
    *,
    now: datetime,
) -> None:
    """`count` orders evenly from `first` to `last` days before `now`."""
    for n in range(count):
        days = first - (first - last) * n / max(1, count - 1)
        make_order(session, org, client, ordered_at=now - timedelta(days=days))


def engage(
    session_factory: SessionFactory,
    org_id: int,
    contact_id: int,
    event: EngagementEvent,
    at: datetime,
) -> None:
    with UnitOfWork(session_factory) as uow:
        record_engagement(
            uow.engagement, org_id=org_id, contact_id=contact_id, event=event, occurred_at=at
        )
        uow.commit()


def lead(session: Session, contact_id: int) -> tuple[int | None, datetime | None]:
    session.expire_all()
    row = session.get(m.Contact, contact_id)
    assert row is not None
    return row.lead_score, row.lead_score_at


@dataclass
class World:
    org: m.Organization
    other: m.Organization
    clients: dict[str, int]
    contacts: dict[str, int]


@pytest.fixture
def world(session: Session, session_factory: SessionFactory, clock: FixedClock) -> World:
    """Stale clients A (busy once), B and C (less), a fresh client, one that never ordered,
    one whose only contact bounced, and another organization's stale client."""
    now = clock.now()
    org = make_org(session, analytics_settings=ROLE_ONLY)
    other = make_org(session, analytics_settings=ROLE_ONLY)
    a = make_client(session, org, name="Pinnacle Lending")
    b = make_client(session, org, name="Lone Star Mortgage")
    c = make_client(session, org, name="Hill Country CU")
    fresh = make_client(session, org, name="Fresh Bank")
    never = make_client(session, org, name="Never Ordered LLC")
    gone = make_client(session, org, name="Gone Lending")
    theirs = make_client(session, other, name="Their Lender")
    orders(session, org, a, 24, 400, 100, now=now)
    orders(session, org, b, 6, 300, 120, now=now)
    orders(session, org, c, 3, 250, 200, now=now)
    orders(session, org, fresh, 10, 200, 5, now=now)
    orders(session, org, gone, 50, 500, 100, now=now)
    orders(session, other, theirs, 80, 500, 95, now=now)
    contacts = {
        # A's best reachable contact is Dana (AE, 70): Star (VM, 100) opted out.
        "dana": make_contact(session, org, a, email="dana@pinnacle.test", role_code="AE").id,
        "ray": make_contact(session, org, a, email="ray@pinnacle.test", role_code="PROC").id,
        "star": make_contact(
            session, org, a, email="star@pinnacle.test", role_code="VM", opted_out_at=now
        ).id,
        "kim": make_contact(session, org, b, email="kim@lonestar.test", role_code="VM").id,
        "lee": make_contact(session, org, c, email="lee@hill.test", role_code="LO").id,
        "paused": make_contact(
            session,
            org,
            c,
            email="paused@hill.test",
            role_code="BM",
            paused_until=now + timedelta(days=30),
        ).id,
        "new": make_contact(session, org, fresh, email="new@fresh.test", role_code="LO").id,
        "nobody": make_contact(session, org, never, email="nobody@never.test", role_code="LO").id,
        "bounced": make_contact(
            session, org, gone, email="x@gone.test", role_code="LO", email_status="bounced"
        ).id,
        "their": make_contact(session, other, theirs, email="t@their.test", role_code="LO").id,
    }
    session.commit()
    # Lee was warm and is cooling: a meeting request 60 days ago, a positive reply 50.
    engage(
        session_factory,
        org.id,
        contacts["lee"],
        EngagementEvent.MEETING_REQUEST,
        now - timedelta(days=60),
    )
    engage(
        session_factory,
        org.id,
        contacts["lee"],
        EngagementEvent.POSITIVE_REPLY,
        now - timedelta(days=50),
    )
    clients = {
        "a": a.id,
        "b": b.id,
        "c": c.id,
        "fresh": fresh.id,
        "never": never.id,
        "gone": gone.id,
        "theirs": theirs.id,
    }
    return World(org, other, clients, contacts)


def ranking_rows(session: Session, org_id: int) -> list[tuple[int, int, int | None]]:
    rows = session.execute(
        select(m.ClientRanking.rank, m.ClientRanking.client_id, m.ClientRanking.best_contact_id)
        .where(m.ClientRanking.org_id == org_id)
        .order_by(m.ClientRanking.rank)
    )
    return [tuple(row) for row in rows]  # type: ignore[misc]


def test_the_ranking_of_a_hand_built_world(
    world: World, session: Session, session_factory: SessionFactory, clock: FixedClock
) -> None:
    run = targeting(session_factory, clock).recompute(world.org.id)
    a, b, c = world.clients["a"], world.clients["b"], world.clients["c"]
    dana, kim, lee = world.contacts["dana"], world.contacts["kim"], world.contacts["lee"]
    # A: the top order rate (50 points) + Dana's 70 (21). C: a lower rate, Lee's 100 (30)
    # and Lee's engagement cooling (36 points fell: 7); B: a rate like C's, Kim's 100.
    assert ranking_rows(session, world.org.id) == [(1, a, dana), (2, c, lee), (3, b, kim)]
    assert run.clients_considered == 4  # A, B, C and Gone (nobody reachable)
    assert run.clients_ranked == 3
    assert run.contacts_scored == 9
    stored = {
        row.client_id: row
        for row in session.scalars(
            select(m.ClientRanking).where(m.ClientRanking.org_id == world.org.id)
        )
    }
    assert stored[a].days_since_order == 100
    assert stored[a].score == pytest.approx(71.0, abs=0.01)
    assert stored[a].reasons["lead_score"] == {"contact_id": dana, "score": 70, "points": 21.0}
    assert stored[c].engagement_decay == pytest.approx(
        (25 + 35 * 0.5 ** (10 / 30)) * (1 - 0.5 ** (50 / 30)), abs=0.05
    )
    assert stored[c].reasons["engagement_decay"]["days_since_positive"] == 50
    assert {row.computed_at for row in stored.values()} == {clock.now()}


def test_never_ordered_fresh_and_unreachable_clients_are_not_ranked(
    world: World, session: Session, session_factory: SessionFactory, clock: FixedClock
) -> None:
    targeting(session_factory, clock).recompute(world.org.id)
    ranked = {client for _, client, _ in ranking_rows(session, world.org.id)}
    assert ranked.isdisjoint(
        {world.clients["never"], world.clients["fresh"], world.clients["gone"]}
    )


def test_an_opted_out_or_paused_contact_is_never_the_one_to_call(
    world: World, session: Session, session_factory: SessionFactory, clock: FixedClock
) -> None:
    targeting(session_factory, clock).recompute(world.org.id)
    assert lead(session, world.contacts["star"])[0] == 100  # the highest at A, but opted out
    assert lead(session, world.contacts["paused"])[0] == 85
    best = {client: contact for _, client, contact in ranking_rows(session, world.org.id)}
    assert best[world.clients["a"]] == world.contacts["dana"]
    assert best[world.clients["c"]] == world.contacts["lee"]


def test_another_organization_is_neither_ranked_nor_scored(
    world: World, session: Session, session_factory: SessionFactory, clock: FixedClock
) -> None:
    targeting(session_factory, clock).recompute(world.org.id)
    assert ranking_rows(session, world.other.id) == []
    assert lead(session, world.contacts["their"]) == (50, None)  # the builder's score, untouched
    targeting(session_factory, clock).recompute(world.other.id)
    assert ranking_rows(session, world.other.id) == [
        (1, world.clients["theirs"], world.contacts["their"])
    ]
    assert len(ranking_rows(session, world.org.id)) == 3


def test_a_new_run_replaces_the_ranking_as_a_whole(
    world: World, session: Session, session_factory: SessionFactory, clock: FixedClock
) -> None:
    service = targeting(session_factory, clock)
    service.recompute(world.org.id)
    # A orders again: it is no longer stale, and the next run drops it.
    a = session.get(m.Client, world.clients["a"])
    assert a is not None
    make_order(session, world.org, a, ordered_at=clock.now())
    session.commit()
    clock._at = clock.now() + timedelta(days=1)
    service.recompute(world.org.id)
    assert [client for _, client, _ in ranking_rows(session, world.org.id)] == [
        world.clients["c"],
        world.clients["b"],
    ]
    ranking = service.ranking(world.org.id, limit=10)
    assert ranking.computed_at == clock.now()
    assert [(r.rank, r.client_name) for r in ranking.clients] == [
        (1, "Hill Country CU"),
        (2, "Lone Star Mortgage"),
    ]
    assert ranking.clients[0].best_contact is not None
    assert ranking.clients[0].best_contact.email == "lee@hill.test"


def test_the_daily_run_writes_each_contacts_score_from_its_facts(
    session: Session, session_factory: SessionFactory, clock: FixedClock
) -> None:
    now = clock.now()
    org = make_org(session)
    p = make_client(session, org)
    busiest = make_client(session, org)
    orders(session, org, p, 9, 90, 10, now=now)
    make_order(session, org, p, ordered_at=now - timedelta(days=400))  # outside the year
    orders(session, org, busiest, 99, 300, 1, now=now)
    x = make_contact(session, org, p, role_code="LO", lead_score=None)
    nobody = make_contact(session, org, None, role_code=None, role_category=None, lead_score=None)
    session.commit()
    engage(session_factory, org.id, x.id, EngagementEvent.POSITIVE_REPLY, now - timedelta(days=30))
    targeting(session_factory, clock).recompute(org.id)
    expected = lead_score(
        LeadFacts(
            contact_id=x.id,
            role_code="LO",
            role_category="loan_origination",
            client_orders=9,
            busiest_client_orders=99,
            engagement_score=25.0,
            engagement_at=now - timedelta(days=30),
            client_last_ordered_at=now - timedelta(days=10),
            last_replied_at=now - timedelta(days=30),
        ),
        LeadScoringSettings(),
        now,
    )
    # 30 (role) + 12.5 (9 of 99 orders) + 3.1 (25 halved) + 9.6 and 7.9 (recency)
    assert expected.score == 63
    assert lead(session, x.id) == (63, now)
    assert lead(session, nobody.id) == (9, now)  # an unknown role's 0.3 of 30 points
    # An hour later nothing changed: the rows are left alone (their time is the scoring
    # that set them); the run's time says when everyone was scored.
    clock._at = now + timedelta(hours=1)
    run = targeting(session_factory, clock).recompute(org.id)
    assert (run.computed_at, run.contacts_scored) == (now + timedelta(hours=1), 2)
    assert lead(session, x.id) == (63, now)


def test_an_engagement_event_rescores_its_contact_in_its_own_transaction(
    world: World, session: Session, session_factory: SessionFactory, clock: FixedClock
) -> None:
    org = world.org
    session.execute(
        update(m.Organization).where(m.Organization.id == org.id).values(analytics_settings={})
    )
    session.commit()
    service = targeting(session_factory, clock)
    service.recompute(org.id)
    kim = world.contacts["kim"]
    before, _ = lead(session, kim)
    assert before is not None
    audience = Catalog(Deps(uow=lambda: UnitOfWork(session_factory), clock=clock))
    criteria = AudienceCriteria(min_lead_score=before + 10)

    def reached() -> set[int]:
        size = audience.calculate_audience_size(org.id, criteria, sample_size=50)
        return {member.contact_id for member in size.sample}

    assert kim not in reached()
    later = clock.now() + timedelta(hours=2)
    engage(session_factory, org.id, kim, EngagementEvent.MEETING_REQUEST, later)
    after, at = lead(session, kim)
    # Before: VM 30 + 6 of the busiest 33 orders 13.8 + B's last order 120 days ago 6.3.
    # A meeting request adds 35 engagement (8.75 points) and a reply just now (10).
    assert (before, after, at) == (50, 69, later)
    assert kim in reached()


def test_an_order_import_rescores_the_contacts_of_the_clients_it_touched(
    world: World, session: Session, session_factory: SessionFactory, clock: FixedClock
) -> None:
    org = world.org
    session.execute(
        update(m.Organization).where(m.Organization.id == org.id).values(analytics_settings={})
    )
    session.commit()
    targeting(session_factory, clock).recompute(org.id)
    kim, lee = world.contacts["kim"], world.contacts["lee"]
    kim_before, lee_before = lead(session, kim), lead(session, lee)
    domain_b = session.get(m.Client, world.clients["b"])
    assert domain_b is not None
    csv = "order_number,client_domain,ordered_at\n" + "".join(
        f"IMP-{n},{domain_b.domain},{(clock.now() - timedelta(days=n)).date().isoformat()}\n"
        for n in range(1, 6)
    )
    later = clock.now() + timedelta(hours=3)
    report = import_csv(
        session_factory, org_id=org.id, kind=ImportKind.ORDERS, lines=io.StringIO(csv), now=later
    )
    assert report.inserted == 5
    kim_score, kim_at = lead(session, kim)
    assert kim_at == later
    assert kim_score is not None
    # 11 orders of the busiest 33 (17.6 points) and one a day and a half ago (9.9).
    assert (kim_before[0], kim_score) == (50, 58)
    assert lead(session, lee) == lee_before  # another client's contact: untouched


def test_an_organization_that_keeps_its_own_scores_is_ranked_on_them(
    world: World, session: Session, session_factory: SessionFactory, clock: FixedClock
) -> None:
    session.execute(
        update(m.Organization)
        .where(m.Organization.id == world.org.id)
        .values(analytics_settings={"lead_scoring": {"enabled": False}})
    )
    session.execute(
        update(m.Contact).where(m.Contact.id == world.contacts["ray"]).values(lead_score=99)
    )
    session.commit()
    run = targeting(session_factory, clock).recompute(world.org.id)
    assert run.contacts_scored == 0
    assert lead(session, world.contacts["ray"]) == (99, None)
    best = {client: contact for _, client, contact in ranking_rows(session, world.org.id)}
    assert best[world.clients["a"]] == world.contacts["ray"]


# --- `stale_top`: the job's audience ---------------------------------------------------------


def test_stale_top_targets_the_reachable_contacts_of_the_top_clients_best_first(
    world: World, session: Session, session_factory: SessionFactory, clock: FixedClock
) -> None:
    targeting(session_factory, clock).recompute(world.org.id)
    c = world.contacts
    with UnitOfWork(session_factory) as uow:
        top_two = TargetSelection(stale_top=2)
        streamed = [
            i
            for chunk in uow.audience.target_contact_ids(world.org.id, top_two, now=clock.now())
            for i in chunk
        ]
        count = uow.audience.target_count(world.org.id, top_two, now=clock.now())
        # A's Dana (best) then Ray; C's Lee (Paused waits until next month); not B.
        assert streamed == [c["dana"], c["ray"], c["lee"]]
        assert count == 3
        narrowed = TargetSelection(stale_top=2, filters=AudienceCriteria(exclude_role_codes=["AE"]))
        assert uow.audience.target_count(world.org.id, narrowed, now=clock.now()) == 2
        listed = TargetSelection(stale_top=3, contact_ids=[c["kim"], c["new"]])
        assert list(uow.audience.target_contact_ids(world.org.id, listed, now=clock.now())) == [
            [c["kim"]]
        ]


# --- the daily job ----------------------------------------------------------------------------


def test_the_daily_job_runs_an_organization_once_with_two_callers_at_once(
    committed_engine: Engine, clock: FixedClock
) -> None:
    sessions = make_session_factory(committed_engine)
    with sessions() as session:
        org = make_org(session)
        lender = make_client(session, org)
        orders(session, org, lender, 5, 400, 200, now=clock.now())
        make_contact(session, org, lender)
        session.commit()
        org_id = org.id
    jobs = [TargetingJob(targeting(sessions, clock), sessions) for _ in range(2)]
    barrier = threading.Barrier(len(jobs))
    done: list[int] = []

    def run(job: TargetingJob) -> None:
        barrier.wait()
        done.append(job.run_once())

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(done) == [0, 1]
    with sessions() as session:
        runs = session.scalars(select(m.TargetingRun)).all()
        assert [(r.org_id, r.computed_at, r.attempted_at) for r in runs] == [
            (org_id, clock.now(), clock.now())
        ]
        assert len(ranking_rows(session, org_id)) == 1
    # Nothing is due again until the ranking is a day old.
    assert jobs[0].run_once() == 0
    clock._at = clock.now() + timedelta(hours=23)
    assert jobs[0].run_once() == 0
    clock._at = clock.now() + timedelta(hours=2)
    assert jobs[1].run_once() == 1


def test_one_scheduled_run_brings_every_organization_up_to_date(
    committed_engine: Engine, clock: FixedClock
) -> None:
    sessions = make_session_factory(committed_engine)
    with sessions() as session:
        ids = [make_org(session).id for _ in range(3)]
        session.commit()
    job = TargetingJob(targeting(sessions, clock), sessions)
    scheduler = PeriodicScheduler()
    scheduler.add(PeriodicJob(TargetingJob.NAME, job.run_once, TargetingJob.EVERY, max_rounds=50))
    assert scheduler.run(TargetingJob.NAME) == 3
    assert scheduler.run(TargetingJob.NAME) == 0
    with sessions() as session:
        computed = {r.org_id: r.computed_at for r in session.scalars(select(m.TargetingRun))}
    assert computed == {org_id: clock.now() for org_id in ids}


def test_a_failed_run_is_recorded_and_tried_again_an_hour_later(
    committed_engine: Engine, clock: FixedClock
) -> None:
    sessions = make_session_factory(committed_engine)
    with sessions() as session:
        broken = make_org(session, analytics_settings={"targeting": {"stale_after_days": 0}})
        fine = make_org(session)
        session.commit()
        broken_id, fine_id = broken.id, fine.id
    service = targeting(sessions, clock)
    job = TargetingJob(service, sessions)
    assert [job.run_once(), job.run_once(), job.run_once()] == [1, 1, 0]
    ranking = service.ranking(broken_id, limit=5)
    assert ranking.computed_at is None
    assert ranking.last_error is not None
    assert "targeting.stale_after_days" in ranking.last_error
    assert service.ranking(fine_id, limit=5).computed_at == clock.now()
    clock._at = clock.now() + timedelta(minutes=61)
    with sessions() as session:
        session.execute(
            update(m.Organization)
            .where(m.Organization.id == broken_id)
            .values(analytics_settings={})
        )
        session.commit()
    assert job.run_once() == 1
    repaired = service.ranking(broken_id, limit=5)
    assert (repaired.computed_at, repaired.last_error) == (clock.now(), None)


def test_unreadable_settings_hold_back_the_scores_but_not_the_event(
    session: Session, session_factory: SessionFactory, clock: FixedClock
) -> None:
    org = make_org(session, analytics_settings={"lead_scoring": {"role_weight": 7}})
    contact = make_contact(session, org, None, lead_score=None)
    session.commit()
    engage(session_factory, org.id, contact.id, EngagementEvent.POSITIVE_REPLY, clock.now())
    session.expire_all()
    stored = session.get(m.Contact, contact.id)
    assert stored is not None
    assert (stored.engagement_score, stored.lead_score, stored.lead_score_at) == (25.0, None, None)
