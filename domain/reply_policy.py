"""The auto-reply policy of an organization: which answers may leave without a person.

Seed §5 "Response Types": STATUS, SCHEDULING and REMOVE may be answered automatically at
confidence 0.95 or more; AMC_ORDER, CASE, AP and AR always need a person. Here the policy
is per organization and off until an admin turns it on. A message that tried to instruct
the model always needs a person, whatever the policy says.

`may_auto_send` is the one decision (pure); `ReplyPolicies` reads and changes the stored
policy (admins only). An organization without a stored policy has the defaults.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from domain.classification import Category, Classification
from domain.deps import Deps
from domain.errors import InvalidInput, NotPermitted

if TYPE_CHECKING:
    from domain.outreach.common import Actor
    from domain.ports import ReplyPolicyUnitOfWork

log = logging.getLogger(__name__)

#: The only categories a policy may auto-send (seed §5): every other one waits for a person.
AUTO_ALLOWED: Final = frozenset({Category.STATUS, Category.SCHEDULING, Category.REMOVE})
DEFAULT_CATEGORIES: Final = AUTO_ALLOWED
DEFAULT_MIN_CONFIDENCE: Final = 0.95
MIN_CONFIDENCE_FLOOR: Final = 0.5
MIN_CONFIDENCE_CEILING: Final = 1.0

#: Categories no policy may auto-send, each with the reason a refusal gives.
NEVER_AUTO: Final[dict[Category, str]] = {
    Category.AMC_ORDER: "an AMC order is official work: a person accepts or declines it",
    Category.CASE: "a complaint, dispute or rebuttal needs a person's judgement",
    Category.AP: "accounts payable is money: a person answers it",
    Category.AR: "accounts receivable is money: a person answers it",
    Category.ESCALATE: "ESCALATE means the classifier was unsure: a person decides",
}


class ReplyPolicy(BaseModel):
    """An organization's auto-reply policy (the defaults: off, STATUS/SCHEDULING/REMOVE,
    0.95). A policy holding a category outside AUTO_ALLOWED or a confidence out of bounds
    cannot be built."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    categories: frozenset[Category] = DEFAULT_CATEGORIES
    min_confidence: float = Field(
        default=DEFAULT_MIN_CONFIDENCE, ge=MIN_CONFIDENCE_FLOOR, le=MIN_CONFIDENCE_CEILING
    )
    #: Who changed it last (a user id; None: never changed, or an organization-wide token).
    updated_by: int | None = None
    updated_at: datetime | None = None

    @field_validator("categories")
    @classmethod
    def _no_forbidden(cls, value: frozenset[Category]) -> frozenset[Category]:
        refused = refusal_for_categories(value)
        if refused is not None:
            raise ValueError(refused)
        return value

    def describe(self) -> str:
        """Say the policy in one sentence, for people (`/campaign help`, the API)."""
        if not self.enabled:
            return (
                "Auto-replies are off: every reply waits for a person "
                "(an admin turns them on with PUT /api/inbound/reply-policy)."
            )
        if not self.categories:
            return (
                "Auto-replies are on, but no category is allowed: every reply waits for a person."
            )
        names = ", ".join(sorted(c.value for c in self.categories))
        return (
            f"Auto-replies are on for {names} at confidence ≥ {self.min_confidence:.2f}; "
            f"{', '.join(c.value for c in NEVER_AUTO)} always wait for a person."
        )


def _allowed_names() -> str:
    return ", ".join(sorted(c.value for c in AUTO_ALLOWED))


def refusal_for_categories(categories: Iterable[Category]) -> str | None:
    """Say why these categories cannot all be auto-sent, or None when they can: only
    STATUS, SCHEDULING and REMOVE may be."""
    chosen = set(categories)
    forbidden = sorted((c for c in chosen if c in NEVER_AUTO), key=lambda c: c.value)
    others = sorted(
        (c for c in chosen - AUTO_ALLOWED if c not in NEVER_AUTO), key=lambda c: c.value
    )
    parts: list[str] = []
    if forbidden:
        reasons = "; ".join(f"{c.value}: {NEVER_AUTO[c]}" for c in forbidden)
        parts.append(f"these categories can never be auto-sent ({reasons})")
    if others:
        names = ", ".join(c.value for c in others)
        parts.append(
            f"{names} cannot be auto-sent: only {_allowed_names()} may be, a person answers "
            "the rest"
        )
    return "; ".join(parts) if parts else None


