"""A real `salesbot serve` process killed by its cadence tick right after it committed a
chunk of due steps, then restarted: every due step becomes exactly one task and one card,
none is lost and none runs twice.

The processes read the time from a file (`SALESBOT_CLOCK_FILE`), fixed on a Monday inside
the send window, so the test does not depend on the hour it runs at. The tick runs every
0.3 s and commits two enrollments a chunk; the fault point `cadence.chunk` ends the
process (exit 137, as after `kill -9`) after the first chunk's commit.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from sandbox.slack_api import DEFAULT_BOT_TOKEN
from storage import models as m
from storage.db import make_session_factory
from tests.e2e.test_crash_recovery import LEASE_SECONDS, Deployment, forks
from tests.support.api import make_settings
from tests.support.cadence_world import seed_due_for_step_two
from tests.support.forkserver import ForkServer
from tests.support.slack import ServedSlack
from tests.support.slack_app import SIGNING_SECRET, wait_until

pytestmark = pytest.mark.slow

__all__ = ["forks"]

REP = "U0CADENCE"
REP_EMAIL = "maria@lonestar.example.com"
# Monday 2026-11-30, 16:00 UTC: 10:00 in Texas.
NOW = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
CONTACTS = 5


def _seed(engine: Engine) -> tuple[int, list[int]]:
    return seed_due_for_step_two(
        engine, now=NOW, contacts=CONTACTS, rep_slack_id=REP, rep_email=REP_EMAIL
    )


# PostgreSQL only: a process start costs seconds, and the tick's claims are tested on both
# databases (tests/integration/test_cadence_tick.py).
@pytest.mark.parametrize("db_kind", ["postgresql"])
def test_a_tick_killed_after_a_chunk_loses_no_step_and_runs_none_twice(
    committed_engine: Engine,
    served_slack: ServedSlack,
    forks: ForkServer,
    tmp_path: Path,
) -> None:
    slack = served_slack.stand_in
    slack.reset()
    slack.add_user(REP, "maria", REP_EMAIL, real_name="Maria Lopez")
    job_id, enrollment_ids = _seed(committed_engine)
    clock_file = tmp_path / "now.txt"
    clock_file.write_text(NOW.isoformat())
    url = committed_engine.url.render_as_string(hide_password=False)
    deployment = Deployment(
        forks,
        env={
            **os.environ,
            "SLACK_API_URL": served_slack.api_url,
            "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "DATABASE_URL": url,
            "SALESBOT_SECRET_KEY": make_settings(url).SALESBOT_SECRET_KEY,
            "SLACK_POST_INTERVAL_SECONDS": "0",
            "WORK_LEASE_SECONDS": LEASE_SECONDS,
            "WORKER_POLL_SECONDS": "0.2",
            "CADENCE_TICK_SECONDS": "0.3",
            "CADENCE_TICK_CHUNK": "2",
            "SALESBOT_CLOCK_FILE": str(clock_file),
            "LOG_LEVEL": "WARNING",
        },
        logs=tmp_path,
    )
    sessions = make_session_factory(committed_engine)

    def follow_up_cards() -> int:
        with sessions() as session:
            return len(
                session.scalars(
                    select(m.Card.id).where(m.Card.job_id == job_id, m.Card.type == "follow_up")
                ).all()
            )

    try:
        deployment.start("cadence.chunk")
        deployment.wait_killed("cadence.chunk", timeout=60)
        with sessions() as session:
            after_kill = session.scalars(
                select(m.JobTask.contact_id).where(m.JobTask.job_id == job_id)
            ).all()
        # The chunk the process committed before dying: two steps, kept.
        assert len(after_kill) == 2
        deployment.start()
        wait_until(lambda: follow_up_cards() == CONTACTS, timeout=60, what="every follow-up")
        # The cards reach the rep's DM in the Slack stand-in.
        wait_until(
            lambda: (
                len([m for m in slack.messages(REP) if "Following up" in str(m.blocks)]) == CONTACTS
            ),
            timeout=60,
            what="every follow-up posted",
        )
        assert deployment.terminate() == -signal.SIGTERM
    finally:
        deployment.stop()

    with sessions() as session:
        tasks = session.execute(
            select(m.JobTask.contact_id, m.JobTask.step, m.JobTask.kind).where(
                m.JobTask.job_id == job_id, m.JobTask.kind == "draft_email"
            )
        ).all()
        cards = session.scalars(select(m.Card.enrollment_id).where(m.Card.job_id == job_id)).all()
        states = session.scalars(
            select(m.Enrollment.next_due_at).where(m.Enrollment.id.in_(enrollment_ids))
        ).all()
    assert Counter((contact, step) for contact, step, _ in tasks).most_common(1)[0][1] == 1
    assert len(tasks) == CONTACTS
    assert sorted(cards) == sorted(enrollment_ids)
    # Every enrollment waits for its step-2 card's decision (no due time while in flight).
    assert states == [None] * CONTACTS
