"""A real `salesbot serve` killed at every step of a cadence tick, then restarted: every due
step becomes exactly one task and one card, the job the deliverability guard paused stays
paused and its channel is told once, nothing is stuck.

The tick commits, in order: the enrollments whose pause ended (`cadence.resumed`), the
guard's pause of a job with its notice (`cadence.guarded`), then each chunk of due steps
(`cadence.chunk`, killed in tests/e2e/test_cadence_crash.py). Each round arms one point
and waits for the process to exit with 137, as after `kill -9`; a last round sends a real
SIGKILL while the ticks of 12 enrollments, two a chunk, are under way; a clean process
then finishes the work. The processes read the time from a file fixed on a Monday inside
the send window. The figures are printed (`pytest -s`).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from domain.jobs import Cadence, JobParams, StepTemplate, TargetSelection
from sandbox.slack_api import DEFAULT_BOT_TOKEN, DEFAULT_CHANNEL_ID, DEFAULT_TEAM_ID
from storage import models as m
from storage.db import make_session_factory
from tests.e2e.test_crash_recovery import LEASE_SECONDS, Deployment, forks
from tests.support.accounts import create_org, ensure_user, link_slack_team
from tests.support.api import make_settings
from tests.support.builders import make_client, make_contact
from tests.support.forkserver import ForkServer
from tests.support.slack import ServedSlack
from tests.support.slack_app import SIGNING_SECRET, wait_until

pytestmark = pytest.mark.slow

__all__ = ["forks"]

REP = "U0TICKILL"
REP_EMAIL = "maria@lonestar.example.com"
# Monday 2026-11-30, 16:00 UTC: 10:00 in Texas.
NOW = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
RESUMING = 12  # enrollments of the job whose out-of-office pauses ended
GUARDED = 3  # due enrollments of the job whose bounces spiked
POINTS = ["cadence.resumed", "cadence.guarded"]


def _params() -> dict[str, object]:
    return JobParams(
        target=TargetSelection(contact_ids=[1]),
        review_channel_id=DEFAULT_CHANNEL_ID,
        templates=[
            StepTemplate(subject="Turn times", body="Hi {{ first_name }}, turn times are down."),
            StepTemplate(subject="Following up", body="Hi {{ first_name }}, any thoughts?"),
        ],
        cadence=Cadence(days=[0, 4]),
    ).model_dump(mode="json")


def _seed(engine: Engine) -> tuple[int, int]:
    """Two running jobs: one whose contacts were paused by an out-of-office that ended an
    hour ago (step 2 due once resumed), one whose bounces spiked (step 2 due, must not run)."""
    before = NOW - timedelta(days=5)
    with make_session_factory(engine)() as session:
        org = create_org(session, slug="lonestar", name="Lone Star Appraisals")
        link_slack_team(session, org.id, DEFAULT_TEAM_ID)
        rep_id = ensure_user(session, org.id, email=REP_EMAIL, name="Maria Lopez")
        rep = session.get(m.User, rep_id)
        org_row = session.get(m.Organization, org.id)
        assert rep is not None
        assert org_row is not None
        rep.slack_user_id = REP
        lender = make_client(session, org_row, name="Pinnacle Lending", domain="pinnacle.example")
        jobs = []
        for name in ("Win-back", "Bounce-heavy"):
            job = m.Job(
                org_id=org.id,
                owner_id=rep_id,
                name=f"{name} · launch",
                status="running",
                params=_params(),
                started_at=before,
                planned_at=before,
            )
            session.add(job)
            session.flush()
            jobs.append(job.id)
        resuming, guarded = jobs
        for n in range(RESUMING):
            person = make_contact(
                session, org_row, lender, email=f"ooo{n}@pinnacle.example", state="TX"
            )
            session.add(
                m.Enrollment(
                    org_id=org.id,
                    job_id=resuming,
                    contact_id=person.id,
                    step=1,
                    status="paused",
                    stop_reason="out of office",
                    paused_until=NOW - timedelta(hours=1, minutes=n),
                    created_at=before,
                    last_step_at=before,
                )
            )
        for n in range(GUARDED):
            person = make_contact(
                session, org_row, lender, email=f"due{n}@pinnacle.example", state="TX"
            )
            session.add(
                m.Enrollment(
                    org_id=org.id,
                    job_id=guarded,
                    contact_id=person.id,
                    step=1,
                    status="active",
                    created_at=before,
                    last_step_at=before,
                    next_due_at=NOW - timedelta(minutes=n + 1),
                )
            )
        # 20 sends of the second job, 2 of them hard bounces yesterday: 10% (limit 5%).
        for n in range(20):
            session.add(
                m.EmailSend(
                    org_id=org.id,
                    job_id=guarded,
                    message_id=f"<g{n}@lonestar.example.com>",
                    to_email=f"p{n}@bounce.example",
                    subject="Turn times",
                    status="sent",
                    sent_at=NOW - timedelta(days=2),
                )
            )
        for n in range(2):
            gone = make_contact(session, org_row, lender, email=f"gone{n}@bounce.example")
            session.add(
                m.Enrollment(
                    org_id=org.id,
                    job_id=guarded,
                    contact_id=gone.id,
                    step=1,
                    status="stopped",
                    stop_reason="bounced",
                    created_at=before,
                    updated_at=NOW - timedelta(days=1),
                )
            )
        session.commit()
    return resuming, guarded


@pytest.mark.parametrize("db_kind", ["postgresql"])
def test_a_tick_killed_after_each_of_its_commits_loses_nothing_and_runs_nothing_twice(
    committed_engine: Engine,
    served_slack: ServedSlack,
    forks: ForkServer,
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    slack = served_slack.stand_in
    slack.reset()
    slack.add_user(REP, "maria", REP_EMAIL, real_name="Maria Lopez")
    resuming, guarded = _seed(committed_engine)
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

    def count(query: object) -> int:
        with sessions() as session:
            return int(session.scalar(query) or 0)  # type: ignore[call-overload]

    def tasks_of(job_id: int) -> int:
        return count(select(func.count()).select_from(m.JobTask).where(m.JobTask.job_id == job_id))

    def posted_cards() -> int:
        return count(
            select(func.count())
            .select_from(m.Card)
            .where(m.Card.job_id == resuming, m.Card.slack_message_ts.is_not(None))
        )

    def guard_notices() -> int:
        return len(
            [
                message
                for message in slack.messages(DEFAULT_CHANNEL_ID)
                if f"Job #{guarded} (" in str(message.text) and "paused itself" in str(message.text)
            ]
        )

    try:
        deployment.start("cadence.resumed")
        deployment.wait_killed("cadence.resumed", timeout=60)
        # The resumption was committed and kept; nothing was claimed yet.
        assert count(
            select(func.count())
            .select_from(m.Enrollment)
            .where(m.Enrollment.job_id == resuming, m.Enrollment.status == "active")
        ) == (RESUMING)
        assert tasks_of(resuming) == 0

        deployment.start("cadence.guarded")
        deployment.wait_killed("cadence.guarded", timeout=60)
        # The pause and its notice were committed together; no step of either job ran.
        with sessions() as session:
            assert session.scalar(select(m.Job.status).where(m.Job.id == guarded)) == "paused"
        assert tasks_of(resuming) == tasks_of(guarded) == 0

        # A real kill -9 while the chunks of the resumed job are being claimed and drafted.
        deployment.start()
        wait_until(lambda: tasks_of(resuming) >= 2, timeout=60, what="the first chunk")
        deployment.kill_9()
        at_kill = (tasks_of(resuming), posted_cards())

        deployment.start()
        wait_until(lambda: posted_cards() == RESUMING, timeout=60, what="every follow-up posted")
        wait_until(lambda: guard_notices() >= 1, timeout=30, what="the guard's notice")
        time.sleep(1.0)  # time for a second notice or a stray task to show, if any
        assert deployment.terminate() == -signal.SIGTERM
    finally:
        deployment.stop()

    with sessions() as session:
        tasks = session.execute(
            select(m.JobTask.contact_id, m.JobTask.step).where(
                m.JobTask.job_id == resuming, m.JobTask.kind == "draft_email"
            )
        ).all()
        cards = session.scalars(select(m.Card.enrollment_id).where(m.Card.job_id == resuming)).all()
        guarded_status = session.scalar(select(m.Job.status).where(m.Job.id == guarded))
        guarded_enrollments = Counter(
            session.scalars(select(m.Enrollment.stop_reason).where(m.Enrollment.job_id == guarded))
        )
        stuck = session.scalar(
            select(func.count())
            .select_from(m.JobTask)
            .where(m.JobTask.status.in_(["pending", "running"]))
        )
    per_step = Counter(tasks)
    duplicates = sum(n - 1 for n in per_step.values()) + len(cards) - len(set(cards))
    lost = RESUMING - len(set(cards))
    print(
        f"\ncadence tick kills: {len(deployment.kills)} kills ({', '.join(deployment.kills)}),"
        f" {deployment.starts} process starts; at the kill -9 {at_kill[0]} tasks and"
        f" {at_kill[1]} cards posted; after: {len(tasks)} steps run for {RESUMING} resumed"
        f" enrollments, {duplicates} duplicates, {lost} lost, {stuck} stuck;"
        f" guarded job {guarded_status} with {tasks_of(guarded)} steps run and"
        f" {guard_notices()} notice; {time.monotonic() - started:.0f} s"
    )
    assert deployment.kills == [*POINTS, "SIGKILL"]
    assert (duplicates, lost, stuck) == (0, 0, 0)
    assert len(tasks) == RESUMING
    assert guarded_status == "paused"
    assert tasks_of(guarded) == 0
    assert guarded_enrollments == Counter({"job paused": GUARDED, "bounced": 2})
    assert guard_notices() == 1
