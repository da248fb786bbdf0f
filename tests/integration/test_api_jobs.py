"""Jobs and cards over the REST API (FastAPI TestClient), on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from storage import models as m
from tests.support.api import ApiWorld, make_api_world
from tests.support.builders import make_client, make_contact, make_order


@pytest.fixture
def api(engine: Engine, session_factory: Callable[[], Session], clock: FixedClock) -> ApiWorld:
    return make_api_world(engine, session_factory, clock)


@pytest.fixture
def contacts(api: ApiWorld, session_factory: Callable[[], Session], clock: FixedClock) -> list[int]:
    """Three lender contacts of the main org; a fourth who opted out."""
    with session_factory() as session:
        org = session.get(m.Organization, api.org_id)
        assert org is not None
        lender = make_client(session, org, name="Pinnacle Lending")
        make_order(session, org, lender, ordered_at=clock.now() - timedelta(days=143))
        ids = [
            make_contact(session, org, lender, email=f"lo{n}@pinnacle.example.com").id
            for n in range(3)
        ]
        ids.append(
            make_contact(
                session, org, lender, email="gone@pinnacle.example.com", opted_out_at=clock.now()
            ).id
        )
        session.commit()
    return ids


def job_body(target: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "Win-back",
        "params": {
            "target": target,
            "templates": [{"subject": "Hi {{ first_name }}", "body": "Turn times are down."}],
        },
    }


def run_worker(api: ApiWorld) -> int:
    runtime = api.client.app.state.runtime  # type: ignore[attr-defined]
    return int(runtime.run_tasks_until_idle())


def create_job(api: ApiWorld, target: dict[str, Any]) -> dict[str, Any]:
    """Create a job over REST and plan it as the worker's recovery sweep does."""
    created = api.client.post("/api/agent/jobs", json=job_body(target), headers=api.auth())
    assert created.status_code == 201, created.text
    recovery = api.client.app.state.runtime.recovery  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while True:
        recovery.plan_pending()  # nothing if the sweep's own thread holds the planning lease
        job = api.client.get(f"/api/agent/jobs/{created.json()['id']}", headers=api.auth())
        if job.json()["status"] != "pending" or time.monotonic() > deadline:
            return dict(job.json())
        time.sleep(0.05)


def job_count(session_factory: Callable[[], Session]) -> int:
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(m.Job)) or 0


# --- what a job reads while its cards wait ----------------------------------------------------


def test_a_review_job_reads_running_while_its_cards_wait_and_cancelled_after(
    api: ApiWorld, contacts: list[int]
) -> None:
    job = create_job(api, {"contact_ids": contacts})
    run_worker(api)
    job = api.client.get(f"/api/agent/jobs/{job['id']}", headers=api.auth()).json()
    assert (job["status"], job["cards_created"], job["errors_count"]) == ("running", 3, 0)
    assert (job["last_error"], job["finished_at"]) == (None, None)

    cancelled = api.client.post(f"/api/agent/jobs/{job['id']}/cancel", headers=api.auth())
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    page = api.client.get(f"/api/agent/jobs/{job['id']}/cards", headers=api.auth()).json()
    assert {c["state"] for c in page["cards"]} == {"withdrawn"}
    again = api.client.post(f"/api/agent/jobs/{job['id']}/cancel", headers=api.auth())
    assert again.status_code == 409
    assert again.json()["error"]["message"] == "a cancelled job cannot become cancelled"


# --- GET /api/agent/jobs/{id}/cards, GET /api/cards/{id} ---------------------------------------


