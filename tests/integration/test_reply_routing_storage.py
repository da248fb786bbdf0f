"""The replies inbox job and the triage channel stored, on SQLite and PostgreSQL: one inbox
per organization whatever two workers race, the caller's unit of work intact when it lost
the race, and the inbox left alone by the planner, the recovery sweep and job lists."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from domain.errors import NotFound
from domain.jobs import INBOX_JOB_NAME, JobKind, JobStatus
from storage import models as m
from storage.db import make_session_factory
from storage.uow import UnitOfWork
from tests.support.builders import make_org

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def _inboxes(session: Session) -> list[m.Job]:
    return list(session.scalars(select(m.Job).where(m.Job.kind == JobKind.INBOX.value)))


def test_the_inbox_job_is_made_once_running_and_planned_then_found_again(
    session_factory: Callable[[], Session],
) -> None:
    with session_factory() as session:
        org, other = make_org(session, slug="lonestar"), make_org(session, slug="rival")
        session.commit()
        org_id, other_id = org.id, other.id
    uow = UnitOfWork(session_factory)
    with uow:
        first = uow.jobs.inbox_job_id(org_id, now=NOW)
        again = uow.jobs.inbox_job_id(org_id, now=NOW)
        theirs = uow.jobs.inbox_job_id(other_id, now=NOW)
        uow.commit()
    with uow:
        job = uow.jobs.get(org_id, first)
        unplanned = uow.jobs.unplanned(now=NOW, limit=10)
        idle = uow.jobs.idle_running(after_id=0, limit=10)
        campaigns = uow.jobs.list(org_id, kind=JobKind.CAMPAIGN)
        inboxes = uow.jobs.list(org_id, kind=JobKind.INBOX)

    assert again == first != theirs
    assert (job.kind, job.name, job.status, job.is_inbox) == (
        JobKind.INBOX,
        INBOX_JOB_NAME,
        JobStatus.RUNNING,
        True,
    )
    assert job.review_channel_id is None
    # Nothing to plan and never finished: the planner and the sweep leave it alone.
    assert unplanned == []
    assert idle == []
    assert campaigns == []
    assert [j.id for j in inboxes] == [first]


def test_a_second_inbox_for_an_organization_is_refused_by_the_database(
    session_factory: Callable[[], Session],
) -> None:
    with session_factory() as session:
        org = make_org(session)
        session.add(m.Job(org_id=org.id, kind="inbox", name="Replies", status="running"))
        session.commit()
        session.add(m.Job(org_id=org.id, kind="inbox", name="Replies", status="running"))
        with pytest.raises(IntegrityError):
            session.flush()


def test_two_first_uses_at_once_make_one_inbox_and_the_loser_s_work_is_kept(
    committed_engine: Engine,
) -> None:
    sessions = make_session_factory(committed_engine)
    with sessions() as session:
        org_id = make_org(session, slug="lonestar").id
        session.commit()
    first_inserted = threading.Event()
    release_first = threading.Event()
    ids: dict[str, int] = {}
    errors: list[BaseException] = []

    def first() -> None:
        try:
            uow = UnitOfWork(sessions)
            with uow:
                ids["first"] = uow.jobs.inbox_job_id(org_id, now=NOW)
                first_inserted.set()
                # Hold the insert uncommitted while the second one tries its own.
                release_first.wait(timeout=30)
                uow.commit()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
            first_inserted.set()

    def second() -> None:
        try:
            uow = UnitOfWork(sessions)
            with uow:
                # The caller's own work before it asks for the inbox: kept whatever happens.
                uow.session.add(m.Organization(slug="kept", name="Kept by the loser"))
                uow.session.flush()
                ids["second"] = uow.jobs.inbox_job_id(org_id, now=NOW)
                uow.commit()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    one = threading.Thread(target=first)
    one.start()
    assert first_inserted.wait(timeout=30)
    two = threading.Thread(target=second)
    two.start()
    _wait_until_blocked(committed_engine)
    release_first.set()
    one.join(timeout=60)
    two.join(timeout=60)

    assert errors == []
    assert ids["first"] == ids["second"]
    with sessions() as session:
        assert [j.id for j in _inboxes(session)] == [ids["first"]]
        kept = session.scalar(
            select(func.count()).select_from(m.Organization).where(m.Organization.slug == "kept")
        )
        assert kept == 1


def _wait_until_blocked(engine: Engine) -> None:
    """Wait until the second transaction waits on the first one's insert (PostgreSQL: a
    lock not granted; SQLite: its BEGIN IMMEDIATE waits for the writer lock, which cannot
    be seen from outside, so give it a moment: either way it must find the first's row)."""
    if engine.dialect.name != "postgresql":
        time.sleep(0.3)
        return
    deadline = time.monotonic() + 30
    with engine.connect() as connection:
        while time.monotonic() < deadline:
            waiting = connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            connection.rollback()
            if waiting:
                return
            time.sleep(0.02)
    raise TimeoutError("the second insert never waited for the first")


