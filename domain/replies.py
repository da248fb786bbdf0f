"""Answering a reply: the business context a draft is written from, and the draft.

`ReplyContext` is everything Salesbot knows that an answer may use: the inbound message
(its visible reply text only, quoted history cut, hidden HTML already dropped by the
parser), the contact and their client's order history, the client's active orders with
their progress, the properties the message names that we know, the campaign step it
answers, the rep, and the thread so far. Every field is bounded, so a context always
fits a prompt and a card.

`ReplyDraft` is one suggested answer and the facts it relied on (`facts_used`, shown on
the card). Drafts come from a `ReplyDrafter` (domain/ports.py): Claude, or the templates
below, which fill one Jinja2 template per category or intent from the same context in the
sandboxed environment (domain/templates.py, domain/template_sandbox.py) and say they are
templates.

The service `Replies` reads the context in one unit of work, drafts outside it, checks the
model's draft (bounds; no price, fee, turn time, date or time that is not in the context)
and falls back to the template with the reason in `notes`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from domain.classification import Category, Entities, Intent, Sentiment
from domain.contacts import OrderStatus
from domain.deps import Deps
from domain.errors import ExternalServiceError, InvalidInput
from domain.mail import text_to_html
from domain.template_sandbox import RenderBudget
from domain.templates import render_text

if TYPE_CHECKING:
    # Only for annotations: domain.ports imports this module's ReplyContext and ReplyDraft.
    from domain.ports import RepliesUnitOfWork, ReplyDrafter

log = logging.getLogger(__name__)

# --- bounds ----------------------------------------------------------------------------

MAX_SUBJECT_CHARS: Final = 300
#: The reply text a context carries (the visible new text of the message).
MAX_REPLY_TEXT_CHARS: Final = 8_000
#: The thread so far: the newest entries are kept, each cut to this many characters.
MAX_THREAD_ENTRIES: Final = 10
MAX_THREAD_ENTRY_CHARS: Final = 1_500
MAX_ACTIVE_ORDERS: Final = 10
MAX_PROPERTIES: Final = 5
MAX_PROPERTY_ORDERS: Final = 5
MAX_NAME_CHARS: Final = 200
MAX_ADDRESS_CHARS: Final = 500
#: A drafted answer.
MAX_DRAFT_SUBJECT_CHARS: Final = 200
MAX_DRAFT_BODY_CHARS: Final = 8_000
MAX_FACTS_USED: Final = 20
MAX_FACT_CHARS: Final = 400
MAX_NOTES: Final = 10
MAX_NOTE_CHARS: Final = 500
#: A reply template renders in a small budget: it is ours, and a few lines long.
TEMPLATE_BUDGET: Final = RenderBudget(seconds=0.5, steps=20_000)
TEMPLATE_SOURCE: Final = "template"


def clip(limit: int) -> Callable[[object], object]:
    """Return a validator that cuts text to `limit` characters (other values pass)."""

    def cut(value: object) -> object:
        if isinstance(value, str) and len(value) > limit:
            return value[:limit]
        return value

    return cut


Name = Annotated[str, BeforeValidator(clip(MAX_NAME_CHARS)), Field(max_length=MAX_NAME_CHARS)]
Address = Annotated[
    str, BeforeValidator(clip(MAX_ADDRESS_CHARS)), Field(max_length=MAX_ADDRESS_CHARS)
]
Subject = Annotated[
    str, BeforeValidator(clip(MAX_SUBJECT_CHARS)), Field(max_length=MAX_SUBJECT_CHARS)
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def format_date(value: datetime | None) -> str | None:
    """A date as facts and templates write it: 'Dec 10, 2026'."""
    if value is None:
        return None
    return f"{value:%b} {value.day}, {value.year}"


# --- the context -----------------------------------------------------------------------


class InboundMessage(_Frozen):
    """The message being answered, as the pipeline stored and classified it."""

    id: int
    subject: Subject = ""
    #: The visible new text: quoted history and signature cut, hidden HTML never included.
    reply_text: Annotated[
        str, BeforeValidator(clip(MAX_REPLY_TEXT_CHARS)), Field(max_length=MAX_REPLY_TEXT_CHARS)
    ] = ""
    received_at: datetime | None = None
    from_email: Name | None = None
    from_name: Name | None = None
    category: Category | None = None
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    intent: Intent = Intent.NONE
    sentiment: Sentiment | None = None
    entities: Entities = Field(default_factory=Entities)
    #: The classifier saw an attempt to instruct the model (text or hidden HTML).
    injection_attempt: bool = False
    #: The parser dropped hidden HTML text from this message (never shown, never sent).
    hidden_text_removed: bool = False


class ContactInfo(_Frozen):
    """The sender as a contact of the organization."""

    id: int
    email: Name
    first_name: Name | None = None
    last_name: Name | None = None
    title: Name | None = None
    role_code: Annotated[str, Field(max_length=32)] | None = None
    opted_out: bool = False

    @property
    def full_name(self) -> str:
        """First and last name, or the address."""
        return " ".join(p for p in (self.first_name, self.last_name) if p) or self.email


class ClientAccount(_Frozen):
    """The contact's client (a lender or an AMC) and its order history."""

    id: int
    name: Name
    client_type: Annotated[str, Field(max_length=32)] | None = None
    domain: Name | None = None
    total_orders: int = Field(default=0, ge=0)
    orders_last_12_months: int = Field(default=0, ge=0)
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None

    def days_since_last_order(self, as_of: datetime) -> int | None:
        """Whole days from the last order to `as_of`, or None when it never ordered."""
        if self.last_order_at is None:
            return None
        return max(0, (as_of - self.last_order_at).days)

    def order_history(self, as_of: datetime) -> str:
        """'ordered 43 times, last order 161 days ago' (or 'has not ordered yet')."""
        days = self.days_since_last_order(as_of)
        if self.total_orders == 0 or days is None:
            return "has not ordered yet"
        times = "once" if self.total_orders == 1 else f"{self.total_orders} times"
        if days == 0:
            ago = "today"
        elif days == 1:
            ago = "1 day ago"
        else:
            ago = f"{days} days ago"
        return f"ordered {times}, last order {ago}"


