"""The cadence's controls over REST, on SQLite and PostgreSQL: a tick run now (admins; 409
while another process runs one), the organization's cadence settings (admins write; bad
zones, holiday calendars, windows and weekdays refused naming the field), a job's changes
(PATCH), its own deliverability guard (pause-on-optout), and its enrollments (a page, and
the summary `GET /api/agent/jobs/{id}` carries)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from domain.contacts import UserRole
from domain.jobs import CreateJobRequest, JobStatus
from storage import models as m
from storage.inbound import advisory_key
from storage.jobs import JobRepo
from tests.support.accounts import create_token, ensure_user
from tests.support.api import ApiWorld, make_api_world
from tests.support.builders import make_client, make_contact

SessionFactory = Callable[[], Session]
EXECUTE = "/api/agent/cadence/execute"
SETTINGS = "/api/agent/cadence/settings"
TICK_LOCK = "salesbot:cadence-tick"


@pytest.fixture
def api(engine: Engine, session_factory: SessionFactory, clock: FixedClock) -> ApiWorld:
    return make_api_world(engine, session_factory, clock, start_background=False)


def runtime_of(api: ApiWorld) -> Any:
    return api.client.app.state.runtime  # type: ignore[attr-defined]


def user_token(
    api: ApiWorld, session_factory: SessionFactory, role: UserRole, *, name: str | None = None
) -> tuple[int, dict[str, str]]:
    """A user of the main org with a write token: (user id, headers)."""
    label = name or role.value
    with session_factory() as session:
        user_id = ensure_user(session, api.org_id, email=f"{label}@lonestar.test", role=role)
        _, token = create_token(session, api.org_id, name=label, user_id=user_id)
        session.commit()
    return user_id, api.auth(token)


def add_contacts(api: ApiWorld, session_factory: SessionFactory, count: int) -> list[int]:
    with session_factory() as session:
        org = session.get(m.Organization, api.org_id)
        assert org is not None
        lender = make_client(session, org, name="Pinnacle Lending")
        ids = [
            make_contact(
                session,
                org,
                lender,
                email=f"lo{n}@pinnacle.example.com",
                first_name=f"Dana{n}",
                last_name="Whitfield",
            ).id
            for n in range(count)
        ]
        session.commit()
    return ids


def make_job(
    api: ApiWorld,
    contacts: list[int],
    *,
    owner_id: int | None = None,
    steps: int = 2,
    org_id: int | None = None,
) -> int:
    """Create and plan a running job of `steps` email steps over the contacts."""
    jobs = runtime_of(api).outreach.jobs
    org = org_id or api.org_id
    job = jobs.create_job(
        org,
        CreateJobRequest.model_validate(
            {
                "name": "Win-back",
                "params": {
                    "target": {"contact_ids": contacts},
                    "templates": [
                        {"subject": f"Step {n}", "body": "Turn times are down."}
                        for n in range(steps)
                    ],
                    "cadence": {"days": [0, 4, 10, 21][:steps]},
                },
            }
        ),
        owner_id=owner_id,
    )
    jobs.plan_job(org, job.id)
    return int(job.id)


def set_enrollment(
    session_factory: SessionFactory, job_id: int, contact_id: int, **values: Any
) -> None:
    with session_factory() as session:
        session.execute(
            update(m.Enrollment)
            .where(m.Enrollment.job_id == job_id, m.Enrollment.contact_id == contact_id)
            .values(**values)
        )
        session.commit()


def job_status(session_factory: SessionFactory, job_id: int) -> str:
    with session_factory() as session:
        return str(session.scalar(select(m.Job.status).where(m.Job.id == job_id)))


def job_params(session_factory: SessionFactory, job_id: int) -> dict[str, Any]:
    with session_factory() as session:
        params = session.scalar(
            select(m.Job.params).where(m.Job.id == job_id).execution_options(populate_existing=True)
        )
        return dict(params or {})


@contextmanager
def tick_lock_held_elsewhere(engine: Engine, session_factory: SessionFactory) -> Iterator[None]:
    """Hold the cadence tick's periodic lock as another process would."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as other:
            other.execute(text("SELECT pg_advisory_lock(:k)"), {"k": advisory_key(TICK_LOCK)})
            try:
                yield
            finally:
                other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": advisory_key(TICK_LOCK)})
                other.commit()
        return
    with session_factory() as session:
        session.merge(
            m.PeriodicLease(
                name=TICK_LOCK,
                holder="worker-2:4242:1",
                lease_until=datetime.now().astimezone() + timedelta(minutes=10),
            )
        )
        session.commit()
    yield


