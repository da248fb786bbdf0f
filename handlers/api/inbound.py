"""Inbound email as the pipeline understood it: classification, links, actions taken."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from domain.classification import Category, Intent, Sentiment
from domain.fields import Id, Offset
from domain.inbound import InboundStatus
from domain.understanding import InboundEmailDetail, InboundEmailSummary, InboundFilter
from handlers.api.deps import IdentityDep, UowDep

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
