"""The cadence tick under any sequence of ticks, step ends, pauses, resumptions and replies
(hypothesis), on the real tables of SQLite and PostgreSQL.

A stateful test moves the clock by hours or days, runs the tick, ends the steps in flight
(as a sent email or a card marked Done does), delivers the same step's end a second time
(a late duplicate), pauses and resumes the job, and has contacts reply. It keeps its own
model of where each enrollment is and checks, after every step:

- every step of an enrollment becomes exactly one task, never two, and only steps that
  ran have one (a step in flight has its task; the next has none yet);
- a step's end is recorded once: the step advances by exactly one, a late duplicate of
  the end changes nothing, and the step never goes back;
- a step runs no earlier than its gap after the previous step ended;
- a tick of a paused job runs nothing, and its resumption runs no step a second time;
- a stopped or completed enrollment gets no task any more;
- after a tick, nothing of a running job is left due and unjudged.

Each example runs in a transaction rolled back at its end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Connection, Engine, select
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from domain.deps import Deps
from domain.errors import SalesbotError
from domain.jobs import Cadence, JobParams, JobStatus, StepTemplate, TargetSelection
from domain.outreach import Outreach
from integrations.holiday_calendar import public_holidays
from storage import models as m
from storage.uow import UnitOfWork
from tests.support.builders import make_client, make_contact, make_org

# Wednesday 2026-11-25 15:00 UTC: 09:00 in Texas, the day before Thanksgiving.
START = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
DAYS = (0, 4, 10)
CONTACTS = 3
WHO = st.integers(min_value=0, max_value=CONTACTS - 1)
EXAMPLES = {"sqlite": 40, "postgresql": 15}

pytestmark = pytest.mark.slow  # about 15 s for both databases


@dataclass
class Model:
    """What the test expects of one enrollment."""

    enrollment_id: int
    contact_id: int
    step: int = 0
    in_flight: bool = False
    ended: str | None = None  # "stopped" or "completed"
    # When each step ended (index: the step), and when each step's task appeared.
    ended_at: dict[int, datetime] = field(default_factory=dict)
    ran_at: dict[int, datetime] = field(default_factory=dict)


class CadenceLives(RuleBasedStateMachine):
    """One running job of three contacts through ticks, step ends, pauses and replies."""

    engine: Engine

    def __init__(self) -> None:
        super().__init__()
        self.connection: Connection = self.engine.connect()
        self.transaction = self.connection.begin()
        self.clock = FixedClock(START)

        def sessions() -> Session:
            return Session(
                bind=self.connection,
                join_transaction_mode="create_savepoint",
                expire_on_commit=False,
                autoflush=False,
            )

        self.sessions: Callable[[], Session] = sessions
        self.outreach = Outreach.build(
            Deps(uow=lambda: UnitOfWork(sessions), clock=self.clock),
            unsubscribe_url=lambda org, contact, *_: f"https://x.example/u/{org}/{contact}",
            holidays=lambda _settings: public_holidays("US"),
        )
        params = JobParams(
            target=TargetSelection(contact_ids=[1]),
            templates=[StepTemplate(subject=f"s{i}", body=f"b{i}") for i in range(len(DAYS))],
            cadence=Cadence(days=list(DAYS)),
        )
        with sessions() as session:
            org = make_org(session)
            lender = make_client(session, org)
            job = m.Job(
                org_id=org.id,
                name="Win-back",
                status="running",
                params=params.model_dump(mode="json"),
                started_at=START,
                planned_at=START,
            )
            session.add(job)
            session.flush()
            self.org_id, self.job_id = org.id, job.id
            self.model: list[Model] = []
            for _ in range(CONTACTS):
                person = make_contact(session, org, lender, state="TX")
                row = m.Enrollment(
                    org_id=org.id,
                    job_id=job.id,
                    contact_id=person.id,
                    step=0,
                    status="active",
                    next_due_at=START,
                    created_at=START,
                )
                session.add(row)
                session.flush()
                self.model.append(Model(row.id, person.id))
            session.commit()
        self.paused = False

    def teardown(self) -> None:
        event(f"steps reached: {sorted(e.step for e in self.model)}")
        event(f"ended: {sorted(str(e.ended) for e in self.model)}")
        self.transaction.rollback()
        self.connection.close()

    # -- reading the tables -------------------------------------------------------------

    def _tasks(self) -> list[tuple[int, int]]:
        with self.sessions() as session:
            rows = session.execute(
                select(m.JobTask.contact_id, m.JobTask.step).where(m.JobTask.job_id == self.job_id)
            ).all()
        return [(int(contact or 0), int(step)) for contact, step in rows]

    def _rows(self) -> dict[int, tuple[str, int, datetime | None, datetime | None]]:
        with self.sessions() as session:
            rows = session.execute(
                select(
                    m.Enrollment.id,
                    m.Enrollment.status,
                    m.Enrollment.step,
                    m.Enrollment.step_started_at,
                    m.Enrollment.next_due_at,
                ).where(m.Enrollment.job_id == self.job_id)
            ).all()
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}

    # -- the world moving ---------------------------------------------------------------

    @rule(hours=st.integers(min_value=1, max_value=120))
    def time_passes_and_the_tick_runs(self, hours: int) -> None:
        self.clock.advance(hours=hours)
        self.the_tick_runs()

    @rule()
    def the_tick_runs(self) -> None:
        now = self.clock.now()
        before = Counter(self._tasks())
        self.outreach.cadences.tick()
        new = Counter(self._tasks()) - before
        rows = self._rows()
        by_contact = {e.contact_id: e for e in self.model}
        for (contact_id, step), count in new.items():
            expected = by_contact[contact_id]
            assert count == 1
            assert not self.paused, "a paused job ran a step"
            assert expected.ended is None, f"an enrollment {expected.ended} ran a step"
            assert not expected.in_flight, "a step ran while the one before was in flight"
            assert step == expected.step, (step, expected.step)
            if step > 0:
                gap = timedelta(days=DAYS[step] - DAYS[step - 1])
                assert now - expected.ended_at[step - 1] >= gap, "a step ran before its day"
            expected.in_flight = True
            expected.ran_at[step] = now
        for expected in self.model:
            status, step, started, due = rows[expected.enrollment_id]
            if status in ("stopped", "completed") and expected.ended is None:
                expected.ended = status
            if not self.paused and status == "active" and started is None:
                # Judged: due later, never left due now.
                assert due is not None, (expected, status)
                assert due > now, (expected, status, due)

    @rule(who=WHO)
    def a_step_in_flight_ends(self, who: int) -> None:
        expected = self.model[who]
        final = expected.step + 1 >= len(DAYS)
        with UnitOfWork(self.sessions) as uow:
            recorded = uow.cadence.step_done(
                expected.enrollment_id, step=expected.step, at=self.clock.now(), final=final
            )
            uow.commit()
        assert recorded == (expected.in_flight and expected.ended is None), expected
        if recorded:
            expected.ended_at[expected.step] = self.clock.now()
            expected.step += 1
            expected.in_flight = False
            if final:
                expected.ended = "completed"

    @precondition(lambda self: any(e.step > 0 for e in self.model))
    @rule(who=WHO)
    def the_end_of_a_step_arrives_again(self, who: int) -> None:
        expected = self.model[who]
        if expected.step == 0:
            return
        with UnitOfWork(self.sessions) as uow:
            recorded = uow.cadence.step_done(
                expected.enrollment_id, step=expected.step - 1, at=self.clock.now()
            )
            uow.commit()
        assert not recorded, "a step's end was recorded twice"

    @rule(pause=st.booleans())
    def the_job_is_paused_or_resumed(self, pause: bool) -> None:
        to = JobStatus.PAUSED if pause else JobStatus.RUNNING
        try:
            self.outreach.jobs.set_job_status(self.org_id, self.job_id, to)
        except SalesbotError:
            return  # already in that state
        self.paused = pause

    # Not before a few steps ended: a reply stops the contact's cadence for good.
    @precondition(lambda self: sum(e.step for e in self.model) >= 3)
    @rule(who=WHO)
    def a_contact_replies(self, who: int) -> None:
        with self.sessions() as session:
            contact = session.get(m.Contact, self.model[who].contact_id)
            assert contact is not None
            contact.last_replied_at = self.clock.now()
            session.commit()

    # -- what must always hold ----------------------------------------------------------

    @invariant()
    def each_step_that_ran_has_exactly_one_task_and_no_other_has_one(self) -> None:
        tasks = Counter(self._tasks())
        assert all(n == 1 for n in tasks.values()), tasks
        for expected in self.model:
            ran = sorted(step for contact, step in tasks if contact == expected.contact_id)
            last = expected.step if expected.in_flight else expected.step - 1
            assert ran == list(range(last + 1)), (expected, ran)

    @invariant()
    def the_tables_agree_with_the_model_and_no_step_goes_back(self) -> None:
        for expected in self.model:
            status, step, started, _ = self._rows()[expected.enrollment_id]
            assert step == expected.step, (expected, step)
            assert (started is not None) == (expected.in_flight and status != "completed"), (
                expected,
                status,
                started,
            )


@pytest.mark.parametrize("db_kind", ["sqlite", "postgresql"])
def test_the_tick_runs_every_due_step_once_whatever_happens_between_ticks(
    engine: Engine, db_kind: str
) -> None:
    CadenceLives.engine = engine
    run_state_machine_as_test(
        CadenceLives,
        settings=settings(
            max_examples=EXAMPLES[db_kind],
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