# --- POST /api/agent/cadence/execute ---------------------------------------------------------


def test_an_admin_runs_a_tick_now_and_a_due_step_runs(
    api: ApiWorld, session_factory: SessionFactory, clock: FixedClock
) -> None:
    contacts = add_contacts(api, session_factory, 2)
    job_id = make_job(api, contacts)
    # The first contact's first email went out five days ago: its day-4 step is due.
    set_enrollment(
        session_factory,
        job_id,
        contacts[0],
        step=1,
        last_step_at=clock.now() - timedelta(days=5),
        next_due_at=clock.now() - timedelta(minutes=1),
    )

    answer = api.client.post(EXECUTE, headers=api.auth())

    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report == {
        "at": clock.now().isoformat(),
        "claimed": 1,
        "ran": 1,
        "deferred": 0,
        "paused": 0,
        "stopped": 0,
        "completed": 0,
        "resumed": 0,
        "tasks_created": 1,
        "wins": 0,
        "jobs_paused": [],
        "reasons": {},
    }
    again = api.client.post(EXECUTE, headers=api.auth())
    assert again.json()["claimed"] == 0


def test_a_tick_asked_for_while_another_process_runs_one_answers_409(
    api: ApiWorld, engine: Engine, session_factory: SessionFactory
) -> None:
    with tick_lock_held_elsewhere(engine, session_factory):
        answer = api.client.post(EXECUTE, headers=api.auth())

    assert answer.status_code == 409
    assert answer.json()["error"] == {
        "code": "conflict",
        "message": "a cadence tick is running in another process right now; try again in a minute",
        "details": [],
    }


def test_only_admins_and_organization_tokens_run_a_tick(
    api: ApiWorld, session_factory: SessionFactory
) -> None:
    _, rep = user_token(api, session_factory, UserRole.REP)
    _, admin = user_token(api, session_factory, UserRole.ADMIN)

    refused = api.client.post(EXECUTE, headers=rep)
    read_only = api.client.post(EXECUTE, headers=api.auth(api.read_token))
    allowed = api.client.post(EXECUTE, headers=admin)

    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == (
        "Only an admin can run the cadence now; ask an admin of your organization."
    )
    assert read_only.status_code == 403
    assert allowed.status_code == 200
    assert api.client.post(EXECUTE).status_code == 401


def test_a_tick_asked_for_moves_and_counts_only_the_callers_organization(
    api: ApiWorld, session_factory: SessionFactory, clock: FixedClock
) -> None:
    ours = make_guarded_job(api, session_factory, clock, org_id=api.org_id, tag="ours")
    theirs = make_guarded_job(api, session_factory, clock, org_id=api.other_org_id, tag="theirs")

    mine = api.client.post(EXECUTE, headers=api.auth()).json()

    assert mine["jobs_paused"] == [ours]
    assert mine["claimed"] == 1  # our enrollment only
    # The other organization's cadence is its own: the scheduler's tick moves it.
    assert (job_status(session_factory, ours), job_status(session_factory, theirs)) == (
        "paused",
        "running",
    )


def make_guarded_job(
    api: ApiWorld,
    session_factory: SessionFactory,
    clock: FixedClock,
    *,
    org_id: int,
    tag: str,
    sends: int = 25,
    opt_outs: int = 1,
) -> int:
    """A running job with `sends` sends this week, `opt_outs` opted-out enrollments and
    one enrollment due now (so the tick judges the job)."""
    with session_factory() as session:
        org = session.get(m.Organization, org_id)
        assert org is not None
        lender = make_client(session, org, name=f"Lender {tag}")
        contacts = [
            make_contact(session, org, lender, email=f"{tag}{n}@lender-{tag}.example.com").id
            for n in range(opt_outs + 1)
        ]
        session.commit()
    job_id = make_job(api, contacts, org_id=org_id)
    with session_factory() as session:
        for n in range(sends):
            session.add(
                m.EmailSend(
                    org_id=org_id,
                    job_id=job_id,
                    message_id=f"<{tag}-{n}@lonestar.example.com>",
                    to_email=f"someone{n}@lender-{tag}.example.com",
                    subject="Turn times",
                    status="sent",
                    sent_at=clock.now() - timedelta(days=1),
                )
            )
        session.commit()
    for contact_id in contacts[:opt_outs]:
        set_enrollment(
            session_factory,
            job_id,
            contact_id,
            status="stopped",
            stop_reason="opted out",
            updated_at=clock.now() - timedelta(hours=2),
        )
    make_due(session_factory, clock, job_id, contacts[-1])
    return job_id


