"""A rep's cadence step (a LinkedIn touch, a call, a task), on a fake unit of work: the card
the step's task makes, what its message shows (snapshots), and Done / Skip: the step ends,
the cadence goes on, and a done LinkedIn touch or call is in the contact's history."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from domain.cadence import Channel
from domain.cards import Card, CardState, CardView
from domain.engagement import EngagementEvent
from domain.errors import InvalidInput, NotPermitted
from domain.jobs import (
    JobParams,
    JobStatus,
    StepTemplate,
    TargetSelection,
    TaskKind,
    step_task_rows,
)
from domain.outreach import CardRefused
from handlers.slack.blocks import card_message, linkedin_search_url
from handlers.slack.ids import ActionId
from tests.support.snapshots import assert_matches_snapshot
from tests.unit.fakes import (
    NOW,
    ORG,
    OTHER_REP,
    REP,
    Enrollment,
    Outreaching,
    actor,
    make_contact,
    outreaching,
)

ZONE = "America/Chicago: the time zone of the contact's state"
CONTACT = 1


@pytest.fixture
def h() -> Outreaching:
    return outreaching()


def cadence_job(h: Outreaching) -> tuple[int, JobParams]:
    """A running job whose cadence is email (day 0) → LinkedIn (day 2) → call (day 5)."""
    params = JobParams.model_validate(
        {
            "target": TargetSelection(contact_ids=[CONTACT]).model_dump(),
            "templates": [StepTemplate(subject="Turn times", body="Hi Dana").model_dump()],
            "cadence": {
                "steps": [
                    {"day": 0},
                    {"day": 2, "channel": "linkedin"},
                    {"day": 5, "channel": "call", "description": "Ask about Q4 volume."},
                ]
            },
        }
    )
    with h.uow() as uow:
        job = uow.jobs.add(
            ORG,
            name="Q4 lender win-back · launch",
            description=None,
            params=params.model_dump(mode="json"),
            owner_id=REP,
            campaign_id=None,
        )
        uow.jobs.set_status(ORG, job.id, JobStatus.RUNNING, expected=[JobStatus.PENDING], now=NOW)
        uow.jobs.mark_planned(job.id, now=NOW)
        uow.commit()
    return job.id, params


def step_card(h: Outreaching, step: int, *, phone: str | None = "(512) 555-0142") -> Card:
    """The card of cadence step `step` of contact 1, made as the tick's task makes it."""
    h.world.contacts[(ORG, CONTACT)] = make_contact(CONTACT, phone=phone)
    h.world.engagement.add_contact(ORG, CONTACT)
    job_id, params = cadence_job(h)
    enrollment_id = next(h.world.next_id)
    h.world.enrollments[enrollment_id] = Enrollment(
        ORG, job_id, CONTACT, step=step, step_started_at=NOW
    )
    rows = step_task_rows(
        params, step, contact_id=CONTACT, enrollment_id=enrollment_id, time_zone=ZONE
    )
    with h.uow() as uow:
        uow.tasks.add_many(ORG, job_id, [{**row, "batch": 0} for row in rows])
        uow.commit()
    h.run_tasks(job_id)
    (card,) = [c for c in h.world.cards.values() if c.job_id == job_id]
    return card


def enrollment(h: Outreaching, card: Card) -> Enrollment:
    assert card.enrollment_id is not None
    return h.world.enrollments[card.enrollment_id]


def touches(h: Outreaching) -> list[tuple[EngagementEvent, dict[str, object]]]:
    return [(EngagementEvent(r.event), r.detail) for r in h.world.engagement.history(ORG, CONTACT)]


# --- Done / Skip ---------------------------------------------------------------------------


def test_a_done_linkedin_step_ends_the_step_and_records_the_touch(h: Outreaching) -> None:
    card = step_card(h, 1)
    h.clock.advance(minutes=30)

    done = h.outreach.review.complete_step(actor(), card.id)

    assert done.state == CardState.DONE
    assert (enrollment(h, card).step, enrollment(h, card).next_due_at) == (2, h.clock.now())
    assert enrollment(h, card).last_step_at == h.clock.now()
    assert touches(h) == [
        (EngagementEvent.LINKEDIN_TOUCH, {"card_id": card.id, "job_id": card.job_id, "step": 1})
    ]
    assert h.world.contacts[(ORG, CONTACT)].last_contacted_at == h.clock.now()
    assert h.notifier.updated[-1] == (card.id, CardState.DONE)


def test_a_done_call_step_records_a_call_and_completes_the_cadence(h: Outreaching) -> None:
    card = step_card(h, 2)

    h.outreach.review.complete_step(actor(), card.id)

    assert [event for event, _ in touches(h)] == [EngagementEvent.CALL]
    assert (enrollment(h, card).status, enrollment(h, card).step) == ("completed", 3)


def test_a_skipped_step_moves_the_cadence_on_and_records_no_touch(h: Outreaching) -> None:
    card = step_card(h, 1)

    skipped = h.outreach.review.skip_step(actor(), card.id)

    assert (skipped.state, skipped.rejected_reason) == (CardState.REJECTED, "skipped")
    assert (enrollment(h, card).step, enrollment(h, card).next_due_at) == (2, NOW)
    assert touches(h) == []
    assert h.world.contacts[(ORG, CONTACT)].last_contacted_at is None


def test_a_second_done_is_refused_and_records_nothing_more(h: Outreaching) -> None:
    card = step_card(h, 1)
    h.outreach.review.complete_step(actor(), card.id)

    with pytest.raises(CardRefused):
        h.outreach.review.complete_step(actor(), card.id)
    with pytest.raises(CardRefused):
        h.outreach.review.skip_step(actor(), card.id)

    assert len(touches(h)) == 1
    assert enrollment(h, card).step == 2


