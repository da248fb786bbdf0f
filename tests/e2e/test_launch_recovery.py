"""A REST launch is stored before its answer and planned by the worker, never by the request.

A crash after the 201 loses nothing: the job waits `pending` and the recovery sweep plans
it. A launch sent again with its Idempotency-Key (a client that lost the answer) finds
the job the first one created.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select

from domain.clock import FixedClock
from storage import models as m
from storage.uow import UnitOfWork
from tests.support.slack import ServedSlack
from tests.support.slack_app import SlackWorld, slack_world

pytestmark = pytest.mark.slow


@pytest.fixture
def world(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock
) -> Iterator[SlackWorld]:
    with slack_world(committed_engine, served_slack, clock) as built:
        yield built


def _launch(world: SlackWorld, key: str | None = None) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {world.api_token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    answer = world.client.post(f"/api/campaigns/{world.campaign_id}/launch", headers=headers)
    return answer.status_code, answer.json()


def _jobs(world: SlackWorld) -> list[tuple[int, str]]:
    with world.session_factory() as session:
        return [(j.id, j.status) for j in session.scalars(select(m.Job).order_by(m.Job.id))]


def _task_count(world: SlackWorld, job_id: int) -> int:
    with world.session_factory() as session:
        return len(session.scalars(select(m.JobTask.id).where(m.JobTask.job_id == job_id)).all())


def test_a_rest_launch_answers_with_a_stored_pending_job_that_the_sweep_plans(
    world: SlackWorld,
) -> None:
    status, body = _launch(world)
    job_id = int(body["job"]["id"])  # type: ignore[index]

    # Whatever happens to the process now, the job is stored and nothing ran in the request.
    assert (status, _jobs(world), _task_count(world, job_id)) == (201, [(job_id, "pending")], 0)
    assert world.runtime.recovery.run_once() == 1
    assert (_jobs(world), _task_count(world, job_id)) == ([(job_id, "running")], 3)
    assert world.runtime.recovery.run_once() == 0
    assert _task_count(world, job_id) == 3


def test_a_launch_sent_again_with_its_idempotency_key_returns_the_first_job(
    world: SlackWorld,
) -> None:
    first_status, first = _launch(world, "3f1c-launch-q4")
    again_status, again = _launch(world, "3f1c-launch-q4")

    assert (first_status, again_status) == (201, 201)
    assert again["job"]["id"] == first["job"]["id"]  # type: ignore[index]
    assert len(_jobs(world)) == 1


def test_a_campaign_whose_job_is_still_open_is_not_launched_again_until_it_is_cancelled(
    world: SlackWorld,
) -> None:
    _, first = _launch(world, "first")
    job_id = int(first["job"]["id"])  # type: ignore[index]

    status, refused = _launch(world, "second")
    assert (status, refused["error"]["message"]) == (  # type: ignore[index]
        409,
        f"campaign “Q4 lender win-back” already has job #{job_id} (pending); let it finish,"
        f" or cancel it with `/job cancel {job_id}`, before launching it again",
    )
    assert _jobs(world) == [(job_id, "pending")]

    cancelled = world.client.post(
        f"/api/agent/jobs/{job_id}/cancel", headers={"Authorization": f"Bearer {world.api_token}"}
    )
    assert cancelled.status_code == 200, cancelled.text
    status, again = _launch(world, "third")
    assert status == 201
    again_id = int(again["job"]["id"])  # type: ignore[index]
    assert _jobs(world) == [(job_id, "cancelled"), (again_id, "pending")]


def test_an_idempotency_key_that_is_not_printable_ascii_is_refused(world: SlackWorld) -> None:
    status, body = _launch(world, "two words")

    assert status == 422
    assert _jobs(world) == []


def test_a_planner_that_died_is_replaced_once_its_lease_ran_out(
    world: SlackWorld, clock: FixedClock
) -> None:
    _, body = _launch(world)
    job_id = int(body["job"]["id"])  # type: ignore[index]
    jobs = world.runtime.outreach.jobs
    with UnitOfWork(world.session_factory) as uow:
        # Another process took the planning, then died.
        assert uow.jobs.claim_planning(
            world.org_id, job_id, now=clock.now(), lease_until=clock.now() + jobs.work_lease
        )
        uow.commit()

    assert jobs.plan_job(world.org_id, job_id) == 0
    assert world.runtime.recovery.run_once() == 0
    clock.advance(seconds=jobs.work_lease.total_seconds() + 1)
    assert world.runtime.recovery.run_once() == 1
    assert _task_count(world, job_id) == 3


def test_an_idempotency_key_used_again_for_another_job_is_refused(world: SlackWorld) -> None:
    headers = {"Authorization": f"Bearer {world.api_token}", "Idempotency-Key": "job-7"}
    params = {
        "target": {"filters": {"include_tags": ["lender"]}},
        "templates": [{"template_id": world.template_id}],
    }
    first = world.client.post(
        "/api/agent/jobs", headers=headers, json={"name": "Win-back", "params": params}
    )
    again = world.client.post(
        "/api/agent/jobs", headers=headers, json={"name": "Win-back", "params": params}
    )
    other = world.client.post(
        "/api/agent/jobs", headers=headers, json={"name": "Another", "params": params}
    )

    assert (first.status_code, again.status_code, other.status_code) == (201, 201, 409)
    assert again.json()["id"] == first.json()["id"]
    assert "Idempotency-Key" in other.json()["error"]["message"]
    assert len(_jobs(world)) == 1


def test_a_rest_launch_of_an_unknown_campaign_id_says_so_and_launches_nothing(
    world: SlackWorld,
) -> None:
    with world.session_factory() as s:
        # A campaign whose *name* is the id asked for: the REST route launches by id only.
        s.add(
            m.MarketingCampaign(
                org_id=world.org_id,
                name="999",
                goal="reactivation",
                status="draft",
                channels=["email"],
                email_template_ids=[world.template_id],
                cadence_days=[0],
            )
        )
        s.commit()

    answer = world.client.post(
        "/api/campaigns/999/launch", headers={"Authorization": f"Bearer {world.api_token}"}
    )

    assert (answer.status_code, answer.json()["error"]["message"]) == (
        404,
        "campaign 999 not found",
    )
    assert _jobs(world) == []