def make_due(session_factory: SessionFactory, clock: FixedClock, job_id: int, contact: int) -> None:
    set_enrollment(
        session_factory,
        job_id,
        contact,
        status="active",
        step=1,
        last_step_at=clock.now() - timedelta(days=5),
        next_due_at=clock.now() - timedelta(minutes=1),
    )


# --- GET/PUT /api/agent/cadence/settings ------------------------------------------------------


DEFAULTS = {
    "timezone": None,
    "holiday_country": "US",
    "holiday_subdivision": None,
    "window_start": "09:00",
    "window_end": "17:00",
    "weekdays": [0, 1, 2, 3, 4],
    "max_emails_per_contact_week": 3,
    "max_emails_per_domain_day": 25,
    "max_bounce_rate": 0.05,
    "max_opt_out_rate": 0.02,
    "guard_min_sends": 20,
    "guard_window_days": 7,
}


def test_an_admin_sets_the_cadence_settings_and_anyone_of_the_org_reads_them(
    api: ApiWorld, session_factory: SessionFactory
) -> None:
    assert api.client.get(SETTINGS, headers=api.auth(api.read_token)).json() == DEFAULTS
    _, admin = user_token(api, session_factory, UserRole.ADMIN)
    change = {
        "timezone": "America/Denver",
        "holiday_country": "us",
        "holiday_subdivision": "tx",
        "window_start": "08:30",
        "window_end": "16:00",
        "weekdays": [4, 0, 1, 1],
        "max_emails_per_contact_week": 2,
    }

    saved = api.client.put(SETTINGS, json=change, headers=admin)

    assert saved.status_code == 200, saved.text
    expected = {
        **DEFAULTS,
        "timezone": "America/Denver",
        "holiday_country": "US",
        "holiday_subdivision": "TX",
        "window_start": "08:30",
        "window_end": "16:00",
        "weekdays": [0, 1, 4],
        "max_emails_per_contact_week": 2,
    }
    assert saved.json() == expected
    assert api.client.get(SETTINGS, headers=api.auth(api.read_token)).json() == expected
    assert api.client.get(SETTINGS, headers=api.auth(api.other_token)).json() == DEFAULTS
    # PUT replaces: what is left out takes its default again.
    assert api.client.put(SETTINGS, json={}, headers=admin).json() == DEFAULTS


def test_a_rep_cannot_change_the_cadence_settings(
    api: ApiWorld, session_factory: SessionFactory
) -> None:
    _, rep = user_token(api, session_factory, UserRole.REP)

    refused = api.client.put(SETTINGS, json={"timezone": "America/Denver"}, headers=rep)

    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == (
        "Only an admin can change the cadence settings; ask an admin of your organization."
    )
    assert api.client.get(SETTINGS, headers=rep).json() == DEFAULTS


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {"timezone": "Mars/Olympus_Mons"},
            "timezone",
            "'Mars/Olympus_Mons' is not a time zone: use an IANA name such as America/Chicago",
        ),
        (
            {"holiday_country": "XX"},
            "holiday_country",
            "'XX' is not a country the holiday calendar knows: use an ISO 3166 code such as "
            "US or CA",
        ),
        (
            {"holiday_country": "US", "holiday_subdivision": "ZZ"},
            "holiday_subdivision",
            "'ZZ' is not a subdivision of US the holiday calendar knows",
        ),
        (
            {"holiday_country": None, "holiday_subdivision": "TX"},
            "holiday_subdivision",
            "a holiday subdivision needs its country (holiday_country)",
        ),
        (
            {"window_start": "18:00", "window_end": "09:00"},
            "window_end",
            "the send window must start before it ends (18:00 is not before 09:00)",
        ),
        ({"window_end": "17:00Z"}, "window_end", "a local time without offset, e.g. 09:00"),
        (
            {"window_start": "09:00Z", "window_end": "17:00Z"},
            "window_start",
            "a local time without offset, e.g. 09:00",
        ),
        (
            {"window_start": "09:00Z", "window_end": "17:00Z"},
            "window_end",
            "a local time without offset, e.g. 09:00",
        ),
        (
            {"window_start": "09:00+02:00"},
            "window_start",
            "a local time without offset, e.g. 09:00",
        ),
        ({"weekdays": [True]}, "weekdays.0", "Input should be a valid integer"),
        ({"weekdays": ["1"]}, "weekdays.0", "Input should be a valid integer"),
        (
            {"weekdays": [0, 7]},
            "weekdays",
            "weekdays are numbered 0 (Monday) to 6 (Sunday); give at least one",
        ),
        (
            {"weekdays": []},
            "weekdays",
            "weekdays are numbered 0 (Monday) to 6 (Sunday); give at least one",
        ),
        ({"weekdays": "weekdays"}, "weekdays", "Input should be a valid list"),
        ({"max_opt_out_rate": 0}, "max_opt_out_rate", "Input should be greater than 0"),
        ({"sunday": True}, "sunday", "Extra inputs are not permitted"),
    ],
)
def test_bad_cadence_settings_are_refused_naming_the_field(
    api: ApiWorld, body: dict[str, Any], field: str, message: str
) -> None:
    refused = api.client.put(SETTINGS, json=body, headers=api.auth())

    assert refused.status_code == 422, refused.text
    assert {"field": field, "message": message} in refused.json()["error"]["details"]
    assert api.client.get(SETTINGS, headers=api.auth()).json() == DEFAULTS


