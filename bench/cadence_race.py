"""Three `salesbot worker` processes race through 30 days of cadences on one PostgreSQL.

`python -m bench cadence_race` (part of `make bench`), or `.venv/bin/python
bench/cadence_race.py`. Issue 13's figure: with several workers on one database, every
cadence step that is due runs exactly once: none twice (SKIP LOCKED claims, the periodic
lock, the compare-and-set that ends a step), none forgotten.

Salesbot runs as deployed: three `salesbot worker` subprocesses started from the command
line entry point (Slack off, Google pointed at the stand-in served by this process,
bench/reply_world.py). Every process reads the time from one file (SALESBOT_CLOCK_FILE);
this driver moves it one simulated hour at a time, from Monday 2027-01-04 08:00 in Chicago
to 30 days later (Martin Luther King Day included), each hour after
BENCH_CADENCE_RACE_HOUR_SECONDS (0.3) of real time, and longer while the workers still have
tasks in hand (at most 5 s), so the simulated days do not outrun the work. The workers
tick every 0.2 s (CADENCE_TICK_SECONDS).

The steps are a rep's: LinkedIn touch (day 0), call (day 4), LinkedIn (day 10), task
(day 21). Each step a tick runs becomes a task, which a worker turns into the rep's card;
the driver, as the reps, marks every open card Done through the use case
(`Review.complete_step`, from 4 threads, while the workers tick) at each simulated hour;
Done ends the step and the next one counts its gap from then. Email steps were tried
first, sent by `auto_approve` through the Gmail stand-in: they go out at about 5 emails a
second here (one send at a time per mailbox, a busy mailbox retried by the outbox's
poll), so the month's 20,000 emails would take over an hour; the step's end is the same
compare-and-set (`end_step`) either way.

The data: 50 reps (BENCH_CADENCE_RACE_REPS), each owning a job of 100 of the 5,000
contacts (BENCH_CADENCE_RACE_ENROLLMENTS), spread over states from coast to coast (their
send windows open at different hours), five to a client.

At the end (the clock held at day 30 until the workers are idle) the driver counts the
step tasks of each (enrollment, step) and compares them with what the cadence says must
have run: step 1 for everyone, and step k once step k-1 was done and its gap, counted from
then in the contact's zone, brought the next opening of the window before the last instant
(the product's own schedule arithmetic, `domain.cadence`). It prints executed, duplicates
(must be 0) and missed (must be 0), and the steps that ran though not yet due (must be 0).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: the repository's root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select, text  # noqa: E402

from bench.reply_world import (  # noqa: E402
    ROOT,
    StandIns,
    fresh_database,
    salesbot_env,
)
from bot.app import build_runtime, holiday_calendar  # noqa: E402
from bot.settings import Settings  # noqa: E402
from domain.cadence import (  # noqa: E402
    CadenceSettings,
    Channel,
    next_step_at,
    resolve_time_zone,
)
from domain.errors import SalesbotError  # noqa: E402
from domain.jobs import (  # noqa: E402
    Cadence,
    CadenceStep,
    CreateJobRequest,
    JobParams,
    StepTemplate,
    TargetSelection,
)
from domain.outreach import Actor  # noqa: E402
from storage import models as m  # noqa: E402
from storage.db import make_engine, make_session_factory  # noqa: E402
from tests.support.accounts import create_org  # noqa: E402

DATABASE = "salesbot_bench_cadence_race"
ENROLLMENTS = int(os.environ.get("BENCH_CADENCE_RACE_ENROLLMENTS", "5000"))
DAYS = int(os.environ.get("BENCH_CADENCE_RACE_DAYS", "30"))
HOUR_SECONDS = float(os.environ.get("BENCH_CADENCE_RACE_HOUR_SECONDS", "0.3"))
WORKERS = 3
REPS = int(os.environ.get("BENCH_CADENCE_RACE_REPS", "50"))
DRAIN_SECONDS = 5.0  # the longest an hour waits for the workers' tasks and emails
SETTLE_TIMEOUT = 600.0
START = datetime(2027, 1, 4, 14, 0, tzinfo=UTC)  # Monday 08:00 in Chicago
STATES = ("TX", "NY", "CA", "FL", "IL", "CO", "WA", "GA", "AZ", "MA")
STEPS = (
    CadenceStep(day=0, channel=Channel.LINKEDIN, title="Connect on LinkedIn"),
    CadenceStep(day=4, channel=Channel.CALL, title="Call about turn times"),
    CadenceStep(day=10, channel=Channel.LINKEDIN, title="Comment on a post"),
    CadenceStep(day=21, channel=Channel.TASK, title="Send the county report"),
)
CADENCE_DAYS = tuple(step.day for step in STEPS)
COMPLETING_THREADS = 4


def _command() -> str:
    sizes = [
        f"{name}={os.environ[name]}"
        for name in (
            "BENCH_CADENCE_RACE_ENROLLMENTS",
            "BENCH_CADENCE_RACE_DAYS",
            "BENCH_CADENCE_RACE_HOUR_SECONDS",
            "BENCH_CADENCE_RACE_REPS",
        )
        if name in os.environ
    ]
    return " ".join([*sizes, ".venv/bin/python bench/cadence_race.py"])


class Clock:
    """The file every process reads the time from; this driver moves it."""

    def __init__(self, at: datetime) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="salesbot-clock-")) / "now"
        self.at = at
        self.set(at)

    def set(self, at: datetime) -> None:
        """Move the clock (written whole, then renamed: a reader never sees half)."""
        partial = self.path.with_suffix(".tmp")
        partial.write_text(at.isoformat(), encoding="utf-8")
        os.replace(partial, self.path)
        self.at = at


def _settings(env: dict[str, str]) -> Settings:
    names = set(Settings.model_fields)
    return Settings(_env_file=None, **{k: v for k, v in env.items() if k in names})  # type: ignore[arg-type]


def seed(env: dict[str, str]) -> tuple[Actor, list[int]]:
    """The org, its reps, clients, contacts and one job per rep, planned (enrolled, step 1's
    tasks queued) at START; return the admin who completes the cards, and the jobs."""
    runtime = build_runtime(_settings(env))
    sessions = runtime.services.session_factory
    per_rep = ENROLLMENTS // REPS
    with sessions() as session:
        org = create_org(session, slug="bench-race", name="Race Appraisals")
        admin = m.User(org_id=org.id, email="lead@race-appraisals.example", role="admin")
        reps = [
            m.User(org_id=org.id, email=f"rep{n}@race-appraisals.example", role="rep")
            for n in range(REPS)
        ]
        session.add_all([admin, *reps])
        session.flush()
        clients = [
            m.Client(org_id=org.id, name=f"Lender {n}", domain=f"lender{n}.example", tags=[])
            for n in range(max(1, ENROLLMENTS // 5))
        ]
        session.add_all(clients)
        session.flush()
        contacts = [
            m.Contact(
                org_id=org.id,
                client_id=clients[n // 5].id,
                email=f"lo{n}@lender{n // 5}.example",
                first_name=f"Pat{n}",
                last_name="Whitfield",
                role_code="LO",
                state=STATES[n % len(STATES)],
                tags=[],
            )
            for n in range(per_rep * REPS)
        ]
        session.add_all(contacts)
        session.flush()
        ids = [c.id for c in contacts]
        rep_ids = [rep.id for rep in reps]
        actor = Actor(org_id=org.id, user_id=admin.id, role="admin")
        session.commit()
    params = JobParams(
        target=TargetSelection(contact_ids=[1]),
        templates=[StepTemplate(subject="Turn times", body="Hi {{ first_name }}")],
        cadence=Cadence(steps=list(STEPS)),
    )
    jobs = []
    for n, rep_id in enumerate(rep_ids):
        mine = ids[n * per_rep : (n + 1) * per_rep]
        request = CreateJobRequest(
            name=f"Win-back, rep {n}",
            params=params.model_copy(update={"target": TargetSelection(contact_ids=mine)}),
        )
        job = runtime.outreach.jobs.create_job(actor.org_id, request, owner_id=rep_id)
        runtime.outreach.jobs.plan_job(actor.org_id, job.id)
        jobs.append(job.id)
    runtime.services.engine.dispose()
    return actor, jobs


class Reps:
    """The reps: every open step card is marked Done through the use case."""

    def __init__(self, env: dict[str, str], actor: Actor) -> None:
        self.runtime = build_runtime(_settings(env))
        self.actor = actor
        self.done = 0
        self.seconds = 0.0
        self.refused: Counter[str] = Counter()
        self._pool = ThreadPoolExecutor(COMPLETING_THREADS)

    def complete_open_cards(self) -> int:
        """Mark Done every card waiting for its rep; return how many were done."""
        with self.runtime.services.session_factory() as session:
            cards = list(
                session.scalars(
                    select(m.Card.id)
                    .where(
                        m.Card.org_id == self.actor.org_id,
                        m.Card.state.in_(("suggested", "in_review")),
                        m.Card.enrollment_id.is_not(None),
                    )
                    .order_by(m.Card.id)
                )
            )
        started = time.monotonic()
        done = sum(self._pool.map(self._complete, cards))
        self.seconds += time.monotonic() - started
        self.done += done
        return done

    def _complete(self, card_id: int) -> int:
        try:
            self.runtime.outreach.review.complete_step(self.actor, card_id)
        except SalesbotError as exc:
            self.refused[str(exc)[:80]] += 1
            return 0
        return 1

    def close(self) -> None:
        """Stop the threads and the runtime's engine."""
        self._pool.shutdown()
        self.runtime.services.engine.dispose()


