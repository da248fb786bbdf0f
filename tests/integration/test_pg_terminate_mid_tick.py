"""PostgreSQL connections killed under a running `salesbot serve` (`pg_terminate_backend` from
another connection, as a failover or an administrator does): the process recovers on its
own, without a restart, and every due cadence step still becomes exactly one task and one
card, posted to the rep.

The process connects with its own `application_name`, so the test kills its connections
and no one else's: every 50 ms for a few seconds, while the cadence tick (every 0.3 s, two
enrollments a chunk), the task worker and the Slack poster run. Kills of connections in
the middle of a transaction are counted apart from kills of idle pooled ones (those the
pool's pre-ping replaces). The processes read the time from a file that the test moves
with the real time, so the leases of work a killed transaction left run out as they would.
The figures are printed (`pytest -s`).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, func, select

from sandbox.slack_api import DEFAULT_BOT_TOKEN
from storage import models as m
from storage.db import make_session_factory
from tests.e2e.test_crash_recovery import LEASE_SECONDS, Deployment, forks
from tests.support.api import make_settings
from tests.support.cadence_world import seed_due_for_step_two
from tests.support.databases import admin_url
from tests.support.forkserver import ForkServer
from tests.support.slack import ServedSlack
from tests.support.slack_app import SIGNING_SECRET, wait_until

pytestmark = pytest.mark.slow

__all__ = ["forks"]

REP = "U0PGKILL1"
REP_EMAIL = "maria@lonestar.example.com"
APPLICATION = "salesbot-under-fire"
# Monday 2026-11-30, 16:00 UTC: 10:00 in Texas, inside the send window.
NOW = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
CONTACTS = 12
KILL_SECONDS = 4.0
KILL_EVERY = 0.05


def _seed(engine: Engine) -> tuple[int, list[int]]:
    return seed_due_for_step_two(
        engine, now=NOW, contacts=CONTACTS, rep_slack_id=REP, rep_email=REP_EMAIL
    )


def _left(engine: Engine, log: Path) -> str:
    """What was left undone, and the end of the process's log."""
    with make_session_factory(engine)() as session:
        enrollments = Counter(
            (status, step, started is not None, due is not None)
            for status, step, started, due in session.execute(
                select(
                    m.Enrollment.status,
                    m.Enrollment.step,
                    m.Enrollment.step_started_at,
                    m.Enrollment.next_due_at,
                )
            )
        )
        tasks = Counter(session.execute(select(m.JobTask.kind, m.JobTask.status)).all())
        cards = Counter(
            (state, ts is not None)
            for state, ts in session.execute(select(m.Card.state, m.Card.slack_message_ts))
        )
    return (
        f"enrollments (status, step, in flight, due): {dict(enrollments)}; tasks: {dict(tasks)};"
        f" cards (state, posted): {dict(cards)}\n{log.read_text(errors='replace')[-6000:]}"
    )


class Killer:
    """Terminates the process's PostgreSQL connections from another connection, in a thread."""

    def __init__(self, database: str) -> None:
        self._database = database
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-killer", daemon=True)
        self.killed: Counter[str] = Counter()  # by the state the connection was in
        self.last_kill: float = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with psycopg.connect(admin_url(), autocommit=True) as conn:
            deadline = time.monotonic() + KILL_SECONDS
            while not self._stop.is_set() and time.monotonic() < deadline:
                rows = conn.execute(
                    "SELECT state, pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND application_name = %s AND pid <> pg_backend_pid()",
                    (self._database, APPLICATION),
                ).fetchall()
                for state, done in rows:
                    if done:
                        self.killed[str(state)] += 1
                        self.last_kill = time.monotonic()
                self._stop.wait(KILL_EVERY)


