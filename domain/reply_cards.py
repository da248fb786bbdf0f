"""What card a classified inbound message makes (seed §6 "Email-to-Card Conversion").

`plan_reply_card` is the decision table, pure: from the classification, what the detectors
said of the message, what we know of its sender and the organization's auto-reply policy,
it says which card to make (or none), in which state, how urgent, why, and whether its
reply may be sent without a person. The card conversion (issue 12) builds the card from
the plan; the table is read top to bottom and the first row that applies decides:

| when                                                  | card                           |
|-------------------------------------------------------|--------------------------------|
| the message tried to instruct the model               | needs_human_response           |
| written by our own rep                                | none                           |
| automatic (bounce, out-of-office...), unless a user rule filed it | none               |
| NOTIFICATIONS, or an out-of-office the classifier saw | none                           |
| AMC_ORDER, CASE, AP, AR, ESCALATE                     | needs_human_response           |
| confidence below the organization's threshold         | needs_human_response           |
| REMOVE (the pipeline has opted them out)              | reply_to_email by policy, else none |
| meeting_request                                       | schedule_call                  |
| wrong_person / referral                               | create_task (enroll the person) |
| interested, and the client was stale (re-engaged)     | create_deal                    |
| UPDATES                                               | create_task (update records)   |
| STATUS whose order was not found                      | create_task (look it up)       |
| anything else                                         | reply_to_email                 |

A reply card is auto-sent (initial state `approved`, through the outbox, shown `done`)
only when `may_auto_send` allows it, the sender is a known contact and a person wrote the
message: Salesbot never answers a stranger or a machine on its own.
"""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel, ConfigDict, Field

from domain.cards import ANSWER_CARD_TYPES, CardState, CardType, Priority
from domain.classification import (
    DEFAULT_CONFIDENCE_THRESHOLD,
    Category,
    Classification,
    Decider,
    Intent,
    Sentiment,
)
from domain.detection import Detection, MessageKind
from domain.jobs import TaskKind
from domain.reply_policy import NEVER_AUTO, ReplyPolicy, may_auto_send
from domain.reply_routing import route_reply_card, stranger_card_reason

if TYPE_CHECKING:
    from domain.conversations import Link
    from domain.ports import IntentReader, UnderstandingUnitOfWork
    from domain.understanding import InboundMessage

log = logging.getLogger(__name__)


class ReplyAction(StrEnum):
    """What the card conversion does besides making the card (which extraction to run)."""

    NONE = "none"
    DRAFT_REPLY = "draft_reply"  # draft an answer with business context
    HUMAN_RESPONSE = "human_response"  # show the message and its facts; a person answers
    CONFIRM_OPT_OUT = "confirm_opt_out"  # send the polite confirmation of an opt-out
    PROPOSE_TIMES = "propose_times"  # reply_intents.extract_meeting_times + a confirmation
    ENROLL_REFERRAL = "enroll_referral"  # reply_intents.extract_referrals; offer to enroll
    PAUSE_CONTACT = "pause_contact"  # reply_intents.extract_resume_date; pause until then
    OPEN_DEAL = "open_deal"  # a strong opportunity: a deal for the client
    LOOK_UP_ORDER = "look_up_order"  # a status request whose order was not found
    UPDATE_RECORDS = "update_records"  # new or changed information to record


class ReplyFacts(BaseModel):
    """What the decision needs besides the classification and the policy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: What the detectors took the message for (`Detection.kind`).
    message_kind: MessageKind = MessageKind.ORDINARY
    #: The sender is one of our reps (`Detection.from_own_rep`).
    from_own_rep: bool = False
    #: The sender is a contact of the organization.
    known_contact: bool = False
    #: The sender's client had gone quiet and this reply re-engaged it (`clients.re_engaged_at`).
    stale_client: bool = False
    #: For STATUS: the order asked about was found (its status can go in the draft).
    order_found: bool = True
    #: The organization's confidence threshold (`organizations.classify_threshold`).
    threshold: float = Field(default=DEFAULT_CONFIDENCE_THRESHOLD, ge=0.0, le=1.0)


def reply_facts(
    detection: Detection,
    *,
    known_contact: bool,
    stale_client: bool = False,
    order_found: bool = True,
    threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
) -> ReplyFacts:
    """The facts of a message as the pipeline holds them: its detection and what linking
    found (a contact, whether their client was re-engaged, the order a status asks about)."""
    return ReplyFacts(
        message_kind=detection.kind,
        from_own_rep=detection.from_own_rep,
        known_contact=known_contact,
        stale_client=stale_client,
        order_found=order_found,
        threshold=threshold,
    )


class CardPlan(BaseModel):
    """The card one inbound message makes, or `card_type` None for none."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    card_type: CardType | None
    #: The state the card is created in: in_review for a person, approved to auto-send.
    state: CardState | None
    priority: Priority
    #: Why this card, in a few words for the rep ("AMC order: a person handles orders").
    reason: str
    action: ReplyAction
    auto_send: bool = False
    #: "auto-sent because …" / "needs a person because …"; empty when there is no reply.
    auto_reason: str = ""

    @property
    def makes_card(self) -> bool:
        """Tell whether the message makes a card at all."""
        return self.card_type is not None


