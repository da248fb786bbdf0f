"""Who may stop a job or pause a campaign: its owner or an admin, from Slack and the API.

Slash commands are signed as Slack signs them; their answers are read from the response
URLs of the Slack stand-in.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from domain.clock import FixedClock
from domain.contacts import UserRole
from storage import models as m
from tests.support.accounts import create_token, ensure_user
from tests.support.slack import ServedSlack
from tests.support.slack_app import OTHER_REP, REP, SlackWorld, slack_world, wait_until

pytestmark = pytest.mark.slow

ADMIN = "U0ANA0001"
ADMIN_EMAIL = "ana@lonestar.example.com"
CAMPAIGN = "Q4 lender win-back"


@pytest.fixture
def world(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock
) -> Iterator[SlackWorld]:
    with slack_world(committed_engine, served_slack, clock) as built:
        built.slack.add_user(ADMIN, "ana", ADMIN_EMAIL, real_name="Ana Admin")
        with built.session_factory() as session:
            ensure_user(session, built.org_id, email=ADMIN_EMAIL, role=UserRole.ADMIN)
            ensure_user(
                session, built.org_id, email="maria@lonestar.example.com", name="Maria Lopez"
            )
            session.commit()
        yield built


def user_id(world: SlackWorld, email: str) -> int:
    with world.session_factory() as session:
        found = ensure_user(session, world.org_id, email=email)
        session.commit()
        return found


def token_for(world: SlackWorld, email: str) -> dict[str, str]:
    """An API token tied to the user with this email."""
    owner = user_id(world, email)
    with world.session_factory() as session:
        _, token = create_token(session, world.org_id, name=email, user_id=owner)
        session.commit()
    return {"Authorization": f"Bearer {token}"}


def answer_to(world: SlackWorld, user: str, text: str, *, command: str = "/job") -> str:
    """Send a slash command as a user; return the one answer it gets."""
    before = len(world.responses())
    assert world.command(text, command=command, user=user).status_code == 200
    answers = wait_until(lambda: world.responses()[before:], what=f"answer to {text}")
    assert len(answers) == 1, answers
    return str(answers[0])


def launched_job(world: SlackWorld) -> int:
    """Maria launches the campaign from Slack; return the job, planned and running."""
    assert "Launched" in answer_to(world, REP, f"launch {CAMPAIGN}", command="/campaign")
    job_id = world.latest_job_id()
    world.wait_for_tasks(job_id, len(world.contact_ids))
    return job_id


def job_status(world: SlackWorld, job_id: int) -> str:
    with world.session_factory() as session:
        job = session.get(m.Job, job_id)
        assert job is not None
        return job.status


def campaign_status(world: SlackWorld) -> str:
    with world.session_factory() as session:
        campaign = session.get(m.MarketingCampaign, world.campaign_id)
        assert campaign is not None
        return campaign.status


def make_maria_own_the_campaign(world: SlackWorld) -> None:
    maria = user_id(world, "maria@lonestar.example.com")
    with world.session_factory() as session:
        campaign = session.get(m.MarketingCampaign, world.campaign_id)
        assert campaign is not None
        campaign.created_by = maria
        session.commit()


# --- /job cancel ----------------------------------------------------------------------------


def test_a_rep_cannot_cancel_another_reps_job_and_is_told_who_can(world: SlackWorld) -> None:
    job_id = launched_job(world)

    answer = answer_to(world, OTHER_REP, f"cancel {job_id}")

    assert answer == f"⚠️ Only Maria Lopez, who launched job #{job_id}, or an admin can cancel it."
    assert world.slack.calls("response_url")[-1].params["response_type"] == "ephemeral"
    assert job_status(world, job_id) == "running"


def test_the_rep_who_launched_a_job_can_cancel_it(world: SlackWorld) -> None:
    job_id = launched_job(world)

    answer = answer_to(world, REP, f"cancel {job_id}")

    assert answer.startswith("Cancelled")
    assert job_status(world, job_id) == "cancelled"


def test_an_admin_can_cancel_a_job_another_rep_launched(world: SlackWorld) -> None:
    job_id = launched_job(world)

    answer = answer_to(world, ADMIN, f"cancel {job_id}")

    assert answer.startswith("Cancelled")
    assert job_status(world, job_id) == "cancelled"


# --- /campaign pause | resume ---------------------------------------------------------------


def test_a_rep_cannot_pause_a_campaign_another_rep_created_and_is_told_who_can(
    world: SlackWorld,
) -> None:
    make_maria_own_the_campaign(world)
    job_id = launched_job(world)

    answer = answer_to(world, OTHER_REP, f"pause {CAMPAIGN}", command="/campaign")

    assert answer == (
        f"⚠️ Only Maria Lopez, who created the campaign “{CAMPAIGN}”, or an admin can pause it."
    )
    assert (campaign_status(world), job_status(world, job_id)) == ("active", "running")


def test_a_rep_cannot_resume_a_campaign_another_rep_created(world: SlackWorld) -> None:
    make_maria_own_the_campaign(world)
    job_id = launched_job(world)
    assert answer_to(world, REP, f"pause {CAMPAIGN}", command="/campaign").startswith("Paused")

    answer = answer_to(world, OTHER_REP, f"resume {CAMPAIGN}", command="/campaign")

    assert answer == (
        f"⚠️ Only Maria Lopez, who created the campaign “{CAMPAIGN}”, or an admin can resume it."
    )
    assert (campaign_status(world), job_status(world, job_id)) == ("paused", "paused")


def test_a_campaign_nobody_owns_is_paused_by_an_admin_only(world: SlackWorld) -> None:
    job_id = launched_job(world)

    refused = answer_to(world, REP, f"pause {CAMPAIGN}", command="/campaign")
    paused = answer_to(world, ADMIN, f"pause {CAMPAIGN}", command="/campaign")

    assert refused == f"⚠️ Only an admin can pause the campaign “{CAMPAIGN}”: nobody owns it."
    assert paused == f"Paused *{CAMPAIGN}* (1 job)."
    assert (campaign_status(world), job_status(world, job_id)) == ("paused", "paused")


def test_the_rep_who_created_a_campaign_can_pause_and_resume_it(world: SlackWorld) -> None:
    make_maria_own_the_campaign(world)
    job_id = launched_job(world)

    paused = answer_to(world, REP, f"pause {CAMPAIGN}", command="/campaign")
    paused_states = (campaign_status(world), job_status(world, job_id))
    resumed = answer_to(world, REP, f"resume {CAMPAIGN}", command="/campaign")

    assert paused == f"Paused *{CAMPAIGN}* (1 job)."
    assert paused_states == ("paused", "paused")
    assert resumed == f"Resumed *{CAMPAIGN}* (1 job)."
    assert (campaign_status(world), job_status(world, job_id)) == ("active", "running")


def test_an_admin_can_pause_and_resume_a_campaign_another_rep_created(
    world: SlackWorld,
) -> None:
    make_maria_own_the_campaign(world)
    job_id = launched_job(world)

    paused = answer_to(world, ADMIN, f"pause {CAMPAIGN}", command="/campaign")
    resumed = answer_to(world, ADMIN, f"resume {CAMPAIGN}", command="/campaign")

    assert (paused, resumed) == (
        f"Paused *{CAMPAIGN}* (1 job).",
        f"Resumed *{CAMPAIGN}* (1 job).",
    )
    assert (campaign_status(world), job_status(world, job_id)) == ("active", "running")


# --- the same rule through the API ----------------------------------------------------------


def test_a_reps_api_token_cannot_cancel_another_reps_job(world: SlackWorld) -> None:
    job_id = launched_job(world)

    answer = world.client.post(
        f"/api/agent/jobs/{job_id}/cancel", headers=token_for(world, "jose@lonestar.example.com")
    )

    assert answer.status_code == 403
    assert answer.json()["error"]["message"] == (
        f"Only Maria Lopez, who launched job #{job_id}, or an admin can cancel it."
    )
    assert job_status(world, job_id) == "running"


def test_the_owners_and_an_admins_api_tokens_can_cancel_a_job(world: SlackWorld) -> None:
    first = launched_job(world)
    by_owner = world.client.post(
        f"/api/agent/jobs/{first}/cancel", headers=token_for(world, "maria@lonestar.example.com")
    )
    second = launched_job(world)
    by_admin = world.client.post(
        f"/api/agent/jobs/{second}/cancel", headers=token_for(world, ADMIN_EMAIL)
    )

    assert (by_owner.status_code, by_owner.json()["status"]) == (200, "cancelled")
    assert (by_admin.status_code, by_admin.json()["status"]) == (200, "cancelled")


def test_an_organization_wide_api_token_can_still_cancel_any_job(world: SlackWorld) -> None:
    job_id = launched_job(world)

    answer = world.client.post(
        f"/api/agent/jobs/{job_id}/cancel", headers={"Authorization": f"Bearer {world.api_token}"}
    )

    assert (answer.status_code, answer.json()["status"]) == (200, "cancelled")


def test_a_reps_api_token_cannot_pause_another_reps_campaign_but_may_edit_it_otherwise(
    world: SlackWorld,
) -> None:
    make_maria_own_the_campaign(world)
    jose = token_for(world, "jose@lonestar.example.com")

    paused = world.client.put(
        f"/api/marketing/campaigns/{world.campaign_id}", json={"status": "paused"}, headers=jose
    )
    described = world.client.put(
        f"/api/marketing/campaigns/{world.campaign_id}",
        json={"description": "Lenders quiet since summer"},
        headers=jose,
    )
    by_owner = world.client.put(
        f"/api/marketing/campaigns/{world.campaign_id}",
        json={"status": "paused"},
        headers=token_for(world, "maria@lonestar.example.com"),
    )

    assert paused.status_code == 403
    assert paused.json()["error"]["message"] == (
        f"Only Maria Lopez, who created the campaign “{CAMPAIGN}”, or an admin can pause it."
    )
    assert described.status_code == 200
    assert (by_owner.status_code, by_owner.json()["status"]) == (200, "paused")
