"""A running cadence job due for its second step, for the tests that kill or starve its tick."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine

from domain.jobs import Cadence, JobParams, StepTemplate, TargetSelection
from sandbox.slack_api import DEFAULT_TEAM_ID
from storage import models as m
from storage.db import make_session_factory
from tests.support.accounts import create_org, ensure_user, link_slack_team
from tests.support.builders import make_client, make_contact


def seed_due_for_step_two(
    engine: Engine, *, now: datetime, contacts: int, rep_slack_id: str, rep_email: str
) -> tuple[int, list[int]]:
    """A running job whose contacts got step 1 five days before `now` and are due for step 2
    (one a minute before `now`, then a minute earlier each); return the job and enrollments."""
    sessions = make_session_factory(engine)
    enrolled = now - timedelta(days=5)
    params = JobParams(
        target=TargetSelection(contact_ids=[1]),
        templates=[
            StepTemplate(subject="Turn times", body="Hi {{ first_name }}, turn times are down."),
            StepTemplate(subject="Following up", body="Hi {{ first_name }}, any thoughts?"),
        ],
        cadence=Cadence(days=[0, 4]),
    )
    with sessions() as session:
        org = create_org(session, slug="lonestar", name="Lone Star Appraisals")
        link_slack_team(session, org.id, DEFAULT_TEAM_ID)
        rep_id = ensure_user(session, org.id, email=rep_email, name="Maria Lopez")
        rep = session.get(m.User, rep_id)
        org_row = session.get(m.Organization, org.id)
        assert rep is not None
        assert org_row is not None
        rep.slack_user_id = rep_slack_id
        lender = make_client(session, org_row, name="Pinnacle Lending", domain="pinnacle.example")
        job = m.Job(
            org_id=org.id,
            owner_id=rep_id,
            name="Win-back · launch",
            status="running",
            params=params.model_dump(mode="json"),
            started_at=enrolled,
            planned_at=enrolled,
        )
        session.add(job)
        session.flush()
        ids = []
        for n in range(contacts):
            person = make_contact(
                session, org_row, lender, email=f"lo{n}@pinnacle.example", state="TX"
            )
            row = m.Enrollment(
                org_id=org.id,
                job_id=job.id,
                contact_id=person.id,
                step=1,
                status="active",
                created_at=enrolled,
                last_step_at=enrolled,
                next_due_at=now - timedelta(minutes=n + 1),
            )
            session.add(row)
            session.flush()
            ids.append(row.id)
        session.commit()
    return job.id, ids