_HUMAN_REASONS: Final[dict[Category, str]] = {
    Category.AMC_ORDER: "AMC order: a person handles orders",
    Category.CASE: "complaint, dispute or rebuttal: a person answers it",
    Category.AP: "accounts payable: a person answers money questions",
    Category.AR: "accounts receivable: a person answers money questions",
    Category.ESCALATE: "the classifier was unsure: a person decides",
}
_URGENT: Final = frozenset({"rush", "high"})


def _no_card(reason: str, *, auto_reason: str = "") -> CardPlan:
    return CardPlan(
        card_type=None,
        state=None,
        priority=Priority.LOW,
        reason=reason,
        action=ReplyAction.NONE,
        auto_reason=auto_reason,
    )


def _for_a_person(
    card_type: CardType, priority: Priority, reason: str, action: ReplyAction, auto: str = ""
) -> CardPlan:
    return CardPlan(
        card_type=card_type,
        state=CardState.IN_REVIEW,
        priority=priority,
        reason=reason,
        action=action,
        auto_reason=auto,
    )


def _raised(priority: Priority, classification: Classification) -> Priority:
    """A rush or a stressed deadline makes any card high; an unhappy sender at least medium."""
    if classification.entities.urgency in _URGENT:
        return Priority.HIGH
    if classification.sentiment is Sentiment.NEGATIVE and priority is Priority.LOW:
        return Priority.MEDIUM
    return priority


def _auto_decision(
    policy: ReplyPolicy, classification: Classification, facts: ReplyFacts
) -> tuple[bool, str]:
    allowed, reason = may_auto_send(policy, classification)
    if allowed and not facts.known_contact:
        return False, "needs a person because the sender is not a known contact"
    if allowed and facts.message_kind is not MessageKind.ORDINARY:
        # Answering a machine risks a loop of automatic answers (RFC 3834 §2).
        return False, "needs a person because a machine wrote the message"
    return allowed, reason


def plan_reply_card(
    classification: Classification, facts: ReplyFacts, policy: ReplyPolicy
) -> CardPlan:
    """Decide the card an inbound message makes (see the table in the module docstring)."""
    c = classification
    category, intent = c.category, c.intent
    if c.injection_attempt:
        return _for_a_person(
            CardType.NEEDS_HUMAN_RESPONSE,
            Priority.HIGH,
            "the message tried to instruct the model: a person reads it first",
            ReplyAction.HUMAN_RESPONSE,
            "needs a person because the message tried to instruct the model",
        )
    if facts.from_own_rep:
        return _no_card("written by one of our reps: nothing to answer")
    if facts.message_kind is not MessageKind.ORDINARY and c.decided_by is not Decider.RULE:
        return _no_card(f"automatic message ({facts.message_kind.value.replace('_', ' ')})")
    if category is Category.NOTIFICATIONS:
        return _no_card("notification: nothing to answer")
    if intent is Intent.OUT_OF_OFFICE:
        return _no_card("out of office: the contact is paused until they return")
    if category in NEVER_AUTO:
        priority = (
            Priority.HIGH if category in (Category.AMC_ORDER, Category.CASE) else (Priority.MEDIUM)
        )
        return _for_a_person(
            CardType.NEEDS_HUMAN_RESPONSE,
            _raised(priority, c),
            _HUMAN_REASONS[category],
            ReplyAction.HUMAN_RESPONSE,
            may_auto_send(policy, c)[1],
        )
    if c.confidence < facts.threshold:
        return _for_a_person(
            CardType.NEEDS_HUMAN_RESPONSE,
            _raised(Priority.MEDIUM, c),
            f"{category.value} at confidence {c.confidence:.2f}, below the organization's "
            f"{facts.threshold:.2f}: a person decides",
            ReplyAction.HUMAN_RESPONSE,
            "needs a person because the classification is below the organization's threshold",
        )
    if category is Category.REMOVE:
        allowed, why = _auto_decision(policy, c, facts)
        if not allowed:
            return _no_card("unsubscribe: opted out, no confirmation sent", auto_reason=why)
        return CardPlan(
            card_type=CardType.REPLY_TO_EMAIL,
            state=CardState.APPROVED,
            priority=Priority.LOW,
            reason="unsubscribe: opted out and the confirmation sent by policy",
            action=ReplyAction.CONFIRM_OPT_OUT,
            auto_send=True,
            auto_reason=why,
        )
    if intent is Intent.MEETING_REQUEST:
        return _for_a_person(
            CardType.SCHEDULE_CALL,
            _raised(Priority.HIGH, c),
            "meeting request: confirm a time",
            ReplyAction.PROPOSE_TIMES,
            "needs a person because a meeting commits a rep's calendar",
        )
    if intent in (Intent.WRONG_PERSON, Intent.REFERRAL):
        return _for_a_person(
            CardType.CREATE_TASK,
            _raised(Priority.MEDIUM, c),
            "referral: reach the person they named"
            if intent is Intent.REFERRAL
            else "wrong person: reach the person they named",
            ReplyAction.ENROLL_REFERRAL,
        )
    if intent is Intent.INTERESTED and facts.stale_client:
        return _for_a_person(
            CardType.CREATE_DEAL,
            Priority.HIGH,
            "interested, and their client had gone quiet: a deal to open",
            ReplyAction.OPEN_DEAL,
        )
    if category is Category.UPDATES:
        return _for_a_person(
            CardType.CREATE_TASK,
            _raised(Priority.MEDIUM, c),
            "new or changed information: update the records",
            ReplyAction.UPDATE_RECORDS,
        )
    if category is Category.STATUS and not facts.order_found:
        return _for_a_person(
            CardType.CREATE_TASK,
            _raised(Priority.MEDIUM, c),
            "status request for an order we could not find: look it up",
            ReplyAction.LOOK_UP_ORDER,
            "needs a person because the order asked about was not found",
        )
    return _reply_card(c, facts, policy)


