"""The cadence tick on SQLite and PostgreSQL: due enrollments become their step's tasks
exactly once, the stop rules read the real tables (replies, opt-outs, bounces, orders,
fatigue from email_sends), out-of-office pauses end by themselves, the deliverability guard
pauses a job and queues its notice, and two ticks at once (PostgreSQL, real transactions)
never run a step twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from domain.deps import Deps
from domain.jobs import Cadence, JobParams, StepTemplate, TargetSelection
from domain.mail import OutgoingEmail, SendOutcome, SendStatus
from domain.outreach import Actor, Outreach
from integrations.holiday_calendar import public_holidays
from storage import models as m
from storage.db import make_session_factory
from storage.inbound import periodic_lock
from storage.uow import UnitOfWork
from tests.support.builders import make_client, make_contact, make_order, make_org

# Wednesday 2026-11-25 15:00 UTC: 09:00 in Texas, inside the window.
START = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def outreach(session_factory: Callable[[], Session], clock: FixedClock) -> Outreach:
    return Outreach.build(
        Deps(uow=lambda: UnitOfWork(session_factory), clock=clock),
        unsubscribe_url=lambda org, contact, *_: f"https://x.example/u/{org}/{contact}",
        holidays=lambda settings: public_holidays("US"),
    )


def params(days: tuple[int, ...] = (0, 4, 10, 21)) -> dict[str, Any]:
    return JobParams(
        target=TargetSelection(contact_ids=[1]),
        templates=[StepTemplate(subject=f"s{i}", body=f"b{i}") for i in range(len(days))],
        cadence=Cadence(days=list(days)),
    ).model_dump(mode="json")


def seed(session: Session, contacts: int = 3, **contact: Any) -> tuple[int, int, list[int]]:
    """An org with a running job whose contacts are due at START for step 1 (step 0 sent
    four days before)."""
    org = make_org(session)
    lender = make_client(session, org)
    job = m.Job(
        org_id=org.id,
        name="Win-back",
        status="running",
        params=params(),
        started_at=START - timedelta(days=5),
        planned_at=START - timedelta(days=5),
    )
    session.add(job)
    session.flush()
    ids = []
    for _ in range(contacts):
        person = make_contact(session, org, lender, state="TX", **contact)
        row = m.Enrollment(
            org_id=org.id,
            job_id=job.id,
            contact_id=person.id,
            step=1,
            status="active",
            next_due_at=START - timedelta(minutes=5),
            last_step_at=START - timedelta(days=5),
            created_at=START - timedelta(days=5),
        )
        session.add(row)
        session.flush()
        ids.append(row.id)
    session.commit()
    return org.id, job.id, ids


def tasks_of(session: Session, job_id: int) -> list[tuple[int | None, int, str]]:
    rows = session.execute(
        select(m.JobTask.contact_id, m.JobTask.step, m.JobTask.kind)
        .where(m.JobTask.job_id == job_id)
        .order_by(m.JobTask.id)
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


def enrollment(session: Session, enrollment_id: int) -> m.Enrollment:
    session.expire_all()
    row = session.get(m.Enrollment, enrollment_id)
    assert row is not None
    return row


def test_due_enrollments_become_their_steps_tasks_once(
    session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    clock._at = START
    with session_factory() as session:
        _, job_id, ids = seed(session)
    service = outreach(session_factory, clock)
    report = service.cadences.tick()
    assert (report.claimed, report.ran, report.tasks_created) == (3, 3, 3)
    with session_factory() as session:
        assert {(step, kind) for _, step, kind in tasks_of(session, job_id)} == {(1, "draft_email")}
        row = enrollment(session, ids[0])
        assert (row.status, row.next_due_at, row.step) == ("active", None, 1)
        assert row.time_zone == "America/Chicago (state)"
    # The step is in flight: a second tick finds nothing due.
    assert service.cadences.tick().claimed == 0


def test_the_stop_rules_read_replies_opt_outs_bounces_and_orders(
    session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    clock._at = START
    with session_factory() as session:
        _, _, ids = seed(session, contacts=5)
        people = [session.get(m.Enrollment, i).contact_id for i in ids]  # type: ignore[union-attr]
        session.get(m.Contact, people[0]).last_replied_at = START - timedelta(days=1)  # type: ignore[union-attr]
        session.get(m.Contact, people[1]).opted_out_at = START - timedelta(days=1)  # type: ignore[union-attr]
        session.get(m.Contact, people[2]).email_status = "bounced"  # type: ignore[union-attr]
        session.commit()
    report = outreach(session_factory, clock).cadences.tick()
    assert report.stopped == 3
    with session_factory() as session:
        reasons = {i: enrollment(session, i).stop_reason for i in ids}
    assert [reasons[i] for i in ids[:3]] == ["replied", "opted out", "bounced"]
    assert reasons[ids[3]] is None
    assert reasons[ids[4]] is None


def test_a_new_order_after_the_launch_stops_the_cadence_as_a_win(
    session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    clock._at = START
    with session_factory() as session:
        org_id, job_id, ids = seed(session, contacts=2)
        org = session.get(m.Organization, org_id)
        client_id = session.get(m.Contact, session.get(m.Enrollment, ids[0]).contact_id).client_id  # type: ignore[union-attr]
        client = session.get(m.Client, client_id)
        assert org is not None
        assert client is not None
        make_order(session, org, client, ordered_at=START - timedelta(days=2))
        session.commit()
    report = outreach(session_factory, clock).cadences.tick()
    assert (report.stopped, report.wins) == (2, 2)
    with session_factory() as session:
        assert enrollment(session, ids[0]).stop_reason == "re-engaged: new order"


def test_fatigue_counts_the_sends_of_every_campaign_and_defers(
    session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    clock._at = START
    with session_factory() as session:
        org_id, _, ids = seed(session, contacts=1)
        person = session.get(m.Contact, session.get(m.Enrollment, ids[0]).contact_id)  # type: ignore[union-attr]
        assert person is not None
        for n in range(3):
            session.add(
                m.EmailSend(
                    org_id=org_id,
                    message_id=f"<f{n}-{person.id}@x>",
                    to_email=person.email,
                    subject="other campaign",
                    status="sent",
                    sent_at=START - timedelta(days=n + 1),
                )
            )
        session.commit()
    report = outreach(session_factory, clock).cadences.tick()
    assert report.deferred == 1
    with session_factory() as session:
        row = enrollment(session, ids[0])
        assert row.status == "active"
        assert row.next_due_at is not None
        assert row.next_due_at > START
        assert (row.defer_reason or "").startswith("fatigue: 3 emails to")
        # The to_domain column was filled on insert, for the per-domain limit.
        assert session.scalar(select(func.count()).where(m.EmailSend.to_domain.is_not(None)))


def test_an_out_of_office_pause_ends_by_itself(
    session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    clock._at = START
    with session_factory() as session:
        _, _, ids = seed(session, contacts=1)
        row = session.get(m.Enrollment, ids[0])
        assert row is not None
        row.status, row.paused_until, row.next_due_at = "paused", START + timedelta(days=3), None
        row.stop_reason = "out of office"
        session.commit()
    service = outreach(session_factory, clock)
    assert service.cadences.tick().claimed == 0
    clock._at = START + timedelta(days=5)  # Monday 11-30
    report = service.cadences.tick()
    assert (report.resumed, report.ran) == (1, 1)
    with session_factory() as session:
        row = enrollment(session, ids[0])
        assert (row.status, row.paused_until, row.stop_reason) == ("active", None, None)


def test_the_guard_pauses_a_job_whose_bounces_spike_and_queues_its_notice(
    session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    clock._at = START
    with session_factory() as session:
        org_id, job_id, ids = seed(session, contacts=2)
        session.get(m.Organization, org_id).slack_team_id = "T0GUARD"  # type: ignore[union-attr]
        for n in range(20):
            session.add(
                m.EmailSend(
                    org_id=org_id,
                    job_id=job_id,
                    message_id=f"<g{n}-{job_id}@x>",
                    to_email=f"p{n}@bounce.example",
                    subject="s",
                    status="sent",
                    sent_at=START - timedelta(days=2),
                )
            )
        lender = make_client(session, session.get(m.Organization, org_id))  # type: ignore[arg-type]
        for _ in range(2):
            gone = make_contact(session, session.get(m.Organization, org_id), lender)  # type: ignore[arg-type]
            session.add(
                m.Enrollment(
                    org_id=org_id,
                    job_id=job_id,
                    contact_id=gone.id,
                    step=1,
                    status="stopped",
                    stop_reason="bounced",
                    updated_at=START - timedelta(days=1),
                )
            )
        session.commit()
    report = outreach(session_factory, clock).cadences.tick()
    assert report.jobs_paused == [job_id]
    assert report.paused == 2
    assert report.ran == 0
    with session_factory() as session:
        job = session.get(m.Job, job_id)
        assert job is not None
        assert job.status == "paused"
        assert "2 hard bounces in 20 sends (10.0%, limit 5.0%)" in (job.last_error or "")
        notices = session.scalars(select(m.SlackDeferredCall.body)).all()
        assert any("job_guard_paused" in body for body in notices)
        assert enrollment(session, ids[0]).stop_reason == "job paused"
    # Resuming the job makes the enrollments due again (the guard judges again).
    service = outreach(session_factory, clock)
    with session_factory() as session:
        session.get(m.Job, job_id).last_error = None  # type: ignore[union-attr]
        session.commit()
    service.jobs.set_job_status(org_id, job_id, _status("running"))
    with session_factory() as session:
        row = enrollment(session, ids[0])
        assert (row.status, row.next_due_at) == ("active", START)
    # The guard counts from the resumption: the bounces that paused it are not held
    # against it again, and the steps run.
    again = service.cadences.tick()
    assert (again.jobs_paused, again.ran) == ([], 2)


def _status(value: str) -> Any:
    from domain.jobs import JobStatus

    return JobStatus(value)


def test_two_ticks_at_once_never_run_a_step_twice(
    committed_engine: Engine, clock: FixedClock
) -> None:
    clock._at = START
    sessions = make_session_factory(committed_engine)
    with sessions() as session:
        org_id, job_id, _ = seed(session, contacts=120)
        # All 120 share one domain: let it take them all today.
        session.get(m.Organization, org_id).cadence_settings = {  # type: ignore[union-attr]
            "max_emails_per_domain_day": 1000
        }
        session.commit()
    services = [outreach(sessions, clock) for _ in range(3)]
    for service in services:
        service.cadences.chunk = 7
    barrier = threading.Barrier(len(services))
    claimed: list[int] = []

    def run(service: Outreach) -> None:
        barrier.wait()
        claimed.append(service.cadences.tick().claimed)

    threads = [threading.Thread(target=run, args=(s,)) for s in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    with sessions() as session:
        tasks = tasks_of(session, job_id)
    assert len(tasks) == 120
    assert len({contact for contact, _, _ in tasks}) == 120
    assert sum(claimed) == 120


def test_one_process_at_a_time_holds_the_periodic_lock(committed_engine: Engine) -> None:
    sessions = make_session_factory(committed_engine)
    with periodic_lock(sessions, "test:tick") as first:
        with periodic_lock(sessions, "test:tick") as second:
            assert (first, second) == (True, False)
    with periodic_lock(sessions, "test:tick") as again:
        assert again


def test_a_backlog_after_downtime_drains_in_due_order_over_several_ticks(
    session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    clock._at = START
    with session_factory() as session:
        _, job_id, ids = seed(session, contacts=10)
        for n, enrollment_id in enumerate(ids):
            row = session.get(m.Enrollment, enrollment_id)
            assert row is not None
            # Due over the last ten days, the newest first in id order.
            row.next_due_at = START - timedelta(days=n + 1)
        session.commit()
    service = outreach(session_factory, clock)
    service.cadences.max_per_tick = 4
    service.cadences.chunk = 3
    claimed = [service.cadences.tick().claimed for _ in range(4)]
    assert claimed == [4, 4, 2, 0]
    with session_factory() as session:
        order = session.scalars(
            select(m.JobTask.contact_id).where(m.JobTask.job_id == job_id).order_by(m.JobTask.id)
        ).all()
        contacts = [session.get(m.Enrollment, i).contact_id for i in ids]  # type: ignore[union-attr]
    # The longest overdue first.
    assert list(order) == list(reversed(contacts))


class RecordingMailer:
    """The Mailer port, keeping what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[OutgoingEmail] = []

    def send(self, email: OutgoingEmail) -> SendOutcome:
        self.sent.append(email)
        return SendOutcome(
            status=SendStatus.SENT,
            email_send_id=0,
            message_id=f"<{len(self.sent)}@salesbot.test>",
            gmail_thread_id="thread-1",
        )


