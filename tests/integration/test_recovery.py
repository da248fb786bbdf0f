"""What a dead process leaves is carried on: task leases, fair claims, the recovery sweep.

On SQLite and PostgreSQL, with the real runtime and the Gmail stand-in; the clock is
moved past the leases instead of waiting for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from domain import faults
from domain.clock import FixedClock
from domain.jobs import TaskKind
from domain.mail import OutgoingEmail
from domain.outreach import Actor
from storage import models as m
from storage.uow import UnitOfWork
from tests.support.builders import make_org
from tests.support.gmail_app import DANA, GmailWorld, connected_gmail_world
from tests.support.google import GoogleServer

LEASE = timedelta(minutes=5)


@pytest.fixture
def world(
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: FixedClock,
    google: GoogleServer,
) -> Iterator[GmailWorld]:
    with connected_gmail_world(engine, session_factory, clock, google) as built:
        yield built


def _job(world: GmailWorld, clock: FixedClock) -> int:
    with world.session_factory() as session:
        job = m.Job(
            org_id=world.org_id,
            owner_id=world.rep_id,
            name="Win-back",
            status="running",
            planned_at=clock.now(),
        )
        session.add(job)
        session.commit()
        return job.id


def _card(world: GmailWorld, clock: FixedClock, job_id: int, *, state: str) -> int:
    """A card a process left in `state` when it died, just now by the clock."""
    with world.session_factory() as session:
        card = m.Card(
            org_id=world.org_id,
            job_id=job_id,
            contact_id=world.contact_ids[DANA],
            type="send_email",
            state=state,
            title="Email Dana",
            action_payload={"to": DANA, "subject": "Turn times", "body": "Hi Dana"},
            approved_by=world.rep_id,
            approved_at=clock.now(),
            updated_at=clock.now(),
        )
        session.add(card)
        session.commit()
        return card.id


def _card_state(world: GmailWorld, card_id: int) -> str:
    with world.session_factory() as session:
        return str(session.scalar(select(m.Card.state).where(m.Card.id == card_id)))


def test_a_card_a_dead_process_left_approved_is_sent_once_after_the_lease(
    world: GmailWorld, clock: FixedClock
) -> None:
    card_id = _card(world, clock, _job(world, clock), state="approved")
    recovery = world.runtime.outreach.recovery

    assert recovery.recover_cards() == 0  # its executor may still be alive
    clock.advance(seconds=LEASE.total_seconds() + 1)
    assert recovery.recover_cards() == 1
    assert recovery.recover_cards() == 0

    assert len(world.sent()) == 1
    assert _card_state(world, card_id) == "done"


def test_a_card_left_executing_before_the_outbox_goes_back_and_is_sent_once(
    world: GmailWorld, clock: FixedClock
) -> None:
    card_id = _card(world, clock, _job(world, clock), state="executing")
    clock.advance(seconds=LEASE.total_seconds() + 1)

    assert world.runtime.outreach.recovery.recover_cards() == 1
    assert world.runtime.outreach.recovery.recover_cards() == 0

    assert len(world.sent()) == 1
    assert _card_state(world, card_id) == "done"


def test_a_card_left_executing_after_its_email_went_is_told_without_a_second_send(
    world: GmailWorld, clock: FixedClock
) -> None:
    job_id = _job(world, clock)
    card_id = _card(world, clock, job_id, state="executing")
    # The email went and the outbox recorded it; the process died before the card heard.
    world.gmail.mailer.send(
        OutgoingEmail(
            org_id=world.org_id,
            to_email=DANA,
            subject="Turn times",
            body_text="Hi Dana",
            sender_user_id=world.rep_id,
            contact_id=world.contact_ids[DANA],
            card_id=card_id,
            job_id=job_id,
        )
    )
    assert _card_state(world, card_id) == "executing"
    clock.advance(seconds=LEASE.total_seconds() + 1)

    assert world.runtime.outreach.recovery.recover_cards() == 1

    assert len(world.sent()) == 1
    assert _card_state(world, card_id) == "done"
    with world.session_factory() as session:
        job = session.get(m.Job, job_id)
        assert job is not None
        assert (job.emails_sent, job.cards_executed) == (1, 1)


def test_a_card_whose_email_waits_in_the_outbox_is_left_to_the_outbox(
    world: GmailWorld, clock: FixedClock
) -> None:
    world.set_throttle(cap=1, interval=0)
    world.send()  # the day's only send
    job_id = _job(world, clock)
    card_id = _card(world, clock, job_id, state="approved")
    clock.advance(seconds=LEASE.total_seconds() + 1)
    assert world.runtime.outreach.recovery.recover_cards() == 1  # executed: queued behind the cap
    clock.advance(seconds=LEASE.total_seconds() + 1)

    assert world.runtime.outreach.recovery.recover_cards() == 0
    assert _card_state(world, card_id) == "executing"
    assert len(world.sent()) == 1


# --- tasks ---------------------------------------------------------------------------------


def _tasks(uow: UnitOfWork, org_id: int, count: int, *, kind: TaskKind) -> int:
    with uow:
        job = m.Job(org_id=org_id, name="Win-back", status="running")
        uow.session.add(job)
        uow.session.flush()
        uow.tasks.add_many(org_id, job.id, [{"kind": kind.value} for _ in range(count)])
        uow.commit()
        return job.id


def test_a_task_whose_worker_died_is_claimed_again_after_its_lease_and_only_by_the_new_claim(
    uow: UnitOfWork, session: Session, clock: FixedClock
) -> None:
    org = make_org(session)
    session.commit()
    _tasks(uow, org.id, 1, kind=TaskKind.DRAFT_EMAIL)
    now = clock.now()
    with uow:
        (first,) = uow.tasks.claim(limit=10, now=now, lease_until=now + LEASE)
        uow.commit()
    with uow:
        assert uow.tasks.claim(limit=10, now=now + LEASE / 2, lease_until=now + LEASE) == []
        (again,) = uow.tasks.claim(
            limit=10, now=now + LEASE + timedelta(seconds=1), lease_until=now + 2 * LEASE
        )
        uow.commit()
    with uow:
        # The first claim outlived its lease: its work must not be written.
        assert (again.id, again.retry_count) == (first.id, 1)
        assert uow.tasks.lock_claimed([first]) == set()
        assert uow.tasks.lock_claimed([again]) == {again.id}


def test_claims_take_turns_between_organizations_so_a_long_queue_starves_nobody(
    uow: UnitOfWork, session: Session, clock: FixedClock
) -> None:
    busy, small = make_org(session), make_org(session)
    session.commit()
    _tasks(uow, busy.id, 300, kind=TaskKind.DRAFT_EMAIL)
    _tasks(uow, small.id, 3, kind=TaskKind.DRAFT_EMAIL)

    with uow:
        claimed = uow.tasks.claim(limit=10, now=clock.now())
        uow.commit()

    by_org = sorted(t.org_id for t in claimed)
    assert (by_org.count(busy.id), by_org.count(small.id)) == (7, 3)


def test_an_organization_with_tasks_in_hand_lets_another_go_first(
    uow: UnitOfWork, session: Session, clock: FixedClock
) -> None:
    slow, other = make_org(session), make_org(session)
    session.commit()
    _tasks(uow, slow.id, 10, kind=TaskKind.DRAFT_EMAIL)
    with uow:
        # A slow template keeps these running in another thread.
        in_hand = uow.tasks.claim(limit=2, now=clock.now())
        uow.commit()
    _tasks(uow, other.id, 10, kind=TaskKind.DRAFT_EMAIL)

    with uow:
        (next_task,) = uow.tasks.claim(limit=1, now=clock.now())
        uow.commit()

    assert [t.org_id for t in in_hand] == [slow.id, slow.id]
    assert next_task.org_id == other.id


def test_a_stopping_worker_gives_back_the_tasks_it_never_started(
    world: GmailWorld, uow: UnitOfWork, clock: FixedClock
) -> None:
    _tasks(uow, world.org_id, 3, kind=TaskKind.UPDATE_PROFILE)
    worker = world.runtime.worker
    with uow:
        claimed = uow.tasks.claim(limit=3, now=clock.now())
        uow.commit()

    worker._give_back(claimed[1:])

    with uow:
        again = uow.tasks.claim(limit=3, now=clock.now())
    assert [t.id for t in again] == [t.id for t in claimed[1:]]
    assert [t.retry_count for t in again] == [0, 0]


# --- fault points ----------------------------------------------------------------------------


def test_fault_points_name_known_points_and_a_count() -> None:
    assert faults.parse(" plan.chunk , approve.committed@4 ") == {
        "plan.chunk": 1,
        "approve.committed": 4,
    }
    with pytest.raises(ValueError, match="unknown fault point 'plan.chunks'"):
        faults.parse("plan.chunks")
    with pytest.raises(ValueError, match="the count after @ must be 1 or more"):
        faults.parse("plan.chunk@0")


def test_a_job_whose_first_drafts_are_done_stays_running_until_its_planning_finished(
    world: GmailWorld, clock: FixedClock
) -> None:
    with world.session_factory() as session:
        # A planner committed a first chunk, whose drafts are all done, then died.
        job = m.Job(
            org_id=world.org_id,
            name="Win-back",
            status="running",
            params={
                "target": {"contact_ids": [world.contact_ids[DANA]]},
                "templates": [{"subject": "Turn times", "body": "Hi {{ first_name }}"}],
            },
        )
        session.add(job)
        session.commit()
        job_id = job.id
    outreach = world.runtime.outreach

    outreach.jobs.finish_job_if_done(world.org_id, job_id)
    with world.session_factory() as session:
        assert session.scalar(select(m.Job.status).where(m.Job.id == job_id)) == "running"
    assert outreach.recovery.plan_unplanned() == 1  # the rest of the audience: Dana
    assert world.runtime.worker.run_until_idle() == 1
    with world.session_factory() as session:
        # Planned and drafted: still running while Dana's card waits for review.
        assert session.scalar(select(m.Job.status).where(m.Job.id == job_id)) == "running"
        card_id = session.scalar(select(m.Card.id).where(m.Card.job_id == job_id))
    assert card_id is not None
    outreach.review.reject_card(
        Actor(org_id=world.org_id, user_id=world.rep_id, role="admin"), card_id, reason=None
    )

    with world.session_factory() as session:
        assert session.scalar(select(m.Job.status).where(m.Job.id == job_id)) == "succeeded"
