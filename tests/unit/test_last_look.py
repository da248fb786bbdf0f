"""The last look before a cadence follow-up, on a fake unit of work and a fake lookout:
what the look is asked, when it holds a step (at drafting, at sending) and when it does
not (the first step, a reply already read, Gmail failing), and what a held step leaves."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from domain.cards import Card, CardState, CardType, Priority, draft_fingerprint
from domain.deps import Deps
from domain.errors import ExternalServiceError
from domain.jobs import JobParams, JobStatus, StepTemplate, TargetSelection, TaskKind, TaskStatus
from domain.last_look import (
    RECHECK_AFTER,
    LookResult,
    describe_look,
    is_follow_up,
    waiting_reason,
    withdrawn_reason,
)
from domain.outreach import Outreach
from domain.ports import OutreachUnitOfWork
from tests.unit.fakes import (
    NOW,
    ORG,
    REP,
    Enrollment,
    FakeMailer,
    FakeNotifier,
    FakeUnitOfWork,
    Outreaching,
    make_contact,
    outreaching,
)

LAST_SENT = NOW - timedelta(days=4)
THREAD = "thread-of-step-one"
FOUND_NEW = LookResult(found=1, stored=1, description="1 message, new to Salesbot")
FOUND_READ = LookResult(found=1, stored=0, description="1 message, read already")
NOTHING = LookResult(found=0, stored=0)


# --- the pure rules ----------------------------------------------------------------------


def test_a_look_holds_the_step_only_for_a_message_the_pipeline_has_not_read() -> None:
    assert LookResult(found=2, stored=1).holds_step
    assert LookResult(found=2, stored=0, unread=1).holds_step
    assert not LookResult(found=2, stored=0).holds_step
    assert not LookResult(found=0, stored=0).holds_step


@pytest.mark.parametrize(
    ("found", "stored", "unread"), [(-1, 0, 0), (1, -1, 0), (1, 0, -1), (1, 1, 1), (0, 1, 0)]
)
def test_a_look_refuses_counts_that_cannot_be(found: int, stored: int, unread: int) -> None:
    with pytest.raises(ValueError, match="count|more messages than it found"):
        LookResult(found=found, stored=stored, unread=unread)


def test_only_steps_after_the_first_are_follow_ups() -> None:
    assert [is_follow_up(step) for step in (None, 0, 1, 3)] == [False, False, True, True]


def test_a_look_is_described_with_counts_and_addresses_only() -> None:
    assert describe_look(
        found=0, stored=0, unread=0, contact_email="dana@x.test", mailbox="maria@y.test"
    ) == ("no message from dana@x.test since the last send in maria@y.test")
    assert describe_look(
        found=3, stored=1, unread=1, contact_email="dana@x.test", mailbox=None
    ) == (
        "3 messages from dana@x.test's side since the last send: 1 new to Salesbot, 1 not yet read"
    )


# --- the look at drafting and at sending -------------------------------------------------


@dataclass
class FakeLookout:
    """Answers every look with `result` (or raises `failing`) and keeps what it was asked."""

    result: LookResult = NOTHING
    failing: str | None = None
    asked: list[dict[str, object]] = field(default_factory=list)

    def look(
        self,
        org_id: int,
        *,
        sender_user_id: int | None,
        contact_email: str,
        thread_id: str | None,
        since: datetime | None,
    ) -> LookResult:
        self.asked.append(
            {
                "org_id": org_id,
                "sender_user_id": sender_user_id,
                "contact_email": contact_email,
                "thread_id": thread_id,
                "since": since,
            }
        )
        if self.failing is not None:
            raise ExternalServiceError(self.failing)
        return self.result


@dataclass
class Looking:
    h: Outreaching
    lookout: FakeLookout
    job_id: int
    enrollment_id: int

    @property
    def enrollment(self) -> Enrollment:
        return self.h.world.enrollments[self.enrollment_id]

    def draft(self, step: int) -> int:
        """Run the draft task of `step` for the contact; return the task's id."""
        with self.h.uow() as uow:
            uow.tasks.add_many(
                ORG,
                self.job_id,
                [
                    {
                        "kind": TaskKind.DRAFT_EMAIL.value,
                        "step": step,
                        "contact_id": 1,
                        "input": {"enrollment_id": self.enrollment_id, "cadence_step": step},
                    }
                ],
            )
            uow.commit()
        [task] = self.h.claim(self.job_id)
        self.h.outreach.drafting.run_draft_batch([task], org_id=ORG)
        return task.id

    def approved_card(self, step: int) -> Card:
        """A drafted card of `step`, approved and about to be executed."""
        contact = self.h.world.contacts[(ORG, 1)]
        subject, body = "Following up", "Hi Dana1,\n\nJust following up.\n\nMaria"
        card = Card(
            id=next(self.h.world.next_id),
            org_id=ORG,
            type=CardType.FOLLOW_UP if step else CardType.SEND_EMAIL,
            state=CardState.APPROVED,
            priority=Priority.MEDIUM,
            title=f"Email {contact.full_name}",
            created_at=NOW,
            updated_at=NOW,
            job_id=self.job_id,
            contact_id=1,
            enrollment_id=self.enrollment_id,
            action_payload={
                "to": contact.email,
                "subject": subject,
                "body": body,
                "step": step,
                "cadence_step": step,
                "total_steps": 2,
            },
            draft_fingerprint=draft_fingerprint(to=contact.email, subject=subject, body=body),
        )
        self.h.world.cards[card.id] = card
        return card


