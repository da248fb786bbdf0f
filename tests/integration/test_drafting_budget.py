"""A template that loops for real contacts fails its drafts with the reason, in budget.

Before the render budget, a template that behaved for the sample contact (Dana) and
looped for real ones kept its tasks `running` and both drafting threads busy for good,
and another organization's launch waited behind it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select

from bot.app import Runtime, build_runtime
from domain.clock import FixedClock
from domain.jobs import CreateJobRequest, JobParams, StepTemplate, TargetSelection
from handlers.api.deps import Services
from storage import models as m
from storage.db import make_session_factory
from tests.support.api import make_settings
from tests.support.builders import make_contact, make_org
from tests.support.slack_app import wait_until

pytestmark = pytest.mark.slow

# Renders for the sample contact (so it is accepted), loops 10^10 times for anyone else.
LOOPS_FOR_REAL_CONTACTS = (
    "{% if first_name != 'Dana' %}{% for a in range(100000) %}{% for b in range(100000) %}"
    "{% endfor %}{% endfor %}{% endif %}Hi {{ first_name }}"
)


@pytest.fixture
def runtime(committed_engine: Engine, clock: FixedClock) -> Iterator[Runtime]:
    settings = make_settings(committed_engine.url.render_as_string(hide_password=False))
    services = Services(
        engine=committed_engine,
        session_factory=make_session_factory(committed_engine),
        clock=clock,
    )
    built = build_runtime(settings, services=services)
    try:
        yield built
    finally:
        built.worker.stop()


def add_job(runtime: Runtime, org_id: int, contact_ids: list[int], body: str) -> int:
    request = CreateJobRequest(
        name="Win-back",
        params=JobParams(
            target=TargetSelection(contact_ids=contact_ids),
            templates=[StepTemplate(subject="Hello {{ first_name }}", body=body)],
        ),
    )
    job = runtime.outreach.jobs.create_job(org_id, request, owner_id=None)
    assert runtime.outreach.jobs.plan_job(org_id, job.id) == len(contact_ids)
    return job.id


def test_a_template_looping_for_real_contacts_fails_its_drafts_while_another_org_drafts(
    runtime: Runtime,
) -> None:
    factory = runtime.services.session_factory
    with factory() as session:
        looping_org, other_org = make_org(session), make_org(session)
        names = [("Sam", "Ortiz"), ("Ana", "Kim"), ("Lee", "Park")]
        looping_contacts = [
            make_contact(session, looping_org, first_name=first, last_name=last).id
            for first, last in names
        ]
        other_contacts = [make_contact(session, other_org).id for _ in range(3)]
        session.commit()
        looping_org_id, other_org_id = looping_org.id, other_org.id
    looping_job = add_job(runtime, looping_org_id, looping_contacts, LOOPS_FOR_REAL_CONTACTS)
    other_job = add_job(runtime, other_org_id, other_contacts, "Hi {{ first_name }}")

    def tasks(job_id: int) -> list[tuple[str, str | None]]:
        with factory() as session:
            rows = session.execute(
                select(m.JobTask.status, m.JobTask.error_message)
                .where(m.JobTask.job_id == job_id)
                .order_by(m.JobTask.id)
            ).all()
        return [(status, error) for status, error in rows]

    runtime.worker.start()
    runtime.worker.wake()
    wait_until(
        lambda: (
            all(status in ("succeeded", "failed") for status, _ in tasks(other_job))
            and all(status == "failed" for status, _ in tasks(looping_job))
        ),
        timeout=60,
        what="both jobs' drafts done",
    )

    assert tasks(other_job) == [("succeeded", None)] * 3
    failed = tasks(looping_job)
    assert [status for status, _ in failed] == ["failed"] * 3
    cut = (
        "body: the template needed more than 100,000 steps (loop iterations, calls and"
        " operators) to render for "
    )
    for _, error in failed:
        assert error is not None
        assert cut in error
        assert error.endswith("check loops") or error.endswith("check loops)")
    with factory() as session:
        jobs = {
            job.id: job
            for job in session.scalars(select(m.Job).where(m.Job.id.in_([looping_job, other_job])))
        }
        cards = session.scalars(select(m.Card.org_id).where(m.Card.job_id == other_job)).all()
        assert session.scalars(select(m.Card).where(m.Card.job_id == looping_job)).all() == []
    assert cards == [other_org_id] * 3
    assert (jobs[looping_job].failed_tasks, jobs[looping_job].errors_count) == (3, 3)
    assert (jobs[other_job].completed_tasks, jobs[other_job].failed_tasks) == (3, 0)
