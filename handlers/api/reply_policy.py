"""The organization's auto-reply policy: which replies may be sent without a person.

Anyone with a token of the organization may read it; changing it is for admins (and for
organization-wide tokens, which act for the whole organization, as elsewhere). Only
STATUS, SCHEDULING and REMOVE may be auto-sent; any other category is refused with the
reason.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from domain.classification import Category
from domain.reply_policy import (
    DEFAULT_CATEGORIES,
    DEFAULT_MIN_CONFIDENCE,
    MIN_CONFIDENCE_CEILING,
    MIN_CONFIDENCE_FLOOR,
    NEVER_AUTO,
    ReplyPolicies,
    ReplyPolicy,
)
from handlers.api.deps import ActorDep, IdentityDep

router = APIRouter(prefix="/api/inbound/reply-policy", tags=["inbound"])

Confidence = Annotated[float, Field(ge=MIN_CONFIDENCE_FLOOR, le=MIN_CONFIDENCE_CEILING)]


class ReplyPolicyBody(BaseModel):
    """The whole policy; a field left out takes its default (PUT replaces the policy)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(description="Off (the default) means every reply waits for a person.")
    categories: list[Category] = Field(
        default_factory=lambda: sorted(DEFAULT_CATEGORIES),
        max_length=len(Category),
        description="Categories whose replies may be sent automatically: some of STATUS, "
        "SCHEDULING and REMOVE; any other is refused.",
    )
    min_confidence: Confidence = Field(
        default=DEFAULT_MIN_CONFIDENCE,
        description="A reply is sent automatically only at this classification confidence "
        "or above.",
    )


class ReplyPolicyOut(BaseModel):
    """The organization's policy, with the categories that always need a person."""

    enabled: bool
    categories: list[Category]
    min_confidence: float
    never_auto: list[Category] = Field(description="Categories that always need a person.")
    description: str = Field(description="The policy in one sentence.")
    updated_by: int | None = Field(description="The user who changed it last, if any.")
    updated_at: datetime | None = Field(description="When it was changed last; null: never.")

    @classmethod
    def of(cls, policy: ReplyPolicy) -> ReplyPolicyOut:
        """Show a policy."""
        return cls(
            enabled=policy.enabled,
            categories=sorted(policy.categories),
            min_confidence=policy.min_confidence,
            never_auto=list(NEVER_AUTO),
            description=policy.describe(),
            updated_by=policy.updated_by,
            updated_at=policy.updated_at,
        )


def get_reply_policies(request: Request) -> ReplyPolicies:
    """Return the reply-policy use cases the app was built with."""
    policies: ReplyPolicies = request.app.state.runtime.reply_policies
    return policies


ReplyPoliciesDep = Annotated[ReplyPolicies, Depends(get_reply_policies)]


@router.get("", response_model=ReplyPolicyOut)
def read_reply_policy(who: IdentityDep, policies: ReplyPoliciesDep) -> ReplyPolicyOut:
    """Return the organization's auto-reply policy (the defaults until an admin sets one)."""
    return ReplyPolicyOut.of(policies.get_policy(who.org_id))


@router.put("", response_model=ReplyPolicyOut)
def replace_reply_policy(
    body: ReplyPolicyBody, who: IdentityDep, actor: ActorDep, policies: ReplyPoliciesDep
) -> ReplyPolicyOut:
    """Replace the organization's auto-reply policy (admins)."""
    stored = policies.set_policy(
        actor,
        who.org_id,
        enabled=body.enabled,
        categories=body.categories,
        min_confidence=body.min_confidence,
    )
    return ReplyPolicyOut.of(stored)
