"""Cards over the REST API: a job's cards, a page at a time, and one card by id."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from domain.cards import Card, CardState, CardType, Priority
from domain.fields import Id, Offset
from handlers.api.deps import IdentityDep, UowDep

router = APIRouter(tags=["cards"])


class CardOut(BaseModel):
    """A card: what a human approves, edits or rejects, and where it is."""

    id: int
    job_id: int | None
    task_id: int | None
    enrollment_id: int | None
    client_id: int | None
    contact_id: int | None
    type: CardType
    state: CardState = Field(
        description=(
            "suggested → in_review → approved → executing → done; or rejected, withdrawn "
            "(its job was cancelled before it was sent), or blocked (not sent: see "
            "blocked_reason; it can be retried)."
        )
    )
    priority: Priority
    title: str
    description: str | None
    rationale: str | None = Field(description="Why this contact is worth reaching.")
    action_payload: dict[str, Any] = Field(
        description=(
            "What the card does: for an email, `to`, `subject`, `body`, `step`; "
            "`slack_error` when its message could not be posted to the review channel."
        )
    )
    draft_fingerprint: str | None
    approved_by: int | None
    approved_at: datetime | None
    executed_at: datetime | None
    blocked_reason: str | None = Field(description="Why it was not sent.")
    rejected_reason: str | None
    withdrawn_reason: str | None = Field(description='Why it was withdrawn ("job #12 cancelled").')
    slack_channel_id: str | None
    slack_message_ts: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, card: Card) -> CardOut:
        """The API view of a domain card."""
        return cls.model_validate(asdict(card))


class CardPage(BaseModel):
    """A page of a job's cards, oldest first."""

    total: int = Field(description="How many cards of the job match the filter.")
    limit: int
    offset: int
    cards: list[CardOut]


@router.get("/api/agent/jobs/{job_id}/cards", response_model=CardPage)
def list_job_cards(
    job_id: Id,
    who: IdentityDep,
    uow: UowDep,
    state: Annotated[
        list[CardState] | None,
        Query(description="Only cards in these states (repeat the parameter for several)."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Offset = 0,
) -> CardPage:
    """List a job's cards in creation order, a page at a time, optionally by state."""
    with uow:
        uow.jobs.get(who.org_id, job_id)
        total = uow.cards.count_for_job(who.org_id, job_id, states=state)
        cards = uow.cards.list_for_job(who.org_id, job_id, states=state, limit=limit, offset=offset)
    return CardPage(
        total=total, limit=limit, offset=offset, cards=[CardOut.of(card) for card in cards]
    )


@router.get("/api/cards/{card_id}", response_model=CardOut)
def get_card(card_id: Id, who: IdentityDep, uow: UowDep) -> CardOut:
    """Return one card of the token's organization."""
    with uow:
        card = uow.cards.get(who.org_id, card_id)
    return CardOut.of(card)