@pytest.fixture
def lookout() -> FakeLookout:
    return FakeLookout()


@pytest.fixture
def world(lookout: FakeLookout) -> Looking:
    """A running two-step job of the rep, its contact in flight at step 2 (index 1)."""
    base = outreaching()
    mailer, chat = FakeMailer(), FakeNotifier()

    def uow() -> OutreachUnitOfWork:
        return FakeUnitOfWork(base.world, base.clock)

    service = Outreach.build(
        Deps(uow=uow, clock=base.clock),
        unsubscribe_url=lambda org_id, contact_id, *_: (
            f"https://salesbot.test/u/{org_id}/{contact_id}"
        ),
        mailer=mailer,
        notifier=chat,
        lookout=lookout,
    )
    h = Outreaching(base.world, base.clock, mailer, chat, service)
    h.world.contacts[(ORG, 1)] = make_contact(1, last_contacted_at=LAST_SENT)
    params = JobParams(
        target=TargetSelection(contact_ids=[1]),
        templates=[
            StepTemplate(subject="Turn times", body="Hi {{ first_name }}"),
            StepTemplate(subject="Following up", body="Hi again {{ first_name }}"),
        ],
    )
    with h.uow() as unit:
        job = unit.jobs.add(
            ORG,
            name="Q4 lender win-back",
            description=None,
            params=params.model_dump(mode="json"),
            owner_id=REP,
            campaign_id=None,
        )
        unit.jobs.set_status(ORG, job.id, JobStatus.RUNNING, expected=[JobStatus.PENDING], now=NOW)
        unit.jobs.mark_planned(job.id, now=NOW)
        unit.commit()
    enrollment_id = next(h.world.next_id)
    h.world.enrollments[enrollment_id] = Enrollment(
        org_id=ORG,
        job_id=job.id,
        contact_id=1,
        step=1,
        thread_id=THREAD,
        last_step_at=LAST_SENT,
        step_started_at=NOW,  # the tick ran step 2: its draft is in flight
    )
    return Looking(h, lookout, job.id, enrollment_id)


def test_a_reply_found_before_drafting_cancels_the_task_and_defers_the_enrollment(
    world: Looking, lookout: FakeLookout
) -> None:
    lookout.result = FOUND_NEW

    task_id = world.draft(1)

    assert lookout.asked == [
        {
            "org_id": ORG,
            "sender_user_id": REP,
            "contact_email": "dana1@pinnaclelending.test",
            "thread_id": THREAD,
            "since": LAST_SENT,
        }
    ]
    task = world.h.world.tasks[task_id]
    assert (task.status, task.error_message) == (
        TaskStatus.CANCELLED,
        waiting_reason("dana1@pinnaclelending.test"),
    )
    assert task.output == {"last_look": {"found": 1, "stored": 1, "unread": 0}}
    assert world.h.world.cards == {}
    assert (world.enrollment.status, world.enrollment.step) == ("active", 1)
    assert world.enrollment.next_due_at == NOW + RECHECK_AFTER
    assert world.enrollment.defer_reason == waiting_reason("dana1@pinnaclelending.test")
    job = world.h.job(world.job_id)
    assert (job.completed_tasks, job.failed_tasks, job.last_error) == (1, 0, None)
    assert job.status == JobStatus.RUNNING  # the enrollment is still open


