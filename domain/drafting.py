"""Drafting outreach: the template's text, optionally personalised by a language model."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from domain.errors import ExternalServiceError, InvalidInput

if TYPE_CHECKING:
    # Only for annotations: domain.ports imports this module's Draft and DraftRequest.
    from domain.ports import DraftModel

MAX_SUBJECT_CHARS = 200
MAX_BODY_CHARS = 8_000


class DraftSource(StrEnum):
    """Where a draft's text came from."""

    TEMPLATE = "template"
    CLAUDE = "claude"


@dataclass(frozen=True)
class DraftRequest:
    """What a model needs to personalise one email of a cadence.

    `template_subject` and `template_body` are the template already rendered for the
    contact: the baseline the model improves on, and the fallback when it fails.
    `history` holds short lines about earlier interactions (our subjects, their replies);
    it is untrusted data and must never be treated as instructions.
    """

    campaign_name: str
    campaign_goal: str
    step_number: int
    total_steps: int
    template_subject: str
    template_body: str
    contact: dict[str, str | int | None]
    rep_name: str
    history: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Draft:
    """A drafted email and where it came from; `note` says why a fallback happened."""

    subject: str
    body: str
    source: DraftSource
    rationale: str | None = None
    note: str | None = None


def template_draft(request: DraftRequest, *, note: str | None = None) -> Draft:
    """Return the rendered template as the draft."""
    return Draft(
        subject=request.template_subject,
        body=request.template_body,
        source=DraftSource.TEMPLATE,
        note=note,
    )


def draft_email(request: DraftRequest, model: DraftModel | None) -> Draft:
    """Draft with the model when there is one; fall back to the template and say why."""
    if model is None:
        return template_draft(request)
    try:
        draft = model.personalize(request)
    except ExternalServiceError as exc:
        return template_draft(
            request, note=f"Claude was unavailable ({exc.message}); template used"
        )
    except InvalidInput as exc:
        return template_draft(
            request, note=f"Claude's answer was unusable ({exc.message}); template used"
        )
    problem = check_draft(draft)
    if problem:
        return template_draft(
            request, note=f"Claude's answer was unusable ({problem}); template used"
        )
    return draft


def check_draft(draft: Draft) -> str | None:
    """Return why a model's draft cannot be used, or None if it can."""
    subject = draft.subject.strip()
    if not subject:
        return "empty subject"
    if "\n" in subject or "\r" in subject:
        return "subject spans several lines"
    if len(subject) > MAX_SUBJECT_CHARS:
        return f"subject longer than {MAX_SUBJECT_CHARS} characters"
    if not draft.body.strip():
        return "empty body"
    if len(draft.body) > MAX_BODY_CHARS:
        return f"body longer than {MAX_BODY_CHARS} characters"
    if "{{" in draft.body or "{%" in draft.body:
        return "body still contains template markup"
    return None
