"""Multi-channel cadences over the REST API (issue 13), on SQLite and PostgreSQL: a campaign
stores and serves its cadence, a job runs it, and each bad cadence is refused at creation
with the field at fault and the reason, by the campaigns API and by the jobs API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from storage import models as m
from tests.support.api import ApiWorld, make_api_world

TEMPLATE = {
    "name": "Win-back step 1",
    "category": "campaign",
    "subject": "Turn times in {{ state }} are down, {{ first_name }}",
    "body": "Hi {{ first_name }},\n\nIt has been {{ days_since_last_order }} days.\n",
}
STEPS = [
    {"day": 0},
    {"day": 2, "channel": "linkedin", "description": "Comment on their latest post."},
    {"day": 5, "channel": "call"},
]


@pytest.fixture
def api(engine: Engine, session_factory: Callable[[], Session], clock: FixedClock) -> ApiWorld:
    return make_api_world(engine, session_factory, clock, start_background=False)


@pytest.fixture
def template_id(api: ApiWorld) -> int:
    created = api.client.post("/api/marketing/email-templates", json=TEMPLATE, headers=api.auth())
    assert created.status_code == 201
    return int(created.json()["id"])


def campaign_body(template_id: int, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Q4 lender win-back",
        "include_tags": ["lender"],
        "channels": ["email", "linkedin"],
        "email_template_ids": [template_id],
        "cadence": {"steps": STEPS, "business_days": True},
    }
    body.update(overrides)
    return body


def refused(response: Any) -> list[tuple[str, str]]:
    """A 422's (field, reason) pairs."""
    assert response.status_code == 422, response.text
    return [(d["field"], d["message"]) for d in response.json()["error"]["details"]]


