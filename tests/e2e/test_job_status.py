"""A job's status says what is happening: running until its cards are decided, cancelling
withdraws the cards not yet sent (their messages say so), failures are counted with their
reason. Driven through signed Slack requests and the REST API; Slack is the stand-in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from domain.clock import FixedClock
from domain.jobs import CreateJobRequest, JobStatus
from domain.mail import OutgoingEmail, SendOutcome, SendStatus
from domain.outreach import PlanningFailed
from handlers.slack.ids import ActionId, BlockId, CallbackId
from storage import models as m
from storage.db import make_session_factory
from storage.uow import UnitOfWork
from tests.support.slack import ServedSlack
from tests.support.slack_app import REP, REVIEW_CHANNEL, SlackWorld, slack_world, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def world(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock
) -> Iterator[SlackWorld]:
    with slack_world(committed_engine, served_slack, clock) as built:
        yield built


def dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def launch(world: SlackWorld) -> int:
    """Launch the campaign from Slack, draft and post its cards; return the job id."""
    assert world.command("launch Q4 lender win-back").status_code == 200
    wait_until(lambda: any("Launched" in t for t in world.responses()), what="launch answer")
    job_id = world.latest_job_id()
    world.wait_for_tasks(job_id, len(world.contact_ids))
    world.run_worker()
    return job_id


def job_row(world: SlackWorld, job_id: int) -> dict[str, Any]:
    with world.session_factory() as s:
        job = s.get(m.Job, job_id)
        assert job is not None
        return {
            "status": job.status,
            "errors_count": job.errors_count,
            "last_error": job.last_error,
            "cancelled_by": job.cancelled_by,
        }


def card_states(world: SlackWorld, job_id: int) -> list[str]:
    with world.session_factory() as s:
        return list(
            s.scalars(select(m.Card.state).where(m.Card.job_id == job_id).order_by(m.Card.id))
        )


def card_id_of(world: SlackWorld, message: Any) -> int:
    return int(json.loads(world.button(message, ActionId.APPROVE)["value"])["card"])


def answer_to(world: SlackWorld, text: str, *, command: str = "/job") -> str:
    """Send a slash command and return its answer (the newest response)."""
    before = len(world.responses())
    assert world.command(text, command=command).status_code == 200
    return str(wait_until(lambda: world.responses()[before:], what=f"answer to {text}")[0])


def reject(world: SlackWorld, message: Any) -> None:
    """Reject a card from its message: the button opens the modal, then it is submitted."""
    value = world.button(message, ActionId.REJECT)["value"]
    views_before = len(world.slack.views)
    world.click(ActionId.REJECT, value, message_ts=message.ts)
    modal = wait_until(lambda: world.slack.views[views_before:], what="reject modal")[0]
    world.submit(
        CallbackId.REJECT_CARD,
        {BlockId.REASON: {ActionId.REASON_INPUT: {"type": "plain_text_input", "value": ""}}},
        private_metadata=modal.private_metadata,
    )


def assert_metrics_equal_a_recount(world: SlackWorld, job_id: int) -> None:
    with UnitOfWork(world.session_factory) as uow:
        recount = uow.jobs.recount(job_id)
        stored = uow.jobs.get(world.org_id, job_id).model_dump(include=set(recount))
    assert stored == recount


def test_a_review_mode_job_runs_until_every_card_is_decided(world: SlackWorld) -> None:
    job_id = launch(world)
    assert card_states(world, job_id) == ["in_review"] * 3
    assert job_row(world, job_id)["status"] == "running"

    first, second, third = world.card_messages()
    # No mailbox is connected: the approved card is not sent, and the job says why.
    world.click(ActionId.APPROVE, world.button(first, ActionId.APPROVE)["value"])
    wait_until(lambda: card_states(world, job_id)[0] == "blocked", what="send failed")
    failed_card = card_id_of(world, first)
    assert job_row(world, job_id) == {
        "status": "running",
        "errors_count": 1,
        "last_error": f"card #{failed_card} was not sent: No mailbox is connected: connect "
        "Gmail from the App Home, then Retry.",
        "cancelled_by": None,
    }
    reject(world, second)
    wait_until(lambda: card_states(world, job_id)[1] == "rejected", what="second rejected")
    assert job_row(world, job_id)["status"] == "running"

    reject(world, third)
    wait_until(lambda: job_row(world, job_id)["status"] == "succeeded", what="job finished")
    assert card_states(world, job_id) == ["blocked", "rejected", "rejected"]
    assert_metrics_equal_a_recount(world, job_id)
    status = answer_to(world, f"status {job_id}")
    # The job's line and its latest error; the contacts' lines follow (test_job_controls).
    assert status.startswith(
        f"*#{job_id}* Q4 lender win-back · launch — `succeeded` · 3 cards, 1 approved, 0 sent, "
        f"1 error\n      ⚠️ card #{failed_card} was not sent: No mailbox is connected: connect "
        "Gmail from the App Home, then Retry.\n*Contacts:* 3\n"
    )


class MailboxConnectedLater:
    """A mailer whose first send fails as an unconnected mailbox does; later sends go out
    (each stored as an outbox row, as the Gmail outbox stores it)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.failed = False
        self.sent: list[OutgoingEmail] = []

    def send(self, email: OutgoingEmail) -> SendOutcome:
        if not self.failed:
            self.failed = True
            return SendOutcome(
                status=SendStatus.FAILED,
                email_send_id=0,
                message_id="",
                detail="No Gmail mailbox is connected for Maria Lopez: connect Gmail from "
                "Salesbot's App Home, then Retry.",
            )
        self.sent.append(email)
        message_id = f"<{len(self.sent)}@lonestar.example.com>"
        with make_session_factory(self._engine)() as s:
            row = m.EmailSend(
                org_id=email.org_id,
                card_id=email.card_id,
                message_id=message_id,
                to_email=email.to_email,
                subject=email.subject,
                status="sent",
            )
            s.add(row)
            s.commit()
            return SendOutcome(status=SendStatus.SENT, email_send_id=row.id, message_id=message_id)