def test_another_reps_done_or_skip_is_refused(h: Outreaching) -> None:
    card = step_card(h, 1)

    with pytest.raises(NotPermitted):
        h.outreach.review.complete_step(actor(OTHER_REP), card.id)
    with pytest.raises(NotPermitted):
        h.outreach.review.skip_step(actor(OTHER_REP), card.id)

    assert h.card(card.id).state == CardState.IN_REVIEW
    assert enrollment(h, card).step == 1


def test_an_email_card_can_be_neither_done_nor_skipped(h: Outreaching) -> None:
    card = step_card(h, 0)
    assert card.sends_email

    with pytest.raises(InvalidInput, match="use Approve & send"):
        h.outreach.review.complete_step(actor(), card.id)
    with pytest.raises(InvalidInput, match="can be skipped"):
        h.outreach.review.skip_step(actor(), card.id)

    assert h.mailer.sent == []


def test_the_step_card_carries_its_step_channel_and_zone(h: Outreaching) -> None:
    card = step_card(h, 1)
    view = h.outreach.presenting.card_view(ORG, card.id)

    assert card.action_payload == {
        "task_kind": TaskKind.LINKEDIN_TOUCH.value,
        "cadence_step": 1,
        "channel": Channel.LINKEDIN.value,
        "time_zone": ZONE,
    }
    assert (view.step_number, view.total_steps, view.emails_before, view.replied) == (
        2,
        3,
        1,
        False,
    )
    assert view.contact_phone == "(512) 555-0142"


# --- what the message shows ------------------------------------------------------------------


def make_view(card: Card, **overrides: Any) -> CardView:
    values: dict[str, Any] = {
        "contact_name": "Maria Lopez",
        "contact_email": "maria@gulfcoastlending.com",
        "contact_title": "Loan Officer",
        "company_name": "Gulf Coast Lending",
        "campaign_name": "Q4 lender win-back",
        "step_number": 3,
        "total_steps": 5,
        "emails_before": 2,
        "owner_slack_id": "U0MARIA01",
        "contact_phone": "(409) 555-0187",
    }
    values.update(overrides)
    return CardView(card=card, **values)


def message(view: CardView) -> dict[str, Any]:
    text, blocks = card_message(view)
    return {"text": text, "blocks": blocks}


def shown(h: Outreaching, step: int, **changes: Any) -> Card:
    """A step card as drafted, for a contact named as in the design's example."""
    card = step_card(h, step)
    return replace(
        card,
        title=card.title.replace(
            make_contact(CONTACT).full_name, "Maria Lopez"
        ),  # the name the view shows
        rationale="No orders in 143 days (was 6/month). Opened our last email, no reply.",
        **changes,
    )


def test_a_call_step_card_says_who_to_call_why_and_where_the_cadence_stands(
    h: Outreaching,
) -> None:
    card = shown(h, 2)

    snapshot = message(make_view(card))

    assert snapshot["blocks"][0]["text"]["text"].startswith(
        "📞  *Call Maria Lopez* at Gulf Coast Lending"
    )
    assert [b["action_id"] for b in snapshot["blocks"][-1]["elements"]] == [
        ActionId.STEP_DONE,
        ActionId.STEP_SKIP,
    ]
    assert_matches_snapshot("step_card_call_in_review", snapshot)


def test_a_linkedin_step_card_links_a_search_for_the_person_at_their_company(
    h: Outreaching,
) -> None:
    card = shown(h, 1)

    snapshot = message(make_view(card, step_number=2, total_steps=3, emails_before=1))

    assert linkedin_search_url("Maria Lopez", "Gulf Coast Lending") == (
        "https://www.linkedin.com/search/results/people/?keywords=Maria+Lopez+Gulf+Coast+Lending"
    )
    assert_matches_snapshot("step_card_linkedin_in_review", snapshot)


def test_a_call_step_without_a_phone_number_says_so(h: Outreaching) -> None:
    card = shown(h, 2)

    text = str(message(make_view(card, contact_phone=None))["blocks"])

    assert "*Phone*  _none on file: look it up, or skip this step_" in text


def test_a_done_step_card_shows_who_did_it_and_when_instead_of_its_buttons(
    h: Outreaching,
) -> None:
    card = shown(h, 2, state=CardState.DONE, executed_at=NOW, approved_by=REP)

    assert_matches_snapshot(
        "step_card_call_done", message(make_view(card, actor_slack_id="U0MARIA01"))
    )


def test_a_skipped_step_card_shows_who_skipped_it(h: Outreaching) -> None:
    card = shown(h, 1, state=CardState.REJECTED, rejected_reason="skipped", approved_by=REP)

    blocks = message(make_view(card, actor_slack_id="U0MARIA01"))["blocks"]

    assert blocks[-1] == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "⏭️ Skipped by <@U0MARIA01>"}],
    }


def test_a_task_step_with_its_own_title_shows_it(h: Outreaching) -> None:
    card = shown(h, 2)
    card = replace(
        card,
        title="Mail the Q4 rate sheet: Maria Lopez",
        action_payload={**card.action_payload, "channel": "task"},
    )

    headline = message(make_view(card))["blocks"][0]["text"]["text"]

    assert headline == (
        "📝  *Mail the Q4 rate sheet* · Maria Lopez at Gulf Coast Lending    `medium`"
    )
