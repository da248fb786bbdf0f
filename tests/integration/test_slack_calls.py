"""The queue of Slack calls to replay, on SQLite and PostgreSQL: enqueue, claim, settle."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from jobs.slack_replay import LEASE
from storage.db import make_session_factory
from storage.slack_calls import SlackCallQueue
from tests.support.builders import make_org
from tests.support.slack_calls import FORM, TEAM, click, clicked_value, status_of, stored


@pytest.fixture
def queue(session_factory: Callable[[], Session]) -> SlackCallQueue:
    return SlackCallQueue(session_factory)


# --- enqueue ------------------------------------------------------------------------------


def test_enqueue_returns_ids_in_the_order_given_and_stores_pending_calls(
    queue: SlackCallQueue, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    calls = [click(f"card-{n}") for n in range(5)]

    ids = queue.enqueue(calls, now=clock.now())

    assert len(set(ids)) == 5
    rows = [stored(session_factory, call_id) for call_id in ids]
    assert [clicked_value(row.body) for row in rows if row] == [
        "card-0",
        "card-1",
        "card-2",
        "card-3",
        "card-4",
    ]
    for row in rows:
        assert row is not None
        assert (row.status, row.attempts, row.not_before, row.error) == (
            "pending",
            0,
            clock.now(),
            None,
        )
        assert (row.function, row.content_type, row.team_id) == ("approve_card", FORM, TEAM)
    assert queue.counts() == {"pending": 5}


def test_enqueue_finds_the_organization_by_its_slack_team(
    queue: SlackCallQueue,
    session: Session,
    session_factory: Callable[[], Session],
    clock: FixedClock,
) -> None:
    lender = make_org(session, slack_team_id=TEAM)
    other = make_org(session, slack_team_id="T0OTHER")
    session.commit()

    ids = queue.enqueue(
        [
            click("a", team=TEAM),
            click("b", team="T0UNKNOWN"),
            click("c", team=None),
            click("d", team="T0OTHER"),
        ],
        now=clock.now(),
    )

    org_ids = [row.org_id for row in (stored(session_factory, i) for i in ids) if row]
    assert org_ids == [lender.id, None, None, other.id]


# --- claim --------------------------------------------------------------------------------


def test_claim_takes_due_calls_oldest_first_up_to_the_limit(
    queue: SlackCallQueue, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    now = clock.now()
    newer = queue.enqueue([click("a"), click("b"), click("c")], now=now)
    # Stored after the others but due earlier (a retry, say): the oldest by due time.
    (older,) = queue.enqueue([click("d")], now=now - timedelta(minutes=1))
    (future,) = queue.enqueue([click("e")], now=now + timedelta(seconds=1))
    lease_until = now + LEASE

    first = queue.claim(limit=2, now=now, lease_until=lease_until)
    second = queue.claim(limit=10, now=now, lease_until=lease_until)

    assert {call.id: clicked_value(call.body) for call in first} == {newer[0]: "a", older: "d"}
    assert [call.id for call in second] == newer[1:]
    assert future not in {call.id for call in first + second}
    assert {(call.function, call.content_type, call.attempts) for call in first + second} == {
        ("approve_card", FORM, 1)
    }
    for call_id in [older, *newer]:
        row = stored(session_factory, call_id)
        assert row is not None
        assert (row.status, row.not_before, row.attempts) == ("running", lease_until, 1)
    assert queue.counts() == {"running": 4, "pending": 1}


def test_claim_carries_the_organization_of_the_call(
    queue: SlackCallQueue, session: Session, clock: FixedClock
) -> None:
    lender = make_org(session, slack_team_id=TEAM)
    session.commit()
    queue.enqueue([click("a"), click("b", team=None)], now=clock.now())

    claimed = queue.claim(limit=5, now=clock.now(), lease_until=clock.now() + LEASE)

    assert [call.org_id for call in claimed] == [lender.id, None]


def test_a_claimed_call_is_not_claimed_again_while_its_lease_runs(
    queue: SlackCallQueue, clock: FixedClock
) -> None:
    queue.enqueue([click("a")], now=clock.now())
    queue.claim(limit=5, now=clock.now(), lease_until=clock.now() + LEASE)

    just_before = clock.now() + LEASE - timedelta(seconds=1)

    assert queue.claim(limit=5, now=clock.now(), lease_until=clock.now() + LEASE) == []
    assert queue.claim(limit=5, now=just_before, lease_until=just_before + LEASE) == []


def test_a_call_whose_worker_died_is_claimed_again_when_the_lease_runs_out(
    queue: SlackCallQueue, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    (call_id,) = queue.enqueue([click("a")], now=clock.now())
    queue.claim(limit=5, now=clock.now(), lease_until=clock.now() + LEASE)
    expired = clock.now() + LEASE

    (again,) = queue.claim(limit=5, now=expired, lease_until=expired + LEASE)

    assert (again.id, again.attempts) == (call_id, 2)
    row = stored(session_factory, call_id)
    assert row is not None
    assert (row.status, row.not_before) == ("running", expired + LEASE)


# --- done, failed, counts -----------------------------------------------------------------


def test_done_deletes_the_call(
    queue: SlackCallQueue, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    ran, kept = queue.enqueue([click("a"), click("b")], now=clock.now())
    claimed = queue.claim(limit=5, now=clock.now(), lease_until=clock.now() + LEASE)

    assert queue.done(claimed[0]) is True

    assert stored(session_factory, ran) is None
    assert status_of(session_factory, kept) == "running"
    assert queue.counts() == {"running": 1}


def test_a_failed_call_with_a_retry_time_is_pending_again_from_then(
    queue: SlackCallQueue, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    (call_id,) = queue.enqueue([click("a")], now=clock.now())
    (call,) = queue.claim(limit=5, now=clock.now(), lease_until=clock.now() + LEASE)
    retry_at = clock.now() + timedelta(seconds=30)

    assert queue.failed(call, "SlackApiError: ratelimited", retry_at=retry_at) is True

    row = stored(session_factory, call_id)
    assert row is not None
    assert (row.status, row.not_before, row.attempts, row.error) == (
        "pending",
        retry_at,
        1,
        "SlackApiError: ratelimited",
    )
    early = retry_at - timedelta(seconds=1)
    assert queue.claim(limit=5, now=early, lease_until=early + LEASE) == []
    (again,) = queue.claim(limit=5, now=retry_at, lease_until=retry_at + LEASE)
    assert (again.id, again.attempts) == (call_id, 2)


def test_a_call_failed_for_good_is_never_claimed_again_and_keeps_a_clean_error(
    queue: SlackCallQueue, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    (call_id,) = queue.enqueue([click("a")], now=clock.now())
    (call,) = queue.claim(limit=5, now=clock.now(), lease_until=clock.now() + LEASE)
    # A NUL (refused by PostgreSQL in text) and far more text than is kept.
    error = "ValueError: bad\x00byte " + "x" * 3000

    queue.failed(call, error, retry_at=None)

    row = stored(session_factory, call_id)
    assert row is not None
    assert (row.status, row.not_before) == ("failed", None)
    assert row.error is not None
    assert row.error.startswith("ValueError: bad\ufffdbyte xxx")
    assert len(row.error) == 2000
    much_later = clock.now() + timedelta(days=30)
    assert queue.claim(limit=5, now=much_later, lease_until=much_later + LEASE) == []
    assert queue.counts() == {"failed": 1}


def test_counts_report_calls_by_status(queue: SlackCallQueue, clock: FixedClock) -> None:
    queue.enqueue([click(str(n)) for n in range(6)], now=clock.now())
    claimed = queue.claim(limit=4, now=clock.now(), lease_until=clock.now() + LEASE)
    queue.done(claimed[0])
    queue.failed(claimed[1], "gone", retry_at=None)
    queue.failed(claimed[2], "later", retry_at=clock.now() + timedelta(minutes=1))

    assert queue.counts() == {"pending": 3, "running": 1, "failed": 1}


# --- claims from many workers at once (real commits) --------------------------------------


def test_a_worker_whose_lease_ran_out_cannot_settle_the_call_another_worker_took(
    queue: SlackCallQueue, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    (call_id,) = queue.enqueue([click("a")], now=clock.now())
    (slow,) = queue.claim(limit=1, now=clock.now(), lease_until=clock.now() + LEASE)
    clock.advance(seconds=LEASE.total_seconds())
    (taken,) = queue.claim(limit=1, now=clock.now(), lease_until=clock.now() + LEASE)

    assert queue.done(slow) is False
    assert queue.failed(slow, "late", retry_at=None) is False
    assert status_of(session_factory, call_id) == "running"
    assert queue.done(taken) is True
    assert queue.counts() == {}


def test_concurrent_claimers_never_get_the_same_call(
    committed_engine: Engine, clock: FixedClock
) -> None:
    queue = SlackCallQueue(make_session_factory(committed_engine))
    ids = queue.enqueue([click(str(n)) for n in range(200)], now=clock.now())
    now = clock.now()
    start = threading.Barrier(4)
    claimed: list[list[int]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def claim_until_empty(mine: list[int]) -> None:
        try:
            start.wait()
            while batch := queue.claim(limit=3, now=now, lease_until=now + LEASE):
                mine.extend(call.id for call in batch)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=claim_until_empty, args=(mine,)) for mine in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    every_claim = Counter(call_id for mine in claimed for call_id in mine)
    assert sorted(every_claim) == sorted(ids)
    assert [call_id for call_id, times in every_claim.items() if times != 1] == []
    assert queue.counts() == {"running": 200}
