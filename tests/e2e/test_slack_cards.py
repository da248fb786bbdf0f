"""Slack end to end: signed requests to the real app, Slack answered by the stand-in."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import Engine, func, select

from domain.clock import FixedClock
from domain.jobs import JobStatus
from handlers.slack.ids import ActionId, BlockId, CallbackId
from sandbox.server import free_port
from sandbox.slack_api import DEFAULT_TEAM_ID
from storage import models as m
from storage.models import SlackDeferredCall
from storage.uow import UnitOfWork
from tests.support.slack import ServedSlack, signed_headers
from tests.support.slack_app import (
    OTHER_REP,
    REP,
    REVIEW_CHANNEL,
    SIGNING_SECRET,
    SlackWorld,
    slack_world,
    utc,
    wait_until,
)

pytestmark = pytest.mark.slow


def dumps(value: object) -> str:
    """JSON text with emoji left as they are, for assertions on what Slack shows."""
    return json.dumps(value, ensure_ascii=False)


@pytest.fixture
def world(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock
) -> Iterator[SlackWorld]:
    with slack_world(committed_engine, served_slack, clock) as built:
        yield built


def launch(world: SlackWorld) -> int:
    """Launch the campaign from Slack and draft its cards; return the job id."""
    ack = world.command("launch Q4 lender win-back")
    assert ack.status_code == 200
    wait_until(lambda: any("Launched" in t for t in world.responses()), what="launch answer")
    job_id = world.latest_job_id()
    world.wait_for_tasks(job_id, len(world.contact_ids))
    world.run_worker()
    return job_id


def card_state(world: SlackWorld, card_id: int) -> str:
    with world.session_factory() as s:
        return str(s.scalars(select(m.Card.state).where(m.Card.id == card_id)).one())


def test_launch_answers_at_once_and_posts_one_card_per_contact(world: SlackWorld) -> None:
    ack = world.command("launch Q4 lender win-back")
    assert ack.status_code == 200
    assert "Launching" in ack.json()["text"]
    answer = wait_until(
        lambda: [t for t in world.responses() if "Launched" in t], what="launch answer"
    )
    assert answer == [
        "🚀 Launched *Q4 lender win-back*: 3 contacts in the audience. "
        f"Job *#{world.latest_job_id()}* is drafting emails; cards will appear for review."
    ]
    world.wait_for_tasks(world.latest_job_id(), 3)
    assert world.run_worker() == 6  # 3 drafts, then 3 posts
    messages = world.card_messages()
    assert len(messages) == 3
    first = messages[0]
    text = dumps(first.blocks)
    assert "Step 1 of 1" in text
    assert "Dana0 Whitfield" in text
    assert "No orders in 143 days" in text
    assert "Turn times in TX are down, Dana0" in text
    assert world.button(first, ActionId.APPROVE)["text"]["text"] == "Approve & send"


def test_approve_without_a_mailbox_blocks_the_card_and_says_what_to_do(world: SlackWorld) -> None:
    launch(world)
    message = world.card_messages()[0]
    value = world.button(message, ActionId.APPROVE)["value"]
    card_id = json.loads(value)["card"]
    assert world.click(ActionId.APPROVE, value, message_ts=message.ts).status_code == 200
    wait_until(lambda: card_state(world, card_id) == "blocked", what="card blocked")
    text = wait_until(
        lambda: (
            "Not sent" in dumps(world.slack.messages(REVIEW_CHANNEL)[0].blocks)
            and dumps(world.slack.messages(REVIEW_CHANNEL)[0].blocks)
        ),
        what="message updated",
    )
    assert "⚠️ Not sent: No mailbox is connected" in text
    assert ActionId.RETRY in text


def test_a_click_acked_while_no_worker_runs_is_kept_and_acted_on_later(
    world: SlackWorld,
) -> None:
    """The ack is sent only after the click is stored: a worker that was down catches up."""
    worker, message, value, card_id = launched_with_worker_stopped(world)
    assert world.click(ActionId.APPROVE, value, message_ts=message.ts).status_code == 200
    with world.session_factory() as s:
        stored = s.execute(select(SlackDeferredCall)).scalars().all()
        assert [(c.org_id, c.function, c.status) for c in stored] == [
            (world.org_id, "approve", "pending")
        ]
    assert card_state(world, card_id) == "in_review"
    world.runtime.services.clock.advance(seconds=90)  # type: ignore[attr-defined]
    health = world.client.get("/healthz").json()["slack_work"]
    assert health == {"waiting": 1, "failed": 0, "oldest_waiting_seconds": 90.0}
    worker.start()
    wait_until(lambda: card_state(world, card_id) == "blocked", what="card acted on")
    wait_until(lambda: not pending_calls(world), what="the stored call forgotten once it ran")


def test_a_launch_whose_answer_cannot_be_delivered_runs_once(world: SlackWorld) -> None:
    """The work after the ack is retried when it raises; a lost answer must not re-launch."""
    unreachable = f"http://127.0.0.1:{free_port()}/commands/T0/1/lost"
    assert world.command("launch Q4 lender win-back", response_url=unreachable).status_code == 200
    wait_until(lambda: not pending_calls(world), what="the stored command run and forgotten")
    with world.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(m.Job)) == 1
    world.wait_for_tasks(world.latest_job_id(), len(world.contact_ids))


def test_an_answer_slack_refuses_is_logged_with_the_status_slack_gave(
    world: SlackWorld, caplog: pytest.LogCaptureFixture
) -> None:
    """A response_url Slack no longer takes (used 5 times, older than 30 minutes: a worker
    that started late) answers 404 without raising; the lost answer must leave a trace."""
    expired = f"{world.slack.served_url}/hooks/commands/T0/1/expired"
    with caplog.at_level("WARNING", logger="handlers.slack.common"):
        assert world.command("list", response_url=expired).status_code == 200
        wait_until(lambda: not pending_calls(world), what="the stored command run")
        wait_until(
            lambda: any("response_url" in r.getMessage() for r in caplog.records),
            what="the lost answer logged",
        )
    [record] = [r for r in caplog.records if "response_url" in r.getMessage()]
    assert record.getMessage() == "could not answer a slash command through its response_url"
    assert (record.status, record.body) == (404, "no_service")  # type: ignore[attr-defined]


def test_the_same_launch_command_run_twice_launches_once(world: SlackWorld) -> None:
    """The worker runs a command again after a crash: the second run finds the first job."""
    trigger = world.slack.issue_trigger_id(user_id=REP)
    for _ in range(2):
        ack = world.command("launch Q4 lender win-back", trigger_id=trigger)
        assert ack.status_code == 200
        wait_until(lambda: not pending_calls(world), what="the command run")
    answers = [t for t in world.responses() if "Launched" in t]
    assert len(answers) == 2
    assert answers[0] == answers[1]
    with world.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(m.Job)) == 1
        assert s.scalar(select(func.count()).select_from(m.Enrollment)) == 3
        assert s.scalar(select(m.Job.status)) == "running"
    world.wait_for_tasks(world.latest_job_id(), len(world.contact_ids))
    assert world.run_worker() == 6  # the 3 drafts, then their 3 cards posted
    assert len(world.card_messages()) == 3


def test_planning_stopped_by_a_crash_is_finished_by_planning_again(world: SlackWorld) -> None:
    jobs = world.runtime.outreach.jobs
    job = jobs.launch_campaign(world.org_id, "Q4 lender win-back", owner_id=None).job
    # The crash came right after the job was marked running, before any contact was
    # enrolled; then the command's work ran again.
    with UnitOfWork(world.session_factory) as uow:
        assert uow.jobs.set_status(
            world.org_id,
            job.id,
            JobStatus.RUNNING,
            expected=[JobStatus.PENDING],
            now=utc(2026, 1, 1),
        )
        uow.commit()

    assert jobs.plan_job(world.org_id, job.id) == 3
    assert jobs.plan_job(world.org_id, job.id) == 0

    with world.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(m.Enrollment)) == 3
        assert s.scalar(select(func.count()).select_from(m.JobTask)) == 3
        total, status = s.execute(
            select(m.Job.total_tasks, m.Job.status).where(m.Job.id == job.id)
        ).one()
    assert (total, status) == (3, "running")
    assert world.run_worker() == 6


def pending_calls(world: SlackWorld) -> int:
    """Stored Slack calls not yet run and forgotten."""
    with world.session_factory() as s:
        return s.scalar(select(func.count()).select_from(SlackDeferredCall)) or 0


def launched_with_worker_stopped(world: SlackWorld) -> tuple[Any, Any, str, int]:
    """Launch, stop the replay worker; return it, the first card's message, its
    Approve button's value and the card id."""
    launch(world)
    worker = world.runtime.slack_worker
    assert worker is not None
    worker.stop()
    message = world.card_messages()[0]
    value = world.button(message, ActionId.APPROVE)["value"]
    return worker, message, value, json.loads(value)["card"]


