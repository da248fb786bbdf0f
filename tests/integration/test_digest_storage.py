"""Digest subscriptions and posts in storage, on SQLite and PostgreSQL: a subscription is one
per channel, frequency and scope; a due one stores the post of its period once, however
many claims run at the same moment, and after downtime only the latest missed period; posts
are leased to one worker, and a lease that runs out lets another worker take the post."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from domain.deps import Deps
from domain.digests import (
    MAX_ATTEMPTS,
    DigestPoster,
    Frequency,
    NewPost,
    NewSubscription,
    PostKind,
    PostStatus,
    claim_due_periods,
    next_run_at,
    period_for,
)
from jobs.digest import DigestMessages, SlackDigestChat
from sandbox.slack_api import DEFAULT_CHANNEL_ID
from storage import models as m
from storage.db import make_session_factory
from storage.uow import UnitOfWork
from tests.support.builders import make_org
from tests.support.slack import ServedSlack

CHICAGO = "America/Chicago"
# Tuesday 2026-12-01 08:00 in Chicago.
EIGHT = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


def _subscription(org_id: int, *, after: datetime, **overrides: object) -> NewSubscription:
    values: dict[str, object] = {
        "org_id": org_id,
        "channel_id": "C0DIGEST",
        "channel_name": "sales-digest",
        "frequency": Frequency.DAILY,
        "weekday": None,
        "local_time": "08:00",
        "time_zone": CHICAGO,
        "campaign_id": None,
        "rep_user_id": None,
        "created_by": None,
        "next_run_at": next_run_at(time(8, 0), CHICAGO, Frequency.DAILY, None, after),
        **overrides,
    }
    return NewSubscription(**values)  # type: ignore[arg-type]


def _seed(sessions: Callable[[], Session], **overrides: object) -> tuple[int, int]:
    with sessions() as session:
        org = make_org(session, cadence_settings={"timezone": "America/Denver"})
        session.commit()
        org_id = org.id
    with UnitOfWork(sessions) as uow:
        sub, created = uow.digests.save_subscription(
            _subscription(org_id, after=EIGHT - timedelta(hours=1), **overrides),
            now=EIGHT - timedelta(hours=1),
        )
        uow.commit()
    assert created
    return org_id, sub.id


def _claim(sessions: Callable[[], Session], now: datetime) -> int:
    with UnitOfWork(sessions) as uow:
        claimed = claim_due_periods(uow.digests, now=now, limit=50)
        uow.commit()
    return claimed


def _posts(sessions: Callable[[], Session]) -> list[m.DigestPost]:
    with sessions() as session:
        return list(session.scalars(select(m.DigestPost).order_by(m.DigestPost.id)))


def test_subscribing_again_updates_the_channels_subscription_of_that_scope(
    session_factory: Callable[[], Session],
) -> None:
    org_id, first = _seed(session_factory)
    with UnitOfWork(session_factory) as uow:
        later = _subscription(org_id, after=EIGHT, local_time="09:30")
        sub, created = uow.digests.save_subscription(later, now=EIGHT)
        other, other_created = uow.digests.save_subscription(
            _subscription(org_id, after=EIGHT, frequency=Frequency.WEEKLY, weekday=0), now=EIGHT
        )
        uow.commit()
    assert (sub.id, created, sub.local_time) == (first, False, "09:30")
    assert other_created
    with UnitOfWork(session_factory) as uow:
        assert [s.frequency for s in uow.digests.subscriptions(org_id)] == [
            Frequency.DAILY,
            Frequency.WEEKLY,
        ]
        assert uow.digests.org_time_zone(org_id) == "America/Denver"
        removed = uow.digests.remove_subscriptions(
            org_id, channel_id="C0DIGEST", frequency=Frequency.WEEKLY, scope_key=None
        )
        uow.commit()
    assert [s.id for s in removed] == [other.id]


def test_a_due_subscription_stores_its_period_once_and_moves_on(
    session_factory: Callable[[], Session],
) -> None:
    _, sub_id = _seed(session_factory)
    assert _claim(session_factory, EIGHT - timedelta(minutes=1)) == 0
    assert _claim(session_factory, EIGHT) == 1
    assert _claim(session_factory, EIGHT + timedelta(seconds=30)) == 0
    (post,) = _posts(session_factory)
    yesterday = period_for(EIGHT, Frequency.DAILY, CHICAGO)
    assert (post.subscription_id, post.kind, post.status) == (sub_id, "scheduled", "pending")
    assert (post.period_start, post.period_end) == (yesterday.since, yesterday.until)
    assert post.period_start == datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
    with session_factory() as session:
        row = session.get(m.DigestSubscription, sub_id)
        assert row is not None
        assert row.next_run_at == EIGHT + timedelta(days=1)


def test_after_downtime_only_the_latest_missed_period_is_stored(
    session_factory: Callable[[], Session],
) -> None:
    _seed(session_factory)
    # Down for four days: back on Saturday at 10:00, after that day's 08:00.
    back = EIGHT + timedelta(days=4, hours=2)
    assert _claim(session_factory, back) == 1
    (post,) = _posts(session_factory)
    assert post.period_end == period_for(back, Frequency.DAILY, CHICAGO).until
    assert post.period_start == datetime(2026, 12, 4, 6, 0, tzinfo=UTC)


def test_a_period_already_stored_is_not_stored_twice(
    session_factory: Callable[[], Session],
) -> None:
    org_id, sub_id = _seed(session_factory)
    period = period_for(EIGHT, Frequency.DAILY, CHICAGO)
    new = NewPost(
        org_id=org_id,
        kind=PostKind.SCHEDULED,
        frequency=Frequency.DAILY,
        channel_id="C0DIGEST",
        time_zone=CHICAGO,
        period=period,
        subscription_id=sub_id,
    )
    with UnitOfWork(session_factory) as uow:
        assert uow.digests.add_post(new, now=EIGHT) is not None
        assert uow.digests.add_post(new, now=EIGHT) is None
        uow.commit()
    assert len(_posts(session_factory)) == 1


def test_claims_at_the_same_moment_store_each_period_once(
    committed_engine: Engine,
) -> None:
    sessions = make_session_factory(committed_engine)
    for _ in range(3):
        _seed(sessions)
    start = threading.Barrier(4)
    counts: list[int] = []
    lock = threading.Lock()

    def claim() -> None:
        start.wait()
        done = _claim(sessions, EIGHT)
        with lock:
            counts.append(done)

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sum(counts) == 3
    posts = _posts(sessions)
    assert len(posts) == 3
    assert len({p.subscription_id for p in posts}) == 3


def test_a_post_is_leased_to_one_worker_and_taken_again_when_the_lease_runs_out(
    committed_engine: Engine,
) -> None:
    sessions = make_session_factory(committed_engine)
    _seed(sessions)
    _claim(sessions, EIGHT)
    start = threading.Barrier(3)
    taken: list[tuple[str, list[int]]] = []
    lock = threading.Lock()

    def lease(worker: str) -> None:
        start.wait()
        with UnitOfWork(sessions) as uow:
            posts = uow.digests.claim_posts(
                now=EIGHT, limit=10, lease_until=EIGHT + LEASE, worker=worker
            )
            uow.commit()
        with lock:
            taken.append((worker, [p.id for p in posts]))

    threads = [threading.Thread(target=lease, args=(f"w{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    winners = [(w, ids) for w, ids in taken if ids]
    assert len(winners) == 1
    winner, (post_id,) = winners[0]
    with UnitOfWork(sessions) as uow:
        # Nobody else while the lease runs; another worker once it ran out.
        assert (
            uow.digests.claim_posts(
                now=EIGHT + LEASE - timedelta(seconds=1), limit=10, lease_until=EIGHT, worker="late"
            )
            == []
        )
        assert uow.digests.set_file(post_id, worker=winner, file_id="F0CHART")
        (again,) = uow.digests.claim_posts(
            now=EIGHT + LEASE + timedelta(seconds=1),
            limit=10,
            lease_until=EIGHT + 2 * LEASE,
            worker="late",
        )
        uow.commit()
    assert (again.id, again.attempts, again.file_id) == (post_id, 2, "F0CHART")
    with UnitOfWork(sessions) as uow:
        # The first worker lost its claim: it cannot record the post any more.
        assert not uow.digests.mark_posted(
            post_id, worker=winner, ts="1.1", figures={}, at=EIGHT + LEASE
        )
        assert uow.digests.mark_posted(
            post_id, worker="late", ts="2.2", figures={"sent": 3}, at=EIGHT + LEASE
        )
        uow.commit()
    with UnitOfWork(sessions) as uow:
        post = uow.digests.get_post(post_id)
    assert (post.status, post.slack_ts, post.figures) == (PostStatus.POSTED, "2.2", {"sent": 3})


def test_a_retry_waits_and_a_permanent_failure_shows_on_the_subscription(
    session_factory: Callable[[], Session],
) -> None:
    org_id, sub_id = _seed(session_factory)
    _claim(session_factory, EIGHT)
    with UnitOfWork(session_factory) as uow:
        (post,) = uow.digests.claim_posts(
            now=EIGHT, limit=10, lease_until=EIGHT + LEASE, worker="w"
        )
        assert uow.digests.mark_failed(
            post.id,
            worker="w",
            error="Slack answered ratelimited",
            retry_at=EIGHT + LEASE,
            at=EIGHT,
        )
        assert uow.digests.claim_posts(now=EIGHT, limit=10, lease_until=EIGHT, worker="w") == []
        (again,) = uow.digests.claim_posts(
            now=EIGHT + LEASE, limit=10, lease_until=EIGHT + 2 * LEASE, worker="w"
        )
        assert uow.digests.mark_failed(
            again.id,
            worker="w",
            error="Salesbot cannot post in <#C0DIGEST>",
            retry_at=None,
            at=EIGHT,
        )
        uow.commit()
    with UnitOfWork(session_factory) as uow:
        (sub,) = uow.digests.subscriptions(org_id)
        failed = uow.digests.get_post(post.id)
    assert sub.id == sub_id
    assert sub.last_error == "Salesbot cannot post in <#C0DIGEST>"
    assert (failed.status, failed.attempts) == (PostStatus.FAILED, 2)


def test_a_post_whose_worker_stops_at_every_attempt_is_given_up_not_taken_forever(
    session_factory: Callable[[], Session], served_slack: ServedSlack
) -> None:
    # Five workers each took the post and stopped before recording anything (killed, or a
    # crash the post itself causes): the sixth claim gives it up instead of trying again
    # every time a lease runs out, and `/digest list` says why.
    org_id, _ = _seed(session_factory, channel_id=DEFAULT_CHANNEL_ID)
    _claim(session_factory, EIGHT)
    at = EIGHT
    for n in range(MAX_ATTEMPTS):
        with UnitOfWork(session_factory) as uow:
            (post,) = uow.digests.claim_posts(
                now=at, limit=10, lease_until=at + LEASE, worker=f"stopped-{n}"
            )
            uow.commit()
        at += LEASE + timedelta(seconds=1)
    served_slack.stand_in.reset()
    client = served_slack.client()
    poster = DigestPoster(
        Deps(uow=lambda: UnitOfWork(session_factory), clock=FixedClock(at)),
        chat=SlackDigestChat(lambda _org_id: client),
        renderer=DigestMessages(),
        lease=LEASE,
        worker="w",
    )

    report = poster.post_pending()

    assert (report.posted, report.failed) == (0, 1)
    assert served_slack.stand_in.calls("chat.postMessage") == []
    with UnitOfWork(session_factory) as uow:
        given_up = uow.digests.get_post(post.id)
        (sub,) = uow.digests.subscriptions(org_id)
    assert given_up.status == PostStatus.FAILED
    assert (sub.last_error or "").startswith("gave up after 5 attempts: each time the worker")