def test_a_jobs_cards_come_a_page_at_a_time_and_by_state(
    api: ApiWorld, contacts: list[int]
) -> None:
    job = create_job(api, {"contact_ids": contacts})
    run_worker(api)
    url = f"/api/agent/jobs/{job['id']}/cards"

    first = api.client.get(url, params={"limit": 2}, headers=api.auth()).json()
    second = api.client.get(url, params={"limit": 2, "offset": 2}, headers=api.auth()).json()
    assert (first["total"], first["limit"], first["offset"]) == (3, 2, 0)
    ids = [c["id"] for c in first["cards"]] + [c["id"] for c in second["cards"]]
    assert ids == sorted(set(ids))
    assert len(ids) == 3
    assert [c["contact_id"] for c in first["cards"] + second["cards"]] == contacts[:3]
    card = first["cards"][0]
    assert (card["state"], card["type"], card["job_id"]) == ("in_review", "send_email", job["id"])
    assert card["action_payload"]["to"] == "lo0@pinnacle.example.com"

    in_review = api.client.get(url, params={"state": "in_review"}, headers=api.auth()).json()
    assert in_review["total"] == 3
    either = api.client.get(
        url, params=[("state", "done"), ("state", "rejected")], headers=api.auth()
    ).json()
    assert (either["total"], either["cards"]) == (0, [])
    bad = api.client.get(url, params={"state": "sent"}, headers=api.auth())
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "state.0"

    one = api.client.get(f"/api/cards/{ids[1]}", headers=api.auth())
    assert one.status_code == 200
    assert one.json() == first["cards"][1]


def test_another_organizations_job_and_card_are_not_found(
    api: ApiWorld, contacts: list[int]
) -> None:
    job = create_job(api, {"contact_ids": contacts})
    run_worker(api)
    card_id = api.client.get(f"/api/agent/jobs/{job['id']}/cards", headers=api.auth()).json()[
        "cards"
    ][0]["id"]
    other = api.auth(api.other_token)

    card = api.client.get(f"/api/cards/{card_id}", headers=other)
    assert card.status_code == 404
    assert card.json()["error"] == {
        "code": "not_found",
        "message": f"card {card_id} not found",
        "details": [],
    }
    cards = api.client.get(f"/api/agent/jobs/{job['id']}/cards", headers=other)
    assert cards.status_code == 404
    assert cards.json()["error"]["message"] == f"job {job['id']} not found"
    assert api.client.get(f"/api/cards/{card_id}").status_code == 401
    assert api.client.get(
        f"/api/cards/{card_id}", headers=api.auth(api.read_token)
    ).status_code == (200)


@pytest.mark.parametrize("path", ["/api/cards/{id}", "/api/agent/jobs/{id}/cards"])
@pytest.mark.parametrize("value", ["0", "-1", str(2**63), "abc"])
def test_an_id_no_database_key_can_hold_is_refused_with_422(
    api: ApiWorld, path: str, value: str
) -> None:
    answer = api.client.get(path.replace("{id}", value), headers=api.auth())
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "validation_error"