def test_bolts_internal_lazy_headers_from_outside_are_ignored(world: SlackWorld) -> None:
    """A request cannot ask the web process to run a lazy function in place of the ack."""
    worker, message, value, card_id = launched_with_worker_stopped(world)
    payload = {
        "type": "block_actions",
        "team": {"id": DEFAULT_TEAM_ID},
        "user": {"id": REP, "team_id": DEFAULT_TEAM_ID},
        "api_app_id": "A0SANDBOXAPP",
        "trigger_id": "1.2.3",
        "container": {"type": "message", "message_ts": message.ts, "channel_id": REVIEW_CHANNEL},
        "channel": {"id": REVIEW_CHANNEL},
        "actions": [{"type": "button", "action_id": ActionId.APPROVE, "value": value}],
    }
    body = urlencode({"payload": json.dumps(payload)})
    headers = {
        **signed_headers(body, signing_secret=SIGNING_SECRET),
        "x-slack-bolt-lazy-only": "1",
        "x-slack-bolt-lazy-function-name": "approve",
    }
    assert world.post(body, headers=headers).status_code == 200
    assert card_state(world, card_id) == "in_review"
    assert pending_calls(world) == 1


def test_a_stale_or_unsigned_request_is_refused_and_does_nothing(
    world: SlackWorld, served_slack: ServedSlack
) -> None:
    body = "command=%2Fcampaign&text=launch+Q4+lender+win-back&team_id=T0SANDBOX&user_id=" + REP
    unsigned = world.post(body, headers={"content-type": "application/x-www-form-urlencoded"})
    assert unsigned.status_code == 401
    stale = world.post(
        body,
        headers=signed_headers(
            body, signing_secret=SIGNING_SECRET, timestamp=int(time.time()) - 600
        ),
    )
    assert stale.status_code == 401
    forged = world.post(body, headers=signed_headers(body, signing_secret="not-the-secret"))
    assert forged.status_code == 401
    with world.session_factory() as s:
        assert s.scalars(select(m.Job)).all() == []


