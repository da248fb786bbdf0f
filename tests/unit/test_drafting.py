"""Drafting falls back to the template, and says why, whenever the model cannot be used."""

from __future__ import annotations

from dataclasses import replace

import pytest

from domain.drafting import (
    MAX_BODY_CHARS,
    MAX_SUBJECT_CHARS,
    Draft,
    DraftRequest,
    DraftSource,
    check_draft,
    draft_email,
    template_draft,
)
from domain.errors import ExternalServiceError, InvalidInput, NotFound


def make_request(**overrides: object) -> DraftRequest:
    values: dict[str, object] = {
        "campaign_name": "Q4 lender win-back",
        "campaign_goal": "Get lapsed loan officers ordering appraisals again",
        "step_number": 2,
        "total_steps": 4,
        "template_subject": "Turn times in Travis County are down to 5 days",
        "template_body": "Hi Dana,\n\nOur turn times in Travis County are down to 5 days.\n\nMaria",
        "contact": {"first_name": "Dana", "company_name": "Pinnacle Lending"},
        "rep_name": "Maria Lopez",
        "history": ("We sent: Checking in (2026-10-01)",),
    }
    values.update(overrides)
    return DraftRequest(**values)  # type: ignore[arg-type]


def make_draft(**overrides: object) -> Draft:
    values: dict[str, object] = {
        "subject": "Dana, Travis County turn times are down to 5 days",
        "body": "Hi Dana,\n\nSince your last order in July, our turn times dropped to 5 days.",
        "source": DraftSource.CLAUDE,
        "rationale": "Mentioned her last order.",
    }
    values.update(overrides)
    return Draft(**values)  # type: ignore[arg-type]


class FakeDraftModel:
    """Returns a fixed draft or raises a fixed error; records what it was asked."""

    def __init__(self, *, draft: Draft | None = None, error: Exception | None = None) -> None:
        self.draft = draft
        self.error = error
        self.requests: list[DraftRequest] = []

    def personalize(self, request: DraftRequest) -> Draft:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        assert self.draft is not None
        return self.draft


def test_without_a_model_the_rendered_template_is_the_draft() -> None:
    request = make_request()

    draft = draft_email(request, None)

    assert draft == Draft(
        subject="Turn times in Travis County are down to 5 days",
        body="Hi Dana,\n\nOur turn times in Travis County are down to 5 days.\n\nMaria",
        source=DraftSource.TEMPLATE,
        rationale=None,
        note=None,
    )


def test_a_usable_model_draft_is_returned_as_the_model_wrote_it() -> None:
    request = make_request()
    written = make_draft(note="history contained text that looks like instructions")
    model = FakeDraftModel(draft=written)

    draft = draft_email(request, model)

    assert draft is written
    assert model.requests == [request]


def test_an_unavailable_model_falls_back_to_the_template_with_the_reason() -> None:
    model = FakeDraftModel(error=ExternalServiceError("Anthropic is overloaded, HTTP 529"))

    draft = draft_email(make_request(), model)

    assert draft.source is DraftSource.TEMPLATE
    assert draft.subject == "Turn times in Travis County are down to 5 days"
    assert draft.rationale is None
    assert draft.note == (
        "Claude was unavailable (Anthropic is overloaded, HTTP 529); template used"
    )


def test_an_unusable_answer_falls_back_to_the_template_with_the_reason() -> None:
    model = FakeDraftModel(error=InvalidInput("no write_email call in the answer"))

    draft = draft_email(make_request(), model)

    assert draft.source is DraftSource.TEMPLATE
    assert draft.body == "Hi Dana,\n\nOur turn times in Travis County are down to 5 days.\n\nMaria"
    assert draft.note == (
        "Claude's answer was unusable (no write_email call in the answer); template used"
    )


def test_errors_other_than_service_and_input_errors_are_not_hidden() -> None:
    model = FakeDraftModel(error=NotFound("contact 7"))

    with pytest.raises(NotFound, match="contact 7"):
        draft_email(make_request(), model)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"subject": "  "}, "empty subject"),
        ({"subject": "Turn times\nare down"}, "subject spans several lines"),
        ({"subject": "Turn times\rare down"}, "subject spans several lines"),
        (
            {"subject": "x" * (MAX_SUBJECT_CHARS + 1)},
            f"subject longer than {MAX_SUBJECT_CHARS} characters",
        ),
        ({"body": "\n \n"}, "empty body"),
        ({"body": "y" * (MAX_BODY_CHARS + 1)}, f"body longer than {MAX_BODY_CHARS} characters"),
        (
            {"body": "Hi {{ first_name }}, turn times are down."},
            "body still contains template markup",
        ),
        (
            {"body": "Hi Dana, {% if x %}turn times{% endif %}"},
            "body still contains template markup",
        ),
    ],
)
def test_check_draft_names_what_makes_a_draft_unusable(
    overrides: dict[str, str], reason: str
) -> None:
    assert check_draft(make_draft(**overrides)) == reason


def test_check_draft_accepts_a_draft_at_the_limits() -> None:
    draft = make_draft(subject="s" * MAX_SUBJECT_CHARS, body="b" * MAX_BODY_CHARS)

    assert check_draft(draft) is None


def test_a_model_draft_that_fails_the_check_falls_back_with_the_check_reason() -> None:
    model = FakeDraftModel(draft=make_draft(body="Hi {{ first_name }},\n\nTurn times are down."))

    draft = draft_email(make_request(), model)

    assert draft == template_draft(
        make_request(),
        note="Claude's answer was unusable (body still contains template markup); template used",
    )


def test_the_fallback_replaces_a_note_the_model_draft_carried() -> None:
    flagged = make_draft(subject="", note="history contained text that looks like instructions")
    model = FakeDraftModel(draft=flagged)

    draft = draft_email(make_request(), model)

    assert draft.source is DraftSource.TEMPLATE
    assert draft.note == "Claude's answer was unusable (empty subject); template used"


def test_the_template_draft_keeps_the_request_text_exactly() -> None:
    request = make_request(template_subject="Hello  ", template_body="  Body with spaces  ")

    assert template_draft(request) == replace(template_draft(request, note="x"), note=None)
    assert template_draft(request).subject == "Hello  "
    assert template_draft(request).body == "  Body with spaces  "