def test_a_card_sent_on_retry_no_longer_shows_as_the_jobs_latest_error(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock
) -> None:
    mailer = MailboxConnectedLater(committed_engine)
    with slack_world(committed_engine, served_slack, clock, mailer=mailer) as world:
        job_id = launch(world)
        first = world.card_messages()[0]
        world.click(ActionId.APPROVE, world.button(first, ActionId.APPROVE)["value"])
        wait_until(lambda: card_states(world, job_id)[0] == "blocked", what="send failed")
        card_id = card_id_of(world, first)
        assert job_row(world, job_id)["last_error"] == (
            f"card #{card_id} was not sent: No Gmail mailbox is connected for Maria Lopez: "
            "connect Gmail from Salesbot's App Home, then Retry."
        )

        world.run_worker()  # the queued message update shows Retry
        blocked = world.slack.messages(REVIEW_CHANNEL)[0]
        world.click(ActionId.RETRY, world.button(blocked, ActionId.RETRY)["value"])
        wait_until(lambda: card_states(world, job_id)[0] == "done", what="sent on retry")

        assert len(mailer.sent) == 1
        # The failure happened (it stays counted), but the job no longer names a card
        # that went out as its latest problem.
        assert (job_row(world, job_id)["errors_count"], job_row(world, job_id)["last_error"]) == (
            1,
            None,
        )
        assert answer_to(world, f"status {job_id}") == (
            f"*#{job_id}* Q4 lender win-back · launch — `running` · 3 cards, 1 approved, 1 sent, "
            "1 error\n"
            "*Contacts:* 3\n"
            "• 2 active — 2 with a step under way (its card waits for review)\n"
            "• 1 completed every step"
        )


def test_cancelling_a_job_withdraws_its_cards_and_says_so_on_their_messages(
    world: SlackWorld,
) -> None:
    job_id = launch(world)
    messages = world.card_messages()
    assert len(messages) == 3

    answer = answer_to(world, f"cancel {job_id}")
    assert answer.startswith(f"Cancelled *#{job_id}* Q4 lender win-back · launch — `cancelled`")
    assert card_states(world, job_id) == ["withdrawn"] * 3
    with world.session_factory() as s:
        maria = s.scalars(select(m.User.id).where(m.User.slack_user_id == REP)).one()
    assert job_row(world, job_id)["cancelled_by"] == maria

    world.run_worker()  # the queued message updates
    updated = world.slack.messages(REVIEW_CHANNEL)
    assert [msg.ts for msg in updated] == [msg.ts for msg in messages]  # in place
    for message in updated:
        text = dumps(message.blocks)
        assert f"🚫 Withdrawn: job #{job_id} cancelled by <@{REP}>" in text
        assert ActionId.APPROVE.value not in text
    assert_metrics_equal_a_recount(world, job_id)

    # A click on a message shown before the cancellation approves nothing.
    world.click(ActionId.APPROVE, world.button(messages[0], ActionId.APPROVE)["value"])
    told = wait_until(
        lambda: [e.text for e in world.slack.ephemerals(user=REP) if "withdrawn" in e.text],
        what="refusal",
    )
    assert told == [
        f"⚠️ This card was withdrawn (job #{job_id} cancelled); it can no longer be acted on."
    ]
    assert card_states(world, job_id) == ["withdrawn"] * 3
    with world.session_factory() as s:
        assert s.query(m.EmailSend).count() == 0