def test_a_settings_body_that_is_not_json_is_refused(api: ApiWorld) -> None:
    refused = api.client.put(
        SETTINGS,
        content=b'{"timezone": "America/Chicago"',
        headers={**api.auth(), "Content-Type": "application/json"},
    )

    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "validation_error"
    assert api.client.get(SETTINGS, headers=api.auth()).json() == DEFAULTS


# --- PATCH /api/agent/jobs/{id} ---------------------------------------------------------------


def test_the_owner_renames_a_job_and_changes_part_of_its_behaviour(
    api: ApiWorld, session_factory: SessionFactory
) -> None:
    owner, headers = user_token(api, session_factory, UserRole.REP)
    job_id = make_job(api, add_contacts(api, session_factory, 1), owner_id=owner)
    before = job_params(session_factory, job_id)["behaviour"]
    assert before["batch_size"] == 50

    changed = api.client.patch(
        f"/api/agent/jobs/{job_id}",
        json={
            "name": "Q4 win-back (Travis County)",
            "description": "Lenders quiet since August",
            "behaviour": {"batch_size": 10},
        },
        headers=headers,
    )

    assert changed.status_code == 200, changed.text
    job = changed.json()
    assert (job["id"], job["name"], job["description"], job["status"]) == (
        job_id,
        "Q4 win-back (Travis County)",
        "Lenders quiet since August",
        "running",
    )
    assert job["params"]["behaviour"] == {**before, "batch_size": 10}
    assert job_params(session_factory, job_id)["behaviour"] == {**before, "batch_size": 10}

    cleared = api.client.patch(
        f"/api/agent/jobs/{job_id}", json={"description": None}, headers=headers
    ).json()
    assert (cleared["name"], cleared["description"]) == ("Q4 win-back (Travis County)", None)


def test_a_rep_cannot_change_another_reps_job_but_an_admin_can(
    api: ApiWorld, session_factory: SessionFactory
) -> None:
    owner, _ = user_token(api, session_factory, UserRole.REP, name="maria")
    _, other = user_token(api, session_factory, UserRole.REP, name="jose")
    _, admin = user_token(api, session_factory, UserRole.ADMIN)
    job_id = make_job(api, add_contacts(api, session_factory, 1), owner_id=owner)

    refused = api.client.patch(f"/api/agent/jobs/{job_id}", json={"name": "Mine"}, headers=other)
    allowed = api.client.patch(f"/api/agent/jobs/{job_id}", json={"name": "Ours"}, headers=admin)

    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == (
        f"Only maria@lonestar.test, who launched job #{job_id}, or an admin can change it."
    )
    assert (allowed.status_code, allowed.json()["name"]) == (200, "Ours")


