"""Referrals: enroll the person a reply named in the campaign the reply answered (issue 12
item 6).

A referral card (`create_task`, `reply_action` enroll_referral) carries `referral`
(docs/reply-cards.md): the person `domain.reply_actions.place_referral` found or added as a
contact, and the campaign of the send answered. "Enroll <name> in <campaign>" enrolls them in
that send's job and queues the draft of their first email, which becomes a normal outreach
card; the referral card is done with `enrolled_job_id` set. A referral written without an
address is enrolled with the address the rep gives (found, or added as a contact of the
sender's client).

Enrolling happens once: the card leaves review by compare-and-set, an enrollment is unique
per job and contact, and a click on a card already enrolled says so and does nothing.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from typing import Any, Final

from domain.cards import OPEN_STATES, Card, CardState, describe_refusal
from domain.contacts import normalize_email
from domain.errors import InvalidInput
from domain.jobs import TERMINAL_JOB_STATES, Job, JobStatus
from domain.outreach.common import (
    Actor,
    CardRefused,
    OutreachDeps,
    advance_card,
    authorize_card,
    decide_card,
)
from domain.outreach.jobs import first_step_tasks
from domain.outreach.presenting import Presenting
from domain.ports import OutreachUnitOfWork
from domain.reply_actions import find_or_add_person

log = logging.getLogger(__name__)

#: An address as a rep types it: one @, no spaces or brackets, a dot in the domain.
_ADDRESS: Final = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[^@\s<>(),;:\"\[\]]+\.[^@\s<>(),;:\"\[\]]+$")
MAX_ADDRESS: Final = 320
MAX_NAME: Final = 120


def check_address(raw: str) -> str:
    """Return a typed address as contacts keep it, or raise InvalidInput saying why not."""
    address = raw.strip()
    if not address:
        raise InvalidInput("Type their email address.", field="email")
    if len(address) > MAX_ADDRESS or not _ADDRESS.match(address):
        raise InvalidInput(
            f"“{address[:80]}” is not an email address; type one such as karen@lender.com.",
            field="email",
        )
    return normalize_email(address)


@dataclass(frozen=True)
class Referral:
    """A referral card's `referral`, as enrolling reads it."""

    card_id: int
    email: str | None
    name: str | None
    role: str | None
    contact_id: int | None
    campaign_id: int | None
    campaign_name: str | None
    enrolled_job_id: int | None
    words: str
    #: Who wrote the reply that named them.
    referrer: str

    @classmethod
    def of(cls, card: Card) -> Referral:
        """Read a card's referral, or raise InvalidInput when the card names no one."""
        raw = card.action_payload.get("referral")
        if not isinstance(raw, dict):
            raise InvalidInput("This card names no one to enroll.")
        payload = card.action_payload

        def text(key: str) -> str | None:
            value = raw.get(key)
            return str(value) if value else None

        def number(key: str) -> int | None:
            value = raw.get(key)
            return int(value) if isinstance(value, int) and not isinstance(value, bool) else None

        return cls(
            card_id=card.id,
            email=text("email"),
            name=text("name"),
            role=text("role"),
            contact_id=number("contact_id"),
            campaign_id=number("campaign_id"),
            campaign_name=text("campaign_name"),
            enrolled_job_id=number("enrolled_job_id"),
            words=str(raw.get("words") or ""),
            referrer=str(payload.get("from_name") or payload.get("from_email") or "The sender"),
        )

    @property
    def label(self) -> str:
        """How a sentence names them: their name, else their address."""
        return self.name or self.email or "the person they named"

    @property
    def needs_address(self) -> bool:
        """True when the rep must give their address before they can be enrolled."""
        return self.email is None and self.enrolled_job_id is None

    def as_payload(self) -> dict[str, Any]:
        """The card's `referral` (docs/reply-cards.md)."""
        return {
            "email": self.email,
            "name": self.name,
            "role": self.role,
            "contact_id": self.contact_id,
            "campaign_id": self.campaign_id,
            "campaign_name": self.campaign_name,
            "enrolled_job_id": self.enrolled_job_id,
            "words": self.words,
        }


@dataclass(frozen=True)
class Enrolled:
    """What a click on "Enroll" did, and the sentence that tells the rep."""

    card: Card
    job_id: int
    contact_id: int | None
    #: True when nothing was done (enrolled before): the message says so.
    already: bool
    message: str