def test_unknown_and_malformed_commands_answer_with_usage(world: SlackWorld) -> None:
    world.command("explode everything")
    world.command("", command="/job")
    world.command("status abc", command="/job")
    answers = wait_until(lambda: len(world.responses()) >= 3 and world.responses(), what="answers")
    assert any(
        "I don't know `/campaign explode`" in a and "Usage of /campaign" in a for a in answers
    )
    assert any(a.startswith("*Usage of /job*") for a in answers)
    assert any("needs a job number" in a for a in answers)


def test_launching_an_unknown_campaign_says_so(world: SlackWorld) -> None:
    world.command("launch Nope")
    answer = wait_until(lambda: [t for t in world.responses() if "⚠️" in t], what="refusal")
    assert answer == ["⚠️ no campaign named “Nope”; `/campaign list` shows them"]


def test_a_second_approval_of_the_same_card_sends_nothing_more(world: SlackWorld) -> None:
    launch(world)
    message = world.card_messages()[0]
    value = world.button(message, ActionId.APPROVE)["value"]
    card_id = json.loads(value)["card"]
    world.click(ActionId.APPROVE, value, message_ts=message.ts)
    wait_until(lambda: card_state(world, card_id) == "blocked", what="first approval")
    updates_before = len(world.slack.calls("chat.update"))
    world.click(ActionId.REJECT, value, message_ts=message.ts)
    world.click(ActionId.APPROVE, value, message_ts=message.ts)
    wait_until(lambda: len(world.slack.calls("chat.update")) > updates_before, what="retry shown")
    with world.session_factory() as s:
        assert s.scalar(select(m.Job.cards_approved)) == 1


def test_another_workspaces_user_cannot_act_on_a_card(world: SlackWorld) -> None:
    launch(world)
    message = world.card_messages()[0]
    value = world.button(message, ActionId.APPROVE)["value"]
    card_id = json.loads(value)["card"]
    world.slack.add_team("T0OTHER", "Rival Appraisals")
    world.slack.add_user("U0RIVAL01", "rival", "rival@rival.example.com", team_id="T0OTHER")
    world.click(ActionId.APPROVE, value, user="U0RIVAL01", team="T0OTHER", message_ts=message.ts)
    time.sleep(0.3)
    assert card_state(world, card_id) == "in_review"


def test_a_rep_cannot_approve_another_reps_card_but_is_told_why(world: SlackWorld) -> None:
    launch(world)
    message = world.card_messages()[0]
    value = world.button(message, ActionId.APPROVE)["value"]
    card_id = json.loads(value)["card"]
    world.click(ActionId.APPROVE, value, user=OTHER_REP, message_ts=message.ts)
    told = wait_until(lambda: world.slack.ephemerals(user=OTHER_REP), what="ephemeral")
    assert "Only the rep who launched this job, or an admin" in told[0].text
    assert card_state(world, card_id) == "in_review"