class Workers:
    """`salesbot worker` processes, their output in one log file."""

    def __init__(self, count: int, env: dict[str, str]) -> None:
        self.log_path = Path(tempfile.mkdtemp(prefix="salesbot-race-")) / "workers.log"
        self._log = self.log_path.open("ab")
        command = [sys.executable, "-c", "from bot.cli import main; main()", "worker"]
        self._processes = [
            subprocess.Popen(command, env=env, cwd=ROOT, stdout=self._log, stderr=self._log)
            for _ in range(count)
        ]

    def check(self) -> None:
        """Raise if a worker ended."""
        for process in self._processes:
            if process.poll() is not None:
                raise RuntimeError(
                    f"a salesbot worker exited with {process.returncode}; log: {self.log_path}"
                )

    def stop(self) -> None:
        """SIGTERM each (it finishes the work in hand), SIGKILL after 60 s."""
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._log.close()


IN_HAND = text(
    "SELECT (SELECT count(*) FROM job_tasks WHERE status IN ('pending', 'running')) "
    "+ (SELECT count(*) FROM cards WHERE state IN ('approved', 'executing'))"
)
DUE = text(
    "SELECT count(*) FROM enrollments WHERE status = 'active' AND next_due_at IS NOT NULL "
    "AND next_due_at <= :now"
)