class Referrals:
    """Enrolls the people replies name, from their referral cards."""

    def __init__(self, deps: OutreachDeps, *, presenting: Presenting) -> None:
        self._uow = deps.uow
        self._clock = deps.clock
        self._presenting = presenting

    def referral(self, actor: Actor, card_id: int) -> Referral:
        """Return a referral card's referral (the actor may act on the card)."""
        with self._uow() as uow:
            card = uow.cards.get(actor.org_id, card_id)
            authorize_card(uow, actor, card)
        return Referral.of(card)

    def enroll(
        self, actor: Actor, card_id: int, *, email: str | None = None, name: str | None = None
    ) -> Enrolled:
        """Enroll the person a referral card names in the campaign job of the send the
        reply answered, and queue the draft of their first email.

        `email` and `name`: what the rep typed for a referral written without an address.
        Refused with the reason when the card is decided, answers no campaign, its job has
        finished, or the person opted out or bounced. A card already enrolled is left as it
        is (`already`).
        """
        address = check_address(email) if email is not None else None
        typed_name = " ".join((name or "").split())[:MAX_NAME] or None
        now = self._clock.now()
        with self._uow() as uow:
            card = uow.cards.get(actor.org_id, card_id)
            authorize_card(uow, actor, card)
            referral = Referral.of(card)
            if referral.enrolled_job_id is not None:
                return _already(card, referral)
            if card.state not in OPEN_STATES:
                raise CardRefused(describe_refusal(card, CardState.APPROVED))
            address = address or referral.email
            if address is None:
                raise InvalidInput(
                    f"{referral.referrer} named no address for {referral.label}; type it in the "
                    "form that “Enroll” opens.",
                    field="email",
                )
            job = _campaign_job(uow, card, referral)
            person = find_or_add_person(
                uow.reply_actions,
                actor.org_id,
                email=address,
                name=typed_name or referral.name,
                role=referral.role,
                client_id=card.client_id,
                at=now,
            )
            refusal = person.refusal()
            if refusal is not None:
                raise InvalidInput(refusal)
            if not decide_card(
                uow, card, CardState.APPROVED, now=now, approved_by=actor.user_id, approved_at=now
            ):
                raise CardRefused(
                    "Someone else acted on this card at the same moment; nothing was done twice."
                )
            enrolled = uow.enrollments.add_many(actor.org_id, job.id, [person.id], next_due_at=None)
            if enrolled:
                rows = first_step_tasks(
                    job.parsed_params(),
                    contact_id=person.id,
                    enrollment_id=enrolled[person.id],
                    batch=uow.tasks.next_batch(actor.org_id, job.id),
                )
                uow.jobs.bump(job.id, total_tasks=uow.tasks.add_many(actor.org_id, job.id, rows))
            known = person.name if person.name != person.email else None
            done = replace(
                referral,
                email=person.email,
                name=typed_name or referral.name or known,
                contact_id=person.id,
                enrolled_job_id=job.id,
            )
            payload = {**card.action_payload, "referral": done.as_payload()}
            advance_card(uow, actor.org_id, card_id, CardState.EXECUTING, now=now)
            advance_card(
                uow,
                actor.org_id,
                card_id,
                CardState.DONE,
                now=now,
                executed_at=now,
                action_payload=payload,
            )
            if card.job_id is not None:
                uow.jobs.bump(card.job_id, cards_approved=1, cards_executed=1)
            uow.commit()
            finished = uow.cards.get(actor.org_id, card_id)
        log.info(
            "referral enrolled",
            extra={"card_id": card_id, "job_id": job.id, "contact_id": person.id},
        )
        self._presenting.show_card(actor.org_id, card_id, actor_slack_id=actor.slack_user_id)
        campaign = _campaign_words(referral)
        if not enrolled:
            message = (
                f"{done.label} was already enrolled in {campaign} (job #{job.id}); no second "
                "first email was queued."
            )
        else:
            message = (
                f"✅ Enrolled {done.label} in {campaign} (job #{job.id}); their first email "
                "will be drafted as a card for review."
            )
            if job.status == JobStatus.PAUSED:
                message += " The job is paused: the draft comes when it resumes."
        return Enrolled(
            card=finished, job_id=job.id, contact_id=person.id, already=False, message=message
        )


def _campaign_words(referral: Referral) -> str:
    return f"“{referral.campaign_name}”" if referral.campaign_name else "the campaign"


def _already(card: Card, referral: Referral) -> Enrolled:
    job_id = referral.enrolled_job_id or 0
    return Enrolled(
        card=card,
        job_id=job_id,
        contact_id=referral.contact_id,
        already=True,
        message=(
            f"{referral.label} is already enrolled in {_campaign_words(referral)} "
            f"(job #{job_id}); nothing more was done."
        ),
    )


def _campaign_job(uow: OutreachUnitOfWork, card: Card, referral: Referral) -> Job:
    """The job of the campaign the reply answered, still able to take a contact."""
    if referral.campaign_id is None or card.job_id is None:
        raise InvalidInput(
            f"{referral.referrer}'s reply answers no campaign email, so there is no campaign "
            f"to enroll {referral.label} in; add them to a campaign's audience and launch it."
        )
    job = uow.jobs.get(card.org_id, card.job_id)
    if job.campaign_id != referral.campaign_id:
        raise InvalidInput(
            f"This card is not in the job of {_campaign_words(referral)}; add {referral.label} "
            "to the campaign's audience and launch it."
        )
    if job.status in TERMINAL_JOB_STATES:
        raise InvalidInput(
            f"Job #{job.id} of {_campaign_words(referral)} has finished ({job.status.value}); "
            f"launch the campaign again to reach {referral.label}."
        )
    return job