def test_a_finished_job_and_the_replies_inbox_cannot_be_changed(
    api: ApiWorld, session_factory: SessionFactory, clock: FixedClock
) -> None:
    job_id = make_job(api, add_contacts(api, session_factory, 1))
    runtime_of(api).outreach.jobs.set_job_status(api.org_id, job_id, JobStatus.CANCELLED)
    with session_factory() as session:
        inbox = JobRepo(session).inbox_job_id(api.org_id, now=clock.now())
        session.commit()

    finished = api.client.patch(f"/api/agent/jobs/{job_id}", json={"name": "x"}, headers=api.auth())
    replies = api.client.patch(f"/api/agent/jobs/{inbox}", json={"name": "x"}, headers=api.auth())

    assert finished.status_code == 409
    assert finished.json()["error"]["message"] == (
        f"job #{job_id} is cancelled: a finished job cannot be changed"
    )
    assert replies.status_code == 409
    assert replies.json()["error"]["message"].startswith(f"Job #{inbox} is the replies inbox")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": None}, "name"),
        ({"name": ""}, "name"),
        ({"name": 12}, "name"),
        ({"behaviour": None}, "behaviour"),
        ({"behaviour": {"batch_size": 0}}, "behaviour.batch_size"),
        ({"behaviour": {"batch_size": "many"}}, "behaviour.batch_size"),
        ({"behaviour": {"autopilot": True}}, "behaviour.autopilot"),
        ({"behaviour": {"auto_approve": "yes"}}, "behaviour.auto_approve"),
        ({"behaviour": {"review_mode": 0}}, "behaviour.review_mode"),
        ({"status": "running"}, "status"),
        (["name"], "body"),
    ],
)
def test_a_bad_job_change_is_refused_naming_the_field(
    api: ApiWorld, session_factory: SessionFactory, body: Any, field: str
) -> None:
    job_id = make_job(api, add_contacts(api, session_factory, 1))

    refused = api.client.patch(f"/api/agent/jobs/{job_id}", json=body, headers=api.auth())

    assert refused.status_code == 422, refused.text
    assert field in [d["field"] for d in refused.json()["error"]["details"]]
    assert api.client.get(f"/api/agent/jobs/{job_id}", headers=api.auth()).json()["name"] == (
        "Win-back"
    )


def test_another_organizations_job_is_not_found_by_the_new_routes(
    api: ApiWorld, session_factory: SessionFactory
) -> None:
    job_id = make_job(api, add_contacts(api, session_factory, 1))
    other = api.auth(api.other_token)
    guard = {"max_opt_out_rate": 0.01}

    answers = [
        api.client.patch(f"/api/agent/jobs/{job_id}", json={"name": "x"}, headers=other),
        api.client.post(f"/api/agent/jobs/{job_id}/pause-on-optout", json=guard, headers=other),
        api.client.post(f"/api/jobs/{job_id}/pause-on-optout", json=guard, headers=other),
        api.client.get(f"/api/agent/jobs/{job_id}/enrollments", headers=other),
        api.client.get(f"/api/agent/jobs/{job_id}", headers=other),
    ]

    assert [a.status_code for a in answers] == [404] * 5
    assert {a.json()["error"]["message"] for a in answers} == {f"job {job_id} not found"}
    assert (
        "guard" not in job_params(session_factory, job_id)
        or not job_params(session_factory, job_id)["guard"]
    )


# --- POST /api/agent/jobs/{id}/pause and /resume -------------------------------------------------


def enrollment_of(session_factory: SessionFactory, job_id: int) -> tuple[str, str | None, Any]:
    with session_factory() as session:
        row = session.execute(
            select(m.Enrollment.status, m.Enrollment.stop_reason, m.Enrollment.next_due_at)
            .where(m.Enrollment.job_id == job_id)
            .execution_options(populate_existing=True)
        ).one()
    return str(row.status), row.stop_reason, row.next_due_at


def test_the_owner_pauses_and_resumes_a_job_and_its_held_contacts_are_due_again(
    api: ApiWorld, session_factory: SessionFactory, clock: FixedClock
) -> None:
    owner, headers = user_token(api, session_factory, UserRole.REP)
    contact = add_contacts(api, session_factory, 1)[0]
    job_id = make_job(api, [contact], owner_id=owner)

    paused = api.client.post(f"/api/agent/jobs/{job_id}/pause", headers=headers)

    assert paused.status_code == 200, paused.text
    assert (paused.json()["id"], paused.json()["status"]) == (job_id, "paused")
    assert job_status(session_factory, job_id) == "paused"
    # The tick holds the contact with the job's pause, as it does for `/job pause` (its
    # step 1 had ended: no step is in flight).
    later = clock.now() + timedelta(days=9)
    set_enrollment(
        session_factory, job_id, contact, status="paused", stop_reason="job paused",
        next_due_at=later, step_started_at=None,
    )  # fmt: skip
    again = api.client.post(f"/api/agent/jobs/{job_id}/pause", headers=headers)
    assert again.status_code == 409
    assert again.json()["error"] == {
        "code": "invalid_transition",
        "message": f"job #{job_id} is already paused; POST /api/agent/jobs/{job_id}/resume "
        "carries it on",
        "details": [],
    }

    resumed = api.client.post(f"/api/agent/jobs/{job_id}/resume", headers=headers)

    assert resumed.status_code == 200, resumed.text
    assert (resumed.json()["id"], resumed.json()["status"]) == (job_id, "running")
    assert job_status(session_factory, job_id) == "running"
    status, reason, due = enrollment_of(session_factory, job_id)
    assert (status, reason) == ("active", None)
    assert due is not None
    assert (due if due.tzinfo else due.replace(tzinfo=UTC)) == clock.now()  # SQLite: naive UTC

    running = api.client.post(f"/api/agent/jobs/{job_id}/resume", headers=headers)
    assert running.status_code == 409
    assert running.json()["error"] == {
        "code": "invalid_transition",
        "message": f"job #{job_id} is already running",
        "details": [],
    }
    assert job_status(session_factory, job_id) == "running"


