"""`/campaign help` shows the organization's auto-reply policy as it is stored, after the
usage. Commands are signed as Slack signs them; answers are read from the Slack stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from domain.clock import FixedClock
from tests.support.slack import ServedSlack
from tests.support.slack_app import REP, SlackWorld, slack_world, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def world(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock
) -> Iterator[SlackWorld]:
    with slack_world(committed_engine, served_slack, clock, contacts=1) as built:
        yield built


def campaign_help(world: SlackWorld) -> dict[str, Any]:
    before = len(world.slack.calls("response_url"))
    assert world.command("help", command="/campaign", user=REP).status_code == 200
    answers = wait_until(
        lambda: world.slack.calls("response_url")[before:], what="answer to /campaign help"
    )
    assert len(answers) == 1, answers
    return dict(answers[0].params)


def test_campaign_help_shows_the_policy_off_then_as_an_admin_set_it(world: SlackWorld) -> None:
    off = campaign_help(world)

    assert off["text"].startswith("*Usage of /campaign*")
    assert [b["type"] for b in off["blocks"]] == ["section", "context"]
    assert off["blocks"][1]["elements"][0]["text"] == (
        "*Auto-replies* — Auto-replies are off: every reply waits for a person "
        "(an admin turns them on with PUT /api/inbound/reply-policy)."
    )

    world.runtime.reply_policies.set_policy(
        None, world.org_id, enabled=True, categories=["REMOVE"], min_confidence=0.98
    )
    on = campaign_help(world)

    assert on["blocks"][1]["elements"][0]["text"] == (
        "*Auto-replies* — Auto-replies are on for REMOVE at confidence ≥ 0.98; "
        "AMC_ORDER, CASE, AP, AR, ESCALATE always wait for a person.\n"
        "Every auto-sent reply is shown on a card marked “auto-sent because …”."
    )
