"""Snoozing: a rep puts a card aside until later; at that time it comes back as a new
message, so it shows up again at the bottom of the rep's DM or channel.

A snooze is `cards.snoozed_until`. The snooze sweep (jobs/snooze.py) claims the cards
whose snooze ended (`CardRepository.claim_due_snoozed` writes a lease into the column),
posts each again, then records the new message and clears the snooze in one unit of
work. A process that dies between those steps leaves the lease in the column: the card
is claimed again when it runs out, so it comes back at worst twice, never not at all.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from domain import faults
from domain.cards import OPEN_STATES, Card, SnoozedCard
from domain.errors import ExternalServiceError, InvalidInput
from domain.outreach.common import Actor, CardRefused, OutreachDeps, authorize_card
from domain.outreach.presenting import Presenting

log = logging.getLogger(__name__)

#: What a card's former message says once the card was posted again.
BACK_NOTE = "⏰ Back from snooze: this card was posted again below."


def snooze_refusal(card: Card) -> str:
    """Say why a card that is no longer waiting for anyone cannot be snoozed."""
    state = card.state.value.replace("_", " ")
    return f"This card is already {state}; only a card waiting for you can be snoozed."


class Snoozing:
    """Snooze and unsnooze cards; bring the cards whose snooze ended back."""

    def __init__(
        self,
        deps: OutreachDeps,
        *,
        presenting: Presenting,
        lease: timedelta = timedelta(minutes=5),
    ) -> None:
        self._uow = deps.uow
        self._clock = deps.clock
        self._presenting = presenting
        self._lease = lease

    def snooze_card(self, actor: Actor, card_id: int, *, until: datetime) -> Card:
        """Snooze a card waiting for a human until `until`; its message says so."""
        now = self._clock.now()
        if until <= now:
            raise InvalidInput("A snooze must end in the future; pick a later time.")
        with self._uow() as uow:
            card = uow.cards.get(actor.org_id, card_id)
            authorize_card(uow, actor, card)
            if not card.is_open:
                raise CardRefused(snooze_refusal(card))
            payload = {**card.action_payload, "snoozed_by": actor.user_id}
            # Compare-and-set: a card decided since it was read is not snoozed.
            if not uow.cards.snooze(
                actor.org_id,
                card_id,
                until=until,
                expected=OPEN_STATES,
                now=now,
                action_payload=payload,
            ):
                raise CardRefused(snooze_refusal(uow.cards.get(actor.org_id, card_id)))
            uow.commit()
            snoozed = uow.cards.get(actor.org_id, card_id)
        log.info("card snoozed", extra={"card_id": card_id, "until": until.isoformat()})
        self._presenting.show_card(actor.org_id, card_id, actor_slack_id=actor.slack_user_id)
        return snoozed

    def unsnooze_card(self, actor: Actor, card_id: int) -> Card:
        """End a card's snooze now; its message shows the card again, in place."""
        now = self._clock.now()
        with self._uow() as uow:
            card = uow.cards.get(actor.org_id, card_id)
            authorize_card(uow, actor, card)
            if not uow.cards.unsnooze(actor.org_id, card_id, now=now):
                raise CardRefused("This card is not snoozed; it is already back.")
            uow.commit()
            back = uow.cards.get(actor.org_id, card_id)
        self._presenting.show_card(actor.org_id, card_id, actor_slack_id=actor.slack_user_id)
        return back

    def bring_back_due(self, *, limit: int = 50) -> int:
        """Post the cards whose snooze ended again, as new messages; return how many were
        claimed (0: none was due)."""
        now = self._clock.now()
        with self._uow() as uow:
            claimed = uow.cards.claim_due_snoozed(
                now=now, lease_until=now + self._lease, limit=limit
            )
            uow.commit()
        if claimed:
            faults.reach("snooze.claimed")
        for item in claimed:
            self._bring_back(item)
        return len(claimed)

    def _bring_back(self, item: SnoozedCard) -> None:
        if item.state not in OPEN_STATES:
            # Decided while it was snoozed (approved from the App Home, withdrawn): its
            # message already says so; only the snooze is left to clear.
            self._end(item, posted=None)
            return
        try:
            posted = self._presenting.post_anew(
                item.org_id, item.card_id, channel=item.slack_channel_id
            )
        except ExternalServiceError as exc:
            log.warning(
                "a snoozed card could not be posted again",
                extra={"card_id": item.card_id, "reason": exc.message},
            )
            if exc.retryable:
                return  # the claim's lease runs out and the next sweep tries again
            # Slack refuses for good: the card waits in the App Home, with the reason.
            self._end(item, posted=None, slack_error=exc.message)
            return
        # A crash here posts the card again once the lease is over: a second message at
        # worst, never a lost one (Slack has no idempotency key).
        faults.reach("snooze.posted")
        self._end(item, posted=posted)
        old = (item.slack_channel_id, item.slack_message_ts)
        if posted is not None and item.slack_channel_id and item.slack_message_ts:
            if old != posted:
                self._presenting.retire_message(
                    item.org_id,
                    channel=item.slack_channel_id,
                    ts=item.slack_message_ts,
                    text=BACK_NOTE,
                )

    def _end(
        self,
        item: SnoozedCard,
        *,
        posted: tuple[str, str] | None,
        slack_error: str | None = None,
    ) -> None:
        """Record the new message and clear the snooze, in one unit of work; update the
        new message when the card changed since it was posted."""
        now = self._clock.now()
        with self._uow() as uow:
            if posted is not None:
                uow.cards.set_message(item.card_id, channel=posted[0], ts=posted[1])
            if slack_error is not None:
                card = uow.cards.get(item.org_id, item.card_id)
                payload = {**card.action_payload, "slack_error": slack_error}
                uow.cards.update_fields(item.org_id, item.card_id, now=now, action_payload=payload)
            ended = uow.cards.end_snooze(
                item.org_id, item.card_id, claimed_until=item.claimed_until, now=now
            )
            uow.commit()
            card = uow.cards.get(item.org_id, item.card_id)
        log.info("snoozed card back", extra={"card_id": item.card_id, "posted": bool(posted)})
        if posted is not None and (not ended or card.state != item.state):
            # Snoozed again, unsnoozed or decided while it was posted: show it as it is.
            self._presenting.show_card(item.org_id, item.card_id)