#: The life cycle of an order, in the order it moves; progress is the step reached.
ORDER_STAGES: Final = (
    OrderStatus.ORDERED,
    OrderStatus.ASSIGNED,
    OrderStatus.INSPECTED,
    OrderStatus.IN_REVIEW,
    OrderStatus.COMPLETED,
)
_STAGE_WORDS: Final = {
    OrderStatus.ORDERED: "ordered",
    OrderStatus.ASSIGNED: "assigned to an appraiser",
    OrderStatus.INSPECTED: "inspected",
    OrderStatus.IN_REVIEW: "in review",
    OrderStatus.COMPLETED: "completed",
    OrderStatus.ON_HOLD: "on hold",
    OrderStatus.CANCELLED: "cancelled",
}


class ActiveOrder(_Frozen):
    """An order of the client that is neither completed nor cancelled."""

    order_number: Annotated[str, Field(max_length=64)]
    status: OrderStatus
    ordered_at: datetime
    due_at: datetime | None = None
    property_address: Address | None = None

    @property
    def progress(self) -> str:
        """'inspected (step 3 of 5)', or 'on hold'."""
        words = _STAGE_WORDS[self.status]
        if self.status in ORDER_STAGES:
            step = ORDER_STAGES.index(self.status) + 1
            return f"{words} (step {step} of {len(ORDER_STAGES)})"
        return words

    def overdue(self, as_of: datetime) -> bool:
        """Tell whether the due date has passed."""
        return self.due_at is not None and self.due_at < as_of

    def fact(self, as_of: datetime) -> str:
        """One sentence about the order, for the card and the model."""
        where = f" for {self.property_address}" if self.property_address else ""
        due = format_date(self.due_at)
        late = " (overdue)" if self.overdue(as_of) else ""
        due_text = f", due {due}{late}" if due else ", no due date on file"
        return (
            f"Order {self.order_number}{where}: {self.progress}, ordered "
            f"{format_date(self.ordered_at)}{due_text}."
        )


class PropertyOrder(_Frozen):
    """An order of the client at a property the message names."""

    order_number: Annotated[str, Field(max_length=64)]
    status: OrderStatus
    ordered_at: datetime
    completed_at: datetime | None = None


