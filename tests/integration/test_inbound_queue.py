"""The inbound pipeline's queue on SQLite and PostgreSQL: fair claims across organizations,
leases, backoff, parking, and two workers never holding the same message."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from storage import models as m
from storage.db import make_session_factory
from storage.uow import UnitOfWork
from tests.support.builders import make_org

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
LEASE = NOW + timedelta(minutes=5)


def _parsed(session: Session, org_id: int, count: int, start: int) -> list[int]:
    rows = [
        m.InboundEmail(
            org_id=org_id,
            gmail_message_id=f"g{start + n}",
            status="parsed",
            subject="Re: turn times",
            body_text="Yes please.",
        )
        for n in range(count)
    ]
    session.add_all(rows)
    session.flush()
    return [r.id for r in rows]


def test_a_claim_takes_every_organization_s_oldest_messages_in_turn(
    session_factory: Callable[[], Session],
) -> None:
    with session_factory() as session:
        big, small = make_org(session, slug="big"), make_org(session, slug="small")
        _parsed(session, big.id, 10, 0)
        _parsed(session, small.id, 2, 100)
        session.commit()
        big_id, small_id = big.id, small.id
    uow = UnitOfWork(session_factory)
    with uow:
        claimed = uow.inbound_pipeline.claim(limit=4, now=NOW, lease_until=LEASE, max_attempts=5)
        uow.commit()

    assert Counter(c.org_id for c in claimed) == {big_id: 2, small_id: 2}
    assert {c.attempts for c in claimed} == {1}
    with uow:
        # Held under their lease: the next claim takes the rest, not them.
        again = uow.inbound_pipeline.claim(limit=50, now=NOW, lease_until=LEASE, max_attempts=5)
        uow.commit()
    assert {c.id for c in again}.isdisjoint({c.id for c in claimed})
    assert len(again) == 8
    with uow:
        # Past the lease (the worker died), they come back, one attempt more.
        later = NOW + timedelta(minutes=6)
        back = uow.inbound_pipeline.claim(
            limit=50, now=later, lease_until=later + timedelta(minutes=5), max_attempts=5
        )
        uow.commit()
    assert len(back) == 12
    assert {c.attempts for c in back} == {2}


def test_a_failure_waits_then_the_fifth_parks_the_message(
    session_factory: Callable[[], Session],
) -> None:
    with session_factory() as session:
        org = make_org(session)
        (email_id,) = _parsed(session, org.id, 1, 0)
        session.commit()
    uow = UnitOfWork(session_factory)
    now = NOW
    for attempt in range(1, 6):
        lease = now + timedelta(minutes=5)
        with uow:
            (claimed,) = uow.inbound_pipeline.claim(
                limit=10, now=now, lease_until=lease, max_attempts=5
            )
            assert claimed.attempts == attempt
            parked = uow.inbound_pipeline.fail(
                email_id,
                error=f"boom {attempt}",
                lease_until=lease,
                parked=claimed.attempts >= 5,
                next_attempt_at=now + timedelta(minutes=attempt),
                reclassifying=False,
            )
            uow.commit()
        assert parked is (attempt == 5)
        with uow:
            assert (
                uow.inbound_pipeline.claim(limit=10, now=now, lease_until=lease, max_attempts=5)
                == []
            )
        now += timedelta(hours=1)
    with session_factory() as session:
        row = session.get(m.InboundEmail, email_id)
        assert row is not None
        assert (row.status, row.error, row.next_attempt_at) == ("failed", "boom 5", None)


def test_a_message_whose_process_died_five_times_is_parked(
    session_factory: Callable[[], Session],
) -> None:
    with session_factory() as session:
        org = make_org(session)
        (email_id,) = _parsed(session, org.id, 1, 0)
        row = session.get(m.InboundEmail, email_id)
        assert row is not None
        row.pipeline_attempts = 5
        row.next_attempt_at = NOW - timedelta(minutes=1)  # its last lease ran out
        session.commit()
    uow = UnitOfWork(session_factory)
    with uow:
        assert uow.inbound_pipeline.park_exhausted(max_attempts=5, now=NOW) == 1
        uow.commit()
    with session_factory() as session:
        assert (
            session.scalar(select(m.InboundEmail.error).where(m.InboundEmail.id == email_id))
            == "the process handling it stopped 5 times"
        )


@pytest.mark.parametrize("db_kind", ["postgresql"])
def test_two_workers_claiming_at_once_never_take_the_same_message(
    committed_engine: Engine,
) -> None:
    sessions = make_session_factory(committed_engine)
    with sessions() as session:
        orgs = [make_org(session, slug=f"org{n}") for n in range(3)]
        for n, org in enumerate(orgs):
            _parsed(session, org.id, 100, n * 1000)
        session.commit()
    taken: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def worker(slot: int) -> None:
        uow = UnitOfWork(sessions)
        start.wait()
        while True:
            with uow:
                claimed = uow.inbound_pipeline.claim(
                    limit=25, now=NOW, lease_until=LEASE, max_attempts=5
                )
                uow.commit()
            if not claimed:
                return
            taken[slot].extend(c.id for c in claimed)

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert set(taken[0]).isdisjoint(taken[1])
    assert len(taken[0]) + len(taken[1]) == 300