def drafted_follow_up(
    session_factory: Callable[[], Session], clock: FixedClock
) -> tuple[Outreach, RecordingMailer, Actor, int, int, int]:
    """A follow-up card drafted by the tick for one contact, waiting for review; return
    the services, the mailer, an admin, the job, the enrollment and the card."""
    clock._at = START
    with session_factory() as session:
        org_id, job_id, ids = seed(session, contacts=1)
        rep = m.User(org_id=org_id, email="rep@x.example", name="Rep", role="admin")
        session.add(rep)
        session.flush()
        session.get(m.Job, job_id).owner_id = rep.id  # type: ignore[union-attr]
        session.commit()
        rep_id = rep.id
    mailer = RecordingMailer()
    service = Outreach.build(
        Deps(uow=lambda: UnitOfWork(session_factory), clock=clock),
        unsubscribe_url=lambda org, contact, *_: f"https://x.example/u/{org}/{contact}",
        mailer=mailer,
    )
    assert service.cadences.tick().ran == 1
    with UnitOfWork(session_factory) as uow:
        (claimed,) = uow.tasks.claim(limit=10, now=START, lease_until=START + timedelta(hours=1))
        uow.commit()
    service.drafting.run_draft_batch([claimed], org_id=org_id)
    with session_factory() as session:
        card = session.scalars(select(m.Card).where(m.Card.job_id == job_id)).one()
        assert card.type == "follow_up"
        card_id = card.id
    actor = Actor(org_id=org_id, user_id=rep_id, role="admin")
    return service, mailer, actor, job_id, ids[0], card_id


