"""Multi-channel cadences on campaigns and jobs (issue 13): what a cadence may be, what a
campaign must use and hold to run it, and the job a campaign's cadence becomes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from domain.cadence import Channel
from domain.campaigns import Campaign, CampaignCreate, CampaignUpdate
from domain.fields import STORED
from domain.jobs import Behaviour, Cadence, CadenceStep, Job, JobParams, params_from_campaign

EMAIL_THEN_LINKEDIN_THEN_CALL = [
    {"day": 0},
    {"day": 2, "channel": "linkedin"},
    {"day": 5, "channel": "call", "title": "Call about the Q4 rate sheet"},
]


def campaign(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": "Q4 lender win-back",
        "channels": ["email", "linkedin"],
        "email_template_ids": [11],
        "cadence": {"steps": EMAIL_THEN_LINKEDIN_THEN_CALL},
    }
    values.update(overrides)
    return values


def refusals(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[str, str]]:
    """Each refusal as (field, reason), the field dotted as the API names it."""
    return [
        (".".join(str(p) for p in e["loc"]), e["msg"].removeprefix("Value error, "))
        for e in exc.value.errors()
    ]


def test_a_campaign_takes_a_multi_channel_cadence_and_its_days_follow_the_steps() -> None:
    created = CampaignCreate.model_validate(campaign())

    assert created.cadence is not None
    assert [(s.day, s.channel) for s in created.cadence.steps or []] == [
        (0, Channel.EMAIL),
        (2, Channel.LINKEDIN),
        (5, Channel.CALL),
    ]
    assert created.cadence_days == [0, 2, 5]


def test_a_linkedin_step_needs_linkedin_among_the_campaigns_channels() -> None:
    with pytest.raises(ValidationError) as exc:
        CampaignCreate.model_validate(campaign(channels=["email"]))

    assert refusals(exc) == [
        (
            "cadence.steps.1.channel",
            "step 2 (linkedin) needs 'linkedin' in the campaign's channels: add it to "
            "`channels`, or change the step (call and task steps need no channel)",
        )
    ]


def test_an_email_step_needs_email_among_the_campaigns_channels() -> None:
    with pytest.raises(ValidationError) as exc:
        CampaignCreate.model_validate(campaign(channels=["linkedin"]))

    assert [field for field, _ in refusals(exc)] == ["cadence.steps.0.channel"]


def test_call_and_task_steps_need_no_channel_of_the_campaign() -> None:
    steps = [{"day": 0}, {"day": 3, "channel": "call"}, {"day": 7, "channel": "task"}]

    created = CampaignCreate.model_validate(campaign(channels=["email"], cadence={"steps": steps}))

    assert created.cadence_days == [0, 3, 7]


def test_more_email_steps_than_email_templates_is_refused() -> None:
    steps = [{"day": 0}, {"day": 2, "channel": "linkedin"}, {"day": 4}]

    with pytest.raises(ValidationError) as exc:
        CampaignCreate.model_validate(campaign(cadence={"steps": steps}))

    assert refusals(exc) == [
        (
            "cadence.steps",
            "the cadence has 2 email steps but the campaign has 1 email template: give one "
            "template per email step in `email_template_ids`",
        )
    ]


def test_steps_whose_days_do_not_increase_are_refused_step_by_step() -> None:
    steps = [{"day": 0}, {"day": 4, "channel": "call"}, {"day": 4, "channel": "task"}]

    with pytest.raises(ValidationError) as exc:
        CampaignCreate.model_validate(campaign(cadence={"steps": steps}))

    assert refusals(exc) == [
        (
            "cadence.steps.2.day",
            "step 3 is on day 4, not after step 2 (day 4): step days must strictly increase, "
            "e.g. 0, 2, 5",
        )
    ]


def test_a_cadence_that_starts_after_day_zero_is_refused() -> None:
    steps = [{"day": 1}, {"day": 3, "channel": "call"}]

    with pytest.raises(ValidationError) as exc:
        CampaignCreate.model_validate(campaign(cadence={"steps": steps}))

    assert refusals(exc) == [
        (
            "cadence.steps.0.day",
            "the first step must be on day 0 (the day the contact is enrolled), not day 1",
        )
    ]


def test_a_cadence_of_more_than_twenty_steps_is_refused() -> None:
    steps = [{"day": 0}] + [{"day": d, "channel": "task"} for d in range(1, 21)]

    with pytest.raises(ValidationError) as exc:
        CampaignCreate.model_validate(campaign(cadence={"steps": steps}))

    assert refusals(exc) == [
        ("cadence.steps", "a cadence has at most 20 steps; this one has 21: merge or drop steps")
    ]


def test_a_campaigns_cadence_without_steps_is_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        CampaignCreate.model_validate(campaign(cadence={"days": [0, 3]}))

    assert [field for field, _ in refusals(exc)] == ["cadence.steps"]


def test_cadence_days_that_contradict_the_steps_are_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        CampaignCreate.model_validate(campaign(cadence_days=[0, 4, 10]))

    assert [field for field, _ in refusals(exc)] == ["cadence_days"]


def stored(**overrides: Any) -> Campaign:
    now = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    fields = CampaignCreate.model_validate(campaign(**overrides)).model_dump()
    return Campaign.model_validate(
        {**fields, "id": 5, "created_at": now, "updated_at": now}, context=STORED
    )


def test_a_change_of_cadence_moves_cadence_days_with_it_and_null_goes_back_to_email() -> None:
    current = stored()

    changed = CampaignUpdate.model_validate(
        {"cadence": {"steps": [{"day": 0}, {"day": 3, "channel": "call"}]}}
    ).apply_to(current)
    back = CampaignUpdate.model_validate({"cadence": None}).apply_to(current)

    assert changed.cadence_days == [0, 3]
    assert back.cadence is None
    assert back.cadence_days == [0, 2, 5]


def test_a_change_that_drops_the_linkedin_channel_under_a_linkedin_step_is_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        CampaignUpdate.model_validate({"channels": ["email"]}).apply_to(stored())

    assert [field for field, _ in refusals(exc)] == ["cadence.steps.1.channel"]


def test_a_stored_campaign_is_served_even_when_it_no_longer_fits_its_cadence() -> None:
    fields = CampaignCreate.model_validate(campaign()).model_dump()
    fields.update(email_template_ids=[], id=5)
    now = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)

    served = Campaign.model_validate(
        {**fields, "created_at": now, "updated_at": now}, context=STORED
    )

    assert served.email_template_ids == []


def test_a_job_from_a_campaign_runs_the_campaigns_cadence() -> None:
    params = params_from_campaign(stored(cadence={"steps": EMAIL_THEN_LINKEDIN_THEN_CALL}))

    assert [(p.day, p.channel, p.template_index, p.title) for p in params.plan()] == [
        (0, Channel.EMAIL, 0, None),
        (2, Channel.LINKEDIN, None, None),
        (5, Channel.CALL, None, "Call about the Q4 rate sheet"),
    ]


def test_a_job_from_a_campaign_without_a_cadence_sends_every_step_by_email() -> None:
    params = params_from_campaign(stored(cadence=None, cadence_days=[0, 4, 10]))

    assert params.cadence.steps is None
    assert [(p.day, p.channel) for p in params.plan()] == [(0, Channel.EMAIL)]


def test_a_jobs_cadence_with_more_email_steps_than_templates_is_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        JobParams.model_validate(
            {
                "target": {"contact_ids": [1]},
                "templates": [{"template_id": 11}],
                "cadence": {"steps": [{"day": 0}, {"day": 2, "channel": "call"}, {"day": 4}]},
            }
        )

    assert refusals(exc) == [
        (
            "cadence.steps",
            "the cadence has 2 email steps but the job has only 1 template: give one "
            "template per email step",
        )
    ]


def job_params(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "target": {"contact_ids": [1]},
        "templates": [{"template_id": 11}],
        "cadence": {"steps": EMAIL_THEN_LINKEDIN_THEN_CALL},
    }
    values.update(overrides)
    return values


def test_a_task_template_after_the_last_step_is_refused_naming_it_and_the_steps() -> None:
    tasks = [
        {"kind": "schedule_call", "title": "Call after the LinkedIn touch", "after_step": 1},
        {"kind": "schedule_call", "title": "Call after the call", "after_step": 3},
        {"kind": "create_task", "title": "Check the portal", "after_step": 2},
        {"kind": "create_task", "title": "Follow up", "after_step": 100},
    ]

    with pytest.raises(ValidationError) as exc:
        JobParams.model_validate(job_params(task_templates=tasks))

    past = "is past the cadence, which has 3 steps (after_step counts from 0, so 0 to 2)"
    assert refusals(exc) == [
        ("task_templates.1.after_step", f"after_step 3 {past}"),
        ("task_templates.3.after_step", f"after_step 100 {past}"),
    ]


def test_a_task_template_on_an_all_email_cadence_counts_the_templates_steps() -> None:
    params = job_params(
        templates=[{"template_id": 11}, {"template_id": 12}],
        cadence={"days": [0, 4, 10]},  # the third day has no template: two steps
        task_templates=[{"kind": "schedule_call", "title": "Call", "after_step": 1}],
    )
    assert JobParams.model_validate(params).steps == 2

    params["task_templates"][0]["after_step"] = 2
    with pytest.raises(ValidationError) as exc:
        JobParams.model_validate(params)
    assert refusals(exc) == [
        (
            "task_templates.0.after_step",
            "after_step 2 is past the cadence, which has 2 steps (after_step counts from 0, "
            "so 0 to 1)",
        )
    ]


def test_a_stored_job_whose_task_template_is_past_its_cadence_is_still_served() -> None:
    """Refused when a job is made; a job stored before that is read as it was, so its
    enrollments go on instead of stopping as unreadable."""
    late_call = {"kind": "schedule_call", "title": "Call", "after_step": 9}
    stored = job_params(task_templates=[late_call])

    params = Job.model_construct(params=stored).parsed_params()

    assert params.task_templates[0].after_step == 9


@pytest.mark.parametrize("value", ["yes", "true", 1, 0, None])
def test_a_behaviour_switch_takes_only_true_or_false(value: object) -> None:
    with pytest.raises(ValidationError) as exc:
        Behaviour.model_validate({"auto_approve": value})
    assert [field for field, _ in refusals(exc)] == ["auto_approve"]
    assert Behaviour.model_validate({"auto_approve": True}).auto_approve is True


def test_the_cadence_models_are_the_same_from_jobs_and_campaigns() -> None:
    from domain import campaigns

    assert (Cadence, CadenceStep) == (campaigns.Cadence, campaigns.CadenceStep)
    assert Cadence(steps=[CadenceStep(day=0), CadenceStep(day=6)]).days == [0, 6]