class PropertyInfo(_Frozen):
    """A property the message names that the organization knows (from its orders)."""

    id: int
    address: Address
    city: Name | None = None
    state: Annotated[str, Field(max_length=2)] | None = None
    postal_code: Annotated[str, Field(max_length=10)] | None = None
    #: The client's orders at this property only (never another client's), newest first.
    orders: tuple[PropertyOrder, ...] = Field(default=(), max_length=MAX_PROPERTY_ORDERS)

    @property
    def full_address(self) -> str:
        """'12 Elm St, Austin, TX 78701'."""
        tail = " ".join(p for p in (self.state, self.postal_code) if p)
        return ", ".join(p for p in (self.address, self.city, tail) if p)

    def fact(self) -> str:
        """One sentence about the property, for the card and the model."""
        if not self.orders:
            return f"{self.full_address} is a property we have on file."
        latest = self.orders[0]
        count = len(self.orders)
        orders = "1 order" if count == 1 else f"{count} orders"
        return (
            f"{self.full_address}: {orders} from this client on file, latest "
            f"{latest.order_number} ({_STAGE_WORDS[latest.status]}, ordered "
            f"{format_date(latest.ordered_at)})."
        )


class CampaignStep(_Frozen):
    """The outreach email the message answers: its campaign, step and subject."""

    campaign_id: int | None = None
    campaign_name: Name | None = None
    campaign_goal: Annotated[str, Field(max_length=32)] | None = None
    job_name: Name | None = None
    #: 1 for the first email of the cadence; None when the send was not a cadence step.
    step_number: int | None = Field(default=None, ge=1)
    our_subject: Subject | None = None
    sent_at: datetime | None = None

    def fact(self) -> str | None:
        """One sentence about what they are answering, or None when nothing is known."""
        parts = []
        if self.step_number is not None and self.campaign_name:
            parts.append(f'email {self.step_number} of the campaign "{self.campaign_name}"')
        elif self.campaign_name:
            parts.append(f'an email of the campaign "{self.campaign_name}"')
        if self.our_subject:
            parts.append(f'our subject "{self.our_subject}"')
        if not parts:
            return None
        return "They are answering " + ", ".join(parts) + "."


class Rep(_Frozen):
    """Who answers: the rep who owns the outreach, and the firm."""

    user_id: int | None = None
    name: Name | None = None
    email: Name | None = None
    firm_name: Name = ""

    @property
    def signature_name(self) -> str:
        """The name the answer is signed with: the rep's name, else the firm's."""
        return self.name or self.firm_name or "The team"


class ThreadEntry(_Frozen):
    """One earlier message of the conversation, stripped and cut."""

    direction: Literal["us", "them"]
    at: datetime | None = None
    subject: Subject | None = None
    text: Annotated[
        str,
        BeforeValidator(clip(MAX_THREAD_ENTRY_CHARS)),
        Field(max_length=MAX_THREAD_ENTRY_CHARS),
    ] = ""