def test_a_follow_up_approved_after_the_contact_opted_out_is_withdrawn_not_sent(
    session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    service, mailer, actor, _, enrollment_id, card_id = drafted_follow_up(session_factory, clock)
    with session_factory() as session:
        # The contact opts out while the card waits for review.
        row = session.get(m.Enrollment, enrollment_id)
        assert row is not None
        row.status, row.stop_reason = "stopped", "opted out"
        session.commit()
    result = service.review.approve_card(actor, card_id, fingerprint=None)
    assert result.state.value == "withdrawn"
    assert "opted out" in (result.withdrawn_reason or "")
    assert mailer.sent == []


def test_a_follow_up_approved_while_its_job_is_paused_waits_blocked_with_the_reason(
    session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    service, mailer, actor, job_id, _, card_id = drafted_follow_up(session_factory, clock)
    service.jobs.set_job_status(actor.org_id, job_id, _status("paused"), by=actor)
    result = service.review.approve_card(actor, card_id, fingerprint=None)
    assert result.state.value == "blocked"
    assert (result.blocked_reason or "").startswith(f"Not sent: job #{job_id} is paused")
    assert mailer.sent == []
    # Resumed, a Retry sends it.
    service.jobs.set_job_status(actor.org_id, job_id, _status("running"), by=actor)
    assert service.review.approve_card(actor, card_id, fingerprint=None).state.value == "done"
    assert len(mailer.sent) == 1


def test_a_follow_up_approved_after_the_client_ordered_again_is_withdrawn_as_a_win(
    session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    service, mailer, actor, _, enrollment_id, card_id = drafted_follow_up(session_factory, clock)
    with session_factory() as session:
        contact = session.get(
            m.Contact,
            session.get(m.Enrollment, enrollment_id).contact_id,  # type: ignore[union-attr]
        )
        assert contact is not None
        assert contact.client_id is not None
        org = session.get(m.Organization, contact.org_id)
        client = session.get(m.Client, contact.client_id)
        assert org is not None
        assert client is not None
        make_order(session, org, client, ordered_at=START + timedelta(hours=1))
        session.commit()
    result = service.review.approve_card(actor, card_id, fingerprint=None)
    assert result.state.value == "withdrawn"
    assert "ordered again" in (result.withdrawn_reason or "")
    assert mailer.sent == []
    with session_factory() as session:
        assert enrollment(session, enrollment_id).stop_reason == "re-engaged: new order"


def test_a_lease_left_by_a_dead_process_is_taken_over_at_once(
    committed_engine: Engine, tmp_path: Any
) -> None:
    import os
    import socket
    import subprocess

    sessions = make_session_factory(committed_engine)
    if committed_engine.dialect.name == "postgresql":
        return  # advisory locks go with their session; the lease row is SQLite's
    dead = subprocess.Popen(["true"])
    dead.wait()
    with sessions() as session:
        session.add(
            m.PeriodicLease(
                name="test:dead",
                holder=f"{socket.gethostname()[:60]}:{dead.pid}:1",
                lease_until=datetime.now(UTC) + timedelta(minutes=5),
            )
        )
        session.add(
            m.PeriodicLease(
                name="test:alive",
                holder=f"{socket.gethostname()[:60]}:{os.getppid()}:1",
                lease_until=datetime.now(UTC) + timedelta(minutes=5),
            )
        )
        session.commit()
    with periodic_lock(sessions, "test:dead") as taken:
        assert taken
    with periodic_lock(sessions, "test:alive") as taken:
        assert not taken


def test_a_pause_that_ends_while_a_step_waits_on_its_card_does_not_run_the_step_again(
    session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    clock._at = START
    with session_factory() as session:
        _, job_id, ids = seed(session, contacts=1)
    service = outreach(session_factory, clock)
    assert service.cadences.tick().ran == 1  # step 2 in flight: its draft, then its card
    with session_factory() as session:
        row = session.get(m.Enrollment, ids[0])
        assert row is not None
        assert row.step_started_at is not None
        # An out-of-office arrives while the card waits; the pause ends three days later.
        row.status, row.paused_until = "paused", START + timedelta(days=3)
        row.stop_reason = "out of office"
        session.commit()
    clock._at = START + timedelta(days=5)
    report = service.cadences.tick()
    assert (report.resumed, report.claimed, report.tasks_created) == (1, 0, 0)
    with session_factory() as session:
        row = enrollment(session, ids[0])
        assert (row.status, row.next_due_at, row.step) == ("active", None, 1)
        assert len(tasks_of(session, job_id)) == 1
    # The card is sent later: the step ends and the next one counts from then.
    with UnitOfWork(session_factory) as uow:
        assert uow.cadence.step_done(ids[0], step=1, at=clock.now())
        assert not uow.cadence.step_done(ids[0], step=1, at=clock.now())
        uow.commit()
    with session_factory() as session:
        row = enrollment(session, ids[0])
        assert (row.step, row.next_due_at, row.step_started_at) == (2, clock.now(), None)


def test_one_organizations_unreadable_settings_do_not_hold_up_the_tick(
    session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    clock._at = START
    with session_factory() as session:
        broken_org, _, _ = seed(session, contacts=1)
        _, job_id, _ = seed(session, contacts=1)
        # Written by a host whose tz database knew a zone this one does not.
        org = session.get(m.Organization, broken_org)
        assert org is not None
        org.cadence_settings = {"timezone": "America/Ciudad_Juarez_2030"}
        session.commit()
    report = outreach(session_factory, clock).cadences.tick()
    assert (report.claimed, report.ran) == (2, 2)
    with session_factory() as session:
        assert len(tasks_of(session, job_id)) == 1


def test_fatigue_counts_drafts_waiting_for_review_and_the_ticks_own_steps_across_chunks(
    session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    clock._at = START
    with session_factory() as session:
        org_id, job_id, ids = seed(session, contacts=30)
        session.execute(
            m.Contact.__table__.update()
            .where(m.Contact.org_id == org_id)
            .values(email=func.lower(func.replace(m.Contact.email, "@example.com", "@big.example")))
        )
        first = session.get(m.Enrollment, ids[0])
        assert first is not None
        # A draft to the first contact waits for review (not sent yet).
        for _ in range(3):
            session.add(
                m.Card(
                    org_id=org_id,
                    job_id=job_id,
                    contact_id=first.contact_id,
                    type="follow_up",
                    state="in_review",
                    title="waiting",
                    action_payload={},
                )
            )
        org = session.get(m.Organization, org_id)
        assert org is not None
        org.cadence_settings = {"max_emails_per_domain_day": 10}
        session.commit()
    service = outreach(session_factory, clock)
    service.cadences.chunk = 4
    report = service.cadences.tick()
    # Three drafts already wait for big.example; the tick adds seven more across its
    # chunks, and the first contact, with three drafts waiting, is not sent a fourth.
    assert report.ran == 7
    with session_factory() as session:
        row = enrollment(session, ids[0])
        assert (row.defer_reason or "").startswith("fatigue: 3 emails to")


def test_the_guard_pauses_a_job_after_its_launch_blast_before_any_step_is_due(
    session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    clock._at = START
    with session_factory() as session:
        org_id, job_id, ids = seed(session, contacts=1)
        # Step 1 just went out to everyone: nothing is due for days.
        row = session.get(m.Enrollment, ids[0])
        assert row is not None
        row.next_due_at = START + timedelta(days=4)
        for n in range(20):
            session.add(
                m.EmailSend(
                    org_id=org_id,
                    job_id=job_id,
                    message_id=f"<blast{n}-{job_id}@x>",
                    to_email=f"p{n}@blast.example",
                    subject="s",
                    status="sent",
                    sent_at=START - timedelta(hours=2),
                )
            )
        org = session.get(m.Organization, org_id)
        assert org is not None
        lender = make_client(session, org)
        for _ in range(3):
            gone = make_contact(session, org, lender)
            session.add(
                m.Enrollment(
                    org_id=org_id,
                    job_id=job_id,
                    contact_id=gone.id,
                    step=1,
                    status="stopped",
                    stop_reason="bounced",
                    updated_at=START - timedelta(minutes=30),
                )
            )
        session.commit()
    report = outreach(session_factory, clock).cadences.tick()
    assert (report.claimed, report.jobs_paused) == (0, [job_id])
    with session_factory() as session:
        job = session.get(m.Job, job_id)
        assert job is not None
        assert job.status == "paused"


def test_an_auto_approved_job_sends_its_first_step_in_business_hours_through_the_tick(
    session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    saturday = datetime(2026, 11, 28, 18, 0, tzinfo=UTC)
    clock._at = saturday
    with session_factory() as session:
        org = make_org(session)
        lender = make_client(session, org)
        people = [make_contact(session, org, lender, state="TX").id for _ in range(2)]
        job = m.Job(
            org_id=org.id,
            name="Auto",
            status="pending",
            params=JobParams(
                target=TargetSelection(contact_ids=people),
                templates=[StepTemplate(subject="s", body="b")],
                cadence=Cadence(days=[0]),
                behaviour={"auto_approve": True},  # type: ignore[arg-type]
            ).model_dump(mode="json"),
        )
        session.add(job)
        session.commit()
        org_id, job_id = org.id, job.id
    service = outreach(session_factory, clock)
    assert service.jobs.plan_job(org_id, job_id) == 2
    with session_factory() as session:
        # Nothing drafted on a Saturday: the tick decides when step 1 goes out.
        assert tasks_of(session, job_id) == []
    report = service.cadences.tick()
    assert (report.claimed, report.deferred) == (2, 2)
    clock._at = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)  # Monday 09:00 in Texas
    assert service.cadences.tick().ran == 2
    with session_factory() as session:
        assert {(step, kind) for _, step, kind in tasks_of(session, job_id)} == {(0, "draft_email")}