def run_the_month(sessions: Any, clock: Clock, workers: Workers, reps: Reps) -> dict[str, float]:
    """Move the clock an hour at a time to START + DAYS; then hold it until all is done."""
    end = START + timedelta(days=DAYS)
    waited = 0.0
    started = time.monotonic()
    hours = 0
    while clock.at < end:
        time.sleep(HOUR_SECONDS)
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline:
            reps.complete_open_cards()
            with sessions() as session:
                busy = session.scalar(IN_HAND, {"now": clock.at})
            if not busy:
                break
            time.sleep(0.1)
            waited += 0.1
        workers.check()
        clock.set(clock.at + timedelta(hours=1))
        hours += 1
        if hours % 24 == 0:
            print(
                f"  day {hours // 24:2d} ({clock.at:%a %Y-%m-%d}) after "
                f"{time.monotonic() - started:.0f} s",
                flush=True,
            )
    month_s = time.monotonic() - started
    settle_started = time.monotonic()
    quiet = 0
    while quiet < 5:
        if time.monotonic() - settle_started > SETTLE_TIMEOUT:
            raise RuntimeError(
                f"the workers were not idle {SETTLE_TIMEOUT:.0f} s after day {DAYS}; "
                f"log: {workers.log_path}"
            )
        time.sleep(0.5)
        workers.check()
        completed = reps.complete_open_cards()
        with sessions() as session:
            busy = session.scalar(IN_HAND, {"now": clock.at})
            due = session.scalar(DUE, {"now": clock.at})
        quiet = quiet + 1 if not busy and not due and not completed else 0
    return {
        "month": month_s,
        "waited": waited,
        "settle": time.monotonic() - settle_started,
    }


