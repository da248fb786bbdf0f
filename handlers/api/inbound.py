"""Inbound email as the pipeline understood it: classification, links, actions taken."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from domain.classification import Category, Intent, Sentiment
from domain.corrections import (
    Corrections,
    CorrectionView,
    ProposalDecision,
    ProposalStatus,
    RelabelOutcome,
    RuleProposalView,
)
from domain.fields import Id, Offset
from domain.inbound import InboundStatus
from domain.understanding import InboundEmailDetail, InboundEmailSummary, InboundFilter
from handlers.api.deps import ActorDep, IdentityDep, UowDep

router = APIRouter(prefix="/api/inbound", tags=["inbound"])


class ConversationMessage(BaseModel):
    """One message of a conversation: one of our sends, or a message received."""

    model_config = ConfigDict(frozen=True)

    direction: str
    id: int
    at: datetime | None
    subject: str | None
    address: str | None
    sentiment: str | None
    category: str | None


@router.get("/emails", response_model=list[InboundEmailSummary])
def list_inbound_emails(
    who: IdentityDep,
    uow: UowDep,
    category: Category | None = None,
    intent: Intent | None = None,
    sentiment: Sentiment | None = None,
    linked: bool | None = None,
    status: InboundStatus | None = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
) -> list[InboundEmailSummary]:
    """List inbound emails, newest first; `linked` keeps those linked (or not) to a send,
    contact or client."""
    filters = InboundFilter(
        category=category.value if category else None,
        intent=intent.value if intent else None,
        sentiment=sentiment.value if sentiment else None,
        linked=linked,
        status=status.value if status else None,
        since=since,
    )
    with uow:
        return uow.inbound_pipeline.list(who.org_id, filters, limit=limit, offset=offset)


@router.get("/emails/{email_id}", response_model=InboundEmailDetail)
def get_inbound_email(email_id: Id, who: IdentityDep, uow: UowDep) -> InboundEmailDetail:
    """Return one inbound email: its classification, who decided it and why, its links,
    the actions taken, the detectors' verdict and any error."""
    with uow:
        return uow.inbound_pipeline.get(who.org_id, email_id)


@router.get("/conversations/{conversation_id}", response_model=list[ConversationMessage])
def get_conversation(
    conversation_id: Id, who: IdentityDep, uow: UowDep
) -> list[ConversationMessage]:
    """Return a conversation's sends and replies in the order they happened."""
    with uow:
        entries = uow.conversations.timeline(who.org_id, conversation_id)
    return [
        ConversationMessage(
            direction=e.direction,
            id=e.id,
            at=e.at,
            subject=e.subject,
            address=e.address,
            sentiment=e.sentiment,
            category=e.category,
        )
        for e in entries
    ]


# --- learning from reps: re-labels and the rules they propose -------------------------------


class Relabel(BaseModel):
    """The labels a rep sets on a message; those left out keep their values."""

    model_config = ConfigDict(extra="forbid")

    category: Category | None = None
    intent: Intent | None = None
    sentiment: Sentiment | None = Field(default=None)


def get_corrections(request: Request) -> Corrections:
    """Return the corrections use cases the app was built with."""
    corrections: Corrections = request.app.state.runtime.corrections
    return corrections


CorrectionsDep = Annotated[Corrections, Depends(get_corrections)]


@router.post("/{email_id}/labels", response_model=RelabelOutcome)
def relabel_inbound_email(
    email_id: Id, body: Relabel, who: IdentityDep, actor: ActorDep, corrections: CorrectionsDep
) -> RelabelOutcome:
    """Re-label a processed message as a rep reads it: the classification becomes the rep's,
    what it decides is re-applied (an opt-out for REMOVE; one this message's classification
    made is undone when it is re-labelled away from REMOVE), the correction is stored, and
    the message's card shows it. `effects` says what changed; `changed` is false when the
    message already had these labels."""
    return corrections.relabel(
        who.org_id,
        email_id,
        actor=actor,
        category=body.category.value if body.category else None,
        intent=body.intent.value if body.intent else None,
        sentiment=body.sentiment.value if body.sentiment else None,
    )


@router.get("/corrections", response_model=list[CorrectionView])
def list_corrections(
    who: IdentityDep,
    corrections: CorrectionsDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
) -> list[CorrectionView]:
    """List the organization's re-labels, newest first."""
    return corrections.list_corrections(who.org_id, limit=limit, offset=offset)


@router.get("/rule-proposals", response_model=list[RuleProposalView])
def list_rule_proposals(
    who: IdentityDep, corrections: CorrectionsDep, status: ProposalStatus | None = None
) -> list[RuleProposalView]:
    """List the rules proposed from reps' identical corrections, newest first."""
    return corrections.list_proposals(who.org_id, status=status)


@router.post("/rule-proposals/{proposal_id}/accept", response_model=ProposalDecision)
def accept_rule_proposal(
    proposal_id: Id, who: IdentityDep, actor: ActorDep, corrections: CorrectionsDep
) -> ProposalDecision:
    """Accept a proposed rule (admins): the classification rule is created once, with the
    checks of `POST /api/inbound/rules`; accepting it again changes nothing."""
    return corrections.accept_proposal(actor, who.org_id, proposal_id)


@router.post("/rule-proposals/{proposal_id}/dismiss", response_model=ProposalDecision)
def dismiss_rule_proposal(
    proposal_id: Id, who: IdentityDep, actor: ActorDep, corrections: CorrectionsDep
) -> ProposalDecision:
    """Dismiss a proposed rule (admins); it is not proposed again."""
    return corrections.dismiss_proposal(actor, who.org_id, proposal_id)
