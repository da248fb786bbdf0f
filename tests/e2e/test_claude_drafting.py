"""Launch with Claude drafting (the Anthropic stand-in): personalised cards, or the template
with a note on the card when Claude fails."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select

from domain.clock import FixedClock
from sandbox.anthropic_api import (
    PERSONAL_TOUCH,
    AnthropicStandIn,
    ErrorReply,
    TextReply,
    start_anthropic_stand_in,
)
from storage import models as m
from tests.support.slack import ServedSlack
from tests.support.slack_app import SlackWorld, slack_world, wait_until

pytestmark = pytest.mark.slow
KEY = "sk-ant-test-key"


@pytest.fixture(scope="module")
def claude() -> Iterator[tuple[AnthropicStandIn, str]]:
    stand_in, server = start_anthropic_stand_in(api_keys=[KEY])
    try:
        yield stand_in, server.url
    finally:
        server.stop()


@pytest.fixture
def world(
    committed_engine: Engine,
    served_slack: ServedSlack,
    clock: FixedClock,
    claude: tuple[AnthropicStandIn, str],
) -> Iterator[SlackWorld]:
    stand_in, url = claude
    stand_in.reset()
    extra = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": url}
    with slack_world(committed_engine, served_slack, clock, contacts=2, extra_settings=extra) as w:
        yield w


def drafts(world: SlackWorld) -> list[dict[str, object]]:
    world.command("launch Q4 lender win-back")
    wait_until(lambda: any("Launched" in t for t in world.responses()), what="launch")
    world.wait_for_tasks(world.latest_job_id(), 2)
    world.run_worker()
    with world.session_factory() as session:
        return [dict(p) for p in session.scalars(select(m.Card.action_payload).order_by(m.Card.id))]


def test_claude_personalises_each_draft_from_the_template(
    world: SlackWorld, claude: tuple[AnthropicStandIn, str]
) -> None:
    payloads = drafts(world)
    assert [p["draft_source"] for p in payloads] == ["claude", "claude"]
    assert all(PERSONAL_TOUCH in str(p["body"]) for p in payloads)
    sent = claude[0].requests
    assert len(sent) == 2
    user_turn = json.dumps(sent[0].body["messages"])
    assert "Dana0" in user_turn
    assert "<contact_data>" in user_turn


def test_a_failing_claude_falls_back_to_the_template_and_the_card_says_so(
    world: SlackWorld, claude: tuple[AnthropicStandIn, str]
) -> None:
    claude[0].script(TextReply("I would rather not."), *[ErrorReply.overloaded()] * 6)
    payloads = drafts(world)
    assert [p["draft_source"] for p in payloads] == ["template", "template"]
    assert payloads[0]["body"] == (
        "Hi Dana0,\n\nIt has been 143 days since Pinnacle Lending last ordered.\n\nMaria Lopez"
    )
    notes = [str(p["draft_note"]) for p in payloads]
    assert notes[0].startswith("Claude's answer was unusable")
    assert notes[1].startswith("Claude was unavailable")
    messages = world.card_messages()
    assert "template used" in json.dumps(messages[0].blocks, ensure_ascii=False)
