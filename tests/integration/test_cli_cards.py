"""`salesbot cards`: a rep reviews cards from a terminal with the Slack buttons' use cases and
rules; an approval sends the email from the rep's Gmail (the stand-in) and updates the card's
Slack message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from bot.app import Runtime, build_app, build_runtime
from bot.cli import app
from bot.sandbox import Sandbox, start_sandbox
from domain.clock import SystemClock
from handlers.api.deps import Services
from sandbox.seed import REPS, REVIEW_CHANNEL_ID
from storage.db import make_session_factory
from tests.support.api import make_settings

pytestmark = pytest.mark.slow
ADMIN, MARIA = REPS[0], REPS[1]


@dataclass
class Reviewed:
    """A sandbox whose campaign was launched, its cards drafted and posted."""

    sandbox: Sandbox
    runtime: Runtime
    env: dict[str, str]
    job_id: int

    def cards(self, *args: str) -> object:
        return CliRunner().invoke(app, ["cards", *args], env=self.env)


@pytest.fixture
def reviewed(committed_engine: Engine) -> Iterator[Reviewed]:
    url = committed_engine.url.render_as_string(hide_password=False)
    sandbox = start_sandbox(make_settings(url, PUBLIC_BASE_URL="http://testserver"))
    try:
        settings = sandbox.settings
        services = Services(
            engine=committed_engine,
            session_factory=make_session_factory(committed_engine),
            clock=SystemClock(),
        )
        runtime = build_runtime(settings, services=services)
        with TestClient(build_app(settings, runtime=runtime, start_background=False)) as client:
            assert sandbox.seed is not None
            launched = client.post(
                f"/api/campaigns/{sandbox.seed.campaign_id}/launch",
                headers={"Authorization": f"Bearer {sandbox.api_token}"},
            )
            assert launched.status_code == 201, launched.text
            runtime.run_tasks_until_idle()
            env = {
                name: str(value)
                for name, value in settings.model_dump().items()
                if value is not None and not isinstance(value, (dict, list))
            }
            yield Reviewed(sandbox, runtime, env, int(launched.json()["job"]["id"]))
    finally:
        sandbox.stop()


def test_listing_shows_the_jobs_cards_as_json_for_scripts(reviewed: Reviewed) -> None:
    # The job's: the seeded reviews' cards (sandbox/seed_marketing.py) wait in review too.
    result = reviewed.cards(
        "list", "--org", "sandbox", "--status", "in_review", "--job", str(reviewed.job_id), "--json"
    )

    assert result.exit_code == 0, result.output
    cards = json.loads(result.stdout)
    assert len(cards) == 18
    assert {c["state"] for c in cards} == {"in_review"}
    assert {c["job_id"] for c in cards} == {reviewed.job_id}
    assert all(c["action_payload"]["to"].count("@") == 1 for c in cards)


def test_listing_by_campaign_prints_a_table_and_an_unknown_campaign_says_so(
    reviewed: Reviewed,
) -> None:
    table = reviewed.cards("list", "--org", "sandbox", "--campaign", "Stale lender win-back")
    unknown = reviewed.cards("list", "--org", "sandbox", "--campaign", "Nope")

    assert table.exit_code == 0, table.output
    assert "Cards of sandbox" in table.stdout
    assert unknown.exit_code == 1
    assert "no campaign 'Nope' in sandbox" in unknown.stderr


def test_show_prints_the_whole_draft_and_its_fingerprint(reviewed: Reviewed) -> None:
    listed = reviewed.cards("list", "--org", "sandbox", "--job", str(reviewed.job_id), "--json")
    card = json.loads(listed.stdout)[0]

    shown = reviewed.cards("show", str(card["id"]), "--org", "sandbox")

    assert shown.exit_code == 0, shown.output
    assert card["action_payload"]["subject"] in shown.stdout
    assert f"fingerprint {card['draft_fingerprint']}" in shown.stdout


def test_an_approval_sends_once_from_the_reps_gmail_and_updates_the_slack_message(
    reviewed: Reviewed,
) -> None:
    listed = reviewed.cards("list", "--org", "sandbox", "--job", str(reviewed.job_id), "--json")
    card = json.loads(listed.stdout)[0]

    approved = reviewed.cards("approve", str(card["id"]), "--org", "sandbox", "--as", ADMIN.email)
    again = reviewed.cards("approve", str(card["id"]), "--org", "sandbox", "--as", ADMIN.email)

    assert approved.exit_code == 0, approved.output
    assert f"card {card['id']} approved: now done" in approved.stdout
    sent = reviewed.sandbox.google.gmail.sent(ADMIN.email)
    assert len(sent) == 1
    assert card["action_payload"]["to"].encode() in sent[0].raw
    message = reviewed.sandbox.slack.message(REVIEW_CHANNEL_ID, card["slack_message_ts"])
    assert "Sent by" in json.dumps(message.blocks, ensure_ascii=False)
    assert again.exit_code == 1
    assert "already done" in again.stderr
    assert len(reviewed.sandbox.google.gmail.sent(ADMIN.email)) == 1


def test_a_rep_who_did_not_launch_the_job_is_refused_as_in_slack(reviewed: Reviewed) -> None:
    listed = reviewed.cards("list", "--org", "sandbox", "--job", str(reviewed.job_id), "--json")
    card = json.loads(listed.stdout)[0]

    refused = reviewed.cards(
        "reject", str(card["id"]), "--org", "sandbox", "--as", MARIA.slack_user_id
    )

    assert refused.exit_code == 1
    assert "Only the rep who launched this job, or an admin" in refused.stderr


def test_a_rejection_records_the_reason_and_the_json_says_so(reviewed: Reviewed) -> None:
    card = json.loads(reviewed.cards("list", "--org", "sandbox", "--json").stdout)[1]

    rejected = reviewed.cards(
        "reject",
        str(card["id"]),
        "--org",
        "sandbox",
        "--as",
        ADMIN.slack_user_id,
        "--reason",
        "wrong contact",
        "--json",
    )

    assert rejected.exit_code == 0, rejected.output
    assert json.loads(rejected.stdout)["state"] == "rejected"
    assert json.loads(rejected.stdout)["rejected_reason"] == "wrong contact"


def test_unknown_cards_orgs_and_users_are_refused_with_what_to_do(reviewed: Reviewed) -> None:
    no_card = reviewed.cards("show", "999999", "--org", "sandbox")
    no_org = reviewed.cards("list", "--org", "elsewhere")
    no_user = reviewed.cards("approve", "1", "--org", "sandbox", "--as", "nobody@example.com")

    assert (no_card.exit_code, no_org.exit_code, no_user.exit_code) == (1, 2, 2)
    assert "card 999999 not found in organization sandbox" in no_card.stderr
    assert "no organization 'elsewhere'" in no_org.stderr
    assert "nobody@example.com is not a user of sandbox" in no_user.stderr


def test_a_rejection_updates_the_cards_slack_message_as_the_reject_modal_does(
    reviewed: Reviewed,
) -> None:
    card = json.loads(reviewed.cards("list", "--org", "sandbox", "--json").stdout)[2]

    rejected = reviewed.cards(
        "reject", str(card["id"]), "--org", "sandbox", "--as", ADMIN.email, "--reason", "dup"
    )

    assert rejected.exit_code == 0, rejected.output
    message = reviewed.sandbox.slack.message(REVIEW_CHANNEL_ID, card["slack_message_ts"])
    shown = json.dumps(message.blocks, ensure_ascii=False)
    assert "🚫 Rejected by" in shown
    assert not [b for b in message.blocks if b.get("type") == "actions"]
    assert "note:" not in rejected.stderr


def test_in_sandbox_mode_a_rejection_says_the_slack_message_was_left_as_it_was(
    reviewed: Reviewed,
) -> None:
    card = json.loads(reviewed.cards("list", "--org", "sandbox", "--json").stdout)[3]
    # Another process on the sandbox's database: no Slack, Google or Anthropic settings.
    elsewhere = {
        name: value
        for name, value in reviewed.env.items()
        if not name.startswith(("SLACK_", "GOOGLE_", "ANTHROPIC_"))
    }

    rejected = CliRunner().invoke(
        app,
        ["cards", "reject", str(card["id"]), "--org", "sandbox", "--as", ADMIN.email],
        env={**elsewhere, **dict.fromkeys(set(reviewed.env) - set(elsewhere))},
    )

    assert rejected.exit_code == 0, rejected.output
    assert f"card {card['id']} rejected: now rejected" in rejected.stdout
    assert "note: the card's Slack message still shows its buttons" in rejected.stderr
    message = reviewed.sandbox.slack.message(REVIEW_CHANNEL_ID, card["slack_message_ts"])
    assert [b for b in message.blocks if b.get("type") == "actions"]
