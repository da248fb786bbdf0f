"""Real `salesbot worker` processes posting a content card, killed as by `kill -9` right after
the claim committed and again right after Slack accepted the card (its ts not recorded):
the card is still posted exactly once, in the owner's DM, and recorded by the worker that
takes the post when the lease runs out (it finds the card in the DM by its metadata).

The processes read the time from a file (`SALESBOT_CLOCK_FILE`) that only the test moves,
so a lease (3 s of that clock) runs out when the test says so. Each round arms one fault
point (`SALESBOT_FAULT_POINTS`): the process ends itself there with exit code 137, as
after `kill -9`, before any `finally` runs.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from domain.clock import FixedClock
from domain.content import ContentIn, ScheduleIn
from domain.content_service import ContentCalendar
from domain.deps import Deps
from domain.outreach.common import Actor
from sandbox.slack_api import DEFAULT_TEAM_ID
from storage import models as m
from storage.db import make_session_factory
from storage.uow import UnitOfWork
from tests.e2e.test_crash_recovery import forks
from tests.support.accounts import create_org, ensure_user, link_slack_team
from tests.support.forkserver import ForkServer
from tests.support.slack import ServedSlack
from tests.support.slack_app import REP, wait_until
from tests.support.workers import Workers, worker_env

pytestmark = pytest.mark.slow

__all__ = ["forks"]  # the crash tests' fork server

# Wednesday 2026-12-09, 09:00:30 in Chicago: the post's morning came.
NOW = datetime(2026, 12, 9, 15, 0, 30, tzinfo=UTC)
LEASE_SECONDS = 3


def _seed(engine: Engine) -> int:
    """Maria's LinkedIn post, due this morning in Chicago."""
    sessions = make_session_factory(engine)
    with sessions() as session:
        org = create_org(session, slug="lonestar", name="Lone Star Appraisals")
        link_slack_team(session, org.id, DEFAULT_TEAM_ID)
        maria = ensure_user(session, org.id, email="maria@lonestar.example.com")
        row = session.get(m.User, maria)
        org_row = session.get(m.Organization, org.id)
        assert row is not None
        assert org_row is not None
        row.slack_user_id = REP
        org_row.cadence_settings = {"timezone": "America/Chicago"}
        session.commit()
    calendar = ContentCalendar(
        Deps(uow=lambda: UnitOfWork(sessions), clock=FixedClock(NOW - timedelta(days=1)))
    )
    entry = calendar.create_scheduled(
        Actor(org_id=org.id, user_id=maria, role="rep", slack_user_id=REP),
        ContentIn(content_type="social_post", title="Turn times", body="Down to 5 days."),
        ScheduleIn(channel="linkedin", scheduled_for=datetime(2026, 12, 9, 17, 0, tzinfo=UTC)),
    )
    return entry.id


@pytest.fixture
def workers(
    committed_engine: Engine, served_slack: ServedSlack, forks: ForkServer, tmp_path: Path
) -> Iterator[Workers]:
    env = worker_env(committed_engine, served_slack, tmp_path, lease_seconds=LEASE_SECONDS)
    with Workers(forks, env, tmp_path) as running:
        yield running


# PostgreSQL only: process starts cost seconds, and the claims and leases themselves are
# tested on both databases (tests/integration/test_content_storage.py).
@pytest.mark.parametrize("db_kind", ["postgresql"])
def test_a_worker_killed_after_its_claim_and_after_slack_took_the_card_posts_it_once(
    committed_engine: Engine, served_slack: ServedSlack, workers: Workers, tmp_path: Path
) -> None:
    slack = served_slack.stand_in
    slack.reset()
    slack.add_user(REP, "maria", "maria@lonestar.example.com", real_name="Maria Lopez")
    entry_id = _seed(committed_engine)
    clock_file = tmp_path / "now.txt"
    clock_file.write_text(NOW.isoformat())
    sessions = make_session_factory(committed_engine)
    dm = slack.dm_channel_id(REP)

    def entry() -> m.ContentSchedule:
        with sessions() as session:
            row = session.get(m.ContentSchedule, entry_id)
            assert row is not None
            return row

    # 1. Killed right after the claim: leased, no card.
    workers.wait_killed(workers.start("content.claimed"), "content.claimed")
    leased = entry()
    assert (leased.status, leased.attempts, leased.card_ts) == ("scheduled", 1, None)
    assert slack.messages(dm) == []

    # 2. Another worker leaves it alone while the lease runs, then takes it, posts the card
    #    and is killed before recording it.
    second = workers.start("content.posted")
    time.sleep(2.0)
    assert workers.running(second)
    assert entry().attempts == 1
    clock_file.write_text((NOW + timedelta(seconds=LEASE_SECONDS + 1)).isoformat())
    workers.wait_killed(second, "content.posted")
    (card,) = slack.messages(dm)
    unrecorded = entry()
    assert (unrecorded.status, unrecorded.attempts, unrecorded.card_ts) == ("scheduled", 2, None)

    # 3. A third worker, once that lease ran out, finds that card and records it.
    clock_file.write_text((NOW + timedelta(seconds=2 * LEASE_SECONDS + 2)).isoformat())
    last = workers.start()
    wait_until(lambda: entry().status == "due", timeout=60, what="the card recorded")
    os.kill(last, signal.SIGTERM)
    assert workers._forks.wait(last, timeout=60) == 0
    done = entry()
    assert (done.attempts, done.card_channel_id, done.card_ts) == (3, dm, card.ts)
    assert [msg.ts for msg in slack.messages(dm)] == [card.ts]