class MovingClock:
    """Writes NOW plus the real time elapsed into the processes' clock file, every 50 ms."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._write()
        self._thread = threading.Thread(target=self._run, name="clock", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        at = NOW + timedelta(seconds=time.monotonic() - self._started)
        temporary = self._path.with_suffix(".tmp")
        temporary.write_text(at.isoformat())
        temporary.replace(self._path)  # never a half-written file

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self._write()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.mark.parametrize("db_kind", ["postgresql"])
def test_connections_killed_mid_tick_are_replaced_and_every_step_runs_once_without_a_restart(
    committed_engine: Engine,
    served_slack: ServedSlack,
    forks: ForkServer,
    tmp_path: Path,
) -> None:
    slack = served_slack.stand_in
    slack.reset()
    slack.add_user(REP, "maria", REP_EMAIL, real_name="Maria Lopez")
    job_id, enrollment_ids = _seed(committed_engine)
    url = committed_engine.url.set(query={"application_name": APPLICATION})
    database = str(committed_engine.url.database)
    clock = MovingClock(tmp_path / "now.txt")
    deployment = Deployment(
        forks,
        env={
            **os.environ,
            "SLACK_API_URL": served_slack.api_url,
            "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "DATABASE_URL": url.render_as_string(hide_password=False),
            "SALESBOT_SECRET_KEY": make_settings(str(url)).SALESBOT_SECRET_KEY,
            "SLACK_POST_INTERVAL_SECONDS": "0",
            "WORK_LEASE_SECONDS": LEASE_SECONDS,
            "WORKER_POLL_SECONDS": "0.2",
            "CADENCE_TICK_SECONDS": "0.3",
            "CADENCE_TICK_CHUNK": "2",
            "SALESBOT_CLOCK_FILE": str(tmp_path / "now.txt"),
            "LOG_LEVEL": "WARNING",
        },
        logs=tmp_path,
    )
    sessions = make_session_factory(committed_engine)

    def follow_ups() -> int:
        with sessions() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(m.Card)
                    .where(m.Card.job_id == job_id, m.Card.slack_message_ts.is_not(None))
                )
                or 0
            )

    killer = Killer(database)
    try:
        deployment.start()
        killer.start()
        # Kill for KILL_SECONDS while the work runs, then let the process carry on alone.
        time.sleep(KILL_SECONDS)
        killer.stop()
        progress_at_last_kill = follow_ups()
        try:
            wait_until(lambda: follow_ups() == CONTACTS, timeout=60, what="every follow-up")
        except TimeoutError:
            raise AssertionError(_left(committed_engine, deployment.log)) from None
        recovered = time.monotonic() - killer.last_kill
        # The same process, never restarted, still answers and stops cleanly.
        assert deployment.forks.poll(deployment.pid or 0) is None
        assert deployment.terminate() == -signal.SIGTERM
    finally:
        killer.stop()
        clock.stop()
        deployment.stop()

    log = deployment.log.read_text(errors="replace")
    with sessions() as session:
        tasks = session.execute(
            select(m.JobTask.contact_id, m.JobTask.step, m.JobTask.status).where(
                m.JobTask.job_id == job_id, m.JobTask.kind == "draft_email"
            )
        ).all()
        cards = session.scalars(select(m.Card.enrollment_id).where(m.Card.job_id == job_id)).all()
        due = session.scalars(
            select(m.Enrollment.next_due_at).where(m.Enrollment.id.in_(enrollment_ids))
        ).all()
        open_tasks = session.scalar(
            select(func.count())
            .select_from(m.JobTask)
            .where(m.JobTask.status.in_(["pending", "running"]))
        )
    posted = [message for message in slack.messages(REP) if "Following up" in str(message.blocks)]
    per_step = Counter((contact, step) for contact, step, _ in tasks)
    duplicates = sum(n - 1 for n in per_step.values()) + len(cards) - len(set(cards))
    lost = CONTACTS - len(set(cards))
    failures = log.count("Traceback")
    print(
        f"\npg_terminate_backend under `salesbot serve`: {sum(killer.killed.values())} connections"
        f" killed in {KILL_SECONDS:.0f} s ({killer.killed.total() - killer.killed['idle']}"
        f" mid-transaction or mid-query: {dict(killer.killed)}); {failures} failed rounds"
        f" logged; {progress_at_last_kill} of {CONTACTS} follow-ups posted at the last kill,"
        f" all {CONTACTS} {recovered:.1f} s after it; {duplicates} duplicates, {lost} lost,"
        f" {open_tasks} tasks stuck, {len(posted)} Slack messages; 0 restarts"
    )
    assert killer.killed.total() >= 20, killer.killed
    assert (duplicates, lost, open_tasks) == (0, 0, 0)
    assert {status for _, _, status in tasks} == {"succeeded"}
    assert sorted(cards) == sorted(enrollment_ids)
    assert due == [None] * CONTACTS
    # A post whose recording was cut off by a kill may be posted again (at least once).
    assert len(posted) >= CONTACTS
