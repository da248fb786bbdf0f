"""The content calendar end to end (docs/content-calendar.md), through the real Slack app and
the Slack stand-in, with a clock the test moves.

A LinkedIn post is stored and scheduled through the REST API for Wednesday 15:00 in Chicago
(the organization's zone; its morning is 09:00). The sweep posts nothing on Tuesday nor at
08:59 on Wednesday; at 09:00 it posts one card in the owner's DM with the text ready to
copy, the link and Done / Snooze / Skip, saying plainly that posting on LinkedIn is the
owner's step. Another rep's click is refused; the owner's signed Done makes the post done
(the REST calendar says so) and turns the card into one line; a second click changes
nothing. Snooze brings a card back the next morning; `/content list` and `/content add`
answer through signed slash commands, the form naming a field at fault.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import Engine, select

from domain.clock import FixedClock
from handlers.slack.ids import ActionId, BlockId, CallbackId
from jobs.content import ContentSweep
from sandbox.slack_api import DEFAULT_TEAM_ID
from storage import models as m
from tests.support.accounts import ensure_user
from tests.support.slack import ServedSlack
from tests.support.slack_app import OTHER_REP, REP, SlackWorld, slack_world, wait_until

pytestmark = pytest.mark.slow

M = "/api/marketing"
CHICAGO = "America/Chicago"
# Tuesday 2026-12-08 12:00 in Chicago (CST, UTC−6).
TUESDAY = datetime(2026, 12, 8, 18, 0, tzinfo=UTC)
# Wednesday 09:00 in Chicago: the post's morning.
WEDNESDAY_MORNING = datetime(2026, 12, 9, 15, 0, tzinfo=UTC)
TEXT = "Turn times in Travis County are down to 5 days. Order today: lonestar.example.com"


@pytest.fixture
def world(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock
) -> Iterator[SlackWorld]:
    clock._at = TUESDAY
    with slack_world(committed_engine, served_slack, clock, contacts=0) as built:
        with built.session_factory() as session:
            org = session.get(m.Organization, built.org_id)
            assert org is not None
            org.cadence_settings = {"timezone": CHICAGO}
            campaign = session.get(m.MarketingCampaign, built.campaign_id)
            assert campaign is not None
            campaign.channels = ["email", "linkedin"]
            session.commit()
        yield built


def auth(world: SlackWorld) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.api_token}"}


def people(world: SlackWorld) -> tuple[int, int]:
    """Maria (REP) and Jose (OTHER_REP), reps of the organization linked to Slack."""
    with world.session_factory() as session:
        maria = ensure_user(session, world.org_id, email="maria@lonestar.example.com")
        jose = ensure_user(session, world.org_id, email="jose@lonestar.example.com")
        for user_id, slack_id in ((maria, REP), (jose, OTHER_REP)):
            row = session.get(m.User, user_id)
            assert row is not None
            row.slack_user_id = slack_id
        session.commit()
    return maria, jose


def schedule_post(world: SlackWorld, owner: int, at: str = "2026-12-09T15:00:00-06:00") -> int:
    item = world.client.post(
        f"{M}/content",
        json={
            "content_type": "social_post",
            "title": "Travis County turn times",
            "body": TEXT,
            "link": "https://lonestar.example.com/blog/turn-times",
            "status": "ready",
            "owner_user_id": owner,
            "campaign_id": world.campaign_id,
        },
        headers=auth(world),
    )
    assert item.status_code == 201, item.text
    entry = world.client.post(
        f"{M}/content/{item.json()['id']}/schedule",
        json={"channel": "linkedin", "scheduled_for": at},
        headers=auth(world),
    )
    assert entry.status_code == 201, entry.text
    return int(entry.json()["id"])


def sweep(world: SlackWorld, clock: FixedClock, at: datetime) -> int:
    clock._at = at
    return world.runtime.scheduler.run(ContentSweep.NAME)


def dm(world: SlackWorld, user: str) -> list[Any]:
    return world.slack.messages(world.slack.dm_channel_id(user))


def shown(message: Any) -> str:
    return json.dumps(message.blocks, ensure_ascii=False)


def calendar_entry(world: SlackWorld, entry_id: int) -> dict[str, Any]:
    week = world.client.get(
        f"{M}/content-schedule",
        params={"from": "2026-12-07", "to": "2026-12-13"},
        headers=auth(world),
    ).json()
    (entry,) = [e for e in week if e["id"] == entry_id]
    return dict(entry)


def click(world: SlackWorld, message: Any, action_id: str, *, user: str = REP) -> None:
    channel = world.slack.dm_channel_id(REP)
    value = world.button(message, action_id)["value"]
    answer = world.click(
        action_id,
        value,
        user=user,
        message_ts=message.ts,
        container={"type": "message", "message_ts": message.ts, "channel_id": channel},
    )
    assert answer.status_code == 200


def test_the_card_comes_on_the_due_morning_and_done_records_it(
    world: SlackWorld, clock: FixedClock
) -> None:
    maria, _ = people(world)
    entry_id = schedule_post(world, maria)
    assert sweep(world, clock, TUESDAY) == 0
    assert sweep(world, clock, WEDNESDAY_MORNING - timedelta(minutes=1)) == 0
    assert dm(world, REP) == []

    assert sweep(world, clock, WEDNESDAY_MORNING) == 1
    (card,) = dm(world, REP)
    text = shown(card)
    assert "📣 Post this today on LinkedIn" in text
    assert f"```{TEXT}```" in text
    assert "https://lonestar.example.com/blog/turn-times" in text
    assert "Salesbot cannot post to LinkedIn itself: copy the text, post it there" in text
    assert card.metadata == {
        "event_type": "salesbot_content_card",
        "event_payload": {"schedule_id": entry_id, "due_at": "2026-12-09T15:00:00+00:00"},
    }
    due = calendar_entry(world, entry_id)
    assert (due["status"], due["card_ts"]) == ("due", card.ts)
    assert sweep(world, clock, WEDNESDAY_MORNING + timedelta(hours=1)) == 0
    assert len(dm(world, REP)) == 1

    # Jose is not the owner, nor an admin: refused, nothing recorded.
    click(world, card, ActionId.CONTENT_DONE, user=OTHER_REP)
    wait_until(lambda: world.slack.ephemerals(user=OTHER_REP), what="the refusal")
    (refusal,) = world.slack.ephemerals(user=OTHER_REP)
    assert "Only this item's owner or an admin" in refusal.text
    assert calendar_entry(world, entry_id)["status"] == "due"

    clock._at = WEDNESDAY_MORNING + timedelta(minutes=42)
    click(world, card, ActionId.CONTENT_DONE)
    wait_until(lambda: calendar_entry(world, entry_id)["status"] == "done", what="done")
    done = calendar_entry(world, entry_id)
    assert (done["acted_by"], done["acted_at"]) == (maria, "2026-12-09T15:42:00Z")
    updated = wait_until(
        lambda: "marked done" in shown(dm(world, REP)[0]) and dm(world, REP)[0], what="update"
    )
    assert f"✅ Posted on LinkedIn — marked done by <@{REP}>, Wed Dec 9, 09:42" in shown(updated)
    assert ActionId.CONTENT_DONE.value not in shown(updated)  # the buttons are gone

    # The same click again (a double click, a Slack retry) changes nothing.
    clock._at = WEDNESDAY_MORNING + timedelta(minutes=50)
    click(world, card, ActionId.CONTENT_DONE)
    world.runtime.slack_worker.run_until_idle()  # type: ignore[union-attr]
    assert calendar_entry(world, entry_id)["acted_at"] == "2026-12-09T15:42:00Z"
    assert len(dm(world, REP)) == 1


def test_a_snoozed_card_comes_again_the_next_morning_and_skip_ends_it(
    world: SlackWorld, clock: FixedClock
) -> None:
    maria, _ = people(world)
    entry_id = schedule_post(world, maria)
    sweep(world, clock, WEDNESDAY_MORNING)
    (card,) = dm(world, REP)
    click(world, card, ActionId.CONTENT_SNOOZE)
    wait_until(lambda: calendar_entry(world, entry_id)["status"] == "snoozed", what="snoozed")
    assert calendar_entry(world, entry_id)["snoozed_until"] == "2026-12-10T15:00:00Z"
    wait_until(lambda: "Snoozed by" in shown(dm(world, REP)[0]), what="the card says so")
    assert sweep(world, clock, datetime(2026, 12, 10, 14, 59, tzinfo=UTC)) == 0
    assert sweep(world, clock, datetime(2026, 12, 10, 15, 0, tzinfo=UTC)) == 1
    assert calendar_entry(world, entry_id)["last_error"] is None
    first, again = dm(world, REP)
    click(world, again, ActionId.CONTENT_SKIP)
    wait_until(lambda: calendar_entry(world, entry_id)["status"] == "skipped", what="skipped")
    wait_until(lambda: "Skipped by" in shown(dm(world, REP)[1]), what="the card says so")


def test_content_list_shows_this_week_and_done_marks_a_post(
    world: SlackWorld, clock: FixedClock
) -> None:
    maria, _ = people(world)
    entry_id = schedule_post(world, maria)
    before = len(world.responses())
    assert world.command("list", command="/content").status_code == 200
    wait_until(lambda: len(world.responses()) > before, what="the list")
    listing = world.slack.calls("response_url")[-1].params
    blocks = json.dumps(listing.get("blocks"), ensure_ascii=False)
    assert f"`#{entry_id}` Wed Dec 9, 15:00 · LinkedIn · Travis County turn times" in blocks
    assert "_scheduled_" in blocks
    assert listing.get("response_type") == "ephemeral"

    before = len(world.responses())
    world.command(f"done {entry_id}", command="/content")
    wait_until(lambda: len(world.responses()) > before, what="done")
    assert world.responses()[-1] == (
        f"✅ #{entry_id} “Travis County turn times” on LinkedIn is marked done."
    )
    before = len(world.responses())
    world.command("publish everything", command="/content")
    wait_until(lambda: len(world.responses()) > before, what="help")
    assert world.responses()[-1].startswith("I don't know `/content publish everything`.")
    assert "*Usage of /content*" in world.responses()[-1]


def submit(world: SlackWorld, view: Any, values: dict[str, Any]) -> Any:
    payload = {
        "type": "view_submission",
        "team": {"id": DEFAULT_TEAM_ID, "domain": "sandbox-appraisals"},
        "user": {"id": REP, "username": "maria", "team_id": DEFAULT_TEAM_ID},
        "api_app_id": "A0SANDBOXAPP",
        "token": "deprecated",
        "trigger_id": world.slack.issue_trigger_id(user_id=REP),
        "view": {**view.to_api(), "state": {"values": values}},
    }
    return world.post(urlencode({"payload": json.dumps(payload)}))


def form(channel: str, *, day: str = "2026-12-10") -> dict[str, Any]:
    def select(action: str, value: str) -> dict[str, Any]:
        return {action: {"type": "static_select", "selected_option": {"value": value}}}

    return {
        BlockId.CONTENT_TITLE: {
            ActionId.CONTENT_TITLE_INPUT: {"type": "plain_text_input", "value": "Webinar invite"}
        },
        BlockId.CONTENT_TYPE: select(ActionId.CONTENT_TYPE_INPUT, "social_post"),
        BlockId.CONTENT_BODY: {
            ActionId.CONTENT_BODY_INPUT: {"type": "plain_text_input", "value": "Join us Thursday"}
        },
        BlockId.CONTENT_CHANNEL: select(ActionId.CONTENT_CHANNEL_INPUT, channel),
        BlockId.CONTENT_DATE: {
            ActionId.CONTENT_DATE_INPUT: {"type": "datepicker", "selected_date": day}
        },
        BlockId.CONTENT_TIME: {
            ActionId.CONTENT_TIME_INPUT: {"type": "timepicker", "selected_time": "11:00"}
        },
        BlockId.CONTENT_CAMPAIGN: select(ActionId.CONTENT_CAMPAIGN_INPUT, "0"),
    }


def test_content_add_opens_a_form_that_names_the_field_at_fault(
    world: SlackWorld, clock: FixedClock
) -> None:
    people(world)
    assert world.command("add", command="/content").status_code == 200
    (view,) = [v for v in world.slack.views if v.callback_id == CallbackId.ADD_CONTENT]
    assert view.private_metadata == CHICAGO
    values = form("tiktok")
    values[BlockId.CONTENT_CAMPAIGN][ActionId.CONTENT_CAMPAIGN_INPUT]["selected_option"] = {
        "value": str(world.campaign_id)
    }
    refused = submit(world, view, values)
    assert refused.status_code == 200
    errors = refused.json()["errors"]
    assert errors == {
        BlockId.CONTENT_CHANNEL: (
            "campaign “Q4 lender win-back” does not use tiktok: its channels are email, "
            "linkedin. Schedule it on one of those, or add tiktok to the campaign."
        )[:150]
    }
    past_day = form("linkedin", day="2026-12-01")
    past_day[BlockId.CONTENT_CAMPAIGN] = {}
    past = submit(world, view, past_day)
    assert past.json()["errors"] == {
        BlockId.CONTENT_DATE: "That day has passed; pick today or later."
    }
    values = form("linkedin")
    values[BlockId.CONTENT_CAMPAIGN] = {}
    accepted = submit(world, view, values)
    assert (accepted.status_code, accepted.text) == (200, "")
    again = submit(world, view, values)  # the same submission once more: one item
    assert (again.status_code, again.text) == (200, "")
    with world.session_factory() as session:
        rows = list(session.scalars(select(m.ContentSchedule)))
    assert [(r.channel, r.scheduled_for) for r in rows] == [
        ("linkedin", datetime(2026, 12, 10, 17, 0, tzinfo=UTC))
    ]
    wait_until(lambda: dm(world, REP), what="the confirmation")
    assert dm(world, REP)[-1].text.startswith("🗓️ Scheduled “Webinar invite” on LinkedIn")