class ReplyContext(_Frozen):
    """Everything an answer to one inbound message may use."""

    org_id: int
    #: When the context was read: "days since the last order" counts to here.
    as_of: datetime
    message: InboundMessage
    contact: ContactInfo | None = None
    client: ClientAccount | None = None
    active_orders: tuple[ActiveOrder, ...] = Field(default=(), max_length=MAX_ACTIVE_ORDERS)
    properties: tuple[PropertyInfo, ...] = Field(default=(), max_length=MAX_PROPERTIES)
    campaign: CampaignStep | None = None
    rep: Rep = Field(default_factory=Rep)
    #: Earlier messages, oldest first; only the newest MAX_THREAD_ENTRIES are kept.
    thread: tuple[ThreadEntry, ...] = ()

    @field_validator("thread", mode="before")
    @classmethod
    def _newest_entries(cls, value: object) -> object:
        if isinstance(value, list | tuple) and len(value) > MAX_THREAD_ENTRIES:
            return tuple(value[-MAX_THREAD_ENTRIES:])
        return value

    @field_validator("active_orders", mode="before")
    @classmethod
    def _first_orders(cls, value: object) -> object:
        if isinstance(value, list | tuple) and len(value) > MAX_ACTIVE_ORDERS:
            return tuple(value[:MAX_ACTIVE_ORDERS])
        return value

    @property
    def first_name(self) -> str | None:
        """The sender's first name, if known (contact, else the From name's first word)."""
        if self.contact is not None and self.contact.first_name:
            return self.contact.first_name
        if self.message.from_name:
            first = self.message.from_name.replace(",", " ").split()
            if first and "@" not in first[0]:
                return first[0]
        return None

    @property
    def company(self) -> str | None:
        """The client's name, if known."""
        return self.client.name if self.client is not None else None

    def order_history(self) -> str | None:
        """'Pinnacle Lending ordered 43 times, last order 161 days ago', or None."""
        if self.client is None:
            return None
        return f"{self.client.name} {self.client.order_history(self.as_of)}"

    def facts(self) -> dict[str, str]:
        """The context as sentences keyed by a short id, in a stable order.

        The model cites these ids in `facts_used`; the card shows the sentences, so what
        a rep reads as "the facts it used" is always our text, never the model's.
        """
        facts: dict[str, str] = {}
        contact = self.contact
        if contact is not None:
            role = f" ({contact.title})" if contact.title else ""
            at = f" at {self.company}" if self.company else ""
            facts["contact"] = f"{contact.full_name}{role}{at}, {contact.email}."
            if contact.opted_out:
                facts["opted_out"] = f"{contact.full_name} has opted out of outreach emails."
        history = self.order_history()
        if history is not None and self.client is not None:
            facts["order_history"] = history + "."
            if self.client.total_orders:
                first = format_date(self.client.first_order_at)
                facts["order_recent"] = (
                    f"{self.client.orders_last_12_months} orders in the last 12 months; "
                    f"first order {first}."
                )
        for order in self.active_orders:
            facts[f"order:{order.order_number}"] = order.fact(self.as_of)
        for prop in self.properties:
            facts[f"property:{prop.id}"] = prop.fact()
        if self.campaign is not None:
            sentence = self.campaign.fact()
            if sentence:
                facts["campaign"] = sentence
        return {key: value[:MAX_FACT_CHARS] for key, value in facts.items()}

    def text_on_record(self) -> str:
        """All the text a draft may take a figure or a date from: facts, message, thread."""
        message = self.message
        entities = message.entities
        pieces = [
            *self.facts().values(),
            message.subject,
            message.reply_text,
            *entities.order_numbers,
            *entities.property_addresses,
            *entities.amounts,
            *entities.dates,
            *(entry.text for entry in self.thread),
            *(entry.subject or "" for entry in self.thread),
        ]
        return "\n".join(pieces)


class ReplyTemplate(StrEnum):
    """The reply templates, one per category or intent."""

    INTERESTED = "interested"
    INFO_REQUEST = "info_request"
    MEETING_REQUEST = "meeting_request"
    NOT_NOW = "not_now"
    NOT_INTERESTED = "not_interested"
    WRONG_PERSON = "wrong_person"
    REFERRAL = "referral"
    UNSUBSCRIBE = "unsubscribe"
    STATUS = "status"
    SCHEDULING = "scheduling"
    GENERIC = "generic"


# --- the draft -------------------------------------------------------------------------


_REPLY_PREFIX = re.compile(r"^\s*(re|aw|sv)\s*:", re.IGNORECASE)


def reply_subject(subject: str) -> str:
    """The subject of an answer in the same thread: "Re: <subject>", once."""
    subject = " ".join(subject.split())
    if not subject:
        return "Re: your message"
    if _REPLY_PREFIX.match(subject):
        return subject[:MAX_DRAFT_SUBJECT_CHARS]
    return f"Re: {subject}"[:MAX_DRAFT_SUBJECT_CHARS]