def test_a_campaigns_cadence_is_stored_served_and_changed(
    api: ApiWorld, template_id: int, session_factory: Callable[[], Session]
) -> None:
    created = api.client.post(
        "/api/marketing/campaigns", json=campaign_body(template_id), headers=api.auth()
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["cadence"] == {
        "days": [0, 2, 5],
        "steps": [
            {"day": 0, "channel": "email", "title": None, "description": None},
            {
                "day": 2,
                "channel": "linkedin",
                "title": None,
                "description": "Comment on their latest post.",
            },
            {"day": 5, "channel": "call", "title": None, "description": None},
        ],
        "business_days": True,
    }
    assert body["cadence_days"] == [0, 2, 5]
    url = f"/api/marketing/campaigns/{body['id']}"
    assert api.client.get(url, headers=api.auth()).json() == body

    shorter = api.client.put(
        url,
        json={"cadence": {"steps": [{"day": 0}, {"day": 3, "channel": "task"}]}},
        headers=api.auth(),
    )
    assert shorter.status_code == 200, shorter.text
    assert (shorter.json()["cadence_days"], shorter.json()["cadence"]["business_days"]) == (
        [0, 3],
        False,
    )
    cleared = api.client.put(url, json={"cadence": None}, headers=api.auth())
    assert (cleared.json()["cadence"], cleared.json()["cadence_days"]) == (None, [0, 3])
    with session_factory() as session:
        row = session.get(m.MarketingCampaign, body["id"])
        assert row is not None
        assert row.cadence == {}


def test_a_campaign_without_a_cadence_serves_null(api: ApiWorld, template_id: int) -> None:
    body = campaign_body(template_id)
    del body["cadence"]

    created = api.client.post("/api/marketing/campaigns", json=body, headers=api.auth())

    assert (created.json()["cadence"], created.json()["cadence_days"]) == (None, [0, 4, 10, 21])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            {"channels": ["email"]},
            [
                (
                    "cadence.steps.1.channel",
                    "step 2 (linkedin) needs 'linkedin' in the campaign's channels: add it to "
                    "`channels`, or change the step (call and task steps need no channel)",
                )
            ],
            id="linkedin-step-without-linkedin",
        ),
        pytest.param(
            {"channels": ["linkedin"]},
            [
                (
                    "cadence.steps.0.channel",
                    "step 1 (email) needs 'email' in the campaign's channels: add it to "
                    "`channels`, or change the step (call and task steps need no channel)",
                )
            ],
            id="email-step-without-email",
        ),
        pytest.param(
            {"cadence": {"steps": [{"day": 0}, {"day": 4}, {"day": 9, "channel": "call"}]}},
            [
                (
                    "cadence.steps",
                    "the cadence has 2 email steps but the campaign has 1 email template: give "
                    "one template per email step in `email_template_ids`",
                )
            ],
            id="more-email-steps-than-templates",
        ),
        pytest.param(
            {"cadence": {"steps": [{"day": 0}, {"day": 6, "channel": "call"}, {"day": 3}]}},
            [
                (
                    "cadence.steps.2.day",
                    "step 3 is on day 3, not after step 2 (day 6): step days must strictly "
                    "increase, e.g. 0, 2, 5",
                )
            ],
            id="not-increasing",
        ),
        pytest.param(
            {"cadence": {"steps": [{"day": 2}, {"day": 6, "channel": "call"}]}},
            [
                (
                    "cadence.steps.0.day",
                    "the first step must be on day 0 (the day the contact is enrolled), not day 2",
                )
            ],
            id="starts-after-day-0",
        ),
        pytest.param(
            {"cadence": {"steps": [{"day": d, "channel": "task"} for d in range(21)]}},
            [
                (
                    "cadence.steps",
                    "a cadence has at most 20 steps; this one has 21: merge or drop steps",
                )
            ],
            id="more-than-20-steps",
        ),
        pytest.param(
            {"cadence": {"steps": [{"day": 0, "channel": "fax"}]}},
            [("cadence.steps.0.channel", "Input should be 'email', 'linkedin', 'call' or 'task'")],
            id="unknown-channel",
        ),
    ],
)
def test_a_bad_cadence_is_refused_at_creation_naming_the_field(
    api: ApiWorld, template_id: int, change: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    response = api.client.post(
        "/api/marketing/campaigns", json=campaign_body(template_id, **change), headers=api.auth()
    )

    assert refused(response) == expected
    assert api.client.get("/api/marketing/campaigns", headers=api.auth()).json() == []


def test_a_change_that_leaves_a_step_without_its_channel_is_refused(
    api: ApiWorld, template_id: int
) -> None:
    created = api.client.post(
        "/api/marketing/campaigns", json=campaign_body(template_id), headers=api.auth()
    ).json()
    url = f"/api/marketing/campaigns/{created['id']}"

    response = api.client.put(url, json={"channels": ["email"]}, headers=api.auth())

    assert [field for field, _ in refused(response)] == ["cadence.steps.1.channel"]
    assert api.client.get(url, headers=api.auth()).json()["channels"] == ["email", "linkedin"]


def job_body(cadence: dict[str, Any], *, templates: int = 1) -> dict[str, Any]:
    return {
        "name": "Win-back",
        "params": {
            "target": {"emails": ["dana@pinnacle.example.com"]},
            "templates": [
                {"subject": f"Hi {{{{ first_name }}}} ({n})", "body": "Turn times are down."}
                for n in range(templates)
            ],
            "cadence": cadence,
        },
    }


def test_a_job_takes_a_multi_channel_cadence(api: ApiWorld) -> None:
    created = api.client.post(
        "/api/agent/jobs", json=job_body({"steps": STEPS}), headers=api.auth()
    )

    assert created.status_code == 201, created.text
    assert [s["channel"] for s in created.json()["params"]["cadence"]["steps"]] == [
        "email",
        "linkedin",
        "call",
    ]


@pytest.mark.parametrize(
    ("cadence", "expected_field", "reason"),
    [
        pytest.param(
            {"steps": [{"day": 0}, {"day": 2, "channel": "linkedin"}, {"day": 4}]},
            "params.cadence.steps",
            "the cadence has 2 email steps but the job has only 1 template: give one template "
            "per email step",
            id="more-email-steps-than-templates",
        ),
        pytest.param(
            {"steps": [{"day": 0}, {"day": 0, "channel": "call"}]},
            "params.cadence.steps.1.day",
            "step 2 is on day 0, not after step 1 (day 0): step days must strictly increase, "
            "e.g. 0, 2, 5",
            id="not-increasing",
        ),
        pytest.param(
            {"steps": [{"day": 1}]},
            "params.cadence.steps.0.day",
            "the first step must be on day 0 (the day the contact is enrolled), not day 1",
            id="starts-after-day-0",
        ),
        pytest.param(
            {"steps": [{"day": 0}] + [{"day": d, "channel": "call"} for d in range(1, 21)]},
            "params.cadence.steps",
            "a cadence has at most 20 steps; this one has 21: merge or drop steps",
            id="more-than-20-steps",
        ),
    ],
)
def test_a_bad_cadence_is_refused_by_the_jobs_api_naming_the_field(
    api: ApiWorld, cadence: dict[str, Any], expected_field: str, reason: str
) -> None:
    response = api.client.post("/api/agent/jobs", json=job_body(cadence), headers=api.auth())

    assert refused(response) == [(expected_field, reason)]
    assert api.client.get("/api/agent/jobs", headers=api.auth()).json() == []
