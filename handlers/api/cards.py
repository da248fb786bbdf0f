"""Cards over the REST API: a job's cards, a page at a time, and one card by id."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from domain.cards import Card, CardState, CardType, Priority
from handlers.api.deps import IdentityDep, UowDep

router = APIRouter(tags=["cards"])

# A path id as a 64-bit database key holds it: larger ones are a 422, never a 500.
JobIdPath = Annotated[int, Path(gt=0, lt=2**63, description="The job's id.")]
CardIdPath = Annotated[int, Path(gt=0, lt=2**63, description="The card's id.")]


class ErrorDetail(BaseModel):
    """One field's problem."""

    field: str
    message: str


class ErrorInfo(BaseModel):
    """What went wrong, in a sentence."""

    code: str = Field(examples=["not_found"])
    message: str = Field(examples=["card 12 not found"])
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    """The body of every API error."""

    error: ErrorInfo


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "No valid bearer token."},
    403: {"model": ErrorResponse, "description": "The token may not do this."},
    404: {
        "model": ErrorResponse,
        "description": "Not found in the token's organization (another's is never shown).",
    },
    422: {"model": ErrorResponse, "description": "A parameter is out of range or malformed."},
}


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


@router.get("/api/agent/jobs/{job_id}/cards", response_model=CardPage, responses=ERRORS)
def list_job_cards(
    job_id: JobIdPath,
    who: IdentityDep,
    uow: UowDep,
    state: Annotated[
        list[CardState] | None,
        Query(description="Only cards in these states (repeat the parameter for several)."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> CardPage:
    """List a job's cards in creation order, a page at a time, optionally by state."""
    with uow:
        uow.jobs.get(who.org_id, job_id)
        total = uow.cards.count_for_job(who.org_id, job_id, states=state)
        cards = uow.cards.list_for_job(who.org_id, job_id, states=state, limit=limit, offset=offset)
    return CardPage(
        total=total, limit=limit, offset=offset, cards=[CardOut.of(card) for card in cards]
    )


@router.get("/api/cards/{card_id}", response_model=CardOut, responses=ERRORS)
def get_card(card_id: CardIdPath, who: IdentityDep, uow: UowDep) -> CardOut:
    """Return one card of the token's organization."""
    with uow:
        card = uow.cards.get(who.org_id, card_id)
    return CardOut.of(card)