class ReplyDraft(_Frozen):
    """A suggested answer to an inbound message, for a rep to send, edit or reject."""

    #: None keeps the thread's subject ("Re: ..."); set when the thread needs a new one.
    subject: Annotated[str, Field(min_length=1, max_length=MAX_DRAFT_SUBJECT_CHARS)] | None = None
    body_text: Annotated[str, Field(min_length=1, max_length=MAX_DRAFT_BODY_CHARS)]
    body_html: Annotated[str, Field(min_length=1, max_length=4 * MAX_DRAFT_BODY_CHARS)]
    #: The context facts (sentences of `ReplyContext.facts()`) the draft relied on.
    facts_used: list[Annotated[str, Field(max_length=MAX_FACT_CHARS)]] = Field(
        default_factory=list, max_length=MAX_FACTS_USED
    )
    #: "claude:<model>" or "template".
    source: Annotated[str, Field(pattern=r"^(template|claude:[\w.:-]{1,100})$")]
    #: Which reply template filled the draft (template drafts only).
    template: ReplyTemplate | None = None
    #: Why the draft is what it is: a fallback's reason, a flag a rep should see.
    notes: list[Annotated[str, Field(max_length=MAX_NOTE_CHARS)]] = Field(
        default_factory=list, max_length=MAX_NOTES
    )

    @property
    def is_template(self) -> bool:
        """True when the draft was filled from a template, not written by a model."""
        return self.source == TEMPLATE_SOURCE

    def with_note(self, note: str) -> ReplyDraft:
        """Return the draft with one more note (the oldest kept when there are too many)."""
        notes = [*self.notes, note[:MAX_NOTE_CHARS]][:MAX_NOTES]
        return self.model_copy(update={"notes": notes})


# --- what a draft may not claim ----------------------------------------------------------

_MONEY: Final = re.compile(
    r"\$\s?\d+(?:,\d{3})*(?:\.\d+)?|\b\d+(?:,\d{3})*(?:\.\d+)?\s?(?:dollars|usd)\b", re.I
)
_DURATION: Final = re.compile(
    r"\b\d{1,3}(?:\s?(?:-|to|or)\s?\d{1,3})?[\s-]*(?:business\s+|calendar\s+|working\s+)?"
    r"(?:days?|hours?|hrs?|weeks?)\b",
    re.I,
)
_MONTHS: Final = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_DATE: Final = re.compile(
    rf"\b{_MONTHS}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?\b|\b\d{{1,2}}/\d{{1,2}}(?:/\d{{2,4}})?\b"
    r"|\b\d{4}-\d{2}-\d{2}\b",
    re.I,
)
_WEEKDAY: Final = re.compile(r"\b(?:mon|tues|wednes|thurs|fri|satur|sun)day\b", re.I)
_CLOCK: Final = re.compile(r"\b\d{1,2}(?::\d{2})?\s?(?:am|pm|a\.m\.|p\.m\.)", re.I)


def _fold(text: str) -> str:
    return " ".join(text.casefold().replace(",", "").split())


def _amount(text: str) -> Decimal | None:
    digits = re.sub(r"[^\d.]", "", text)
    try:
        return Decimal(digits.strip(".")) if digits.strip(".") else None
    except InvalidOperation:
        return None


def unsupported_claims(text: str, context: ReplyContext) -> list[str]:
    """Return the prices, fees, turn times, dates and times in `text` that the context
    does not hold (its facts, the message, the thread), each once, in order.

    A draft may repeat a figure the sender wrote or one of our facts; it may not make
    one up ("$450", "3 business days", "Dec 12", "Tuesday at 10am").
    """
    record = context.text_on_record()
    folded = _fold(record)
    amounts = {_amount(m.group(0)) for m in _MONEY.finditer(record)}
    found: list[str] = []
    for match in _MONEY.finditer(text):
        if _amount(match.group(0)) not in amounts:
            found.append(match.group(0))
    for pattern in (_DURATION, _DATE, _WEEKDAY, _CLOCK):
        for match in pattern.finditer(text):
            if _fold(match.group(0)) not in folded:
                found.append(match.group(0))
    return list(dict.fromkeys(found))


def check_reply_draft(draft: ReplyDraft, context: ReplyContext) -> str | None:
    """Return why a model's draft cannot be offered, or None if it can."""
    if not draft.body_text.strip():
        return "empty body"
    if "{{" in draft.body_text or "{%" in draft.body_text:
        return "body contains template markup"
    if draft.subject is not None and ("\n" in draft.subject or "\r" in draft.subject):
        return "subject spans several lines"
    claims = unsupported_claims(draft.body_text + "\n" + (draft.subject or ""), context)
    if claims:
        shown = ", ".join(f'"{claim}"' for claim in claims[:3])
        return f"it states {shown}, which the context does not hold"
    return None