def expected_steps(sessions: Any, org_id: int, *, final: datetime) -> dict[tuple[int, int], str]:
    """What the cadence says must have run by `final`: (enrollment, step) → why."""
    with sessions() as session:
        stored = session.scalar(
            select(m.Organization.cadence_settings).where(m.Organization.id == org_id)
        )
        settings = CadenceSettings.model_validate(dict(stored or {}))
        enrollments = session.execute(
            select(m.Enrollment.id, m.Contact.timezone, m.Contact.state).join(
                m.Contact, m.Contact.id == m.Enrollment.contact_id
            )
        ).all()
        # When each step ended: its card marked Done (executed_at).
        ends = {
            (int(e), int(s)): at
            for e, s, at in session.execute(
                text(
                    "SELECT (t.input->>'enrollment_id')::bigint, t.step, c.executed_at "
                    "FROM cards c JOIN job_tasks t ON t.id = c.task_id "
                    "WHERE c.state = 'done' AND t.input ? 'cadence_step'"
                )
            )
        }
    holidays = holiday_calendar(settings)
    window = settings.window()
    gaps = [b - a for a, b in zip(CADENCE_DAYS, CADENCE_DAYS[1:], strict=False)]
    expected: dict[tuple[int, int], str] = {}
    for enrollment_id, zone_name, state in enrollments:
        zone = resolve_time_zone(contact_zone=zone_name, state=state, org_zone=settings.timezone)
        expected[(enrollment_id, 0)] = "made at launch"
        for step in range(1, len(CADENCE_DAYS)):
            previous = ends.get((enrollment_id, step - 1))
            if previous is None:
                break
            due = next_step_at(
                previous, gaps[step - 1], zone=zone.zone, window=window, holidays=holidays
            )
            if due > final:
                break
            expected[(enrollment_id, step)] = f"due {due.isoformat()}"
    return expected


def _counts(session: Any, query: str) -> Counter[tuple[int, int]]:
    return Counter({(int(e), int(st)): int(n) for e, st, n in session.execute(text(query))})