def test_the_card_routes_document_their_answers(api: ApiWorld) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    for path in ("/api/cards/{card_id}", "/api/agent/jobs/{job_id}/cards"):
        answers = paths[path]["get"]["responses"]
        assert set(answers) == {"200", "400", "401", "403", "404", "422"}
        for status in ("401", "403", "404", "422"):
            schema = answers[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorResponse"}
    card_state = api.client.get("/openapi.json").json()["components"]["schemas"]["CardState"]
    assert "withdrawn" in card_state["enum"]


# --- contact_ids: validated before the 201, planned in chunks ---------------------------------


@pytest.mark.parametrize(
    ("contact_ids", "message"),
    [
        ([1, 0], "params.target.contact_ids.1: Input should be greater than or equal to 1"),
        ([-5], "params.target.contact_ids.0: Input should be greater than or equal to 1"),
        (
            [2**63],
            "params.target.contact_ids.0: Input should be less than or equal to "
            "9223372036854775807",
        ),
        ([7, 8, 7], "params.target.contact_ids: 7 is listed more than once; list each id once"),
        (
            list(range(1, 100_002)),
            "params.target.contact_ids: List should have at most 100000 items after "
            "validation, not 100001",
        ),
    ],
)
def test_contact_ids_that_are_not_ids_or_repeat_are_refused_before_any_job_exists(
    api: ApiWorld,
    session_factory: Callable[[], Session],
    contact_ids: list[int],
    message: str,
) -> None:
    answer = api.client.post(
        "/api/agent/jobs", json=job_body({"contact_ids": contact_ids}), headers=api.auth()
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["message"] == f"invalid request: {message}"
    assert job_count(session_factory) == 0


@pytest.mark.parametrize(
    ("task_templates", "message"),
    [
        (
            [{"kind": "schedule_call", "title": "Call Dana", "after_step": 1}],
            "params.task_templates.0.after_step: after_step 1 is past the cadence, which has "
            "1 step (after_step counts from 0, so 0 to 0)",
        ),
        (
            [
                {"kind": "schedule_call", "title": "Call Dana", "after_step": 0},
                {"kind": "schedule_call", "title": "Call again", "after_step": 7},
            ],
            "params.task_templates.1.after_step: after_step 7 is past the cadence, which has "
            "1 step (after_step counts from 0, so 0 to 0)",
        ),
    ],
    ids=["just_past", "second_template"],
)
def test_a_task_template_after_a_step_the_cadence_lacks_is_refused_before_any_job_exists(
    api: ApiWorld,
    session_factory: Callable[[], Session],
    contacts: list[int],
    task_templates: list[dict[str, Any]],
    message: str,
) -> None:
    body = job_body({"contact_ids": contacts})
    body["params"]["task_templates"] = task_templates
    answer = api.client.post("/api/agent/jobs", json=body, headers=api.auth())
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["message"] == f"invalid request: {message}"
    assert job_count(session_factory) == 0


def test_a_job_of_100000_contact_ids_is_planned_in_chunks(
    api: ApiWorld, contacts: list[int]
) -> None:
    """PostgreSQL takes at most 65,535 bind parameters a statement: the list is asked for
    a slice at a time; the contacts found are enrolled once each, in id order."""
    unknown = list(range(10**12, 10**12 + 100_000 - len(contacts)))
    ids = [unknown[0], *reversed(contacts), *unknown[1:]]
    assert len(ids) == 100_000
    job = create_job(api, {"contact_ids": ids})
    assert (job["status"], job["total_tasks"]) == ("running", 3)
    assert job["last_error"] is None
    tasks = api.client.get(f"/api/agent/jobs/{job['id']}/tasks", headers=api.auth()).json()
    assert [t["contact_id"] for t in tasks] == contacts[:3]  # the opted-out one left out


def test_contacts_listed_directly_by_client_and_by_address_are_enrolled_once(
    api: ApiWorld, contacts: list[int], session_factory: Callable[[], Session]
) -> None:
    with session_factory() as session:
        client_id = session.scalar(select(m.Contact.client_id).where(m.Contact.id == contacts[0]))
    job = create_job(
        api,
        {
            "contact_ids": [contacts[2], contacts[0]],
            "client_ids": [client_id],
            "emails": ["lo1@pinnacle.example.com", "nobody@nowhere.example.com"],
        },
    )
    tasks = api.client.get(f"/api/agent/jobs/{job['id']}/tasks", headers=api.auth()).json()
    assert [t["contact_id"] for t in tasks] == contacts[:3]


def test_listed_contacts_with_filters_keep_only_those_the_filters_match(
    api: ApiWorld, contacts: list[int], session_factory: Callable[[], Session]
) -> None:
    with session_factory() as session:
        row = session.get(m.Contact, contacts[1])
        assert row is not None
        row.state = "OK"
        session.commit()
    job = create_job(api, {"contact_ids": contacts, "filters": {"states": ["TX"]}})
    tasks = api.client.get(f"/api/agent/jobs/{job['id']}/tasks", headers=api.auth()).json()
    assert [t["contact_id"] for t in tasks] == [contacts[0], contacts[2]]
