"""Real `salesbot worker` processes planning a newsletter issue, killed as by `kill -9` right
after taking the planning lease and again after two batches were committed: the issue is
still planned once, one email per subscriber, by the worker that takes it over when the
lease runs out, carrying on from the last committed batch.

The processes read the time from a file (`SALESBOT_CLOCK_FILE`) only the test moves, so a
lease (3 s of that clock) runs out when the test says so. Each round arms one fault point
(`SALESBOT_FAULT_POINTS`): the process ends itself there with exit code 137, as after
`kill -9`, before any `finally` runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from domain.clock import FixedClock
from domain.deps import Deps
from domain.newsletter_service import Newsletters
from domain.newsletters import IssueIn, NewsletterIn
from domain.outreach import Actor
from sandbox.slack_api import DEFAULT_BOT_TOKEN
from storage import models as m
from storage.db import make_session_factory
from storage.uow import UnitOfWork
from tests.e2e.test_crash_recovery import forks
from tests.e2e.test_digest_crash import Workers
from tests.support.accounts import create_org, ensure_user
from tests.support.api import make_settings
from tests.support.forkserver import ForkServer
from tests.support.gmail_app import google_settings
from tests.support.google import GoogleServer
from tests.support.slack import ServedSlack
from tests.support.slack_app import SIGNING_SECRET, wait_until

pytestmark = pytest.mark.slow

__all__ = ["forks"]  # the crash tests' fork server

NOW = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
LEASE_SECONDS = 3
SUBSCRIBERS = 25
BATCH = 5


def _seed(engine: Engine) -> int:
    """An approved issue of a newsletter to 25 subscribers, from one connected mailbox whose
    next send is a month away (the outbox leaves the planned rows queued)."""
    sessions = make_session_factory(engine)
    with sessions() as session:
        org = create_org(session, slug="lonestar", name="Lone Star Appraisals")
        maria = ensure_user(session, org.id, email="maria@lonestar.example", name="Maria Lopez")
        session.add(
            m.GmailAccount(
                org_id=org.id,
                user_id=maria,
                email="maria@lonestar.example",
                status="connected",
                daily_send_cap=400,
                min_send_interval_seconds=5,
                next_send_at=NOW + timedelta(days=40),
            )
        )
        for n in range(SUBSCRIBERS):
            session.add(
                m.Contact(org_id=org.id, email=f"lo{n}@pinnacle.example", first_name=f"Dana{n}")
            )
        session.commit()
        org_id = org.id
    counter = iter(range(1, 10**6))
    newsletters = Newsletters(
        Deps(uow=lambda: UnitOfWork(sessions), clock=FixedClock(NOW)),
        new_message_id=lambda: f"<seed-{next(counter)}@lonestar.example>",
    )
    newsletter = newsletters.create(
        None,
        org_id,
        NewsletterIn(name="Lender Update", sender_user_ids=[maria], slack_channel_id="C0NEWS"),
    )
    issue = newsletters.create_issue(
        None,
        org_id,
        newsletter.id,
        IssueIn(title="December", subject_template="News", text_template="Hi {{ first_name }}"),
    )
    submitted = newsletters.submit(None, org_id, newsletter.id, issue.id)
    newsletters.approve(
        Actor(org_id=org_id, user_id=maria, role="admin"),
        issue.id,
        fingerprint=submitted.card_fingerprint,
    )
    return issue.id


@pytest.fixture
def workers(
    committed_engine: Engine,
    served_slack: ServedSlack,
    forks: ForkServer,
    google: GoogleServer,
    tmp_path: Path,
) -> Iterator[Workers]:
    url = committed_engine.url.render_as_string(hide_password=False)
    env = {
        **os.environ,
        **{k: str(v) for k, v in google_settings(google).items()},
        "SLACK_API_URL": served_slack.api_url,
        "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "DATABASE_URL": url,
        "SALESBOT_SECRET_KEY": make_settings(url).SALESBOT_SECRET_KEY,
        "WORK_LEASE_SECONDS": str(LEASE_SECONDS),
        "WORKER_POLL_SECONDS": "0.2",
        "NEWSLETTER_PLAN_BATCH": str(BATCH),
        "SALESBOT_CLOCK_FILE": str(tmp_path / "now.txt"),
        "LOG_LEVEL": "WARNING",
    }
    running = Workers(forks, env, tmp_path)
    try:
        yield running
    finally:
        running.stop_all()


# PostgreSQL only: process starts cost seconds; the planning's cursor and the unique index
# are tested on both databases (tests/integration/test_newsletters_storage.py).
@pytest.mark.parametrize("db_kind", ["postgresql"])
def test_a_planner_killed_after_its_claim_and_after_two_batches_plans_each_subscriber_once(
    committed_engine: Engine, workers: Workers, tmp_path: Path
) -> None:
    issue_id = _seed(committed_engine)
    clock_file = tmp_path / "now.txt"
    clock_file.write_text(NOW.isoformat())
    sessions = make_session_factory(committed_engine)

    def issue() -> m.NewsletterIssue:
        with sessions() as session:
            row = session.get(m.NewsletterIssue, issue_id)
            assert row is not None
            return row

    def rows() -> list[tuple[int | None, int]]:
        with sessions() as session:
            return [
                (contact, int(n))
                for contact, n in session.execute(
                    select(m.EmailSend.contact_id, func.count())
                    .where(m.EmailSend.newsletter_issue_id == issue_id)
                    .group_by(m.EmailSend.contact_id)
                )
            ]

    # 1. Killed right after taking the lease: nothing planned.
    workers.wait_killed(workers.start("newsletter.claimed"), "newsletter.claimed")
    taken = issue()
    assert taken.plan_lease_until is not None
    assert (taken.planned_count, taken.plan_cursor, taken.planned_at) == (0, 0, None)
    assert rows() == []

    # 2. Another worker leaves the issue alone while the lease runs, then takes it over and
    #    is killed after its second batch committed.
    second = workers.start("newsletter.chunk@2")
    time.sleep(2.0)
    assert workers.running(second)
    assert rows() == []
    clock_file.write_text((NOW + timedelta(seconds=LEASE_SECONDS + 1)).isoformat())
    workers.wait_killed(second, "newsletter.chunk@2")
    half = issue()
    assert (half.planned_count, half.planned_at) == (2 * BATCH, None)
    assert len(rows()) == 2 * BATCH

    # 3. A third worker, once that lease ran out, carries on after the last batch.
    clock_file.write_text((NOW + timedelta(seconds=3 * LEASE_SECONDS + 3)).isoformat())
    last = workers.start()
    wait_until(lambda: issue().planned_at is not None, timeout=60, what="planned")
    workers.stop_all()

    done = issue()
    planned = rows()
    assert (done.status, done.planned_count) == ("scheduled", SUBSCRIBERS)
    assert len(planned) == SUBSCRIBERS
    assert {n for _, n in planned} == {1}
    assert last in workers.pids
    with sessions() as session:
        times = sorted(
            t
            for t in session.scalars(
                select(m.EmailSend.not_before).where(m.EmailSend.newsletter_issue_id == issue_id)
            )
            if t is not None and t < NOW + timedelta(days=1)
        )
    # One plan for the whole issue (fixed at the first batch): evenly spaced, 432 s apart
    # (the outbox moved the first, due at once, to the mailbox's next send a month away).
    assert len(times) == SUBSCRIBERS - 1
    assert {(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)} == {432.0}