def check_policy(
    *, enabled: bool, categories: Iterable[Category | str], min_confidence: float
) -> ReplyPolicy:
    """Build a policy from what an admin asked for, or raise InvalidInput with the reason."""
    chosen: set[Category] = set()
    for raw in categories:
        try:
            chosen.add(Category(str(raw).strip().upper()))
        except ValueError:
            known = _allowed_names()
            raise InvalidInput(
                f"unknown category {str(raw)[:40]!r}; use some of {known}", field="categories"
            ) from None
    refused = refusal_for_categories(chosen)
    if refused is not None:
        raise InvalidInput(refused, field="categories")
    if (
        isinstance(min_confidence, bool)
        or min_confidence != min_confidence  # NaN
        or not MIN_CONFIDENCE_FLOOR <= min_confidence <= MIN_CONFIDENCE_CEILING
    ):
        raise InvalidInput(
            f"min_confidence must be from {MIN_CONFIDENCE_FLOOR} to {MIN_CONFIDENCE_CEILING} "
            "(below 0.5 a category is more likely wrong than right)",
            field="min_confidence",
        )
    return ReplyPolicy(
        enabled=enabled, categories=frozenset(chosen), min_confidence=float(min_confidence)
    )


def _compare(confidence: float, bound: float) -> tuple[str, str]:
    """The two numbers as a reason shows them: with enough digits that they differ when
    they do (0.949 is not shown as 0.95 below 0.95)."""
    for digits in (2, 3, 4):
        shown, limit = f"{confidence:.{digits}f}", f"{bound:.{digits}f}"
        if (shown == limit) == (confidence == bound):
            return shown, limit
    return repr(confidence), repr(bound)


def may_auto_send(policy: ReplyPolicy, classification: Classification) -> tuple[bool, str]:
    """Tell whether a reply to this message may be sent without a person, and why.

    The reason reads "auto-sent because …" or "needs a person because …".
    """
    category = classification.category
    if classification.injection_attempt:
        return False, "needs a person because the message tried to instruct the model"
    if category in NEVER_AUTO:
        return False, f"needs a person because {category.value} always does: {NEVER_AUTO[category]}"
    if category not in AUTO_ALLOWED:
        return (
            False,
            f"needs a person because {category.value} replies are never auto-sent "
            f"(only {_allowed_names()} may be)",
        )
    if not policy.enabled:
        return False, "needs a person because the organization has not turned auto-replies on"
    if category not in policy.categories:
        return (
            False,
            f"needs a person because the organization does not auto-send {category.value} replies",
        )
    shown, bound = _compare(classification.confidence, policy.min_confidence)
    if classification.confidence < policy.min_confidence:
        return False, f"needs a person because {category.value} at {shown} is below {bound}"
    return (
        True,
        f"auto-sent because {category.value} at {shown} ≥ {bound} and the organization allows it",
    )


class ReplyPolicies:
    """An organization's auto-reply policy: read by anyone of it, changed by admins."""

    def __init__(self, deps: Deps[ReplyPolicyUnitOfWork]) -> None:
        self._uow = deps.uow
        self._clock = deps.clock

    def get_policy(self, org_id: int) -> ReplyPolicy:
        """Return the organization's policy (the defaults when none was stored)."""
        with self._uow() as uow:
            return uow.reply_policies.get(org_id)

    def set_policy(
        self,
        actor: Actor | None,
        org_id: int,
        *,
        enabled: bool,
        categories: Iterable[Category | str] = DEFAULT_CATEGORIES,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    ) -> ReplyPolicy:
        """Replace the organization's policy (admins; `actor` None is an organization-wide
        API token); refused with the reason for a forbidden category or a bad confidence."""
        if actor is not None:
            if actor.org_id != org_id:
                raise NotPermitted("You can only change the policy of your own organization.")
            if not actor.is_admin:
                raise NotPermitted(
                    "Only an admin can change the auto-reply policy; ask an admin of your "
                    "organization."
                )
        wanted = check_policy(enabled=enabled, categories=categories, min_confidence=min_confidence)
        with self._uow() as uow:
            stored = uow.reply_policies.save(
                org_id,
                wanted,
                by=actor.user_id if actor is not None else None,
                now=self._clock.now(),
            )
            uow.commit()
        log.info(
            "reply policy changed",
            extra={
                "org_id": org_id,
                "enabled": stored.enabled,
                "categories": sorted(c.value for c in stored.categories),
                "min_confidence": stored.min_confidence,
            },
        )
        return stored
