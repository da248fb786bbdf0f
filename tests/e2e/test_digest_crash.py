"""Real `salesbot worker` processes posting a digest, killed as by `kill -9` right after the
claim committed and again right after the chart was uploaded: the digest is still posted
exactly once, by the worker that takes the post when the lease runs out, with the chart
uploaded the first time (its file id was stored before the message was posted).

The processes read the time from a file (`SALESBOT_CLOCK_FILE`) that only the test moves,
so a lease (3 s of that clock) runs out when the test says so; the digest job runs every
0.3 s. Each round arms one fault point (`SALESBOT_FAULT_POINTS`): the process ends itself
there with exit code 137, as after `kill -9`, before any `finally` runs.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from sandbox.slack_api import DEFAULT_TEAM_ID
from storage import models as m
from storage.db import make_session_factory
from tests.e2e.test_crash_recovery import forks
from tests.support.accounts import create_org, ensure_user, link_slack_team
from tests.support.builders import make_client, make_contact
from tests.support.engagement_data import make_send
from tests.support.forkserver import ForkServer
from tests.support.slack import ServedSlack
from tests.support.slack_app import wait_until
from tests.support.workers import Workers, worker_env

pytestmark = pytest.mark.slow

__all__ = ["forks"]  # the crash tests' fork server

DIGEST = "C0DIGEST"
REP_EMAIL = "maria@lonestar.example.com"
# Wednesday 2026-12-02, 08:00:30 in Chicago: the 08:00 digest is due.
NOW = datetime(2026, 12, 2, 14, 0, 30, tzinfo=UTC)
LEASE_SECONDS = 3


def _seed(engine: Engine) -> int:
    """A daily digest due at 08:00 in Chicago, and Tuesday's sends for it to show."""
    sessions = make_session_factory(engine)
    with sessions() as session:
        org = create_org(session, slug="lonestar", name="Lone Star Appraisals")
        link_slack_team(session, org.id, DEFAULT_TEAM_ID)
        ensure_user(session, org.id, email=REP_EMAIL, name="Maria Lopez")
        org_row = session.get(m.Organization, org.id)
        assert org_row is not None
        lender = make_client(session, org_row, name="Pinnacle Lending", domain="pinnacle.example")
        for n in range(3):
            contact = make_contact(session, org_row, lender, email=f"lo{n}@pinnacle.example")
            make_send(session, org.id, contact, sent_at=datetime(2026, 12, 1, 16, n, tzinfo=UTC))
        sub = m.DigestSubscription(
            org_id=org.id,
            channel_id=DIGEST,
            channel_name="sales-digest",
            frequency="daily",
            local_time="08:00",
            time_zone="America/Chicago",
            scope_key="all",
            next_run_at=datetime(2026, 12, 2, 14, 0, tzinfo=UTC),
        )
        session.add(sub)
        session.commit()
        return sub.id


@pytest.fixture
def workers(
    committed_engine: Engine, served_slack: ServedSlack, forks: ForkServer, tmp_path: Path
) -> Iterator[Workers]:
    env = worker_env(
        committed_engine,
        served_slack,
        tmp_path,
        lease_seconds=LEASE_SECONDS,
        DIGEST_TICK_SECONDS="0.3",
    )
    with Workers(forks, env, tmp_path) as running:
        yield running


# PostgreSQL only: process starts cost seconds, and the claims and leases themselves are
# tested on both databases (tests/integration/test_digest_storage.py).
@pytest.mark.parametrize("db_kind", ["postgresql"])
def test_a_worker_killed_after_its_claim_and_after_the_upload_posts_the_digest_once(
    committed_engine: Engine, served_slack: ServedSlack, workers: Workers, tmp_path: Path
) -> None:
    slack = served_slack.stand_in
    slack.reset()
    slack.add_channel(DIGEST, "sales-digest")
    sub_id = _seed(committed_engine)
    clock_file = tmp_path / "now.txt"
    clock_file.write_text(NOW.isoformat())
    sessions = make_session_factory(committed_engine)

    def post() -> m.DigestPost | None:
        with sessions() as session:
            return session.scalars(
                select(m.DigestPost).where(m.DigestPost.subscription_id == sub_id)
            ).one_or_none()

    # 1. Killed right after the claim: the post is leased, nothing uploaded or posted.
    workers.wait_killed(workers.start("digest.claimed"), "digest.claimed")
    leased = post()
    assert leased is not None
    assert (leased.status, leased.attempts, leased.file_id) == ("posting", 1, None)
    assert slack.uploaded_files == []

    # 2. Another worker leaves the post alone while the lease runs, then takes it, uploads
    #    the chart and is killed before posting.
    second = workers.start("digest.uploaded")
    time.sleep(2.0)
    assert workers.running(second)
    assert post().attempts == 1  # type: ignore[union-attr]
    clock_file.write_text((NOW + timedelta(seconds=LEASE_SECONDS + 1)).isoformat())
    workers.wait_killed(second, "digest.uploaded")
    uploaded = post()
    assert uploaded is not None
    assert (uploaded.status, uploaded.attempts) == ("posting", 2)
    assert uploaded.file_id is not None
    assert slack.messages(DIGEST) == []

    # 3. A third worker, once that lease ran out, posts the digest with the same chart.
    clock_file.write_text((NOW + timedelta(seconds=2 * LEASE_SECONDS + 2)).isoformat())
    last = workers.start()
    wait_until(
        lambda: (p := post()) is not None and p.status == "posted", timeout=60, what="posted"
    )
    os.kill(last, signal.SIGTERM)
    assert workers._forks.wait(last, timeout=60) == 0

    done = post()
    assert done is not None
    (message,) = slack.messages(DIGEST)
    assert (done.attempts, done.slack_ts) == (3, message.ts)
    images = [b for b in message.blocks or [] if b.get("type") == "image"]
    assert [i["slack_file"]["id"] for i in images] == [uploaded.file_id]
    assert [f.id for f in slack.uploaded_files] == [uploaded.file_id]