def test_the_triage_channel_is_stored_per_organization_and_cleared(
    session_factory: Callable[[], Session],
) -> None:
    with session_factory() as session:
        org, other = make_org(session, slug="lonestar"), make_org(session, slug="rival")
        session.commit()
        org_id, other_id = org.id, other.id
    uow = UnitOfWork(session_factory)
    with uow:
        assert uow.orgs.triage_channel(org_id) is None
        uow.orgs.set_triage_channel(org_id, "C0TRIAGE1")
        uow.commit()
    with uow:
        assert (uow.orgs.triage_channel(org_id), uow.orgs.triage_channel(other_id)) == (
            "C0TRIAGE1",
            None,
        )
        uow.orgs.set_triage_channel(org_id, None)
        uow.commit()
    with uow:
        assert uow.orgs.triage_channel(org_id) is None
        with pytest.raises(NotFound):
            uow.orgs.set_triage_channel(10_000_000, "C0TRIAGE1")


def test_unposted_reply_cards_leave_out_those_whose_post_is_pending_or_running(
    session_factory: Callable[[], Session],
) -> None:
    with session_factory() as session:
        org = make_org(session, slug="lonestar")
        session.commit()
        org_id = org.id
    uow = UnitOfWork(session_factory)
    with uow:
        inbox = uow.jobs.inbox_job_id(org_id, now=NOW)
        uow.commit()
    with session_factory() as session:
        cards = []
        for n in range(4):
            email = m.InboundEmail(org_id=org_id, gmail_message_id=f"g{n}", status="processed")
            session.add(email)
            session.flush()
            card = m.Card(
                org_id=org_id,
                job_id=inbox,
                inbound_email_id=email.id,
                type="needs_human_response",
                state="in_review",
                title=f"card {n}",
                action_payload={},
            )
            session.add(card)
            session.flush()
            cards.append(card.id)
        for card_id, status in zip(cards, ["pending", "running", "failed"], strict=False):
            session.add(
                m.JobTask(
                    org_id=org_id,
                    job_id=inbox,
                    kind="post_card",
                    status=status,
                    input={"card_id": card_id},
                )
            )
        session.commit()
    with uow:
        assert uow.cards.unposted_reply_cards(org_id, limit=10) == [
            (cards[2], inbox),
            (cards[3], inbox),
        ]
        assert uow.cards.unposted_reply_cards(org_id, limit=1) == [(cards[2], inbox)]


def test_the_inbox_s_tasks_are_claimed_and_an_idle_inbox_costs_the_claim_nothing(
    session_factory: Callable[[], Session],
) -> None:
    with session_factory() as session:
        org_id = make_org(session, slug="lonestar").id
        session.commit()
    uow = UnitOfWork(session_factory)
    with uow:
        inbox = uow.jobs.inbox_job_id(org_id, now=NOW)
        uow.commit()
    with uow:
        # Running for ever, but with nothing to do its organization is not visited.
        assert uow.tasks._orgs_by_load(now=NOW, kind_filter=[]) == []
        uow.tasks.add_many(org_id, inbox, [{"kind": "post_card", "input": {"card_id": 1}}])
        uow.commit()
    with uow:
        (claimed,) = uow.tasks.claim(limit=10, now=NOW)
        uow.commit()
    assert (claimed.job_id, claimed.kind, claimed.input) == (inbox, "post_card", {"card_id": 1})