_REPLY_REASONS: Final[dict[Category, str]] = {
    Category.STATUS: "status request: a drafted answer with the order's progress",
    Category.SCHEDULING: "appointment logistics: a drafted answer",
    Category.OPPORTUNITY: "new business: answer soon",
    Category.INFORMATION: "announcement: answer if useful",
}


def _reply_card(c: Classification, facts: ReplyFacts, policy: ReplyPolicy) -> CardPlan:
    action = ReplyAction.DRAFT_REPLY
    reason = _REPLY_REASONS.get(c.category, f"{c.category.value}: a drafted answer")
    priority = Priority.MEDIUM
    if c.intent is Intent.NOT_NOW:
        priority, reason, action = (
            Priority.LOW,
            "not now: paused until then",
            ReplyAction.PAUSE_CONTACT,
        )
    elif c.intent is Intent.NOT_INTERESTED:
        priority, reason = Priority.LOW, "not interested: a polite close"
    elif c.intent is Intent.INTERESTED:
        priority, reason = Priority.HIGH, "interested: answer soon"
    elif c.category is Category.OPPORTUNITY:
        priority = Priority.HIGH
    elif c.category is Category.INFORMATION:
        priority = Priority.LOW
    elif c.intent is Intent.INFO_REQUEST:
        reason = "a question: a drafted answer"
    allowed, why = _auto_decision(policy, c, facts)
    return CardPlan(
        card_type=CardType.REPLY_TO_EMAIL,
        state=CardState.APPROVED if allowed else CardState.IN_REVIEW,
        priority=_raised(priority, c),
        reason=reason,
        action=action,
        auto_send=allowed,
        auto_reason=why,
    )


# --- making the card -------------------------------------------------------------------

#: How much of the reply text a card keeps (the inbound row keeps the whole message).
CARD_TEXT_CHARS: Final = 4_000

#: How many of the message's References an answer carries on (the most recent).
MAX_REFERENCES: Final = 20