# --- templates -------------------------------------------------------------------------


_BY_INTENT: Final = {
    Intent.MEETING_REQUEST: ReplyTemplate.MEETING_REQUEST,
    Intent.INFO_REQUEST: ReplyTemplate.INFO_REQUEST,
    Intent.NOT_NOW: ReplyTemplate.NOT_NOW,
    Intent.NOT_INTERESTED: ReplyTemplate.NOT_INTERESTED,
    Intent.WRONG_PERSON: ReplyTemplate.WRONG_PERSON,
    Intent.REFERRAL: ReplyTemplate.REFERRAL,
    Intent.INTERESTED: ReplyTemplate.INTERESTED,
}
#: Categories a person must answer: the template only acknowledges the message.
_HUMAN_CATEGORIES: Final = frozenset(
    {Category.AMC_ORDER, Category.CASE, Category.AP, Category.AR, Category.ESCALATE}
)


def choose_template(message: InboundMessage) -> ReplyTemplate:
    """Pick the template for a message: an opt-out first, then STATUS and SCHEDULING,
    then the reply intent; a category a person must handle gets the generic answer."""
    if message.category is Category.REMOVE or message.intent is Intent.UNSUBSCRIBE:
        return ReplyTemplate.UNSUBSCRIBE
    if message.category in _HUMAN_CATEGORIES:
        return ReplyTemplate.GENERIC
    if message.category is Category.STATUS:
        return ReplyTemplate.STATUS
    if message.category is Category.SCHEDULING:
        return ReplyTemplate.SCHEDULING
    chosen = _BY_INTENT.get(message.intent)
    if chosen is not None:
        return chosen
    if message.category is Category.OPPORTUNITY and message.sentiment is Sentiment.POSITIVE:
        return ReplyTemplate.INTERESTED
    return ReplyTemplate.GENERIC


_GREETING: Final = "{% if first_name %}Hi {{ first_name }},{% else %}Hello,{% endif %}"
_SIGN_OFF: Final = (
    "Best regards,\n{{ signature_name }}{% if firm_name and firm_name != signature_name %}"
    "\n{{ firm_name }}{% endif %}"
)

#: The body of each template (between the greeting and the sign-off). They promise no
#: price, fee, turn time or date: the only figures and dates they write come from the
#: context (order history, active orders, the dates the sender wrote).
REPLY_TEMPLATES: Final[dict[ReplyTemplate, str]] = {
    ReplyTemplate.INTERESTED: (
        "Thank you for getting back to me, it is good to hear from you."
        "{% if total_orders %}\n\n{{ company }} has sent us {{ total_orders }} "
        "{{ 'order' if total_orders == 1 else 'orders' }} over the years, and we would be "
        "glad to handle the next one.{% endif %}"
        "\n\nCould you tell me a little about the files you have coming up, so I can make "
        "sure we are ready for them?"
    ),
    ReplyTemplate.INFO_REQUEST: (
        "Thank you for asking. I will pull together the information you asked for and "
        "follow up with the details."
        "{% if addresses %}\n\nI have noted the property you mentioned: "
        "{{ addresses | join('; ') }}.{% endif %}"
        "\n\nIf there is anything else you would like me to include, just let me know."
    ),
    ReplyTemplate.MEETING_REQUEST: (
        "I would be glad to talk."
        "{% if dates %} Thank you for suggesting {{ dates | join(' or ') }}; I will confirm "
        "a time with you shortly.{% else %} Could you send me a couple of times that suit "
        "you, and the best number to reach you on?{% endif %}"
    ),
    ReplyTemplate.NOT_NOW: (
        "Understood, and thank you for letting me know."
        "{% if dates %} I will check back with you around {{ dates[0] }}, as you "
        "suggested.{% else %} I will check back with you later on.{% endif %}"
        "\n\nIn the meantime, if a file comes up, you can reply to this email."
    ),
    ReplyTemplate.NOT_INTERESTED: (
        "Understood, thank you for taking the time to reply. I will not follow up on this."
        "\n\nIf anything changes, you can reach me at {{ rep_email or 'this address' }}."
    ),
    ReplyTemplate.WRONG_PERSON: (
        "Thank you for letting me know, and sorry for the bother."
        "\n\nCould you point me to the person who orders appraisals"
        "{% if company %} at {{ company }}{% endif %}? I will update our records."
    ),
    ReplyTemplate.REFERRAL: (
        "Thank you for the introduction, I appreciate it. I will reach out to them "
        "directly and mention that you pointed me their way."
    ),
    ReplyTemplate.UNSUBSCRIBE: (
        "Thank you for letting us know. You have been removed from our outreach list"
        "{% if firm_name %} at {{ firm_name }}{% endif %} and will not receive further "
        "marketing emails from us."
        "\n\nSorry for the bother."
    ),
    ReplyTemplate.STATUS: (
        "{% if orders %}Thank you for checking in. Here is where "
        "{{ 'your order stands' if orders | length == 1 else 'your orders stand' }}:\n"
        "{% for order in orders %}\n- {{ order.number }}{% if order.address %} "
        "({{ order.address }}){% endif %}: {{ order.progress }}{% if order.due %}, due "
        "{{ order.due }}{% endif %}{% endfor %}"
        "\n\nI will let you know as soon as anything changes."
        "{% else %}Thank you for checking in. I could not match your message to an open "
        "order; could you send me the order number or the property address? I will look "
        "it up right away.{% endif %}"
    ),
    ReplyTemplate.SCHEDULING: (
        "Thank you for the scheduling details"
        "{% if addresses %} for {{ addresses | join('; ') }}{% endif %}. I have passed them "
        "to our appraiser, who will confirm the inspection appointment with you directly."
    ),
    ReplyTemplate.GENERIC: (
        "Thank you for your message. I have received it and will follow up with you."
    ),
}