def test_cancelling_through_the_api_withdraws_the_cards_waiting_to_be_posted(
    world: SlackWorld,
) -> None:
    assert world.command("launch Q4 lender win-back").status_code == 200
    wait_until(lambda: any("Launched" in t for t in world.responses()), what="launch answer")
    job_id = world.latest_job_id()
    world.wait_for_tasks(job_id, 3)
    world.runtime.worker.run_until_idle()  # drafted; their messages not yet posted
    assert card_states(world, job_id) == ["in_review"] * 3

    cancelled = world.client.post(
        f"/api/agent/jobs/{job_id}/cancel",
        headers={"Authorization": f"Bearer {world.api_token}"},
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    world.run_worker()
    assert world.card_messages() == []
    assert card_states(world, job_id) == ["withdrawn"] * 3
    cards = world.client.get(
        f"/api/agent/jobs/{job_id}/cards",
        headers={"Authorization": f"Bearer {world.api_token}"},
    ).json()
    assert [(c["state"], c["withdrawn_reason"]) for c in cards["cards"]] == [
        ("withdrawn", f"job #{job_id} cancelled")
    ] * 3


def test_a_draft_finished_after_the_cancellation_makes_no_card(world: SlackWorld) -> None:
    assert world.command("launch Q4 lender win-back").status_code == 200
    wait_until(lambda: any("Launched" in t for t in world.responses()), what="launch answer")
    job_id = world.latest_job_id()
    world.wait_for_tasks(job_id, 3)
    claimed = world.runtime.worker.claim()
    assert len(claimed) == 3
    world.runtime.outreach.jobs.set_job_status(world.org_id, job_id, JobStatus.CANCELLED)

    world.runtime.outreach.drafting.run_draft_batch(claimed, org_id=world.org_id)

    assert card_states(world, job_id) == []
    with world.session_factory() as s:
        statuses = s.scalars(select(m.JobTask.status).where(m.JobTask.job_id == job_id)).all()
    assert statuses == ["cancelled"] * 3
    assert_metrics_equal_a_recount(world, job_id)


def test_cards_that_could_not_be_posted_are_counted_on_the_job_with_the_reason(
    world: SlackWorld,
) -> None:
    created = world.client.post(
        "/api/agent/jobs",
        headers={"Authorization": f"Bearer {world.api_token}"},
        json={
            "name": "Win-back to a deleted channel",
            "params": {
                "target": {"contact_ids": world.contact_ids},
                "templates": [{"template_id": world.template_id}],
                "review_channel_id": "C0DELETED",
            },
        },
    )
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    world.run_worker()

    job = world.client.get(
        f"/api/agent/jobs/{job_id}", headers={"Authorization": f"Bearer {world.api_token}"}
    ).json()
    with world.session_factory() as s:
        last_card = s.scalar(select(func.max(m.Card.id)).where(m.Card.job_id == job_id))
    reason = (
        f"card #{last_card} could not be posted: Slack: the review channel does not exist or "
        "the bot is not in it (channel_not_found); review it from Salesbot's App Home"
    )
    assert (job["status"], job["errors_count"], job["last_error"]) == ("running", 3, reason)
    assert f"3 errors\n      ⚠️ {reason}" in answer_to(world, f"status {job_id}")
    assert_metrics_equal_a_recount(world, job_id)


def test_a_planning_failure_fails_the_job_with_the_reason(world: SlackWorld) -> None:
    jobs = world.runtime.outreach.jobs
    job = jobs.create_job(
        world.org_id,
        CreateJobRequest.model_validate(
            {
                "name": "Stored by an older version",
                "params": {
                    "target": {"contact_ids": world.contact_ids},
                    "templates": [{"template_id": world.template_id}],
                },
            }
        ),
        owner_id=None,
    )
    with world.session_factory() as s:  # params this version no longer reads
        row = s.get(m.Job, job.id)
        assert row is not None
        row.params = {**row.params, "behaviour": {"batch_size": 0}}
        s.commit()

    with pytest.raises(PlanningFailed):
        jobs.plan_job(world.org_id, job.id)

    row_now = job_row(world, job.id)
    assert row_now["status"] == "failed"
    assert row_now["errors_count"] == 1
    assert str(row_now["last_error"]).startswith("planning failed on our side (error id ")
    api = world.client.get(
        f"/api/agent/jobs/{job.id}", headers={"Authorization": f"Bearer {world.api_token}"}
    ).json()
    assert (api["status"], api["last_error"]) == ("failed", row_now["last_error"])
    answer = answer_to(world, f"status {job.id}")
    assert "`failed`" in answer
    assert f"⚠️ {row_now['last_error']}" in answer
