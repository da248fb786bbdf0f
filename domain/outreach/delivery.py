"""Delivery: send an approved email card exactly once and make the card follow its send."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Final

from domain import faults
from domain.cadence import NEW_ORDER
from domain.cards import Card, CardState, CardType
from domain.email_preferences import LABELS, email_type_of_step, stop_reason
from domain.errors import ExternalServiceError, NotFound
from domain.jobs import Job, JobStatus
from domain.last_look import (
    RECHECK_AFTER,
    LookResult,
    is_follow_up,
    waiting_reason,
    withdrawn_reason,
)
from domain.mail import OutgoingEmail, SendOutcome, SendStatus
from domain.outreach.common import (
    OutreachDeps,
    advance_card,
    cadence_step_of,
    end_step,
    not_sent,
)
from domain.outreach.jobs import Jobs
from domain.outreach.presenting import Presenting
from domain.ports import Mailer, OutreachUnitOfWork, ReplyLookout

log = logging.getLogger(__name__)

#: What an email card must hold to be sent, and how a reason names each.
_DRAFTED: Final = {"to": "recipient", "subject": "subject", "body": "body"}


def take_last_look(
    lookout: ReplyLookout,
    org_id: int,
    *,
    sender_user_id: int | None,
    contact_email: str,
    thread_id: str | None,
    since: datetime | None,
    context: Mapping[str, object],
) -> LookResult | None:
    """Look in the sender's mailbox for a reply Salesbot missed (domain/last_look.py).

    None when there was nothing to look at (no email of the cadence reached the contact)
    or the look failed: a look that did not happen never holds a step, it is logged and
    the step runs. `context` names the task or card in the logs (ids only, never bodies).
    """
    if thread_id is None and since is None:
        return None
    try:
        result = lookout.look(
            org_id,
            sender_user_id=sender_user_id,
            contact_email=contact_email,
            thread_id=thread_id,
            since=since,
        )
    except ExternalServiceError as exc:
        log.warning(
            "last look before a follow-up failed; the step runs without it",
            extra={**context, "org_id": org_id, "reason": exc.message},
        )
        return None
    if result.found:
        log.info(
            "last look before a follow-up",
            extra={
                **context,
                "org_id": org_id,
                "found": result.found,
                "stored": result.stored,
                "unread": result.unread,
                "holds_step": result.holds_step,
            },
        )
    return result


def sender_of(card: Card, job: Job | None) -> int | None:
    """The user whose mailbox sends a card's email: the job's owner (the approver of a card
    without a job), or the mailbox that received the message a reply card answers."""
    sender = job.owner_id if job else card.approved_by
    owner = card.action_payload.get("sender_user_id")
    if isinstance(owner, int) and not isinstance(owner, bool):
        # From the mailbox that received the message (domain/reply_routing.py).
        sender = owner
    return sender


class Delivery:
    """Executes approved email cards through the Mailer port and records their outcome."""

    def __init__(
        self,
        deps: OutreachDeps,
        *,
        jobs: Jobs,
        presenting: Presenting,
        mailer: Mailer | None = None,
        lookout: ReplyLookout | None = None,
    ) -> None:
        self._uow = deps.uow
        self._clock = deps.clock
        self._jobs = jobs
        self._presenting = presenting
        self._mailer = mailer
        self._lookout = lookout

    def execute_card(self, org_id: int, card_id: int, *, actor_slack_id: str | None = None) -> Card:
        """Send an approved email card exactly once: approved → executing is a compare-and-set.

        A cadence follow-up first takes its last look in the sender's mailbox (outside any
        transaction: Gmail is slow): a reply found there that Salesbot had missed
        withdraws the card instead, and its enrollment waits for the reply to be read.
        """
        replied = self._look_before_sending(org_id, card_id)
        now = self._clock.now()
        with self._uow() as uow:
            card = uow.cards.get(org_id, card_id)
            paused = self._job_paused(uow, card)
            if paused is not None:
                # A paused job sends nothing, whoever approves: the card waits, blocked
                # with the reason, for a Retry once the job is resumed.
                if advance_card(
                    uow, org_id, card_id, CardState.BLOCKED, now=now, blocked_reason=paused
                ):
                    uow.commit()
                    self._presenting.show_card(org_id, card_id, actor_slack_id=actor_slack_id)
                return uow.cards.get(org_id, card_id)
            stopped = self._cadence_stopped(uow, card)
            if stopped is not None:
                replied = None  # the enrollment ended or paused anyway: nothing to wait for
            elif replied is not None:
                stopped = withdrawn_reason(replied)
            if stopped is not None:
                # The last look before a follow-up leaves: the contact replied, opted out
                # or bounced since the card was drafted (the stop rules, checked again), or
                # Gmail holds a reply Salesbot had not read.
                if advance_card(
                    uow, org_id, card_id, CardState.WITHDRAWN, now=now, withdrawn_reason=stopped
                ):
                    step = cadence_step_of(card)
                    if replied is not None and card.enrollment_id is not None and step is not None:
                        # The step did not run: the next tick judges it again once the
                        # pipeline has read the reply (a reply stops it, an OOO pauses it).
                        uow.cadence.defer(
                            card.enrollment_id,
                            step=step,
                            until=now + RECHECK_AFTER,
                            reason=waiting_reason(replied),
                        )
                    uow.commit()
                    self._presenting.show_card(org_id, card_id, actor_slack_id=actor_slack_id)
                    if card.job_id:
                        self._jobs.finish_job_if_done(org_id, card.job_id)
                return uow.cards.get(org_id, card_id)
            if not advance_card(uow, org_id, card_id, CardState.EXECUTING, now=now):
                return uow.cards.get(org_id, card_id)
            job = uow.jobs.get(org_id, card.job_id) if card.job_id else None
            thread_id = (
                uow.contexts.thread_to_continue(card.enrollment_id) if card.enrollment_id else None
            )
            uow.commit()
        # From here a crash leaves the card `executing` with no outbox row: the recovery
        # sweep puts it back to `approved` (nothing can have been sent) and runs it again.
        faults.reach("execute.committed")
        outcome = self._send(card, job, thread_id)
        return (
            self.finish_send(
                org_id, outcome.email_send_id, card_id, outcome, actor_slack_id=actor_slack_id
            )
            or card
        )

    def finish_send(
        self,
        org_id: int,
        email_send_id: int,
        card_id: int | None,
        outcome: SendOutcome,
        *,
        actor_slack_id: str | None = None,
    ) -> Card | None:
        """Make a card follow the outcome of its send, and show it.

        Called by execute_card with the mailer's answer, and by the mailer's outbox when a
        queued or unconfirmed email finally went out or failed. Each move is a
        compare-and-set from EXECUTING and the counters move only with it, so a repeat
        (both callers, or a retry) does nothing twice.
        """
        if card_id is None:
            return None
        now = self._clock.now()
        with self._uow() as uow:
            card = uow.cards.get(org_id, card_id)
            if outcome.status == SendStatus.SENT:
                if advance_card(
                    uow,
                    org_id,
                    card_id,
                    CardState.DONE,
                    now=now,
                    executed_at=now,
                    blocked_reason=None,
                ):
                    if card.job_id:
                        uow.jobs.bump(card.job_id, cards_executed=1, emails_sent=1)
                        # A card that failed before and went out on a retry is no longer
                        # the job's problem: its status must not say it was not sent.
                        uow.jobs.clear_error(card.job_id, starting=not_sent(card_id))
                    if card.contact_id:
                        # The contact's engagement history got the send from the outbox,
                        # in the transaction that recorded it sent (domain/outbox.py).
                        uow.contexts.touch_contacted(org_id, card.contact_id, at=now)
                    if card.enrollment_id and outcome.gmail_thread_id:
                        uow.enrollments.set_thread(card.enrollment_id, outcome.gmail_thread_id)
                    # The step ended: the contact's next step counts its gap from now.
                    end_step(uow, card, at=now)
            elif outcome.status == SendStatus.FAILED:
                detail = outcome.detail or "sending failed"
                # Only a card whose send was running: one blocked for another reason, or
                # put back to approved by the recovery sweep, is not this send's to block.
                if (
                    advance_card(
                        uow,
                        org_id,
                        card_id,
                        CardState.BLOCKED,
                        now=now,
                        only_from=CardState.EXECUTING,
                        blocked_reason=detail,
                    )
                    and card.job_id
                ):
                    uow.jobs.note_error(card.job_id, f"{not_sent(card_id)} {detail}")
            elif card.state == CardState.EXECUTING:
                uow.cards.update_fields(org_id, card_id, now=now, blocked_reason=outcome.detail)
            uow.commit()
            result = uow.cards.get(org_id, card_id)
        faults.reach("send.finished")
        self._presenting.show_card(org_id, card_id, actor_slack_id=actor_slack_id)
        if result.job_id:
            self._jobs.finish_job_if_done(org_id, result.job_id)
        return result

    def _look_before_sending(self, org_id: int, card_id: int) -> str | None:
        """Take the last look before a follow-up's email leaves; return the contact's
        address when it found a reply the pipeline has yet to read, else None."""
        if self._lookout is None:
            return None
        now = self._clock.now()
        with self._uow() as uow:
            card = uow.cards.get(org_id, card_id)
            contact_email = str(card.action_payload.get("to") or "")
            if (
                card.state != CardState.APPROVED
                or not card.sends_email
                or card.enrollment_id is None
                or not contact_email
                or not is_follow_up(cadence_step_of(card))
                or self._cadence_stopped(uow, card) is not None
            ):
                # Not a follow-up on its way, or withdrawn anyway: Gmail need not be asked.
                return None
            job = uow.jobs.get(org_id, card.job_id) if card.job_id else None
            thread_id = uow.contexts.thread_to_continue(card.enrollment_id)
            since = _last_sent_to(uow, org_id, card.contact_id, now=now)
        result = take_last_look(
            self._lookout,
            org_id,
            sender_user_id=sender_of(card, job),
            contact_email=contact_email,
            thread_id=thread_id,
            since=since,
            context={"card_id": card_id, "enrollment_id": card.enrollment_id},
        )
        return contact_email if result is not None and result.holds_step else None

    def _cadence_stopped(self, uow: OutreachUnitOfWork, card: Card) -> str | None:
        """Why a cadence step's email must not leave now, or None: the stop rules checked
        again at the send (its enrollment stopped or paused, its campaign ended, the
        contact turned this type of email off, or the contact's client ordered again
        since the job started: a win, which stops the cadence here)."""
        step = cadence_step_of(card)
        if step is None or card.enrollment_id is None:
            return None
        state = uow.cadence.enrollment_state(card.enrollment_id)
        if state is not None and state[0] not in ("active", "completed"):
            status, reason = state
            why = reason or status
            return f"Not sent: the cadence {status} ({why}) after this step was drafted."
        if card.job_id is None:
            return None
        job = uow.jobs.get(card.org_id, card.job_id)
        now = self._clock.now()
        if job.campaign_id is not None:
            campaign = uow.campaigns.get(card.org_id, job.campaign_id)
            if campaign.status.value in ("completed", "archived"):
                return f"Not sent: the campaign is {campaign.status.value}."
            if campaign.end_date is not None and now.date() > campaign.end_date:
                return f"Not sent: the campaign ended on {campaign.end_date.isoformat()}."
        if card.contact_id is not None:
            facts = uow.cadence.contact_facts(card.org_id, [card.contact_id], now=now)
            contact = facts.get(card.contact_id)
            email_type = email_type_of_step(step)
            if contact is not None and not contact.email_preferences.allows(email_type):
                # The contact turned this type off after the step was drafted: the
                # cadence ends for them as the tick would have ended it.
                uow.cadence.stop(card.enrollment_id, reason=stop_reason(email_type), at=now)
                return (
                    f"Not sent: {contact.email} unsubscribed from {LABELS[email_type]} after"
                    " this step was drafted; the cadence stopped for them."
                )
            ordered = contact.client_last_order_at if contact is not None else None
            started = job.started_at or job.created_at
            if ordered is not None and ordered >= started:
                uow.cadence.stop(card.enrollment_id, reason=NEW_ORDER, at=now)
                return (
                    f"Not sent: their company ordered again on {ordered.date().isoformat()}, "
                    "after the campaign started. The cadence stopped: a win."
                )
        return None

    @staticmethod
    def _job_paused(uow: OutreachUnitOfWork, card: Card) -> str | None:
        """Why a cadence step's email waits (its job is paused), or None."""
        if cadence_step_of(card) is None or card.job_id is None:
            return None
        job = uow.jobs.get(card.org_id, card.job_id)
        if job.status != JobStatus.PAUSED:
            return None
        why = f" ({job.last_error})" if job.last_error else ""
        return (
            f"Not sent: job #{job.id} is paused{why}. Resume it (`/job resume {job.id}`), "
            "then Retry."
        )

    def _send(self, card: Card, job: Job | None, thread_id: str | None) -> SendOutcome:
        payload = card.action_payload
        if self._mailer is None:
            return SendOutcome(
                status=SendStatus.FAILED,
                email_send_id=0,
                message_id="",
                detail="No mailbox is connected: connect Gmail from the App Home, then Retry.",
            )
        missing = [word for key, word in _DRAFTED.items() if not payload.get(key)]
        if missing:
            listed = (
                ", ".join(missing[:-1]) + " or " + missing[-1] if len(missing) > 1 else missing[0]
            )
            # An answer approved before its draft existed: block it with the reason rather
            # than leave it executing.
            return SendOutcome(
                status=SendStatus.FAILED,
                email_send_id=0,
                message_id="",
                detail=(
                    f"Nothing was sent: the card has no {listed} (its answer was "
                    "never drafted). Answer them from Gmail, then reject this card."
                ),
            )
        answers = card.answers_inbound or card.type == CardType.REPLY_TO_EMAIL
        sender = sender_of(card, job)
        if answers:
            # An answer to a contact's reply (a reply card, a meeting's confirmation): in
            # their thread, a personal email (no List-Unsubscribe, no footer link: they
            # wrote to the rep, not to a list).
            thread_id = str(payload.get("gmail_thread_id") or "") or thread_id
        email = OutgoingEmail(
            org_id=card.org_id,
            to_email=str(payload["to"]),
            to_name=str(payload.get("to_name") or "") or None,
            subject=str(payload["subject"]),
            body_text=str(payload["body"]),
            in_reply_to=str(payload.get("in_reply_to") or "") or None if answers else None,
            references=tuple(str(r) for r in payload.get("references") or ()) if answers else (),
            campaign_email=not answers,
            email_type=email_type_of_step(cadence_step_of(card), answers_contact=answers),
            sender_user_id=sender,
            card_id=card.id,
            job_id=card.job_id,
            campaign_id=job.campaign_id if job else None,
            enrollment_id=card.enrollment_id,
            contact_id=card.contact_id,
            thread_id=thread_id,
        )
        try:
            return self._mailer.send(email)
        except ExternalServiceError as exc:
            return SendOutcome(
                status=SendStatus.FAILED, email_send_id=0, message_id="", detail=exc.message
            )


def _last_sent_to(
    uow: OutreachUnitOfWork, org_id: int, contact_id: int | None, *, now: datetime
) -> datetime | None:
    """When the contact was last emailed (the last look reads their mail since then)."""
    if contact_id is None:
        return None
    try:
        return uow.contexts.contact_context(org_id, contact_id, now=now).last_contacted_at
    except NotFound:
        return None