#: Which facts each template writes from (ids of ReplyContext.facts(), or their prefix).
_TEMPLATE_FACTS: Final[dict[ReplyTemplate, tuple[str, ...]]] = {
    ReplyTemplate.INTERESTED: ("contact", "order_history"),
    ReplyTemplate.INFO_REQUEST: ("contact", "property:"),
    ReplyTemplate.MEETING_REQUEST: ("contact",),
    ReplyTemplate.NOT_NOW: ("contact",),
    ReplyTemplate.NOT_INTERESTED: ("contact",),
    ReplyTemplate.WRONG_PERSON: ("contact",),
    ReplyTemplate.REFERRAL: ("contact",),
    ReplyTemplate.UNSUBSCRIBE: ("contact", "opted_out"),
    ReplyTemplate.STATUS: ("contact", "order:"),
    ReplyTemplate.SCHEDULING: ("contact", "property:"),
    ReplyTemplate.GENERIC: ("contact",),
}


def _status_orders(context: ReplyContext) -> list[ActiveOrder]:
    """The orders a status answer lists: those the message names, else all active ones."""
    named = {
        number.strip().lstrip("#").casefold() for number in context.message.entities.order_numbers
    }
    if named:
        matched = [o for o in context.active_orders if o.order_number.casefold() in named]
        if matched:
            return matched
    return list(context.active_orders)


def template_values(context: ReplyContext) -> dict[str, object]:
    """The plain values the reply templates are rendered with."""
    client = context.client
    return {
        "first_name": context.first_name,
        "company": context.company,
        "total_orders": client.total_orders if client is not None else 0,
        "signature_name": context.rep.signature_name,
        "firm_name": context.rep.firm_name,
        "rep_email": context.rep.email,
        "dates": list(context.message.entities.dates[:3]),
        "addresses": [p.full_address for p in context.properties[:3]]
        or list(context.message.entities.property_addresses[:3]),
        "orders": [
            {
                "number": order.order_number,
                "address": order.property_address,
                "progress": order.progress,
                "due": format_date(order.due_at),
            }
            for order in _status_orders(context)
        ],
    }


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