def make_reply_card(
    uow: UnderstandingUnitOfWork,
    message: InboundMessage,
    classification: Classification,
    detection: Detection | None,
    link: Link,
    *,
    now: datetime,
    intents: IntentReader | None = None,
    re_engaged: bool = False,
    provisional: bool = False,
) -> int | None:
    """Make the card a person's finally classified message makes, in the caller's unit of
    work; return its id, or None when it makes none (or made one already).

    `re_engaged`: this message re-engaged the sender's stale client (the pipeline set
    `clients.re_engaged_at` for it), so an interested reply makes a deal card. A STATUS
    request's order is looked up (`order_known`): one it names anywhere in the
    organization, else an open order of the client; none found makes a look-up task.
    `provisional`: the classification is the offline model's while Claude is away; only a
    card for a person is made from it (None otherwise), the final one then finds it made.

    One message never makes two cards (a re-run finds the card it made). A message from
    someone who is not a contact makes one only as domain/reply_routing.py says. A card
    answering a campaign send belongs to that send's job, any other to the organization's
    replies inbox job; a human card (no draft, no Send button) is queued to the paced
    poster at once, a reply card waits in `suggested` for its draft.
    The plan's action runs with it (`domain.reply_actions.act_on_intent`: the times
    proposed, the person referred, the pause of a "not now"), read from the text by
    `intents`; an auto-sent plan's answer is sent once drafted.
    """
    # reply_actions reads this module's ReplyAction and CardPlan: imported here, not above.
    from domain.reply_actions import act_on_intent

    known = link.contact_id is not None
    order_found = True
    if classification.category is Category.STATUS:
        order_found = uow.reply_routing.order_known(
            message.org_id,
            classification.entities.order_numbers,
            client_id=link.client_id,
            contact_id=link.contact_id,
        )
    facts = reply_facts(
        detection or Detection(),
        known_contact=known,
        stale_client=re_engaged and link.client_id is not None,
        order_found=order_found,
        threshold=message.threshold,
    )
    plan = plan_reply_card(classification, facts, uow.reply_policies.get(message.org_id))
    if provisional and plan.card_type is not CardType.NEEDS_HUMAN_RESPONSE:
        return None  # the final classification makes it
    if not known:  # a stranger, or a deleted contact: a person answers, or no card
        stranger = stranger_card_reason(link, classification.category)
        if stranger is None or not plan.makes_card:
            return None
        plan = plan.model_copy(
            update={
                "card_type": CardType.NEEDS_HUMAN_RESPONSE,
                "state": CardState.IN_REVIEW,
                "action": ReplyAction.HUMAN_RESPONSE,
                "auto_send": False,
                "reason": f"{plan.reason}; {stranger}",
            }
        )
    if plan.card_type is None:
        return None
    if uow.cards.for_inbound_email(message.org_id, message.id) is not None:
        return None
    send = link.send
    human = plan.card_type not in ANSWER_CARD_TYPES
    c = classification
    payload: dict[str, Any] = {
        "from_email": message.from_email,
        "from_name": message.from_name,
        "subject": message.subject,
        "reply_text": message.text[:CARD_TEXT_CHARS],
        "reply_text_truncated": message.text_truncated or len(message.text) > CARD_TEXT_CHARS,
        "category": c.category.value,
        "intent": c.intent.value,
        "sentiment": c.sentiment.value,
        "confidence": c.confidence,
        "entities": c.entities.model_dump(mode="json", exclude_defaults=True),
        "injection_attempt": c.injection_attempt,
        "reason": plan.reason,
        "reply_action": plan.action.value,
        "email_send_id": send.id if send is not None else None,
        "campaign_id": send.campaign_id if send is not None else None,
        "gmail_thread_id": (send.gmail_thread_id if send is not None else None)
        or message.gmail_thread_id,
        # The answer goes in the same thread: In-Reply-To the message, its References + it.
        "in_reply_to": message.message_id,
        "references": [*message.references[-MAX_REFERENCES:], message.message_id]
        if message.message_id
        else list(message.references[-MAX_REFERENCES:]),
        "auto_reason": plan.auto_reason,
    }
    routing = route_reply_card(uow, message, link, now=now)  # its job, who answers, facts
    payload.update(routing.payload)
    acted = act_on_intent(uow, message, plan, link, intents=intents, now=now)
    payload.update(acted.payload)
    who = message.from_name or message.from_email or "someone"
    plain = f"{'Needs a person' if human else 'Reply'}: {who}: {message.subject}"
    title = (acted.title or plain)[:300]
    (card_id,) = uow.cards.add_many(
        message.org_id,
        [
            {
                "job_id": routing.job_id,
                "task_id": None,
                "enrollment_id": send.enrollment_id if send is not None else None,
                "contact_id": link.contact_id,
                "client_id": link.client_id,
                "inbound_email_id": message.id,
                "type": plan.card_type.value,
                "state": (CardState.IN_REVIEW if human else CardState.SUGGESTED).value,
                "priority": plan.priority.value,
                "title": title,
                "description": message.text[:CARD_TEXT_CHARS],
                "rationale": plan.reason,
                "action_payload": payload,
            }
        ],
    )
    job_id = routing.job_id
    # Human cards are posted as they are; reply cards are drafted first, then posted.
    task: dict[str, Any] = (
        {"kind": TaskKind.POST_CARD.value, "input": {"card_id": card_id}}
        if human
        else {
            "kind": TaskKind.DRAFT_REPLY.value,
            "input": {"card_id": card_id, "inbound_email_id": message.id}
            | ({"auto_send": True} if plan.auto_send else {}),
        }
    )
    uow.tasks.add_many(message.org_id, job_id, [{**task, "contact_id": link.contact_id}])
    log.info(
        "reply card made",
        extra={"card_id": card_id, "inbound_email_id": message.id, "type": plan.card_type.value},
    )
    return card_id