def main() -> None:
    """Run the race and print its figures."""
    print(f"command: {_command()}")
    url = fresh_database(DATABASE)
    stand_ins = StandIns()
    clock = Clock(START)
    env = salesbot_env(
        url,
        stand_ins,
        SALESBOT_CLOCK_FILE=str(clock.path),
        CADENCE_TICK_SECONDS="0.2",
        WORKER_POLL_SECONDS="0.2",
        # Leases are counted on the simulated clock: an hour passes every few tenths of a
        # second, so the longest lease (a simulated day) is what keeps a claim for a few
        # real seconds.
        WORK_LEASE_SECONDS="86400",
        GMAIL_SEND_LEASE_SECONDS="86400",
        LOG_LEVEL="WARNING",
    )
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):  # Slack off: no card messages
        env.pop(name, None)
    engine = make_engine(url, pool_size=2)
    sessions = make_session_factory(engine)
    workers: Workers | None = None
    reps: Reps | None = None
    try:
        started = time.monotonic()
        actor, jobs = seed(env)
        print(
            f"seeded {ENROLLMENTS:,} enrollments in {len(jobs)} jobs of {REPS} reps in "
            f"{time.monotonic() - started:.0f} s; {WORKERS} salesbot workers from "
            f"{START:%a %Y-%m-%d %H:%M} UTC, {DAYS} days, an hour every {HOUR_SECONDS} s "
            f"({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        reps = Reps(env, actor)
        workers = Workers(WORKERS, env)
        timing = run_the_month(sessions, clock, workers, reps)
        workers.stop()
        workers = None
        final = clock.at
        expected = expected_steps(sessions, actor.org_id, final=final)
        with sessions() as session:
            tasks = _counts(
                session,
                "SELECT (input->>'enrollment_id')::bigint, step, count(*) FROM job_tasks "
                "WHERE input ? 'cadence_step' GROUP BY 1, 2",
            )
            done = _counts(
                session,
                "SELECT c.enrollment_id, t.step, count(*) FROM cards c "
                "JOIN job_tasks t ON t.id = c.task_id WHERE c.state = 'done' GROUP BY 1, 2",
            )
            cards = Counter(
                dict(
                    session.execute(
                        select(m.Card.state, func.count())
                        .where(m.Card.job_id.in_(jobs))
                        .group_by(m.Card.state)
                    ).all()
                )
            )
            statuses = Counter(
                dict(
                    session.execute(
                        select(m.Enrollment.status, func.count()).group_by(m.Enrollment.status)
                    ).all()
                )
            )
        executed = sum(1 for key in tasks if key in expected)
        duplicates = sum(n - 1 for n in tasks.values() if n > 1)
        missed = sorted(key for key in expected if key not in tasks)
        early = sorted(key for key in tasks if key not in expected)
        done_twice = sum(n - 1 for n in done.values() if n > 1)
        by_step = Counter(step for _, step in tasks)
        names = [f"{s.channel.value} (day {s.day})" for s in STEPS]
        print(
            f"{WORKERS} salesbot workers, {ENROLLMENTS:,} enrollments, {DAYS} simulated days "
            f"({START:%Y-%m-%d} → {final:%Y-%m-%d %H:%M} UTC) in {timing['month']:.0f} s "
            f"(the reps' Done clicks {reps.seconds:.0f} s, waiting for the workers' tasks "
            f"{timing['waited']:.0f} s), idle {timing['settle']:.0f} s after the last hour; "
            f"the reps marked {reps.done:,} cards Done (refused: {dict(reps.refused) or 0})"
        )
        print(
            f"  steps the cadence says must have run by day {DAYS}: {len(expected):,}; "
            f"executed {executed:,}; duplicates {duplicates} (must be 0); missed "
            f"{len(missed)} (must be 0); ran though not due {len(early)} (must be 0)"
        )
        print(
            "  step tasks: "
            + ", ".join(f"{name} {by_step[i]:,}" for i, name in enumerate(names))
            + f"; a step done twice: {done_twice}"
        )
        print(f"  cards: {dict(cards.most_common())}; enrollments: {dict(statuses.most_common())}")
        for key in missed[:5]:
            print(f"  missed: enrollment {key[0]} step {key[1] + 1} ({expected[key]})")
        for key in early[:5]:
            print(f"  ran though not due: enrollment {key[0]} step {key[1] + 1}")
        ok = not duplicates and not missed and not early and not done_twice
        print(f"  verdict: {'every due step ran exactly once' if ok else 'FAILED'}")
    finally:
        if workers is not None:
            workers.stop()
        if reps is not None:
            reps.close()
        stand_ins.stop()
        engine.dispose()


if __name__ == "__main__":
    main()