def test_a_finished_job_and_the_replies_inbox_are_neither_paused_nor_resumed(
    api: ApiWorld, session_factory: SessionFactory, clock: FixedClock
) -> None:
    job_id = make_job(api, add_contacts(api, session_factory, 1))
    runtime_of(api).outreach.jobs.set_job_status(api.org_id, job_id, JobStatus.CANCELLED)
    with session_factory() as session:
        inbox = JobRepo(session).inbox_job_id(api.org_id, now=clock.now())
        session.commit()

    resumed = api.client.post(f"/api/agent/jobs/{job_id}/resume", headers=api.auth())
    paused = api.client.post(f"/api/agent/jobs/{job_id}/pause", headers=api.auth())
    replies = api.client.post(f"/api/agent/jobs/{inbox}/pause", headers=api.auth())

    assert [a.status_code for a in (resumed, paused, replies)] == [409] * 3
    assert resumed.json()["error"]["message"] == (
        f"job #{job_id} is cancelled: a finished job cannot be resumed; launch a new one"
    )
    assert paused.json()["error"]["message"] == (
        f"job #{job_id} is cancelled: a finished job cannot be paused; launch a new one"
    )
    assert replies.json()["error"]["message"].startswith(f"Job #{inbox} is the replies inbox")
    assert job_status(session_factory, job_id) == "cancelled"
    assert job_status(session_factory, inbox) == "running"


def test_a_rep_cannot_pause_another_reps_job_but_an_admin_can(
    api: ApiWorld, session_factory: SessionFactory
) -> None:
    owner, _ = user_token(api, session_factory, UserRole.REP, name="maria")
    _, other = user_token(api, session_factory, UserRole.REP, name="jose")
    _, admin = user_token(api, session_factory, UserRole.ADMIN)
    job_id = make_job(api, add_contacts(api, session_factory, 1), owner_id=owner)

    refused = api.client.post(f"/api/agent/jobs/{job_id}/pause", headers=other)
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == (
        f"Only maria@lonestar.test, who launched job #{job_id}, or an admin can pause it."
    )
    assert job_status(session_factory, job_id) == "running"

    assert api.client.post(f"/api/agent/jobs/{job_id}/pause", headers=admin).status_code == 200
    refused = api.client.post(f"/api/agent/jobs/{job_id}/resume", headers=other)
    assert refused.status_code == 403
    assert job_status(session_factory, job_id) == "paused"
    assert api.client.post(f"/api/agent/jobs/{job_id}/resume", headers=admin).status_code == 200


@pytest.mark.parametrize("verb", ["pause", "resume"])
def test_a_read_token_an_unknown_token_and_another_organization_cannot_pause_or_resume(
    api: ApiWorld, session_factory: SessionFactory, verb: str
) -> None:
    job_id = make_job(api, add_contacts(api, session_factory, 1))
    if verb == "resume":
        runtime_of(api).outreach.jobs.set_job_status(api.org_id, job_id, JobStatus.PAUSED)
    before = job_status(session_factory, job_id)
    url = f"/api/agent/jobs/{job_id}/{verb}"

    read_only = api.client.post(url, headers=api.auth(api.read_token))
    other_org = api.client.post(url, headers=api.auth(api.other_token))
    anonymous = api.client.post(url)

    assert read_only.status_code == 403
    assert other_org.status_code == 404
    assert other_org.json()["error"]["message"] == f"job {job_id} not found"
    assert anonymous.status_code == 401
    assert job_status(session_factory, job_id) == before


