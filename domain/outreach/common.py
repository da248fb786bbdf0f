"""What the outreach services share: who acts, how cards move, the errors they raise."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeAlias

from domain.cards import Card, CardState, CardType, states_that_can_become, transition
from domain.deps import Deps
from domain.errors import InvalidInput, InvalidTransition, NotFound, NotPermitted, SalesbotError
from domain.ports import JobRepository, OutreachUnitOfWork, UserRepository

# What every outreach service is built with.
OutreachDeps: TypeAlias = Deps[OutreachUnitOfWork]


class CardRefused(InvalidInput):
    """A card action the card's state does not allow; the message says why."""


class StaleCard(InvalidInput):
    """The approval was for text that is no longer the card's draft."""


class PlanningFailed(SalesbotError):
    """Planning a job failed; the job is marked failed with the reason."""

    code = "planning_failed"


@dataclass(frozen=True)
class Actor:
    """Who acts: a user of an organization, with their role and Slack id."""

    org_id: int
    user_id: int
    role: str
    slack_user_id: str | None = None

    @property
    def is_admin(self) -> bool:
        """True for admins, who may act on any card of their organization."""
        return self.role == "admin"


class CardOwners(Protocol):
    """What deciding who may act on a card reads: its job and the names of its reps."""

    @property
    def jobs(self) -> JobRepository: ...

    @property
    def users(self) -> UserRepository: ...


def authorize_card(uow: CardOwners, actor: Actor, card: Card) -> None:
    """Refuse a card of another organization, or one that is not the actor's to act on.

    Admins act on every card of their organization. A card made from an inbound message is
    answered from the mailbox that received it (`sender_user_id`), so only that rep, the
    owner of its job (a campaign's reply) or an admin acts on it; without a known mailbox
    rep, only the job's owner or an admin. Any other card: the rep who launched its job (a
    job without an owner lets every rep act)."""
    if card.org_id != actor.org_id:
        raise NotFound(f"card {card.id} not found")
    if actor.is_admin:
        return
    if card.answers_inbound:
        _authorize_reply_card(uow, actor, card)
        return
    if card.job_id is None:
        return
    if card.action_payload.get("sender_user_id") == actor.user_id:
        return  # a reply card's rep: the mailbox that received the message is theirs
    job = uow.jobs.get(actor.org_id, card.job_id)
    if job.owner_id is not None and job.owner_id != actor.user_id:
        raise NotPermitted("Only the rep who launched this job, or an admin, can act on its cards.")


def _authorize_reply_card(uow: CardOwners, actor: Actor, card: Card) -> None:
    raw = card.action_payload.get("sender_user_id")
    sender = raw if isinstance(raw, int) and not isinstance(raw, bool) else None
    if sender == actor.user_id:
        return
    owner = uow.jobs.get(actor.org_id, card.job_id).owner_id if card.job_id is not None else None
    if owner is not None and owner == actor.user_id:
        return
    who: list[str] = []
    if sender is not None:
        who.append(f"{person_name(uow, actor.org_id, sender)} (whose mailbox received this reply)")
    if owner is not None and owner != sender:
        who.append(f"{person_name(uow, actor.org_id, owner)} (who launched this job)")
    if not who:
        raise NotPermitted(
            "Only an admin can act on this card: no rep's mailbox is known for this reply. "
            "Ask an admin of your organization."
        )
    raise NotPermitted(f"Only {', '.join(who)} or an admin can act on this card.")


def decide_card(
    uow: OutreachUnitOfWork, card: Card, to: CardState, *, now: datetime, **changes: Any
) -> bool:
    """Make a human's move of a card as it was read: refused with the reason when the
    state machine does not allow it, else a compare-and-set from every state that may
    become `to` (False: another move came first)."""
    try:
        transition(card, to, at=now, **changes)
    except InvalidTransition as exc:
        raise CardRefused(exc.message) from exc
    return advance_card(uow, card.org_id, card.id, to, now=now, **changes)


def advance_card(
    uow: OutreachUnitOfWork,
    org_id: int,
    card_id: int,
    to: CardState,
    *,
    now: datetime,
    only_from: CardState | None = None,
    **changes: Any,
) -> bool:
    """Move a card on if it is still in a state the state machine lets become `to` (or in
    `only_from` alone); True if it moved. A card moved on meanwhile is left as it is."""
    among = None if only_from is None else [only_from]
    return uow.cards.compare_and_set(
        org_id,
        card_id,
        expected=states_that_can_become(to, among=among),
        to=to,
        now=now,
        **changes,
    )


def person_name(uow: CardOwners, org_id: int, user_id: int) -> str:
    """Name a user in a sentence: their name, else their email."""
    user = uow.users.find(org_id, user_id)
    return user.label if user else f"user {user_id}"


def slack_id_of(uow: OutreachUnitOfWork, org_id: int, user_id: int | None) -> str | None:
    """Return the Slack id of a user, if they have one."""
    user = uow.users.find(org_id, user_id) if user_id is not None else None
    return user.slack_user_id if user else None


def not_sent(card_id: int) -> str:
    """The start of a job's error about a card whose email failed (a retry clears it)."""
    return f"card #{card_id} was not sent:"


def cadence_step_of(card: Card) -> int | None:
    """The cadence step a card carries out, or None (a reply card, a task template's card)."""
    if card.enrollment_id is None or card.answers_inbound or card.type == CardType.REPLY_TO_EMAIL:
        return None
    payload = card.action_payload
    step = payload.get("cadence_step", payload.get("step") if card.sends_email else None)
    if isinstance(step, bool) or not isinstance(step, int):
        return None
    return step


def end_step(uow: OutreachUnitOfWork, card: Card, *, at: datetime) -> bool:
    """Record, in the caller's unit of work, that a card's cadence step ended (sent, done,
    skipped): the contact's next step counts from `at`. True when this call recorded it."""
    step = cadence_step_of(card)
    if step is None or card.enrollment_id is None or card.job_id is None:
        return False
    steps = len(uow.jobs.get(card.org_id, card.job_id).parsed_params().plan())
    return uow.cadence.step_done(card.enrollment_id, step=step, at=at, final=step + 1 >= steps)