class TemplateReplyDrafter:
    """Fills the reply template of the message's category or intent (implements
    domain.ports.ReplyDrafter); works offline, and is the fallback of a model."""

    @property
    def name(self) -> str:
        """ "template"."""
        return TEMPLATE_SOURCE

    def draft(self, context: ReplyContext) -> ReplyDraft:
        """Render the template chosen for the message from the context."""
        chosen = choose_template(context.message)
        source = f"{_GREETING}\n\n{REPLY_TEMPLATES[chosen]}\n\n{_SIGN_OFF}"
        body = _tidy(
            render_text(
                source,
                template_values(context),
                field=f"reply template {chosen.value}",
                budget=TEMPLATE_BUDGET,
            )
        )
        facts = context.facts()
        prefixes = _TEMPLATE_FACTS[chosen]
        used = [
            text
            for key, text in facts.items()
            if any(key == p or (p.endswith(":") and key.startswith(p)) for p in prefixes)
        ]
        if chosen is ReplyTemplate.STATUS:
            listed = {f"order:{o.order_number}" for o in _status_orders(context)}
            used = [text for key, text in facts.items() if key == "contact" or key in listed]
        notes = ["drafted from a template, not by a model"]
        if context.message.category in _HUMAN_CATEGORIES:
            notes.append(
                f"{context.message.category.value if context.message.category else 'this'} "
                "mail needs a person: the template only acknowledges it"
            )
        if chosen is ReplyTemplate.UNSUBSCRIBE and context.contact is not None:
            if not context.contact.opted_out:
                notes.append("the contact is not marked opted out yet: check before sending")
        subject = None
        if not context.message.subject.strip():
            our = context.campaign.our_subject if context.campaign is not None else None
            subject = f"Re: {our}"[:MAX_DRAFT_SUBJECT_CHARS] if our else "Following up"
        return ReplyDraft(
            subject=subject,
            body_text=body,
            body_html=text_to_html(body),
            facts_used=used[:MAX_FACTS_USED],
            source=TEMPLATE_SOURCE,
            template=chosen,
            notes=notes,
        )


# --- the use case ----------------------------------------------------------------------

INJECTION_NOTE: Final = (
    "the message tried to instruct the model: drafted from the template, review before sending"
)
HIDDEN_TEXT_NOTE: Final = "hidden HTML text of the message was removed and never used"


class Replies:
    """Drafts answers to inbound messages from their business context.

    The context is read in one unit of work; the model is called outside it. When the
    model fails (unreachable, an unusable answer, a draft that claims what the context
    does not hold) the template answers instead, with the reason in `notes`.
    """

    def __init__(
        self,
        deps: Deps[RepliesUnitOfWork],
        *,
        drafter: ReplyDrafter | None = None,
        fallback: ReplyDrafter | None = None,
    ) -> None:
        self._uow = deps.uow
        self._clock = deps.clock
        self._drafter = drafter
        self._fallback: ReplyDrafter = fallback or TemplateReplyDrafter()

    def context_for(self, org_id: int, inbound_email_id: int) -> ReplyContext:
        """Read the business context of an inbound message; NotFound outside the org."""
        with self._uow() as uow:
            return uow.reply_contexts.reply_context(org_id, inbound_email_id, now=self._clock.now())

    def draft_for(self, org_id: int, inbound_email_id: int) -> ReplyDraft:
        """Draft an answer to an inbound message of the organization."""
        return self.draft(self.context_for(org_id, inbound_email_id))

    def draft(self, context: ReplyContext) -> ReplyDraft:
        """Draft an answer from a context already read: the model, else the template."""
        draft = self._model_draft(context)
        if context.message.hidden_text_removed:
            draft = draft.with_note(HIDDEN_TEXT_NOTE)
        return draft

    def _model_draft(self, context: ReplyContext) -> ReplyDraft:
        if self._drafter is None:
            return self._fallback.draft(context)
        if context.message.injection_attempt:
            return self._fallback.draft(context).with_note(INJECTION_NOTE)
        try:
            draft = self._drafter.draft(context)
        except ExternalServiceError as exc:
            return self._fall_back(context, f"the model was unavailable ({exc.message})")
        except InvalidInput as exc:
            return self._fall_back(context, f"the model's answer was unusable ({exc.message})")
        problem = check_reply_draft(draft, context)
        if problem is not None:
            return self._fall_back(context, f"the model's draft was refused: {problem}")
        return draft

    def _fall_back(self, context: ReplyContext, reason: str) -> ReplyDraft:
        log.warning(
            "reply draft fell back to the template",
            extra={
                "org_id": context.org_id,
                "inbound_email_id": context.message.id,
                "reason": reason,
            },
        )
        return self._fallback.draft(context).with_note(f"{reason}; template used")