def test_a_reply_read_already_lets_the_follow_up_be_drafted(
    world: Looking, lookout: FakeLookout
) -> None:
    lookout.result = FOUND_READ

    task_id = world.draft(1)

    [card] = world.h.world.cards.values()
    assert (card.type, card.state, card.task_id) == (
        CardType.FOLLOW_UP,
        CardState.IN_REVIEW,
        task_id,
    )
    assert world.h.world.tasks[task_id].status == TaskStatus.SUCCEEDED
    assert world.enrollment.next_due_at is None  # in flight until the card ends the step


def test_the_first_step_is_drafted_without_a_look(world: Looking, lookout: FakeLookout) -> None:
    world.enrollment.step = 0
    lookout.result = FOUND_NEW

    world.draft(0)

    assert lookout.asked == []
    assert len(world.h.world.cards) == 1


def test_a_follow_up_whose_look_failed_is_drafted_and_the_failure_logged(
    world: Looking, lookout: FakeLookout, caplog: pytest.LogCaptureFixture
) -> None:
    lookout.failing = "Gmail is unavailable (503 backendError)."

    with caplog.at_level(logging.WARNING, logger="domain.outreach.delivery"):
        task_id = world.draft(1)

    assert world.h.world.tasks[task_id].status == TaskStatus.SUCCEEDED
    assert len(world.h.world.cards) == 1
    [record] = [r for r in caplog.records if "last look" in r.getMessage()]
    assert record.__dict__["reason"] == "Gmail is unavailable (503 backendError)."
    assert record.__dict__["task_id"] == task_id


def test_a_follow_up_without_any_email_before_it_is_not_looked_for(
    world: Looking, lookout: FakeLookout
) -> None:
    world.enrollment.thread_id = None
    world.h.world.contacts[(ORG, 1)] = make_contact(1, last_contacted_at=None)
    lookout.result = FOUND_NEW

    world.draft(1)

    assert lookout.asked == []
    assert len(world.h.world.cards) == 1


def test_a_reply_found_before_sending_withdraws_the_card_and_sends_nothing(
    world: Looking, lookout: FakeLookout
) -> None:
    card = world.approved_card(1)
    lookout.result = LookResult(found=1, stored=0, unread=1)

    result = world.h.outreach.delivery.execute_card(ORG, card.id)

    assert result.state == CardState.WITHDRAWN
    assert result.withdrawn_reason == withdrawn_reason("dana1@pinnaclelending.test")
    assert world.h.mailer.sent == []
    assert world.enrollment.next_due_at == NOW + RECHECK_AFTER
    assert world.enrollment.defer_reason == waiting_reason("dana1@pinnaclelending.test")
    assert lookout.asked[0]["thread_id"] == THREAD


def test_a_follow_up_with_nothing_new_in_gmail_is_sent(
    world: Looking, lookout: FakeLookout
) -> None:
    card = world.approved_card(1)
    lookout.result = FOUND_READ

    assert world.h.outreach.delivery.execute_card(ORG, card.id).state == CardState.DONE
    assert len(world.h.mailer.sent) == 1
    assert len(lookout.asked) == 1


def test_a_follow_up_whose_look_failed_is_sent(world: Looking, lookout: FakeLookout) -> None:
    card = world.approved_card(1)
    lookout.failing = "Google refused the mailbox's credentials"

    assert world.h.outreach.delivery.execute_card(ORG, card.id).state == CardState.DONE
    assert len(world.h.mailer.sent) == 1


def test_the_first_step_and_a_card_already_sending_are_not_looked_for(
    world: Looking, lookout: FakeLookout
) -> None:
    lookout.result = FOUND_NEW
    first = world.approved_card(0)
    world.enrollment.step = 0
    assert world.h.outreach.delivery.execute_card(ORG, first.id).state == CardState.DONE
    sending = world.approved_card(1)
    world.h.world.cards[sending.id] = Card(
        **{**sending.__dict__, "state": CardState.EXECUTING}  # another click won the race
    )

    world.h.outreach.delivery.execute_card(ORG, sending.id)

    assert lookout.asked == []
    assert len(world.h.mailer.sent) == 1


def test_a_follow_up_whose_cadence_stopped_is_withdrawn_without_asking_gmail(
    world: Looking, lookout: FakeLookout
) -> None:
    card = world.approved_card(1)
    world.enrollment.status, world.enrollment.stop_reason = "stopped", "replied"
    lookout.result = FOUND_NEW

    result = world.h.outreach.delivery.execute_card(ORG, card.id)

    assert result.state == CardState.WITHDRAWN
    assert result.withdrawn_reason == (
        "Not sent: the cadence stopped (replied) after this step was drafted."
    )
    assert lookout.asked == []
    assert world.enrollment.next_due_at is None
