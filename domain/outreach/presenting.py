"""Presenting cards to humans: what a card's message shows, posting and updating it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from domain import faults
from domain.cadence import Channel
from domain.cards import Card, CardState, CardView
from domain.errors import ExternalServiceError
from domain.jobs import TaskKind
from domain.outreach.common import OutreachDeps, slack_id_of
from domain.ports import ChatNotifier, OutreachUnitOfWork
from domain.reply_routing import NowhereToPost, Posted, plan_routing, post_reply_card

log = logging.getLogger(__name__)


class Presenting:
    """Shows cards in the chat (through the ChatNotifier port), when there is one."""

    def __init__(self, deps: OutreachDeps, *, notifier: ChatNotifier | None = None) -> None:
        self._uow = deps.uow
        self._clock = deps.clock
        self._notifier = notifier

    @property
    def shows_cards(self) -> bool:
        """True when cards get chat messages (a notifier is wired)."""
        return self._notifier is not None

    def queue_posts(
        self, uow: OutreachUnitOfWork, org_id: int, job_id: int, rows: Sequence[dict[str, Any]]
    ) -> None:
        """Queue post_card tasks (rows of step, batch, contact_id, input) in the caller's
        transaction; the posting worker paces them to the chat's rate limit. Nothing is
        queued when there is no chat to show cards in."""
        if self._notifier is None or not rows:
            return
        uow.tasks.add_many(
            org_id, job_id, [{"kind": TaskKind.POST_CARD.value, **row} for row in rows]
        )

    def card_view(
        self, org_id: int, card_id: int, *, actor_slack_id: str | None = None
    ) -> CardView:
        """Return what a chat message shows of a card."""
        now = self._clock.now()
        with self._uow() as uow:
            card = uow.cards.get(org_id, card_id)
            ctx = (
                uow.contexts.contact_context(org_id, card.contact_id, now=now)
                if card.contact_id
                else None
            )
            job = uow.jobs.get(org_id, card.job_id) if card.job_id else None
            owner_slack = slack_id_of(uow, org_id, job.owner_id) if job else None
            assignee = card.action_payload.get("assignee_user_id")
            if isinstance(assignee, int):
                # A card for one person (a review's response or escalation): their DM.
                owner_slack = slack_id_of(uow, org_id, assignee)
            decided_by = card.approved_by
            if card.state == CardState.WITHDRAWN:
                decided_by = job.cancelled_by if job else None
            approver_slack = slack_id_of(uow, org_id, decided_by)
            snoozer = card.action_payload.get("snoozed_by") if card.is_snoozed else None
            snoozer_slack = slack_id_of(uow, org_id, snoozer if isinstance(snoozer, int) else None)
            payload = card.action_payload
            campaign_name = str(payload.get("campaign_name") or "") or (job.name if job else None)
            step_number = int(payload["step"]) + 1 if payload.get("step") is not None else None
            total_steps = int(payload["total_steps"]) if payload.get("total_steps") else None
            emails_before: int | None = None
            step = payload.get("cadence_step")
            if isinstance(step, int) and payload.get("channel") and job and not job.is_inbox:
                # A rep's cadence step: where it stands in the cadence, what came before,
                # and the campaign it belongs to (its payload names none).
                plan = job.parsed_params().plan()
                step_number, total_steps = step + 1, len(plan)
                emails_before = sum(1 for p in plan[:step] if p.channel == Channel.EMAIL)
                if job.campaign_id is not None and not payload.get("campaign_name"):
                    campaign_name = uow.campaigns.get(org_id, job.campaign_id).name
        started = job.started_at if job else None
        replied = bool(ctx and ctx.last_replied_at and started and ctx.last_replied_at >= started)
        return CardView(
            card=card,
            contact_name=ctx.full_name if ctx else None,
            contact_email=ctx.email if ctx else None,
            contact_title=ctx.title if ctx else None,
            company_name=ctx.company_name if ctx else None,
            campaign_name=campaign_name,
            job_name=job.name if job else None,
            step_number=step_number,
            total_steps=total_steps,
            actor_slack_id=actor_slack_id or approver_slack,
            owner_slack_id=owner_slack,
            snoozed_by_slack_id=snoozer_slack,
            contact_phone=ctx.phone if ctx else None,
            emails_before=emails_before,
            replied=replied,
        )

    def show_card(
        self, org_id: int, card_id: int, *, actor_slack_id: str | None = None, post: bool = False
    ) -> str | None:
        """Update a card's message in place; with `post`, post it if it has none yet.

        Only the posting worker posts (`post=True`), so messages go out at Slack's pace
        and in order; a transition before the first post is shown when it is posted.
        Returns the reason when Slack could not show the card (also kept on the card).
        """
        if self._notifier is None:
            return None
        view = self.card_view(org_id, card_id, actor_slack_id=actor_slack_id)
        try:
            if view.card.slack_message_ts:
                self._notifier.update_card(view)
                return None
            if not post or view.card.state == CardState.WITHDRAWN:
                return None
            routed: Posted | None = None
            if view.card.inbound_email_id is not None:
                routed = self._post_reply_card(self._notifier, view)
                channel_id, ts = routed.channel_id, routed.ts
            else:
                with self._uow() as uow:
                    job = uow.jobs.get(org_id, view.card.job_id) if view.card.job_id else None
                channel = job.review_channel_id if job else None
                named = view.card.action_payload.get("post_channel_id")
                if isinstance(named, str) and named:
                    channel = named  # a review's response card: the reputation channel
                channel_id, ts = self._post_with_fallback(self._notifier, view, channel)
            # A crash here posts the card again when its post_card task is claimed again
            # (Slack has no idempotency key): at worst a second message, never a lost one.
            faults.reach("post.sent")
        except ExternalServiceError as exc:
            log.warning("card message failed", extra={"card_id": card_id, "reason": exc.message})
            # With nowhere to post, the card waits in the App Home: the reason is its note.
            note = exc.message if isinstance(exc, NowhereToPost) else None
            self._note_slack_error(org_id, card_id, exc.message, routing_note=note)
            return exc.message
        with self._uow() as uow:
            uow.cards.set_message(card_id, channel=channel_id, ts=ts)
            if routed is not None:
                # Read again: the payload may have changed while the message was posted.
                payload = {
                    **uow.cards.get(org_id, card_id).action_payload,
                    "routed_to": routed.routed_to.value,
                    "routing_note": routed.routing_note,
                }
                payload.pop("slack_error", None)
                uow.cards.update_fields(
                    org_id, card_id, now=self._clock.now(), action_payload=payload
                )
            uow.commit()
            now_card = uow.cards.get(org_id, card_id)
        faults.reach("post.recorded")
        if now_card.state != view.card.state:
            # It moved on while its message was posted (withdrawn by a cancellation, say):
            # the transition found no message to update, so update it now.
            return self.show_card(org_id, card_id, actor_slack_id=actor_slack_id)
        return None

    def post_anew(
        self, org_id: int, card_id: int, *, channel: str | None
    ) -> tuple[str, str] | None:
        """Post a card coming back from its snooze as a new message (so that it shows up
        again) in `channel`, its message's channel, or its owner's DM when that channel
        refuses or there is none; return (channel id, ts), None when there is no chat or
        nowhere to post. The old message is left as it is; the caller records the new one.
        Raise ExternalServiceError when Slack refused.
        """
        if self._notifier is None:
            return None
        view = self.card_view(org_id, card_id)
        # Shown as it is once the snooze ends: the caller clears `snoozed_until` after.
        view = replace(view, card=replace(view.card, snoozed_until=None), snoozed_by_slack_id=None)
        if channel is None and not view.owner_slack_id:
            return None
        return self._post_with_fallback(self._notifier, view, channel)

    def retire_message(self, org_id: int, *, channel: str, ts: str, text: str) -> None:
        """Replace a card's former message with one line, no buttons (it was posted again);
        a failure is logged: the card itself lives on in its new message."""
        if self._notifier is None:
            return
        try:
            self._notifier.replace_message(org_id, channel=channel, ts=ts, text=text)
        except ExternalServiceError as exc:
            log.warning(
                "a card's former message was not replaced",
                extra={"channel": channel, "ts": ts, "reason": exc.message},
            )

    def post_bulk(self, org_id: int, job_id: int, batch: int) -> str | None:
        """Post one message for a batch's drafts, with "Approve all N" behind a confirm.

        Returns the reason when Slack refused it.
        """
        if self._notifier is None:
            return None
        with self._uow() as uow:
            job = uow.jobs.get(org_id, job_id)
            cards: list[Card] = uow.cards.list_for_batch(
                org_id, job_id, batch, states=[CardState.IN_REVIEW]
            )
            owner_slack = slack_id_of(uow, org_id, job.owner_id)
        if not cards:
            return None
        try:
            self._notifier.post_bulk(
                org_id,
                job_name=job.name,
                job_id=job_id,
                batch=batch,
                cards=cards,
                channel=job.review_channel_id,
                owner_slack_id=owner_slack,
            )
        except ExternalServiceError as exc:
            log.warning("bulk message failed", extra={"job_id": job_id, "reason": exc.message})
            return exc.message
        return None

    def _post_with_fallback(
        self, notifier: ChatNotifier, view: CardView, channel: str | None
    ) -> tuple[str, str]:
        try:
            return notifier.post_card(view, channel=channel, owner_slack_id=view.owner_slack_id)
        except ExternalServiceError as exc:
            if exc.retryable or channel is None or not view.owner_slack_id:
                raise
            # The review channel is gone or closed to the bot: the owner still gets the card.
            log.warning(
                "review channel refused the card; posting to the owner's DM",
                extra={"card_id": view.card.id, "reason": exc.message},
            )
            self._note_slack_error(view.card.org_id, view.card.id, exc.message)
            return notifier.post_card(view, channel=None, owner_slack_id=view.owner_slack_id)

    def _post_reply_card(self, notifier: ChatNotifier, view: CardView) -> Posted:
        """Post a card made from an inbound message where domain/reply_routing.py says: the
        DM of the rep who owns the thread, the campaign's review channel, the triage
        channel, falling back past a channel Salesbot is not in (the card says so)."""
        card = view.card
        org_id = card.org_id
        with self._uow() as uow:
            job = uow.jobs.get(org_id, card.job_id) if card.job_id else None
            sender = card.action_payload.get("sender_user_id")
            rep = sender if isinstance(sender, int) else (job.owner_id if job else None)
            rep_slack = slack_id_of(uow, org_id, rep)
            review = job.review_channel_id if job is not None and not job.is_inbox else None
            triage = uow.orgs.triage_channel(org_id)
        plan = plan_routing(
            rep_slack_id=rep_slack,
            owner_slack_id=view.owner_slack_id,
            review_channel_id=review,
            triage_channel_id=triage,
        )
        posted = post_reply_card(
            lambda shown, place: notifier.post_card(
                shown, channel=place.channel_id, owner_slack_id=place.slack_user_id
            ),
            view,
            plan,
        )
        log.info(
            "reply card posted",
            extra={"card_id": card.id, "routed_to": posted.routed_to.value},
        )
        return posted

    def _note_slack_error(
        self, org_id: int, card_id: int, reason: str, *, routing_note: str | None = None
    ) -> None:
        with self._uow() as uow:
            card = uow.cards.get(org_id, card_id)
            payload = {**card.action_payload, "slack_error": reason}
            if routing_note is not None:
                payload["routing_note"] = routing_note
            uow.cards.update_fields(org_id, card_id, now=self._clock.now(), action_payload=payload)
            uow.commit()
