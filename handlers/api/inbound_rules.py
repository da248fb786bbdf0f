"""User classification rules of inbound mail: list, add, change and remove.

Anyone with a token of the organization may read them; changing them is for admins (and
for organization-wide tokens, which act for the whole organization, as elsewhere).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from domain.classification import Category
from domain.fields import Id, Text
from domain.rules import (
    DEFAULT_PRIORITY,
    MAX_PATTERN_CHARS,
    MAX_PRIORITY,
    MIN_PRIORITY,
    Rule,
    Rules,
    RuleType,
)
from handlers.api.deps import ActorDep, IdentityDep

router = APIRouter(prefix="/api/inbound/rules", tags=["inbound"])

Priority = Annotated[int, Field(ge=MIN_PRIORITY, le=MAX_PRIORITY)]


class RuleCreate(BaseModel):
    """A new rule: mail whose sender or subject matches `pattern` gets `category`."""

    model_config = ConfigDict(extra="forbid")

    rule_type: RuleType = Field(
        description="sender_email (exact), sender_domain (subdomains included), "
        "subject_contains (case-insensitive) or subject_regex (RE2 syntax)"
    )
    pattern: Text = Field(min_length=1, max_length=MAX_PATTERN_CHARS)
    category: Category
    priority: Priority = Field(
        default=DEFAULT_PRIORITY, description="Lower numbers are tried first; ties by id."
    )
    is_active: bool = True


class RuleUpdate(BaseModel):
    """A change of a rule; fields left out keep their values (a new pattern is a new rule)."""

    model_config = ConfigDict(extra="forbid")

    category: Category | None = None
    priority: Priority | None = None
    is_active: bool | None = None


def get_rules(request: Request) -> Rules:
    """Return the rules use cases the app was built with."""
    rules: Rules = request.app.state.runtime.rules
    return rules


RulesDep = Annotated[Rules, Depends(get_rules)]


@router.get("", response_model=list[Rule])
def list_rules(who: IdentityDep, rules: RulesDep) -> list[Rule]:
    """List the organization's rules in the order they are tried (inactive ones too)."""
    return rules.list_rules(who.org_id)


@router.post("", status_code=201, response_model=Rule)
def add_rule(body: RuleCreate, who: IdentityDep, actor: ActorDep, rules: RulesDep) -> Rule:
    """Add a rule (admins); a regex RE2 cannot run is refused with RE2's reason."""
    return rules.add_rule(
        actor,
        who.org_id,
        rule_type=body.rule_type,
        pattern=body.pattern,
        category=body.category,
        priority=body.priority,
        is_active=body.is_active,
    )


@router.get("/{rule_id}", response_model=Rule)
def get_rule(rule_id: Id, who: IdentityDep, rules: RulesDep) -> Rule:
    """Return one rule."""
    return rules.get_rule(who.org_id, rule_id)


@router.patch("/{rule_id}", response_model=Rule)
def update_rule(
    rule_id: Id, body: RuleUpdate, who: IdentityDep, actor: ActorDep, rules: RulesDep
) -> Rule:
    """Change a rule's category, priority or whether it is active (admins)."""
    return rules.update_rule(
        actor,
        who.org_id,
        rule_id,
        category=body.category,
        priority=body.priority,
        is_active=body.is_active,
    )


@router.delete("/{rule_id}", status_code=204)
def remove_rule(rule_id: Id, who: IdentityDep, actor: ActorDep, rules: RulesDep) -> Response:
    """Remove a rule (admins)."""
    rules.remove_rule(actor, who.org_id, rule_id)
    return Response(status_code=204)
