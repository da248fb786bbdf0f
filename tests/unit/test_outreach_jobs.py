"""A campaign's job from launch to its last card, on a fake unit of work: drafting, cancelling
while drafting, and pausing or resuming a campaign with its jobs."""

from __future__ import annotations

import pytest

from domain.campaigns import CampaignCreate, CampaignStatus
from domain.cards import CardState
from domain.catalog import Catalog
from domain.deps import Deps
from domain.errors import Conflict, NotPermitted
from domain.jobs import JobStatus, TaskKind, TaskStatus
from domain.outreach import CardRefused
from domain.templates import EmailTemplateFields
from tests.unit.fakes import (
    ADMIN,
    ORG,
    OTHER_REP,
    REP,
    Outreaching,
    actor,
    make_contact,
    outreaching,
)

CAMPAIGN = "Q4 lender win-back"


@pytest.fixture
def h() -> Outreaching:
    h = outreaching()
    for contact in (
        make_contact(1),
        make_contact(2),
        make_contact(3, opted_out=True),  # never in an audience
    ):
        h.world.contacts[(ORG, contact.contact_id)] = contact
    catalog = Catalog(Deps(uow=h.uow, clock=h.clock))
    template = catalog.create_template(
        ORG,
        EmailTemplateFields(
            name="Win-back",
            subject="Checking in, {{ first_name }}",
            body="Hi {{ first_name }},\n\nTurn times are down.\n\n{{ rep_name }}",
        ),
        created_by=REP,
    )
    catalog.create_campaign(
        ORG, CampaignCreate(name=CAMPAIGN, email_template_ids=[template.id]), created_by=REP
    )
    return h


def launch(h: Outreaching) -> int:
    """Launch the campaign as the rep and plan its job; return the job's id."""
    launched = h.outreach.jobs.launch_campaign(ORG, CAMPAIGN, owner_id=REP)
    assert launched.audience_count == 2
    assert h.outreach.jobs.plan_job(ORG, launched.job.id) == 2
    return launched.job.id


def cards_of(h: Outreaching, job_id: int) -> list[tuple[str, CardState]]:
    return [
        (str(c.action_payload.get("subject")), c.state)
        for c in sorted(h.world.cards.values(), key=lambda c: c.id)
        if c.job_id == job_id
    ]


def test_a_launched_campaign_drafts_a_card_for_review_for_each_reachable_contact(
    h: Outreaching,
) -> None:
    job_id = launch(h)

    assert h.run_tasks(job_id) == 4  # two drafts, then their two messages

    assert cards_of(h, job_id) == [
        ("Checking in, Dana1", CardState.IN_REVIEW),
        ("Checking in, Dana2", CardState.IN_REVIEW),
    ]
    assert len(h.notifier.posted) == 2
    job = h.job(job_id)
    assert (job.status, job.total_tasks, job.completed_tasks, job.cards_created) == (
        JobStatus.RUNNING,
        2,
        2,
        2,
    )
    assert h.world.campaigns[(ORG, job.campaign_id or 0)].status == CampaignStatus.ACTIVE


def test_a_job_succeeds_once_its_last_card_is_decided(h: Outreaching) -> None:
    job_id = launch(h)
    h.run_tasks(job_id)
    first, second = sorted(c.id for c in h.world.cards.values())

    h.outreach.review.approve_card(actor(), first, fingerprint=None)
    assert h.job(job_id).status == JobStatus.RUNNING
    h.outreach.review.reject_card(actor(), second, reason="just ordered")

    job = h.job(job_id)
    assert (job.status, job.emails_sent, job.cards_executed) == (JobStatus.SUCCEEDED, 1, 1)
    assert [e.to_email for e in h.mailer.sent] == ["dana1@pinnaclelending.test"]


def test_a_campaign_with_an_open_job_is_not_launched_again(h: Outreaching) -> None:
    job_id = launch(h)

    with pytest.raises(Conflict, match=f"already has job #{job_id}"):
        h.outreach.jobs.launch_campaign(ORG, CAMPAIGN, owner_id=REP)

    assert len(h.world.jobs) == 1


def test_cancelling_while_drafting_makes_no_card_and_cancels_the_claimed_tasks(
    h: Outreaching,
) -> None:
    job_id = launch(h)
    claimed = h.claim(job_id, kinds=[TaskKind.DRAFT_EMAIL])

    h.outreach.jobs.set_job_status(ORG, job_id, JobStatus.CANCELLED, by=actor())
    h.outreach.drafting.run_draft_batch(claimed, org_id=ORG)

    assert cards_of(h, job_id) == []
    assert [h.world.tasks[t.id].status for t in claimed] == [TaskStatus.CANCELLED] * 2
    job = h.job(job_id)
    assert (job.status, job.cancelled_by) == (JobStatus.CANCELLED, REP)


def test_cancelling_withdraws_the_cards_not_yet_sent_and_updates_their_messages(
    h: Outreaching,
) -> None:
    job_id = launch(h)
    h.run_tasks(job_id)
    first, second = sorted(c.id for c in h.world.cards.values())
    h.outreach.review.approve_card(actor(), first, fingerprint=None)

    h.outreach.jobs.set_job_status(ORG, job_id, JobStatus.CANCELLED, by=actor())
    h.run_tasks(job_id)  # the queued update of the withdrawn card's message

    assert [state for _, state in cards_of(h, job_id)] == [CardState.DONE, CardState.WITHDRAWN]
    assert h.notifier.updated[-1] == (second, CardState.WITHDRAWN)
    with pytest.raises(CardRefused, match=rf"withdrawn \(job #{job_id} cancelled\)"):
        h.outreach.review.approve_card(actor(), second, fingerprint=None)
    assert len(h.mailer.sent) == 1


def test_pausing_a_campaign_pauses_its_running_job_and_resuming_resumes_it(
    h: Outreaching,
) -> None:
    job_id = launch(h)
    campaign_id = h.job(job_id).campaign_id or 0

    paused = h.outreach.jobs.set_campaign_status(
        actor(), ORG, campaign_id, to=CampaignStatus.PAUSED
    )

    assert (paused.campaign.status, paused.job_ids) == (CampaignStatus.PAUSED, (job_id,))
    assert h.job(job_id).status == JobStatus.PAUSED

    resumed = h.outreach.jobs.set_campaign_status(
        actor(ADMIN, role="admin"), ORG, campaign_id, to=CampaignStatus.ACTIVE
    )

    assert (resumed.campaign.status, resumed.job_ids) == (CampaignStatus.ACTIVE, (job_id,))
    assert h.job(job_id).status == JobStatus.RUNNING


def test_only_the_campaigns_creator_or_an_admin_pauses_it_and_a_refusal_changes_nothing(
    h: Outreaching,
) -> None:
    job_id = launch(h)
    campaign_id = h.job(job_id).campaign_id or 0

    with pytest.raises(NotPermitted, match="Only Maria Lopez, who created the campaign"):
        h.outreach.jobs.set_campaign_status(
            actor(OTHER_REP), ORG, campaign_id, to=CampaignStatus.PAUSED
        )

    assert h.world.campaigns[(ORG, campaign_id)].status == CampaignStatus.ACTIVE
    assert h.job(job_id).status == JobStatus.RUNNING
