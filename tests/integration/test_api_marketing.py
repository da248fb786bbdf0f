"""The REST API over HTTP (FastAPI TestClient), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from storage import models as m
from storage.db import make_session_factory
from tests.support.accounts import revoke_token
from tests.support.api import ApiWorld, make_api_world
from tests.support.builders import make_client, make_contact, make_order

CAMPAIGN = {
    "name": "Q4 lender win-back",
    "description": "Win back lenders that stopped ordering",
    "goal": "reactivation",
    "target_role_codes": ["LO", "PROC"],
    "include_tags": ["lender"],
    "min_lead_score": 40,
    "channels": ["email", "linkedin"],
}

TEMPLATE = {
    "name": "Win-back step 1",
    "category": "campaign",
    "subject": "Turn times in {{ state }} are down, {{ first_name }}",
    "body": "Hi {{ first_name }},\n\nIt has been {{ days_since_last_order }} days.\n",
}


@pytest.fixture
def api(engine: Engine, session_factory: Callable[[], Session], clock: FixedClock) -> ApiWorld:
    return make_api_world(engine, session_factory, clock)


# --- auth -----------------------------------------------------------------------------------


def test_a_request_without_a_token_is_refused_with_401(api: ApiWorld) -> None:
    response = api.client.get("/api/marketing/campaigns")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_malformed_authorization_header_is_refused_with_401(api: ApiWorld) -> None:
    response = api.client.get("/api/marketing/campaigns", headers={"Authorization": "Basic x"})
    assert response.status_code == 401
    assert "Bearer" in response.json()["error"]["message"]


def test_an_unknown_token_is_refused_with_401(api: ApiWorld) -> None:
    response = api.client.get("/api/marketing/campaigns", headers=api.auth("sbt_nope"))
    assert response.status_code == 401


def test_a_revoked_token_is_refused_with_401(
    api: ApiWorld, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    assert api.client.get("/api/marketing/campaigns", headers=api.auth()).status_code == 200
    with session_factory() as session:
        revoke_token(session, api.org_id, api.token_id, now=clock.now())
        session.commit()
    response = api.client.get("/api/marketing/campaigns", headers=api.auth())
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "invalid or revoked API token"


def test_a_read_only_token_cannot_write(api: ApiWorld) -> None:
    response = api.client.post(
        "/api/marketing/campaigns", json=CAMPAIGN, headers=api.auth(api.read_token)
    )
    assert response.status_code == 403
    assert "read-only" in response.json()["error"]["message"]
    assert api.client.get("/api/marketing/campaigns", headers=api.auth(api.read_token)).json() == []


def test_another_orgs_token_sees_nothing_of_this_org(api: ApiWorld) -> None:
    created = api.client.post("/api/marketing/campaigns", json=CAMPAIGN, headers=api.auth())
    campaign_id = created.json()["id"]
    template_id = api.client.post(
        "/api/marketing/email-templates", json=TEMPLATE, headers=api.auth()
    ).json()["id"]
    other = api.auth(api.other_token)
    assert (
        api.client.get(f"/api/marketing/campaigns/{campaign_id}", headers=other).status_code == 404
    )
    assert api.client.get("/api/marketing/campaigns", headers=other).json() == []
    put = api.client.put(
        f"/api/marketing/campaigns/{campaign_id}", json={"name": "x"}, headers=other
    )
    assert put.status_code == 404
    deleted = api.client.delete(f"/api/marketing/email-templates/{template_id}", headers=other)
    assert deleted.status_code == 404
    assert (
        api.client.get(f"/api/marketing/campaigns/{campaign_id}", headers=api.auth()).json()["name"]
        == "Q4 lender win-back"
    )


# --- campaigns ------------------------------------------------------------------------------


def test_a_campaign_is_created_read_listed_and_updated(api: ApiWorld) -> None:
    created = api.client.post("/api/marketing/campaigns", json=CAMPAIGN, headers=api.auth())
    assert created.status_code == 201
    body = created.json()
    assert body["status"] == "draft"
    assert body["goal"] == "reactivation"
    assert body["cadence_days"] == [0, 4, 10, 21]
    assert body["channels"] == ["email", "linkedin"]
    fetched = api.client.get(f"/api/marketing/campaigns/{body['id']}", headers=api.auth())
    assert fetched.json() == body
    updated = api.client.put(
        f"/api/marketing/campaigns/{body['id']}",
        json={"status": "active", "stale_client_days": 90},
        headers=api.auth(),
    )
    assert updated.status_code == 200
    assert updated.json()["status"] == "active"
    assert updated.json()["stale_client_days"] == 90
    assert updated.json()["name"] == "Q4 lender win-back"
    listed = api.client.get("/api/marketing/campaigns?status=active", headers=api.auth()).json()
    assert [c["id"] for c in listed] == [body["id"]]


def test_a_campaign_with_an_unknown_goal_is_rejected_with_the_field(api: ApiWorld) -> None:
    response = api.client.post(
        "/api/marketing/campaigns",
        json={**CAMPAIGN, "goal": "world_domination"},
        headers=api.auth(),
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["field"] == "goal"


def test_a_campaign_with_dates_is_stored_and_updated_with_them(api: ApiWorld) -> None:
    """Dates reach their columns as dates (SQLite's Date type refuses ISO strings)."""
    created = api.client.post(
        "/api/marketing/campaigns",
        json={**CAMPAIGN, "start_date": "2026-12-01", "end_date": "2027-01-31"},
        headers=api.auth(),
    )
    assert created.status_code == 201, created.text
    campaign_id = created.json()["id"]
    updated = api.client.put(
        f"/api/marketing/campaigns/{campaign_id}",
        json={**CAMPAIGN, "start_date": "2027-02-01", "end_date": None},
        headers=api.auth(),
    )
    assert updated.status_code == 200, updated.text
    read = api.client.get(f"/api/marketing/campaigns/{campaign_id}", headers=api.auth()).json()
    assert (read["start_date"], read["end_date"]) == ("2027-02-01", None)


def test_a_campaign_ending_before_it_starts_is_rejected(api: ApiWorld) -> None:
    response = api.client.post(
        "/api/marketing/campaigns",
        json={**CAMPAIGN, "start_date": "2026-12-01", "end_date": "2026-11-01"},
        headers=api.auth(),
    )
    assert response.status_code == 422
    assert "end_date must not be before start_date" in response.json()["error"]["message"]


def test_an_update_that_breaks_the_campaign_is_rejected_and_changes_nothing(
    api: ApiWorld,
) -> None:
    campaign_id = api.client.post(
        "/api/marketing/campaigns", json=CAMPAIGN, headers=api.auth()
    ).json()["id"]
    response = api.client.put(
        f"/api/marketing/campaigns/{campaign_id}",
        json={"exclude_role_codes": ["LO"]},
        headers=api.auth(),
    )
    assert response.status_code == 422
    assert "both targeted and excluded" in response.json()["error"]["message"]
    fetched = api.client.get(f"/api/marketing/campaigns/{campaign_id}", headers=api.auth())
    assert fetched.json()["exclude_role_codes"] == []


def test_two_campaigns_cannot_share_a_name(api: ApiWorld) -> None:
    assert (
        api.client.post("/api/marketing/campaigns", json=CAMPAIGN, headers=api.auth()).status_code
        == 201
    )
    again = api.client.post(
        "/api/marketing/campaigns",
        json={**CAMPAIGN, "name": "q4 LENDER win-back"},
        headers=api.auth(),
    )
    assert again.status_code == 409


def test_a_campaign_naming_a_missing_template_is_rejected(api: ApiWorld) -> None:
    response = api.client.post(
        "/api/marketing/campaigns",
        json={**CAMPAIGN, "email_template_ids": [999]},
        headers=api.auth(),
    )
    assert response.status_code == 422
    assert response.json()["error"]["message"] == "email template(s) 999 not found"


def test_a_body_that_is_not_json_is_rejected_clearly(api: ApiWorld) -> None:
    response = api.client.post(
        "/api/marketing/campaigns",
        content=b"{nope",
        headers={**api.auth(), "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


def test_an_unknown_campaign_is_404(api: ApiWorld) -> None:
    response = api.client.get("/api/marketing/campaigns/424242", headers=api.auth())
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "campaign 424242 not found"


# --- templates ------------------------------------------------------------------------------


def test_a_template_is_created_with_its_variables_and_updated_and_deleted(api: ApiWorld) -> None:
    created = api.client.post("/api/marketing/email-templates", json=TEMPLATE, headers=api.auth())
    assert created.status_code == 201
    body = created.json()
    assert body["variables"] == ["days_since_last_order", "first_name", "state"]
    updated = api.client.put(
        f"/api/marketing/email-templates/{body['id']}",
        json={"subject": "Hello {{ company_name }}"},
        headers=api.auth(),
    )
    assert updated.json()["subject"] == "Hello {{ company_name }}"
    assert updated.json()["variables"] == ["company_name", "days_since_last_order", "first_name"]
    assert (
        api.client.delete(
            f"/api/marketing/email-templates/{body['id']}", headers=api.auth()
        ).status_code
        == 204
    )
    assert (
        api.client.get(
            f"/api/marketing/email-templates/{body['id']}", headers=api.auth()
        ).status_code
        == 404
    )


def test_a_template_with_a_syntax_error_is_rejected_with_its_line(api: ApiWorld) -> None:
    response = api.client.post(
        "/api/marketing/email-templates",
        json={**TEMPLATE, "body": "Hi {{ first_name }},\n{% if first_name %}\nno end\n"},
        headers=api.auth(),
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["message"].startswith("body, line 2: Unexpected end of template")
    assert error["details"] == [{"field": "body", "message": error["message"]}]


def test_a_template_with_an_unknown_variable_names_it(api: ApiWorld) -> None:
    response = api.client.post(
        "/api/marketing/email-templates",
        json={**TEMPLATE, "subject": "Hi {{ frist_name }}"},
        headers=api.auth(),
    )
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith(
        "subject, line 1: unknown variable(s) frist_name"
    )


def test_a_template_reaching_for_python_internals_is_refused_by_the_sandbox(
    api: ApiWorld,
) -> None:
    response = api.client.post(
        "/api/marketing/email-templates",
        json={**TEMPLATE, "body": "{{ first_name.__class__.__mro__[1].__subclasses__() }}"},
        headers=api.auth(),
    )
    assert response.status_code == 422
    assert "unsafe" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{{ (9**10000000) % 7 }}", "body, line 1: `**` with an exponent above 100 is not allowed"),
        ("{{ 9**1000000 }}", "body, line 1: `**` with an exponent above 100 is not allowed"),
        (
            "{{ 'a' * 500000000 }}",
            "body, line 1: repeating with `*` would make text longer than 200,000 characters",
        ),
        (
            "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
            "body, line 1: macros, blocks or recursive loops nest more than 50 deep"
            " (does a macro call itself?)",
        ),
        (
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
            "body: the template needed more than 100,000 steps (loop iterations, calls and"
            " operators) to render for Dana Whitfield: check loops",
        ),
    ],
)
def test_a_template_that_would_freeze_or_fill_the_process_is_refused_with_422(
    api: ApiWorld, body: str, message: str
) -> None:
    response = api.client.post(
        "/api/marketing/email-templates", json={**TEMPLATE, "body": body}, headers=api.auth()
    )
    assert response.status_code == 422
    assert response.json()["error"]["message"] == message
    assert api.client.get("/api/marketing/email-templates", headers=api.auth()).json() == []


def test_an_update_to_a_looping_template_is_cut_by_the_budget_and_keeps_the_old_one(
    api: ApiWorld,
) -> None:
    template_id = api.client.post(
        "/api/marketing/email-templates", json=TEMPLATE, headers=api.auth()
    ).json()["id"]
    looping = (
        "{% set s = 'x' * 150000 %}{% for i in range(100000) %}{% for j in range(2) %}"
        "{% if 'y' in s %}{% endif %}{% endfor %}{% endfor %}"
    )
    response = api.client.put(
        f"/api/marketing/email-templates/{template_id}", json={"body": looping}, headers=api.auth()
    )
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert message.startswith("body: the template ")
    assert message.endswith(" to render for Dana Whitfield: check loops")
    kept = api.client.get(f"/api/marketing/email-templates/{template_id}", headers=api.auth())
    assert kept.json()["body"] == TEMPLATE["body"]


def test_an_update_that_breaks_a_template_keeps_the_old_one(api: ApiWorld) -> None:
    template_id = api.client.post(
        "/api/marketing/email-templates", json=TEMPLATE, headers=api.auth()
    ).json()["id"]
    response = api.client.put(
        f"/api/marketing/email-templates/{template_id}",
        json={"body": "{{ 1 / 0 }}"},
        headers=api.auth(),
    )
    assert response.status_code == 422
    assert "division by zero" in response.json()["error"]["message"]
    kept = api.client.get(f"/api/marketing/email-templates/{template_id}", headers=api.auth())
    assert kept.json()["body"] == TEMPLATE["body"]


# --- audiences ------------------------------------------------------------------------------


def test_calculate_size_counts_the_audience_and_never_an_opted_out_contact(
    api: ApiWorld, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    with session_factory() as session:
        org = session.get(m.Organization, api.org_id)
        assert org is not None
        client = make_client(session, org, name="Pinnacle Lending")
        make_order(session, org, client, ordered_at=clock.now() - timedelta(days=200))
        wanted = make_contact(session, org, client, tags=["lender"], email="dana@pinnacle.com")
        make_contact(session, org, client, tags=["lender"], opted_out_at=clock.now())
        make_contact(session, org, client, tags=["lender"], email_status="bounced")
        make_contact(session, org, client, tags=["amc"])
        session.commit()
    response = api.client.post(
        "/api/marketing/audiences/calculate-size",
        json={"include_tags": ["Lender"], "stale_client_days": 90},
        headers=api.auth(),
    )
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    assert [s["email"] for s in body["sample"]] == [wanted.email]
    assert body["sample"][0]["client_name"] == "Pinnacle Lending"


def test_calculate_size_rejects_unknown_fields_and_states(api: ApiWorld) -> None:
    response = api.client.post(
        "/api/marketing/audiences/calculate-size",
        json={"states": ["TX", "ZZ"], "color": "blue"},
        headers=api.auth(),
    )
    assert response.status_code == 422
    fields = {d["field"] for d in response.json()["error"]["details"]}
    assert fields == {"states", "color"}


# --- health and OpenAPI ---------------------------------------------------------------------


def test_healthz_reports_the_database_and_schema(api: ApiWorld, db_kind: str) -> None:
    response = api.client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["database"] == db_kind
    assert response.json()["slack_work"] == {
        "waiting": 0,
        "failed": 0,
        "oldest_waiting_seconds": 0.0,
    }


def test_healthz_shows_jobs_waiting_to_be_planned_when_no_worker_runs(
    committed_engine: Engine, clock: FixedClock
) -> None:
    """A REST launch is planned by `salesbot worker`: run only `salesbot web` and the job
    stays pending; /healthz shows it waiting, and for how long."""
    session_factory = make_session_factory(committed_engine)
    api = make_api_world(committed_engine, session_factory, clock, start_background=False)
    assert api.client.get("/healthz").json()["jobs_to_plan"] == {
        "waiting": 0,
        "oldest_waiting_seconds": 0.0,
    }
    body = {
        "name": "Win-back",
        "params": {
            "target": {"emails": ["lo@pinnacle.example.com"]},
            "templates": [{"subject": "Hi {{ first_name }}", "body": "Turn times are down."}],
        },
    }
    created = api.client.post("/api/agent/jobs", json=body, headers=api.auth())
    assert created.status_code == 201, created.text
    with session_factory() as session:
        job = session.get(m.Job, created.json()["id"])
        assert job is not None
        assert job.status == "pending"
        job.created_at = clock.now() - timedelta(seconds=120)
        session.commit()
    assert api.client.get("/healthz").json()["jobs_to_plan"] == {
        "waiting": 1,
        "oldest_waiting_seconds": 120.0,
    }


def test_openapi_lists_the_original_systems_routes(api: ApiWorld) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    assert {
        "/api/marketing/campaigns",
        "/api/marketing/campaigns/{campaign_id}",
        "/api/marketing/email-templates",
        "/api/marketing/email-templates/{template_id}",
        "/api/marketing/audiences/calculate-size",
        "/healthz",
    } <= set(paths)
