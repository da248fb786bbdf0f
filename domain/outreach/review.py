"""Review: a human approves, edits or rejects a card; a human's card is completed."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from domain import faults
from domain.cadence import Channel
from domain.cards import Card, CardState, CardType, describe_refusal, draft_fingerprint
from domain.email_preferences import UnsubscribeLinks, email_type_of_step
from domain.engagement import EngagementEvent, record_engagement
from domain.errors import InvalidInput
from domain.outreach.common import (
    Actor,
    CardRefused,
    OutreachDeps,
    StaleCard,
    advance_card,
    authorize_card,
    cadence_step_of,
    decide_card,
    end_step,
)
from domain.outreach.delivery import Delivery
from domain.outreach.drafting import template_variables
from domain.outreach.jobs import Jobs
from domain.outreach.presenting import Presenting
from domain.ports import OutreachUnitOfWork
from domain.reply_actions import confirms_opt_out
from domain.templates import render_text

#: Why an answer to a reply cannot be sent before its draft exists.
AWAITS_DRAFT: Final = "The answer is still being drafted; try again in a moment."
#: The `rejected_reason` of a rep's cadence step skipped with Skip.
SKIPPED: Final = "skipped"
#: The engagement a rep's step records when it is done: a touch of the contact.
_TOUCHES: Final[dict[str, EngagementEvent]] = {
    Channel.LINKEDIN.value: EngagementEvent.LINKEDIN_TOUCH,
    Channel.CALL.value: EngagementEvent.CALL,
}


class Review:
    """The decisions humans take on cards, each allowed by the card state machine."""

    def __init__(
        self,
        deps: OutreachDeps,
        *,
        jobs: Jobs,
        presenting: Presenting,
        delivery: Delivery,
        unsubscribe_url: UnsubscribeLinks,
    ) -> None:
        self._uow = deps.uow
        self._clock = deps.clock
        self._jobs = jobs
        self._presenting = presenting
        self._delivery = delivery
        self._unsubscribe_url = unsubscribe_url

    def batch_cards(self, org_id: int, job_id: int, batch: int) -> list[Card]:
        """Return the cards of a job's batch that still wait for review ("Approve all")."""
        with self._uow() as uow:
            return uow.cards.list_for_batch(org_id, job_id, batch, states=[CardState.IN_REVIEW])

    def approve_card(self, actor: Actor, card_id: int, *, fingerprint: str | None) -> Card:
        """Approve a card as shown (its fingerprint must match), then execute it."""
        now = self._clock.now()
        with self._uow() as uow:
            card = uow.cards.get(actor.org_id, card_id)
            authorize_card(uow, actor, card)
            if card.type == CardType.REVIEW_RESPONSE:
                # Its approval records the response on the review (domain/reputation_service).
                raise CardRefused("Approve a review's response with its Approve response button.")
            if card.awaits_draft and card.is_open:
                raise CardRefused(AWAITS_DRAFT)
            if (
                fingerprint is not None
                and card.draft_fingerprint
                and fingerprint != card.draft_fingerprint
            ):
                raise StaleCard(
                    "This draft changed since this message was shown; it has been refreshed."
                    " Review it again."
                )
            if not decide_card(
                uow,
                card,
                CardState.APPROVED,
                now=now,
                approved_by=actor.user_id,
                approved_at=now,
                blocked_reason=None,
            ):
                raise CardRefused(
                    "Someone else acted on this card at the same moment; nothing was done twice."
                )
            if card.job_id and card.approved_at is None:
                uow.jobs.bump(card.job_id, cards_approved=1)
            uow.commit()
        # From here a crash leaves the card `approved`: the recovery sweep executes it.
        faults.reach("approve.committed")
        if card.sends_email:
            return self._delivery.execute_card(
                actor.org_id, card_id, actor_slack_id=actor.slack_user_id
            )
        return self.complete_human_card(actor, card_id)

    def complete_human_card(self, actor: Actor, card_id: int) -> Card:
        """Mark an approved card whose action is a human's (a call, a portal check) done."""
        now = self._clock.now()
        with self._uow() as uow:
            card = uow.cards.get(actor.org_id, card_id)
            advance_card(uow, actor.org_id, card_id, CardState.EXECUTING, now=now)
            if advance_card(uow, actor.org_id, card_id, CardState.DONE, now=now, executed_at=now):
                # A cadence step done by the rep (a call, a LinkedIn touch): the contact's
                # next step counts from now, and the touch is in their history.
                end_step(uow, card, at=now)
                _record_touch(uow, card, at=now)
            if card.job_id:
                uow.jobs.bump(card.job_id, cards_executed=1)
            uow.commit()
            done = uow.cards.get(actor.org_id, card_id)
        self._presenting.show_card(actor.org_id, card_id, actor_slack_id=actor.slack_user_id)
        if done.job_id:
            self._jobs.finish_job_if_done(actor.org_id, done.job_id)
        return done

    def complete_step(self, actor: Actor, card_id: int) -> Card:
        """Mark a rep's card done from its Done button (a cadence's LinkedIn, call or task
        step, or a task template's card): approved and completed at once. An email card
        is refused: its approval sends the draft shown, through Approve."""
        with self._uow() as uow:
            card = uow.cards.get(actor.org_id, card_id)
            authorize_card(uow, actor, card)
        if card.sends_email:
            raise InvalidInput("This card sends an email: use Approve & send, not Done.")
        return self.approve_card(actor, card_id, fingerprint=None)

    def skip_step(self, actor: Actor, card_id: int) -> Card:
        """Skip a rep's cadence step (a LinkedIn touch, a call, a task): its card is closed
        as rejected, `skipped`, and the contact's cadence goes on to its next step."""
        with self._uow() as uow:
            card = uow.cards.get(actor.org_id, card_id)
            authorize_card(uow, actor, card)
        if card.sends_email or cadence_step_of(card) is None:
            raise InvalidInput(
                "Only a cadence's LinkedIn, call or task step can be skipped; reject this "
                "card instead."
            )
        return self.reject_card(actor, card_id, reason=SKIPPED)

    def edit_card(
        self,
        actor: Actor,
        card_id: int,
        *,
        subject: str,
        body: str,
        approve: bool,
        fingerprint: str | None = None,
    ) -> Card:
        """Save an edited draft, rendered in the sandbox with the contact's values."""
        subject = subject.strip()
        if not subject:
            raise InvalidInput("The subject cannot be empty.", field="subject")
        if "\n" in subject or "\r" in subject:
            raise InvalidInput("The subject must be one line.", field="subject")
        if not body.strip():
            raise InvalidInput("The body cannot be empty.", field="body")
        now = self._clock.now()
        with self._uow() as uow:
            card = uow.cards.get(actor.org_id, card_id)
            authorize_card(uow, actor, card)
            if not card.sends_email:
                raise InvalidInput("Only email cards can be edited.")
            if confirms_opt_out(card.action_payload):
                raise InvalidInput(
                    "The confirmation of an opt-out is a fixed text and cannot be edited; "
                    "reject the card to send nothing, or approve it as it is."
                )
            ctx = (
                uow.contexts.contact_context(actor.org_id, card.contact_id, now=now)
                if card.contact_id
                else None
            )
            rep = uow.users.find(actor.org_id, actor.user_id)
            rep_name, rep_email = (rep.name, rep.email) if rep else (None, None)
        variables = (
            template_variables(
                ctx,
                now=now,
                rep_name=rep_name,
                rep_email=rep_email,
                firm_name="",
                campaign_name=str(card.action_payload.get("campaign_name") or ""),
                step_number=int(card.action_payload.get("step") or 0) + 1,
                unsubscribe_url=self._unsubscribe_url(
                    actor.org_id, ctx.contact_id, email_type_of_step(cadence_step_of(card))
                ),
            )
            if ctx
            else {}
        )
        rendered_subject = render_text(subject, variables, field="subject").strip()
        rendered_body = render_text(body, variables, field="body")
        to = str(card.action_payload.get("to", ""))
        payload = {
            **card.action_payload,
            "subject": rendered_subject,
            "body": rendered_body,
            "edited_by": actor.user_id,
        }
        with self._uow() as uow:
            # The card as it is now: it may have moved on while the draft was rendered.
            current = uow.cards.get(actor.org_id, card_id)
            if not decide_card(
                uow,
                current,
                CardState.IN_REVIEW,
                now=now,
                action_payload=payload,
                draft_fingerprint=draft_fingerprint(
                    to=to, subject=rendered_subject, body=rendered_body
                ),
            ):
                now_card = uow.cards.get(actor.org_id, card_id)
                raise CardRefused(describe_refusal(now_card, CardState.IN_REVIEW))
            uow.commit()
            edited = uow.cards.get(actor.org_id, card_id)
        if approve:
            return self.approve_card(actor, card_id, fingerprint=edited.draft_fingerprint)
        self._presenting.show_card(actor.org_id, card_id, actor_slack_id=actor.slack_user_id)
        return edited

    def reject_card(self, actor: Actor, card_id: int, *, reason: str | None) -> Card:
        """Reject a card with an optional reason."""
        now = self._clock.now()
        reason = (reason or "").strip()[:500] or None
        with self._uow() as uow:
            card = uow.cards.get(actor.org_id, card_id)
            authorize_card(uow, actor, card)
            if not decide_card(
                uow,
                card,
                CardState.REJECTED,
                now=now,
                rejected_reason=reason,
                approved_by=actor.user_id,
            ):
                raise CardRefused(describe_refusal(card, CardState.REJECTED))
            step = cadence_step_of(card)
            if step is not None and card.enrollment_id is not None:
                if card.sends_email:
                    # A rejected email ends the contact's cadence in this job: no later
                    # step goes out behind the rep's "no".
                    uow.cadence.stop(card.enrollment_id, reason=f"step {step + 1} rejected", at=now)
                else:
                    # A rep's step (a call, a LinkedIn touch) rejected is skipped.
                    end_step(uow, card, at=now)
            uow.commit()
            rejected = uow.cards.get(actor.org_id, card_id)
        self._presenting.show_card(actor.org_id, card_id, actor_slack_id=actor.slack_user_id)
        if rejected.job_id:
            self._jobs.finish_job_if_done(actor.org_id, rejected.job_id)
        return rejected


def _record_touch(uow: OutreachUnitOfWork, card: Card, *, at: datetime) -> None:
    """Record, in the caller's unit of work, the touch a done LinkedIn or call step made:
    an event in the contact's engagement history, and their `last_contacted_at`."""
    event = _TOUCHES.get(str(card.action_payload.get("channel") or ""))
    if event is None or card.contact_id is None or cadence_step_of(card) is None:
        return
    record_engagement(
        uow.engagement,
        org_id=card.org_id,
        contact_id=card.contact_id,
        event=event,
        occurred_at=at,
        detail={"card_id": card.id, "job_id": card.job_id, "step": cadence_step_of(card)},
    )
    uow.contexts.touch_contacted(card.org_id, card.contact_id, at=at)