# --- POST /api/jobs/{id}/pause-on-optout --------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/jobs/{id}/pause-on-optout", "/api/agent/jobs/{id}/pause-on-optout"]
)
def test_pause_on_optout_sets_the_jobs_own_guard(
    api: ApiWorld, session_factory: SessionFactory, path: str
) -> None:
    job_id = make_job(api, add_contacts(api, session_factory, 1))
    url = path.format(id=job_id)

    only_opt_outs = api.client.post(url, json={"max_opt_out_rate": 0.01}, headers=api.auth())
    full = api.client.post(
        url,
        json={"max_opt_out_rate": 0.03, "max_bounce_rate": 0.1, "min_sends": 50},
        headers=api.auth(),
    )

    assert only_opt_outs.status_code == 200, only_opt_outs.text
    assert only_opt_outs.json() == {
        "job_id": job_id,
        "max_opt_out_rate": 0.01,
        "max_bounce_rate": None,
        "min_sends": None,
    }
    assert full.json() == {
        "job_id": job_id,
        "max_opt_out_rate": 0.03,
        "max_bounce_rate": 0.1,
        "min_sends": 50,
    }
    assert job_params(session_factory, job_id)["guard"] == {
        "max_opt_out_rate": 0.03,
        "max_bounce_rate": 0.1,
        "min_sends": 50,
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "max_opt_out_rate"),
        ({"max_opt_out_rate": 0}, "max_opt_out_rate"),
        ({"max_opt_out_rate": 1.5}, "max_opt_out_rate"),
        ({"max_opt_out_rate": "2%"}, "max_opt_out_rate"),
        ({"max_opt_out_rate": 0.02, "max_bounce_rate": -0.1}, "max_bounce_rate"),
        ({"max_opt_out_rate": 0.02, "min_sends": 0}, "min_sends"),
        ({"max_opt_out_rate": 0.02, "min_sends": 10**6}, "min_sends"),
        ({"max_opt_out_rate": 0.02, "pause": True}, "pause"),
    ],
)
def test_a_guard_out_of_range_is_refused_naming_the_field(
    api: ApiWorld, session_factory: SessionFactory, body: dict[str, Any], field: str
) -> None:
    job_id = make_job(api, add_contacts(api, session_factory, 1))

    refused = api.client.post(f"/api/jobs/{job_id}/pause-on-optout", json=body, headers=api.auth())

    assert refused.status_code == 422, refused.text
    assert [d["field"] for d in refused.json()["error"]["details"]] == [field]
    assert job_params(session_factory, job_id).get("guard") is None


def test_the_tick_pauses_a_job_past_its_own_opt_out_rate_not_the_organizations(
    api: ApiWorld, session_factory: SessionFactory, clock: FixedClock
) -> None:
    # 1 opt-out in 25 sends (4%): past the organization's 2%.
    job_id = make_guarded_job(api, session_factory, clock, org_id=api.org_id, tag="q4")
    loose = api.client.post(
        f"/api/jobs/{job_id}/pause-on-optout", json={"max_opt_out_rate": 0.05}, headers=api.auth()
    )
    assert loose.status_code == 200

    first = api.client.post(EXECUTE, headers=api.auth()).json()
    assert (first["jobs_paused"], job_status(session_factory, job_id)) == ([], "running")

    api.client.post(
        f"/api/jobs/{job_id}/pause-on-optout", json={"max_opt_out_rate": 0.03}, headers=api.auth()
    )
    with session_factory() as session:
        contact = session.scalars(
            select(m.Enrollment.contact_id).where(
                m.Enrollment.job_id == job_id, m.Enrollment.status == "active"
            )
        ).one()
    make_due(session_factory, clock, job_id, contact)
    second = api.client.post(EXECUTE, headers=api.auth()).json()

    assert (second["jobs_paused"], job_status(session_factory, job_id)) == ([job_id], "paused")
    job = api.client.get(f"/api/agent/jobs/{job_id}", headers=api.auth()).json()
    assert job["last_error"] == (
        "paused by the deliverability guard: 1 opt-outs in 25 sends (4.0%, limit 3.0%). "
        "Check the audience and the message, then resume the job."
    )


# --- GET /api/agent/jobs/{id}/enrollments and the summary ---------------------------------------


