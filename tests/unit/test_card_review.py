"""The rules of a human's decision on a card, on a fake unit of work: what is approved is
what was shown, each card is sent once, and the state machine refuses every other move."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from domain.cards import (
    Card,
    CardState,
    CardType,
    Priority,
    describe_refusal,
    draft_fingerprint,
    states_that_can_become,
)
from domain.errors import NotPermitted
from domain.jobs import JobParams, JobStatus, StepTemplate, TargetSelection, TaskStatus
from domain.mail import SendOutcome, SendStatus
from domain.outreach import CardRefused, StaleCard
from tests.unit.fakes import (
    ADMIN,
    NOW,
    ORG,
    OTHER_REP,
    REP,
    Outreaching,
    actor,
    make_contact,
    outreaching,
)

S = CardState
SUBJECT = "Turn times are down"
BODY = "Hi Dana,\n\nOur turn times are down to four days.\n\nMaria"
# A human's decisions on a card: the state each one moves the card to.
DECISIONS = {"approve": S.APPROVED, "edit": S.IN_REVIEW, "reject": S.REJECTED}
ALLOWED = sorted(
    (state, decision) for decision, to in DECISIONS.items() for state in states_that_can_become(to)
)
REFUSED = sorted({(state, decision) for state in S for decision in DECISIONS} - set(ALLOWED))


@pytest.fixture
def h() -> Outreaching:
    return outreaching()


def running_job(h: Outreaching) -> int:
    """A planned running job of the rep (its cards are the rep's to decide)."""
    params = JobParams(
        target=TargetSelection(contact_ids=[1]),
        templates=[StepTemplate(subject=SUBJECT, body=BODY)],
    )
    with h.uow() as uow:
        job = uow.jobs.add(
            ORG,
            name="Q4 lender win-back · launch",
            description=None,
            params=params.model_dump(mode="json"),
            owner_id=REP,
            campaign_id=None,
        )
        uow.jobs.set_status(ORG, job.id, JobStatus.RUNNING, expected=[JobStatus.PENDING], now=NOW)
        uow.jobs.mark_planned(job.id, now=NOW)
        uow.commit()
    return job.id


def email_card(h: Outreaching, state: CardState = S.IN_REVIEW, **changes: Any) -> Card:
    """An email card of a running job, in `state`, as drafted and shown."""
    contact = make_contact(1)
    h.world.contacts[(ORG, 1)] = contact
    card = Card(
        id=next(h.world.next_id),
        org_id=ORG,
        type=CardType.SEND_EMAIL,
        state=state,
        priority=Priority.MEDIUM,
        title=f"Email {contact.full_name}",
        created_at=NOW,
        updated_at=NOW,
        job_id=running_job(h),
        contact_id=contact.contact_id,
        action_payload={
            "to": contact.email,
            "to_name": contact.full_name,
            "subject": SUBJECT,
            "body": BODY,
            "step": 0,
            "total_steps": 1,
            "campaign_name": "Q4 lender win-back",
        },
        draft_fingerprint=draft_fingerprint(to=contact.email, subject=SUBJECT, body=BODY),
    )
    card = replace(card, **changes)
    h.world.cards[card.id] = card
    return card


def decide(h: Outreaching, decision: str, card: Card) -> Card:
    review = h.outreach.review
    if decision == "approve":
        return review.approve_card(actor(), card.id, fingerprint=card.draft_fingerprint)
    if decision == "edit":
        return review.edit_card(
            actor(), card.id, subject="Four-day turn times", body=BODY, approve=False
        )
    return review.reject_card(actor(), card.id, reason="not now")


def test_an_approval_of_a_draft_that_changed_since_it_was_shown_is_refused(
    h: Outreaching,
) -> None:
    card = email_card(h)

    with pytest.raises(StaleCard, match="This draft changed since this message was shown"):
        h.outreach.review.approve_card(actor(), card.id, fingerprint="shown-before-the-edit")

    assert h.card(card.id) == card
    assert h.mailer.sent == []


def test_approving_the_draft_as_shown_sends_it_once_and_counts_it(h: Outreaching) -> None:
    card = email_card(h)

    done = h.outreach.review.approve_card(actor(), card.id, fingerprint=card.draft_fingerprint)

    assert done.state == S.DONE
    assert [(e.to_email, e.subject, e.card_id) for e in h.mailer.sent] == [
        ("dana1@pinnaclelending.test", SUBJECT, card.id)
    ]
    job = h.job(card.job_id or 0)
    assert (job.cards_approved, job.cards_executed, job.emails_sent) == (1, 1, 1)
    assert job.status == JobStatus.SUCCEEDED  # its only card is decided
    # The send's engagement row is the outbox's (tests/unit/test_outbox.py); the card's
    # delivery records that the contact was emailed.
    assert h.world.contacts[(ORG, 1)].last_contacted_at == h.clock.now()


def test_a_second_approval_of_the_same_card_sends_nothing_more(h: Outreaching) -> None:
    card = email_card(h)
    h.outreach.review.approve_card(actor(), card.id, fingerprint=card.draft_fingerprint)

    with pytest.raises(CardRefused, match="This card is already done"):
        h.outreach.review.approve_card(actor(), card.id, fingerprint=card.draft_fingerprint)

    assert len(h.mailer.sent) == 1
    assert h.job(card.job_id or 0).cards_approved == 1


@pytest.mark.parametrize(("state", "decision"), REFUSED)
def test_a_decision_the_state_machine_forbids_is_refused_with_the_reason(
    h: Outreaching, state: CardState, decision: str
) -> None:
    card = email_card(h, state, withdrawn_reason="job #3 cancelled")

    with pytest.raises(CardRefused) as refused:
        decide(h, decision, card)

    assert refused.value.message == describe_refusal(card, DECISIONS[decision])
    assert h.card(card.id) == card
    assert h.mailer.sent == []


@pytest.mark.parametrize(("state", "decision"), ALLOWED)
def test_a_decision_the_state_machine_allows_moves_the_card(
    h: Outreaching, state: CardState, decision: str
) -> None:
    card = email_card(h, state)

    decided = decide(h, decision, card)

    # An approved email card goes on to be sent; an edited one waits for review again.
    after = {"approve": S.DONE, "edit": S.IN_REVIEW, "reject": S.REJECTED}[decision]
    assert decided.state == h.card(card.id).state == after
    assert len(h.mailer.sent) == (1 if decision == "approve" else 0)


def test_an_edited_draft_is_rendered_for_the_contact_and_shown_with_its_new_fingerprint(
    h: Outreaching,
) -> None:
    card = email_card(h)

    edited = h.outreach.review.edit_card(
        actor(), card.id, subject="Hello {{ first_name }}", body=BODY, approve=False
    )

    assert edited.action_payload["subject"] == "Hello Dana1"
    assert edited.draft_fingerprint == draft_fingerprint(
        to="dana1@pinnaclelending.test", subject="Hello Dana1", body=BODY
    )
    with pytest.raises(StaleCard):
        h.outreach.review.approve_card(actor(), card.id, fingerprint=card.draft_fingerprint)


def test_only_the_rep_who_launched_the_job_or_an_admin_decides_its_cards(
    h: Outreaching,
) -> None:
    card = email_card(h)

    with pytest.raises(NotPermitted):
        h.outreach.review.reject_card(actor(OTHER_REP), card.id, reason=None)
    assert h.card(card.id).state == S.IN_REVIEW

    rejected = h.outreach.review.reject_card(actor(ADMIN, role="admin"), card.id, reason="dup")
    assert (rejected.state, rejected.rejected_reason, rejected.approved_by) == (
        S.REJECTED,
        "dup",
        ADMIN,
    )


def test_a_failed_send_blocks_the_card_with_the_reason_and_a_retry_sends_it(
    h: Outreaching,
) -> None:
    card = email_card(h)
    h.mailer.failing = "No Gmail mailbox is connected for Maria Lopez"

    blocked = h.outreach.review.approve_card(actor(), card.id, fingerprint=card.draft_fingerprint)

    assert (blocked.state, blocked.blocked_reason) == (
        S.BLOCKED,
        "No Gmail mailbox is connected for Maria Lopez",
    )
    assert h.job(card.job_id or 0).last_error == (
        f"card #{card.id} was not sent: No Gmail mailbox is connected for Maria Lopez"
    )

    h.mailer.failing = None
    sent = h.outreach.review.approve_card(actor(), card.id, fingerprint=None)

    assert (sent.state, sent.blocked_reason) == (S.DONE, None)
    assert len(h.mailer.sent) == 1
    job = h.job(card.job_id or 0)
    assert (job.last_error, job.errors_count, job.cards_approved) == (None, 1, 1)


def test_a_failure_reported_for_a_card_that_is_not_sending_leaves_it(h: Outreaching) -> None:
    card = email_card(h, S.APPROVED)  # put back to approved by the recovery sweep, say
    failed = SendOutcome(status=SendStatus.FAILED, email_send_id=4, message_id="", detail="late")

    h.outreach.delivery.finish_send(ORG, 4, card.id, failed)

    assert h.card(card.id).state == S.APPROVED
    assert h.job(card.job_id or 0).last_error is None


def test_the_approval_of_a_human_card_completes_it(h: Outreaching) -> None:
    card = email_card(h, type=CardType.SCHEDULE_CALL, draft_fingerprint=None)

    done = h.outreach.review.approve_card(actor(), card.id, fingerprint=None)

    assert (done.state, done.executed_at) == (S.DONE, NOW)
    assert h.mailer.sent == []


def undrafted_answer(h: Outreaching, state: CardState = S.SUGGESTED) -> Card:
    """A reply card made from an inbound message whose answer the draft task has not
    written yet: no recipient, subject or body, no fingerprint."""
    return email_card(
        h,
        state,
        type=CardType.REPLY_TO_EMAIL,
        inbound_email_id=501,
        action_payload={"from_email": "dana1@pinnaclelending.test", "reply_text": "Fees?"},
        draft_fingerprint=None,
    )


def test_an_answer_still_being_drafted_cannot_be_sent(h: Outreaching) -> None:
    card = undrafted_answer(h)

    with pytest.raises(CardRefused) as refused:
        h.outreach.review.approve_card(actor(), card.id, fingerprint=None)

    assert refused.value.message == "The answer is still being drafted; try again in a moment."
    assert h.card(card.id) == card
    assert h.mailer.sent == []


def test_an_approved_answer_with_nothing_to_send_is_blocked_with_the_reason(
    h: Outreaching,
) -> None:
    card = undrafted_answer(h, S.APPROVED)  # approved before its draft, by an older build

    blocked = h.outreach.delivery.execute_card(ORG, card.id)

    assert (blocked.state, blocked.blocked_reason) == (
        S.BLOCKED,
        "Nothing was sent: the card has no recipient, subject or body (its answer was never "
        "drafted). Answer them from Gmail, then reject this card.",
    )
    assert h.mailer.sent == []
    assert h.job(card.job_id or 0).last_error == f"card #{card.id} was not sent: " + str(
        blocked.blocked_reason
    )


def test_cancelling_a_job_leaves_its_cards_made_from_inbound_mail_to_answer(
    h: Outreaching,
) -> None:
    outreach = email_card(h)
    job_id = outreach.job_id or 0
    reply = replace(
        email_card(h),
        id=next(h.world.next_id),
        job_id=job_id,
        type=CardType.REPLY_TO_EMAIL,
        inbound_email_id=501,
    )
    order = replace(
        email_card(h),
        id=next(h.world.next_id),
        job_id=job_id,
        type=CardType.NEEDS_HUMAN_RESPONSE,
        inbound_email_id=502,
        draft_fingerprint=None,
    )
    h.world.cards.update({reply.id: reply, order.id: order})
    with h.uow() as uow:
        uow.tasks.add_many(
            ORG,
            job_id,
            [
                {"kind": "post_card", "input": {"card_id": reply.id}},
                {"kind": "post_card", "input": {"card_id": outreach.id}},
                {"kind": "draft_reply", "input": {"card_id": order.id, "inbound_email_id": 502}},
            ],
        )
        uow.commit()

    h.outreach.jobs.set_job_status(ORG, job_id, JobStatus.CANCELLED, by=actor())

    assert [h.card(c.id).state for c in (outreach, reply, order)] == [
        S.WITHDRAWN,
        S.IN_REVIEW,
        S.IN_REVIEW,
    ]
    tasks = {
        (t.kind, t.input.get("card_id")): t.status
        for t in h.world.tasks.values()
        if t.job_id == job_id
    }
    assert tasks[("post_card", reply.id)] == TaskStatus.PENDING
    assert tasks[("post_card", outreach.id)] == TaskStatus.CANCELLED
    assert tasks[("draft_reply", order.id)] == TaskStatus.PENDING
    sent = h.outreach.review.approve_card(actor(), reply.id, fingerprint=reply.draft_fingerprint)
    done = h.outreach.review.approve_card(actor(), order.id, fingerprint=None)
    assert (sent.state, done.state) == (S.DONE, S.DONE)
    assert [e.card_id for e in h.mailer.sent] == [reply.id]