def test_edit_opens_a_prefilled_modal_and_saving_updates_the_card(world: SlackWorld) -> None:
    launch(world)
    message = world.card_messages()[0]
    value = world.button(message, ActionId.EDIT)["value"]
    card_id = json.loads(value)["card"]
    world.click(ActionId.EDIT, value, message_ts=message.ts)
    opened = wait_until(lambda: world.slack.views, what="modal")
    modal = opened[0]
    assert modal.callback_id == CallbackId.EDIT_CARD
    subject_block = next(b for b in modal.blocks if b.get("block_id") == BlockId.SUBJECT)
    assert subject_block["element"]["initial_value"] == "Turn times in TX are down, Dana0"
    response = world.submit(
        CallbackId.EDIT_CARD,
        {
            BlockId.SUBJECT: {
                ActionId.SUBJECT_INPUT: {
                    "type": "plain_text_input",
                    "value": "Quick one, {{ first_name }}",
                }
            },
            BlockId.BODY: {
                ActionId.BODY_INPUT: {
                    "type": "plain_text_input",
                    "value": "Hi {{ first_name }}, new turn times.",
                }
            },
            BlockId.OPTIONS: {
                ActionId.APPROVE_AFTER_EDIT: {"type": "checkboxes", "selected_options": []}
            },
        },
        private_metadata=modal.private_metadata,
    )
    assert response.status_code == 200

    def edited() -> bool:
        with world.session_factory() as s:
            card = s.get(m.Card, card_id)
            return card is not None and card.action_payload.get("subject") == "Quick one, Dana0"

    wait_until(edited, what="edit saved")
    wait_until(
        lambda: "Quick one, Dana0" in dumps(world.slack.messages(REVIEW_CHANNEL)[0].blocks),
        what="message updated",
    )


def test_an_edit_with_an_empty_subject_or_a_broken_template_is_refused_in_the_modal(
    world: SlackWorld,
) -> None:
    launch(world)
    message = world.card_messages()[0]
    value = world.button(message, ActionId.EDIT)["value"]
    response = world.submit(
        CallbackId.EDIT_CARD,
        {
            BlockId.SUBJECT: {ActionId.SUBJECT_INPUT: {"type": "plain_text_input", "value": "  "}},
            BlockId.BODY: {
                ActionId.BODY_INPUT: {"type": "plain_text_input", "value": "Hi {{ first_name "}
            },
        },
        private_metadata=value,
    )
    assert response.status_code == 200
    errors = response.json()["errors"]
    assert errors[BlockId.SUBJECT] == "The subject cannot be empty."
    assert errors[BlockId.BODY].startswith("body, line 1:")


def test_reject_with_a_reason_updates_the_message(world: SlackWorld) -> None:
    launch(world)
    message = world.card_messages()[1]
    value = world.button(message, ActionId.REJECT)["value"]
    card_id = json.loads(value)["card"]
    world.click(ActionId.REJECT, value, message_ts=message.ts)
    modal = wait_until(lambda: world.slack.views, what="reject modal")[0]
    assert modal.callback_id == CallbackId.REJECT_CARD
    world.submit(
        CallbackId.REJECT_CARD,
        {
            BlockId.REASON: {
                ActionId.REASON_INPUT: {"type": "plain_text_input", "value": "wrong contact"}
            }
        },
        private_metadata=modal.private_metadata,
    )
    wait_until(lambda: card_state(world, card_id) == "rejected", what="rejected")
    text = wait_until(
        lambda: (
            "Rejected by" in dumps(world.slack.messages(REVIEW_CHANNEL)[1].blocks)
            and dumps(world.slack.messages(REVIEW_CHANNEL)[1].blocks)
        ),
        what="message updated",
    )
    assert f'🚫 Rejected by <@{REP}>: \\"wrong contact\\"' in text