def test_a_jobs_enrollments_come_a_page_at_a_time_with_their_step_and_reasons(
    api: ApiWorld, session_factory: SessionFactory, clock: FixedClock
) -> None:
    contacts = add_contacts(api, session_factory, 3)
    job_id = make_job(api, contacts, steps=3)
    due = clock.now() + timedelta(days=2)
    set_enrollment(
        session_factory,
        job_id,
        contacts[1],
        step=1,
        last_step_at=clock.now() - timedelta(days=2),
        next_due_at=due,
        defer_reason="step 2 is due Fri 2026-11-27 09:00 CST",
        time_zone="America/Chicago (state)",
    )
    set_enrollment(
        session_factory, job_id, contacts[2], status="stopped", stop_reason="replied", step=1
    )
    url = f"/api/agent/jobs/{job_id}/enrollments"

    first = api.client.get(url, params={"limit": 2}, headers=api.auth()).json()
    second = api.client.get(
        url, params={"limit": 2, "after": first["next_after"]}, headers=api.auth()
    ).json()
    stopped = api.client.get(url, params={"status": "stopped"}, headers=api.auth()).json()

    rows = first["enrollments"] + second["enrollments"]
    assert [r["contact_id"] for r in rows] == contacts
    assert second["next_after"] is None
    waiting = rows[1]
    assert {k: waiting[k] for k in ("email", "name", "status", "step", "total_steps")} == {
        "email": "lo1@pinnacle.example.com",
        "name": "Dana1 Whitfield",
        "status": "active",
        "step": 2,
        "total_steps": 3,
    }
    assert (waiting["steps_done"], waiting["time_zone"]) == (1, "America/Chicago (state)")
    assert datetime.fromisoformat(waiting["next_due_at"]) == due
    assert waiting["defer_reason"] == "step 2 is due Fri 2026-11-27 09:00 CST"
    assert [(r["contact_id"], r["stop_reason"]) for r in stopped["enrollments"]] == [
        (contacts[2], "replied")
    ]
    assert (rows[0]["step"], rows[0]["next_due_at"], rows[0]["stop_reason"]) == (1, None, None)


@pytest.mark.parametrize(
    "query",
    ["status=gone", "limit=0", "limit=501", "after=0", f"after={2**63}", "limit=ten"],
)
def test_bad_enrollment_queries_are_refused(
    api: ApiWorld, session_factory: SessionFactory, query: str
) -> None:
    job_id = make_job(api, add_contacts(api, session_factory, 1))

    refused = api.client.get(f"/api/agent/jobs/{job_id}/enrollments?{query}", headers=api.auth())

    assert refused.status_code == 422
    assert refused.json()["error"]["details"][0]["field"] == query.split("=")[0]


def test_a_job_carries_its_enrollments_counted_by_status_and_reason(
    api: ApiWorld, session_factory: SessionFactory, clock: FixedClock
) -> None:
    contacts = add_contacts(api, session_factory, 10)
    job_id = make_job(api, contacts)
    soon, later = clock.now() + timedelta(hours=1), clock.now() + timedelta(days=1)
    states: list[dict[str, Any]] = [
        {},  # step 1's card waits for review
        {"next_due_at": later, "defer_reason": "fatigue: 3 emails to lo1@x.com in 7 days"},
        {"next_due_at": soon, "defer_reason": "fatigue: 4 emails to x.com today (limit 3)"},
        {"next_due_at": later, "defer_reason": "outside business hours in America/Chicago"},
        {"status": "paused", "stop_reason": "job paused"},
        {"status": "stopped", "stop_reason": "replied"},
        {"status": "stopped", "stop_reason": "replied"},
        {"status": "stopped", "stop_reason": "re-engaged: new order"},
        {"status": "stopped", "stop_reason": "opted out"},
        {"status": "completed", "step": 2},
    ]
    for contact_id, values in zip(contacts, states, strict=True):
        if values:
            set_enrollment(session_factory, job_id, contact_id, **values)

    job = api.client.get(f"/api/agent/jobs/{job_id}", headers=api.auth()).json()

    summary = job["enrollments"]
    assert datetime.fromisoformat(summary.pop("next_due_at")) == soon
    assert summary == {
        "total": 10,
        "by_status": {"active": 4, "paused": 1, "completed": 1, "stopped": 4},
        "running": 1,
        "paused_by_reason": {"job paused": 1},
        "stopped_by_reason": {"replied": 2, "opted out": 1, "re-engaged: new order": 1},
        "deferred_by_reason": {"fatigue": 2, "outside business hours": 1},
    }
    assert (job["id"], job["name"], job["status"]) == (job_id, "Win-back", "running")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", SETTINGS),
        ("PATCH", "/api/agent/jobs/{id}"),
        ("POST", "/api/agent/jobs/{id}/pause-on-optout"),
        ("POST", "/api/jobs/{id}/pause-on-optout"),
    ],
)
@pytest.mark.parametrize("content", [b'{"name": "x"', b"\xff\xfe", b"[1, 2", b"null"])
def test_a_body_that_is_not_a_json_object_is_refused_and_changes_nothing(
    api: ApiWorld, session_factory: SessionFactory, method: str, path: str, content: bytes
) -> None:
    job_id = make_job(api, add_contacts(api, session_factory, 1))
    before = job_params(session_factory, job_id)

    refused = api.client.request(
        method,
        path.format(id=job_id),
        content=content,
        headers={**api.auth(), "Content-Type": "application/json"},
    )

    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "validation_error")
    assert job_params(session_factory, job_id) == before
    assert api.client.get(SETTINGS, headers=api.auth()).json() == DEFAULTS
