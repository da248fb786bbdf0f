"""Answers to replies: the templates of every category and intent, the order-history
sentence, the claim check, the bounds of a context, and the Replies service's fallback."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.classification import Category, Entities, Intent, Sentiment
from domain.clock import FixedClock
from domain.contacts import OrderStatus
from domain.deps import Deps
from domain.errors import ExternalServiceError, InvalidInput, NotFound
from domain.replies import (
    MAX_REPLY_TEXT_CHARS,
    MAX_THREAD_ENTRIES,
    ActiveOrder,
    CampaignStep,
    ClientAccount,
    ContactInfo,
    InboundMessage,
    PropertyInfo,
    Rep,
    Replies,
    ReplyContext,
    ReplyDraft,
    ReplyTemplate,
    TemplateReplyDrafter,
    ThreadEntry,
    choose_template,
    unsupported_claims,
)
from tests.unit.fakes import FakeUnitOfWork, World

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
ORG = 1
INBOUND = 41


def message(**overrides: Any) -> InboundMessage:
    values: dict[str, Any] = {
        "id": INBOUND,
        "subject": "Re: Turn times are down",
        "reply_text": "Sounds good, tell me more.",
        "received_at": NOW - timedelta(hours=1),
        "from_email": "dana@pinnaclelending.test",
        "from_name": "Dana Whitfield",
        "category": Category.OPPORTUNITY,
        "intent": Intent.INTERESTED,
        "sentiment": Sentiment.POSITIVE,
    }
    values.update(overrides)
    return InboundMessage(**values)


def rich_context(**overrides: Any) -> ReplyContext:
    values: dict[str, Any] = {
        "org_id": ORG,
        "as_of": NOW,
        "message": message(),
        "contact": ContactInfo(
            id=3, email="dana@pinnaclelending.test", first_name="Dana", last_name="Whitfield"
        ),
        "client": ClientAccount(
            id=2,
            name="Pinnacle Lending",
            total_orders=43,
            orders_last_12_months=4,
            first_order_at=NOW - timedelta(days=1200),
            last_order_at=NOW - timedelta(days=161),
        ),
        "active_orders": (
            ActiveOrder(
                order_number="PL-2291",
                status=OrderStatus.INSPECTED,
                ordered_at=NOW - timedelta(days=9),
                due_at=NOW + timedelta(days=4),
                property_address="12 Elm St, Austin, TX 78701",
            ),
            ActiveOrder(
                order_number="PL-2304",
                status=OrderStatus.ASSIGNED,
                ordered_at=NOW - timedelta(days=2),
            ),
        ),
        "properties": (
            PropertyInfo(id=5, address="12 Elm St", city="Austin", state="TX", postal_code="78701"),
        ),
        "campaign": CampaignStep(
            campaign_name="Q4 lender win-back", step_number=2, our_subject="Turn times are down"
        ),
        "rep": Rep(
            user_id=7, name="Maria Lopez", email="maria@lonestar.test", firm_name="Lone Star"
        ),
        "thread": (ThreadEntry(direction="us", text="Hi Dana, our turn times are down."),),
    }
    values.update(overrides)
    return ReplyContext(**values)


def sparse_context(**overrides: Any) -> ReplyContext:
    """An unknown sender: no contact, client, orders, campaign, rep name or thread."""
    values: dict[str, Any] = {
        "org_id": ORG,
        "as_of": NOW,
        "message": message(from_name=None, from_email="someone@unknown.test"),
    }
    values.update(overrides)
    return ReplyContext(**values)


# Which message picks which template.
CASES: list[tuple[ReplyTemplate, dict[str, Any]]] = [
    (ReplyTemplate.INTERESTED, {"intent": Intent.INTERESTED}),
    (ReplyTemplate.INFO_REQUEST, {"intent": Intent.INFO_REQUEST}),
    (ReplyTemplate.MEETING_REQUEST, {"intent": Intent.MEETING_REQUEST}),
    (ReplyTemplate.NOT_NOW, {"intent": Intent.NOT_NOW}),
    (ReplyTemplate.NOT_INTERESTED, {"intent": Intent.NOT_INTERESTED}),
    (ReplyTemplate.WRONG_PERSON, {"intent": Intent.WRONG_PERSON}),
    (ReplyTemplate.REFERRAL, {"intent": Intent.REFERRAL}),
    (ReplyTemplate.UNSUBSCRIBE, {"category": Category.REMOVE, "intent": Intent.UNSUBSCRIBE}),
    (ReplyTemplate.STATUS, {"category": Category.STATUS, "intent": Intent.NONE}),
    (ReplyTemplate.SCHEDULING, {"category": Category.SCHEDULING, "intent": Intent.NONE}),
    (ReplyTemplate.GENERIC, {"category": Category.INFORMATION, "intent": Intent.NONE}),
]


def with_message(context: ReplyContext, **changes: Any) -> ReplyContext:
    return context.model_copy(update={"message": context.message.model_copy(update=changes)})


def numbers(text: str) -> set[str]:
    return set(re.findall(r"\d+", text))


@pytest.mark.parametrize(("expected", "changes"), CASES, ids=[c[0].value for c in CASES])
@pytest.mark.parametrize("build", [rich_context, sparse_context], ids=["rich", "sparse"])
def test_every_template_fills_from_the_context_and_says_it_is_a_template(
    expected: ReplyTemplate, changes: dict[str, Any], build: Any
) -> None:
    context = with_message(build(), **changes)

    draft = TemplateReplyDrafter().draft(context)

    assert draft.template is expected
    assert draft.source == "template"
    assert draft.is_template
    assert draft.notes[0] == "drafted from a template, not by a model"
    assert draft.subject is None
    assert "{" not in draft.body_text
    assert draft.body_html.startswith("<p>")
    # No price, turn time, date or figure that the context does not hold.
    assert unsupported_claims(draft.body_text, context) == []
    assert "$" not in draft.body_text
    assert numbers(draft.body_text) <= numbers(context.text_on_record())
    assert set(draft.facts_used) <= set(context.facts().values())


def test_a_known_contact_is_greeted_by_name_and_the_rep_signs() -> None:
    draft = TemplateReplyDrafter().draft(rich_context())

    assert draft.body_text == (
        "Hi Dana,\n\nThank you for getting back to me, it is good to hear from you.\n\n"
        "Pinnacle Lending has sent us 43 orders over the years, and we would be glad to "
        "handle the next one.\n\nCould you tell me a little about the files you have coming "
        "up, so I can make sure we are ready for them?\n\nBest regards,\nMaria Lopez\nLone Star"
    )
    assert draft.facts_used == [
        "Dana Whitfield at Pinnacle Lending, dana@pinnaclelending.test.",
        "Pinnacle Lending ordered 43 times, last order 161 days ago.",
    ]


def test_an_unknown_sender_gets_a_plain_greeting_and_the_firm_signs() -> None:
    draft = TemplateReplyDrafter().draft(sparse_context())

    assert draft.body_text.startswith("Hello,\n\n")
    assert draft.body_text.endswith("Best regards,\nThe team")
    assert "orders over the years" not in draft.body_text
    assert draft.facts_used == []


def test_the_order_history_sentence_counts_orders_and_days_since_the_last() -> None:
    assert rich_context().order_history() == (
        "Pinnacle Lending ordered 43 times, last order 161 days ago"
    )
    client = ClientAccount(id=1, name="Acme AMC", total_orders=1, last_order_at=NOW - timedelta(1))
    assert client.order_history(NOW) == "ordered once, last order 1 day ago"
    assert client.days_since_last_order(NOW) == 1
    assert client.model_copy(update={"last_order_at": NOW}).order_history(NOW) == (
        "ordered once, last order today"
    )
    assert ClientAccount(id=1, name="New Bank").order_history(NOW) == "has not ordered yet"
    assert sparse_context().order_history() is None


def test_a_status_answer_lists_the_order_the_message_names_with_its_progress_and_due_date() -> None:
    context = with_message(
        rich_context(),
        category=Category.STATUS,
        intent=Intent.NONE,
        entities=Entities(order_numbers=["#PL-2291"]),
    )

    draft = TemplateReplyDrafter().draft(context)

    assert (
        "Here is where your order stands:\n\n- PL-2291 (12 Elm St, Austin, TX 78701): "
        "inspected (step 3 of 5), due Dec 7, 2026\n\n"
    ) in draft.body_text
    assert "PL-2304" not in draft.body_text
    assert draft.facts_used[1] == (
        "Order PL-2291 for 12 Elm St, Austin, TX 78701: inspected (step 3 of 5), "
        "ordered Nov 24, 2026, due Dec 7, 2026."
    )


def test_a_status_question_without_an_open_order_asks_for_the_order_number() -> None:
    context = with_message(sparse_context(), category=Category.STATUS, intent=Intent.NONE)

    draft = TemplateReplyDrafter().draft(context)

    assert "could you send me the order number or the property address?" in draft.body_text


def test_a_meeting_request_repeats_only_the_times_the_sender_proposed() -> None:
    context = with_message(
        rich_context(),
        intent=Intent.MEETING_REQUEST,
        reply_text="Could we talk Tuesday at 10am or Dec 9?",
        entities=Entities(dates=["Tuesday at 10am", "Dec 9"]),
    )

    draft = TemplateReplyDrafter().draft(context)

    assert "Thank you for suggesting Tuesday at 10am or Dec 9;" in draft.body_text
    assert unsupported_claims(draft.body_text, context) == []


def test_an_unsubscribe_confirmation_warns_when_the_contact_is_not_opted_out_yet() -> None:
    context = with_message(rich_context(), category=Category.REMOVE, intent=Intent.UNSUBSCRIBE)

    draft = TemplateReplyDrafter().draft(context)

    assert "You have been removed from our outreach list at Lone Star" in draft.body_text
    assert draft.notes[1] == "the contact is not marked opted out yet: check before sending"
    opted_out = context.model_copy(
        update={"contact": context.contact.model_copy(update={"opted_out": True})}  # type: ignore[union-attr]
    )
    assert TemplateReplyDrafter().draft(opted_out).notes == [
        "drafted from a template, not by a model"
    ]


@pytest.mark.parametrize("category", [Category.AMC_ORDER, Category.CASE, Category.AP, Category.AR])
def test_mail_a_person_must_handle_gets_only_an_acknowledgement(category: Category) -> None:
    context = with_message(rich_context(), category=category, intent=Intent.INTERESTED)

    draft = TemplateReplyDrafter().draft(context)

    assert draft.template is ReplyTemplate.GENERIC
    assert draft.notes[1] == (
        f"{category.value} mail needs a person: the template only acknowledges it"
    )


def test_a_message_without_subject_gets_one_from_our_email() -> None:
    context = with_message(rich_context(), subject="  ")

    assert TemplateReplyDrafter().draft(context).subject == "Re: Turn times are down"


def test_choose_template_puts_an_opt_out_before_any_intent() -> None:
    assert choose_template(message(category=Category.REMOVE, intent=Intent.MEETING_REQUEST)) is (
        ReplyTemplate.UNSUBSCRIBE
    )
    assert choose_template(message(category=Category.OPPORTUNITY, intent=Intent.NONE)) is (
        ReplyTemplate.INTERESTED
    )
    assert choose_template(
        message(category=Category.OPPORTUNITY, intent=Intent.NONE, sentiment=Sentiment.NEUTRAL)
    ) is (ReplyTemplate.GENERIC)


def test_claims_absent_from_the_context_are_found_and_those_present_are_allowed() -> None:
    context = with_message(rich_context(), reply_text="Your invoice said $525.00, due 12/15.")

    found = unsupported_claims(
        "We charge $450, deliver in 3 business days, can call Tuesday at 10am, Dec 12, "
        "or 2026-12-20. Your $525 order is due Dec 7, 2026 and the invoice 12/15; "
        "last order 161 days ago.",
        context,
    )

    assert found == ["$450", "3 business days", "Dec 12", "2026-12-20", "Tuesday", "10am"]


def test_a_context_keeps_the_newest_thread_entries_and_clips_long_text() -> None:
    entries = [ThreadEntry(direction="them", text=f"reply {n}") for n in range(15)]

    context = rich_context(
        thread=entries, message=message(reply_text="x" * (MAX_REPLY_TEXT_CHARS + 500))
    )

    assert len(context.thread) == MAX_THREAD_ENTRIES
    assert context.thread[0].text == "reply 5"
    assert len(context.message.reply_text) == MAX_REPLY_TEXT_CHARS
    assert ThreadEntry(direction="us", text="y" * 5000).text == "y" * 1500


# --- the service and its fallback ----------------------------------------------------------


class ScriptedDrafter:
    """A ReplyDrafter that answers with what the test gives it (a draft or an error)."""

    def __init__(self, answer: ReplyDraft | Exception) -> None:
        self.answer = answer
        self.calls = 0

    @property
    def name(self) -> str:
        return "claude:test-model"

    def draft(self, context: ReplyContext) -> ReplyDraft:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def model_draft(body: str) -> ReplyDraft:
    return ReplyDraft(
        body_text=body, body_html=f"<p>{body}</p>", source="claude:test-model", facts_used=[]
    )


def service(drafter: ScriptedDrafter | None, context: ReplyContext | None = None) -> Replies:
    world = World()
    context = context or rich_context()
    world.reply_contexts[(ORG, INBOUND)] = context
    clock = FixedClock(NOW)
    return Replies(Deps(uow=lambda: FakeUnitOfWork(world, clock), clock=clock), drafter=drafter)


def test_the_models_draft_is_offered_when_it_holds_only_what_the_context_does() -> None:
    good = model_draft("Hi Dana, Pinnacle Lending ordered 43 times; PL-2291 is due Dec 7, 2026.")

    assert service(ScriptedDrafter(good)).draft_for(ORG, INBOUND) == good


@pytest.mark.parametrize(
    ("answer", "note"),
    [
        (
            ExternalServiceError("Anthropic is overloaded, HTTP 529", retryable=True),
            "the model was unavailable (Anthropic is overloaded, HTTP 529); template used",
        ),
        (
            InvalidInput("no write_reply call in the answer"),
            "the model's answer was unusable (no write_reply call in the answer); template used",
        ),
        (
            model_draft("Hi Dana, our fee for Hays County is $425 with a 4 day turn time."),
            'the model\'s draft was refused: it states "$425", "4 day", which the context '
            "does not hold; template used",
        ),
        (
            model_draft("Hi {{ first_name }}, thanks."),
            "the model's draft was refused: body contains template markup; template used",
        ),
    ],
    ids=["unavailable", "unusable", "invented-claims", "markup"],
)
def test_a_failing_model_falls_back_to_the_template_with_the_reason(
    answer: ReplyDraft | Exception, note: str
) -> None:
    drafter = ScriptedDrafter(answer)

    draft = service(drafter).draft_for(ORG, INBOUND)

    assert drafter.calls == 1
    assert draft.source == "template"
    assert draft.template is ReplyTemplate.INTERESTED
    assert draft.notes == ["drafted from a template, not by a model", note]


def test_without_a_model_the_template_answers() -> None:
    draft = service(None).draft_for(ORG, INBOUND)

    assert draft == TemplateReplyDrafter().draft(rich_context())


def test_a_message_that_tried_to_instruct_the_model_never_reaches_it() -> None:
    drafter = ScriptedDrafter(model_draft("anything"))
    context = with_message(rich_context(), injection_attempt=True)

    draft = service(drafter, context).draft_for(ORG, INBOUND)

    assert drafter.calls == 0
    assert draft.source == "template"
    assert draft.notes[-1] == (
        "the message tried to instruct the model: drafted from the template, review before sending"
    )


def test_a_message_of_another_organization_is_not_found() -> None:
    with pytest.raises(NotFound):
        service(None).draft_for(ORG + 1, INBOUND)