def test_a_retried_event_is_processed_once(world: SlackWorld) -> None:
    event = {
        "token": "deprecated",
        "team_id": "T0SANDBOX",
        "api_app_id": "A0SANDBOXAPP",
        "type": "event_callback",
        "event_id": "Ev0HOME01",
        "event_time": int(time.time()),
        "event": {"type": "app_home_opened", "user": REP, "channel": "D0MARIA", "tab": "home"},
    }
    body = json.dumps(event)
    headers = {
        **signed_headers(body, signing_secret=SIGNING_SECRET),
        "content-type": "application/json",
    }
    assert world.post(body, headers=headers).status_code == 200
    wait_until(lambda: world.slack.calls("views.publish"), what="home published")
    retry_headers = {**headers, "x-slack-retry-num": "1", "x-slack-retry-reason": "http_timeout"}
    assert world.post(body, headers=retry_headers).status_code == 200
    time.sleep(0.3)
    assert len(world.slack.calls("views.publish")) == 1


def test_app_home_lists_the_reps_pending_cards(world: SlackWorld) -> None:
    launch(world)
    event = {
        "team_id": "T0SANDBOX",
        "type": "event_callback",
        "event_id": "Ev0HOME02",
        "event": {"type": "app_home_opened", "user": REP, "tab": "home"},
    }
    body = json.dumps(event)
    world.post(
        body,
        headers={
            **signed_headers(body, signing_secret=SIGNING_SECRET),
            "content-type": "application/json",
        },
    )
    wait_until(lambda: world.slack.calls("views.publish"), what="home published")
    home = world.slack.home_view(REP)
    text = dumps(home.blocks)
    assert "Waiting for you* (3)" in text
    assert text.count(ActionId.APPROVE.value) == 3


def test_an_unknown_button_is_answered_with_a_sentence(world: SlackWorld) -> None:
    assert world.click("card_frobnicate", "{}").status_code == 200
    told = wait_until(lambda: world.slack.ephemerals(user=REP), what="ephemeral")
    assert "does not know the button `card_frobnicate`" in told[0].text


def test_a_malformed_interaction_payload_is_answered_not_crashed(world: SlackWorld) -> None:
    response = world.post("payload=%7Bnot-json")
    assert response.status_code in (400, 404)
    clicked = world.click(ActionId.APPROVE, "not-json")
    assert clicked.status_code == 200
    told = wait_until(lambda: world.slack.ephemerals(user=REP), what="ephemeral")
    assert "does not name a card" in told[0].text


def test_job_metrics_stay_equal_to_a_recount(world: SlackWorld) -> None:
    job_id = launch(world)
    first = world.card_messages()[0]
    value = world.button(first, ActionId.APPROVE)["value"]
    world.click(ActionId.APPROVE, value, message_ts=first.ts)
    wait_until(lambda: card_state(world, json.loads(value)["card"]) == "blocked", what="approval")
    with UnitOfWork(world.session_factory) as uow:
        recount = uow.jobs.recount(job_id)
        stored = uow.jobs.get(world.org_id, job_id).model_dump(include=set(recount))
    assert stored == recount
    assert (recount["total_tasks"], recount["cards_created"], recount["cards_approved"]) == (
        3,
        3,
        1,
    )


def test_bulk_mode_posts_one_message_per_batch_and_approve_all_acts_on_that_batch(
    world: SlackWorld,
) -> None:
    created = world.client.post(
        "/api/agent/jobs",
        headers={"Authorization": f"Bearer {world.api_token}"},
        json={
            "name": "Bulk win-back",
            "params": {
                "target": {"filters": {"include_tags": ["lender"]}},
                "templates": [{"template_id": world.template_id}],
                "behaviour": {"bulk_mode": True, "batch_size": 2},
                "review_channel_id": REVIEW_CHANNEL,
            },
        },
    )
    assert created.status_code == 201, created.text
    world.run_worker()
    bulk = [
        msg
        for msg in world.slack.messages(REVIEW_CHANNEL)
        if ActionId.APPROVE_ALL.value in dumps(msg.blocks)
    ]
    assert [dumps(msg.blocks).count("• ") for msg in bulk] == [2, 1]
    assert "Approve all 2" in dumps(bulk[0].blocks)
    button = world.button(bulk[0], ActionId.APPROVE_ALL)
    assert button["confirm"]["confirm"]["text"] == "Approve all"
    world.click(ActionId.APPROVE_ALL, button["value"], message_ts=bulk[0].ts)
    text = wait_until(
        lambda: (
            "Approved" in dumps(world.slack.messages(REVIEW_CHANNEL)[0].blocks)
            and dumps(world.slack.messages(REVIEW_CHANNEL)[0].blocks)
        ),
        what="bulk message updated",
    )
    assert f"✅ Approved 2 of 2 by <@{REP}>; 0 sent." in text
    with world.session_factory() as s:
        states = sorted(s.scalars(select(m.Card.state)).all())
    assert states == ["blocked", "blocked", "in_review"]
