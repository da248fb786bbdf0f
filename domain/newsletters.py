"""Newsletters and their issues (docs/newsletters.md): the pure part.

A newsletter is sent from one or more reps' connected Gmail mailboxes to every subscriber:
the organization's contacts who may be emailed (not opted out, a valid address) and who
did not turn newsletters off (domain/email_preferences.py). An issue is three Jinja2
templates (subject, HTML, text) run in the sandbox (domain/templates.py); its preview card
in Slack is approved, edited or rejected; approval plans one outbox row per subscriber,
spread over the days so that each mailbox sends at most its newsletter share of its daily
cap in any 24 hours, with its minimum spacing.

Everything here is pure: the time, the mailboxes and the subscribers come in as arguments.
"""

from __future__ import annotations

import hashlib
import heapq
import html
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from domain.errors import InvalidInput, InvalidTransition
from domain.fields import Id, Text
from domain.templates import TemplateProblem, check_template, render_text

#: What an issue may take at most to reach every subscriber.
HORIZON: Final = timedelta(days=30)
DAY_SECONDS: Final = 86_400
DEFAULT_SHARE: Final = 50
MAX_VARIABLES: Final = 50
MAX_VARIABLE_CHARS: Final = 5_000
MAX_SUBJECT_CHARS: Final = 998


class IssueStatus(StrEnum):
    """Where an issue is: draft → in_review → scheduled → sending → sent.

    `rejected`: the preview card was rejected (it can be edited and submitted again);
    `cancelled`: withdrawn before it was scheduled, not plannable any more, or cancelled
    while scheduled or sending (its emails still queued are withdrawn; those sent stay sent).
    """

    DRAFT = "draft"
    IN_REVIEW = "in_review"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


_ALLOWED: Final[Mapping[IssueStatus, frozenset[IssueStatus]]] = {
    IssueStatus.DRAFT: frozenset({IssueStatus.IN_REVIEW, IssueStatus.CANCELLED}),
    IssueStatus.IN_REVIEW: frozenset(
        {
            IssueStatus.IN_REVIEW,
            IssueStatus.SCHEDULED,
            IssueStatus.REJECTED,
            IssueStatus.DRAFT,
            IssueStatus.CANCELLED,
        }
    ),
    IssueStatus.SCHEDULED: frozenset(
        {IssueStatus.SENDING, IssueStatus.SENT, IssueStatus.CANCELLED}
    ),
    IssueStatus.SENDING: frozenset({IssueStatus.SENT, IssueStatus.CANCELLED}),
    IssueStatus.REJECTED: frozenset({IssueStatus.DRAFT, IssueStatus.IN_REVIEW}),
    IssueStatus.SENT: frozenset(),
    IssueStatus.CANCELLED: frozenset(),
}

#: The statuses in which an issue's templates may still change.
EDITABLE: Final = frozenset({IssueStatus.DRAFT, IssueStatus.IN_REVIEW, IssueStatus.REJECTED})
#: The statuses in which an issue's sending can be cancelled (Cancel sending).
CANCELLABLE: Final = frozenset({IssueStatus.SCHEDULED, IssueStatus.SENDING})
#: The reason an outbox row of a cancelled issue carries: `failed` ("certainly not sent"),
#: with this exact text, is how the outbox marks an email withdrawn (the metrics count it).
WITHDRAWN_REASON: Final = "Not sent: the newsletter issue was cancelled."


def sources_of(to: IssueStatus) -> frozenset[IssueStatus]:
    """The statuses an issue may move to `to` from (what a compare-and-set expects)."""
    return frozenset(s for s, targets in _ALLOWED.items() if to in targets)


def check_cancellable(issue_id: int, current: IssueStatus) -> None:
    """Raise InvalidTransition, saying what to do instead, when an issue's sending cannot be
    cancelled (a cancelled issue is not refused: cancelling again changes nothing)."""
    if current in CANCELLABLE or current == IssueStatus.CANCELLED:
        return
    instead = {
        IssueStatus.DRAFT: "it is a draft, nothing is being sent; delete it instead",
        IssueStatus.IN_REVIEW: "it is in review, nothing is being sent; reject it instead",
        IssueStatus.REJECTED: "it was rejected, nothing is being sent",
        IssueStatus.SENT: "every email of it is already sent",
    }[current]
    raise InvalidTransition(f"Issue {issue_id} cannot be cancelled: {instead}.")


#: The key of a cancelled issue's stored card while the card still has to show how the
#: emails on their way at the cancel ended: `{"by": who cancelled, as the card names them}`.
#: The sweep follows the issue while it is there and removes it once the card shows the
#: final figures (docs/newsletters.md, "Cancel sending").
AWAITING_FINAL: Final = "awaiting_final"


def _cancelled_by(by: str, at: datetime) -> str:
    return f"🛑 Sending cancelled by {by} on {at:%b} {at.day} {at:%H:%M} UTC"


def cancel_note(
    *, by: str, at: datetime, sent: int, on_their_way: int, withdrawn: int, planned: int
) -> str:
    """What a cancelled issue's card says: who cancelled, when, and how many went out."""
    note = f"{_cancelled_by(by, at)}: {sent:,} of {planned:,} sent, {withdrawn:,} withdrawn"
    if on_their_way:
        note += f", {on_their_way:,} already on their way (sent unless Gmail refuses)"
    return note + "."


def final_cancel_note(
    *,
    by: str,
    at: datetime,
    planned: int,
    sent: int,
    sent_before_cancel: int,
    withdrawn: int,
    failed: int,
    commonest_failure: tuple[str, int] | None = None,
) -> str:
    """What a cancelled issue's card says once none of its emails is on its way any more:
    the issue's final figures (those of its metrics), and how many of the sent ones
    finished after the cancel. `commonest_failure` is (reason, count) of the failed ones,
    the reason already escaped for mrkdwn."""
    after = max(sent - sent_before_cancel, 0)
    note = f"{_cancelled_by(by, at)}: {sent:,} of {planned:,} sent"
    if after:
        note += f" ({after:,} finished after the cancel)"
    note += f", {withdrawn:,} withdrawn"
    if failed:
        # As the sent issue's card says it (Newsletters.follow_sends).
        note += f"; {failed:,} not sent"
        if commonest_failure is not None:
            reason, n = commonest_failure
            note += f" ({n:,} of them: {reason})"
    return note + "."


def check_transition(issue_id: int, current: IssueStatus, to: IssueStatus) -> None:
    """Raise InvalidTransition when an issue cannot move from `current` to `to`."""
    if to not in _ALLOWED[current]:
        raise InvalidTransition(
            f"Issue {issue_id} is {current.value.replace('_', ' ')}; it cannot become"
            f" {to.value.replace('_', ' ')}."
        )


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Newsletter:
    """A newsletter of an organization."""

    id: int
    org_id: int
    name: str
    description: str
    sender_user_ids: tuple[int, ...]
    cap_share_percent: int
    slack_channel_id: str | None
    created_by: int | None
    created_at: datetime
    updated_at: datetime

    def as_json(self) -> dict[str, Any]:
        """The API's view."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "sender_user_ids": list(self.sender_user_ids),
            "cap_share_percent": self.cap_share_percent,
            "slack_channel_id": self.slack_channel_id,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class NewsletterIssue:
    """An issue of a newsletter, with its preview card and sending plan."""

    id: int
    org_id: int
    newsletter_id: int
    title: str
    subject_template: str
    html_template: str
    text_template: str
    variables: dict[str, Any]
    status: IssueStatus
    slack_channel_id: str | None
    slack_message_ts: str | None
    card_fingerprint: str | None
    card: dict[str, Any] | None
    audience_count: int | None
    planned_count: int
    planned_start: datetime | None
    planned_finish: datetime | None
    plan: dict[str, Any] | None
    plan_cursor: int
    plan_lease_until: datetime | None
    planned_at: datetime | None
    error: str | None
    submitted_by: int | None
    approved_by: int | None
    approved_at: datetime | None
    rejected_reason: str | None
    sent_at: datetime | None
    created_by: int | None
    created_at: datetime
    updated_at: datetime
    # Cancel sending: who, when, and the counts at that moment (sent, withdrawn).
    cancelled_by: int | None = None
    cancelled_at: datetime | None = None
    sent_before_cancel: int | None = None
    withdrawn_count: int | None = None

    @property
    def templates(self) -> IssueTemplates:
        """The issue's templates and variables."""
        return IssueTemplates(
            subject=self.subject_template,
            html=self.html_template,
            text=self.text_template,
            variables=dict(self.variables),
        )


# --- what callers send ---------------------------------------------------------------------


class NewsletterIn(BaseModel):
    """A new newsletter."""

    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=200)
    description: Text = Field(default="", max_length=5_000)
    sender_user_ids: list[Id] = Field(
        min_length=1,
        max_length=20,
        description="The users whose connected Gmail mailboxes send it.",
    )
    cap_share_percent: int = Field(
        default=DEFAULT_SHARE,
        ge=1,
        le=100,
        description="The share of each sender mailbox's daily cap an issue may use (the rest"
        " stays for the reps' own outreach).",
    )
    slack_channel_id: Text | None = Field(
        default=None, max_length=32, description="Where the preview cards of its issues go."
    )

    @field_validator("name")
    @classmethod
    def _stripped(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value


class NewsletterUpdate(BaseModel):
    """A change of a newsletter; fields left out keep their values."""

    model_config = ConfigDict(extra="forbid")

    name: Text | None = Field(default=None, min_length=1, max_length=200)
    description: Text | None = Field(default=None, max_length=5_000)
    sender_user_ids: list[Id] | None = Field(default=None, min_length=1, max_length=20)
    cap_share_percent: int | None = Field(default=None, ge=1, le=100)
    slack_channel_id: Text | None = Field(default=None, max_length=32)


VariableValue = str | int | float


class IssueIn(BaseModel):
    """A new issue: Jinja2 templates run in the sandbox, and the issue's own variables."""

    model_config = ConfigDict(extra="forbid")

    title: Text = Field(min_length=1, max_length=300)
    subject_template: Text = Field(min_length=1, max_length=MAX_SUBJECT_CHARS)
    text_template: Text = Field(min_length=1, max_length=100_000)
    html_template: Text = Field(default="", max_length=100_000)
    variables: dict[str, VariableValue] = Field(
        default_factory=dict,
        description="The issue's own variables ({name: value}), beside the subscriber's.",
    )


class IssueUpdate(BaseModel):
    """A change of an issue (draft, in review or rejected); fields left out stay."""

    model_config = ConfigDict(extra="forbid")

    title: Text | None = Field(default=None, min_length=1, max_length=300)
    subject_template: Text | None = Field(default=None, min_length=1, max_length=998)
    text_template: Text | None = Field(default=None, min_length=1, max_length=100_000)
    html_template: Text | None = Field(default=None, max_length=100_000)
    variables: dict[str, VariableValue] | None = None


# --- templates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subscriber:
    """A contact who receives newsletters."""

    contact_id: int
    email: str
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None
    company_name: str | None = None
    state: str | None = None

    @property
    def full_name(self) -> str:
        """First and last name, as far as known."""
        return " ".join(p for p in (self.first_name, self.last_name) if p)


#: The subscriber's variables, with the sample values a check renders with.
SUBSCRIBER_VARIABLES: Final[Mapping[str, Any]] = {
    "first_name": "Dana",
    "last_name": "Whitfield",
    "full_name": "Dana Whitfield",
    "email": "dana@pinnaclelending.com",
    "title": "Loan Officer",
    "company_name": "Pinnacle Lending",
    "state": "TX",
    "firm_name": "Lone Star Appraisals",
    "newsletter_name": "Lender Update",
    "issue_title": "December",
}

_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class IssueTemplates:
    """What an issue is rendered from."""

    subject: str
    html: str
    text: str
    variables: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """A hash of the templates and variables (what an approval binds to)."""
        canonical = json.dumps(
            {"s": self.subject, "h": self.html, "t": self.text, "v": self.variables},
            sort_keys=True,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class RenderedIssue:
    """An issue as one subscriber receives it."""

    subject: str
    text: str
    html: str | None


def check_variables(variables: Mapping[str, Any]) -> None:
    """Refuse variables with bad names, names of the subscriber's, or oversized values."""
    if len(variables) > MAX_VARIABLES:
        raise InvalidInput(f"an issue has at most {MAX_VARIABLES} variables", field="variables")
    for name, value in variables.items():
        if not _NAME.match(name):
            raise InvalidInput(
                f"variable name {name!r} must be letters, digits and _ (not first)",
                field="variables",
            )
        if name in SUBSCRIBER_VARIABLES:
            raise InvalidInput(
                f"variable {name!r} is the subscriber's; choose another name", field="variables"
            )
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise InvalidInput(f"variable {name!r} must be text or a number", field="variables")
        if isinstance(value, str) and len(value) > MAX_VARIABLE_CHARS:
            raise InvalidInput(
                f"variable {name!r} is longer than {MAX_VARIABLE_CHARS:,} characters",
                field="variables",
            )


def check_issue(templates: IssueTemplates) -> None:
    """Check that the issue's templates parse, use known variables and render in the
    sandbox; raise TemplateProblem naming the template and line, or InvalidInput."""
    check_variables(templates.variables)
    sample = {**SUBSCRIBER_VARIABLES, **templates.variables}
    check_template(templates.subject, field="subject_template", variables=sample)
    check_template(templates.text, field="text_template", variables=sample)
    if templates.html.strip():
        check_template(templates.html, field="html_template", variables=sample)


def subscriber_context(
    subscriber: Subscriber,
    *,
    firm_name: str,
    newsletter_name: str,
    issue_title: str,
    variables: Mapping[str, Any],
) -> dict[str, Any]:
    """The variables an issue is rendered with for one subscriber."""
    return {
        **variables,
        "first_name": subscriber.first_name or "",
        "last_name": subscriber.last_name or "",
        "full_name": subscriber.full_name,
        "email": subscriber.email,
        "title": subscriber.title or "",
        "company_name": subscriber.company_name or "",
        "state": subscriber.state or "",
        "firm_name": firm_name,
        "newsletter_name": newsletter_name,
        "issue_title": issue_title,
    }


def render_issue(templates: IssueTemplates, context: Mapping[str, Any]) -> RenderedIssue:
    """Render an issue for one subscriber in the sandbox (raise TemplateProblem).

    The HTML part is rendered with every text value HTML-escaped: a contact's name or an
    issue variable never becomes markup."""
    values = dict(context)
    subject = render_text(templates.subject, values, field="subject_template")
    subject = " ".join(subject.split())[:MAX_SUBJECT_CHARS]
    if not subject:
        raise TemplateProblem("subject_template", "renders to an empty subject")
    text = render_text(templates.text, values, field="text_template")
    body_html = None
    if templates.html.strip():
        escaped = {k: html.escape(v) if isinstance(v, str) else v for k, v in values.items()}
        body_html = render_text(templates.html, escaped, field="html_template")
    return RenderedIssue(subject=subject, text=text, html=body_html)


# --- the sending plan ------------------------------------------------------------------------


@dataclass(frozen=True)
class SenderMailbox:
    """A sender's connected mailbox, as the plan sees it."""

    account_id: int
    user_id: int
    email: str
    daily_cap: int
    min_interval_seconds: int
    # Until when the mailbox's newsletter share is taken by issues planned before.
    busy_until: datetime | None = None


@dataclass(frozen=True)
class MailboxPace:
    """How one mailbox sends an issue: `per_day` emails, one every `interval_seconds`,
    from `start`."""

    account_id: int
    user_id: int
    email: str
    per_day: int
    interval_seconds: int
    start: datetime

    def as_json(self) -> dict[str, Any]:
        """Stored with the issue's plan."""
        return {
            "account_id": self.account_id,
            "user_id": self.user_id,
            "email": self.email,
            "per_day": self.per_day,
            "interval_seconds": self.interval_seconds,
            "start": self.start.isoformat(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MailboxPace:
        """Read a stored pace."""
        return cls(
            account_id=int(data["account_id"]),
            user_id=int(data["user_id"]),
            email=str(data["email"]),
            per_day=int(data["per_day"]),
            interval_seconds=int(data["interval_seconds"]),
            start=datetime.fromisoformat(str(data["start"])),
        )

    def slots_within(self, until: datetime) -> int:
        """How many sends fit in [start, until)."""
        if until <= self.start:
            return 0
        return math.ceil((until - self.start).total_seconds() / self.interval_seconds)


def pace_of(mailbox: SenderMailbox, *, share_percent: int, start: datetime) -> MailboxPace:
    """A mailbox's pace for a newsletter: its share of the daily cap, spaced evenly over
    the day (never closer than the mailbox's own minimum spacing)."""
    if not 1 <= share_percent <= 100:
        raise InvalidInput("the share of the daily cap must be 1 to 100 %", field="cap_share")
    per_day = max(1, mailbox.daily_cap * share_percent // 100)
    interval = max(mailbox.min_interval_seconds, math.ceil(DAY_SECONDS / per_day), 1)
    per_day = min(per_day, DAY_SECONDS // interval)
    begin = max(start, mailbox.busy_until) if mailbox.busy_until else start
    return MailboxPace(
        account_id=mailbox.account_id,
        user_id=mailbox.user_id,
        email=mailbox.email,
        per_day=per_day,
        interval_seconds=interval,
        start=begin,
    )


@dataclass(frozen=True)
class SendingPlan:
    """When each of an issue's emails may leave, from which mailbox."""

    start: datetime
    mailboxes: tuple[MailboxPace, ...]
    total: int

    @property
    def per_day(self) -> int:
        """The emails a day of all mailboxes together."""
        return sum(m.per_day for m in self.mailboxes)

    @property
    def finish(self) -> datetime:
        """When the last email may leave."""
        last = self.start
        for _, at in self.slots():
            last = at
        return last

    def slots(self, *, skip: int = 0) -> Iterator[tuple[MailboxPace, datetime]]:
        """The send slots in time order (ties: the mailbox listed first), `total` of them;
        `skip` drops the first ones (planned before a crash)."""
        heap = [(m.start, index, 0) for index, m in enumerate(self.mailboxes)]
        heapq.heapify(heap)
        for n in range(self.total):
            at, index, k = heapq.heappop(heap)
            pace = self.mailboxes[index]
            heapq.heappush(
                heap,
                (pace.start + timedelta(seconds=pace.interval_seconds * (k + 1)), index, k + 1),
            )
            if n >= skip:
                yield pace, at

    def as_json(self) -> dict[str, Any]:
        """Stored with the issue: planning after a crash goes on with the same plan."""
        return {
            "start": self.start.isoformat(),
            "total": self.total,
            "mailboxes": [m.as_json() for m in self.mailboxes],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SendingPlan:
        """Read a stored plan."""
        return cls(
            start=datetime.fromisoformat(str(data["start"])),
            total=int(data["total"]),
            mailboxes=tuple(MailboxPace.from_json(m) for m in data["mailboxes"]),
        )


_Row = TypeVar("_Row")


def slot_rows(
    plan: SendingPlan, *, given: int, rendered: Sequence[_Row | None]
) -> list[tuple[_Row, MailboxPace, datetime]]:
    """Give a batch's rows the plan's next free slots, after the `given` ones (the rows
    stored by earlier batches); a subscriber skipped at planning (None: the template failed
    for them) takes no slot. So the slots given always equal the rows stored, and the next
    batch (or the planner carrying on after a crash) starts right after the last one."""
    kept = [row for row in rendered if row is not None]
    slots = replace(plan, total=given + len(kept)).slots(skip=given)
    return [(row, pace, at) for row, (pace, at) in zip(kept, slots, strict=True)]


def plan_sending(
    mailboxes: Sequence[SenderMailbox],
    *,
    share_percent: int,
    subscribers: int,
    start: datetime,
    newsletter_name: str = "this newsletter",
) -> SendingPlan:
    """Plan an issue's sends over the mailboxes; refuse one that needs more than 30 days.

    Each mailbox sends at most its share of its daily cap in any 24 hours, at even spacing
    (at least its minimum spacing); the subscribers go to whichever mailbox is free first.
    """
    if not mailboxes:
        raise InvalidInput(
            f"No sender of {newsletter_name} has a connected Gmail mailbox: a sender connects"
            " Gmail from Salesbot's App Home, or add a sender who has.",
            field="sender_user_ids",
        )
    paces = tuple(pace_of(m, share_percent=share_percent, start=start) for m in mailboxes)
    until = start + HORIZON
    capacity = sum(p.slots_within(until) for p in paces)
    if subscribers > capacity:
        per_day = sum(p.per_day for p in paces)
        raise InvalidInput(
            f"{subscribers:,} subscribers, but {_mailboxes(len(paces))} can send"
            f" {capacity:,} emails of {newsletter_name} in 30 days ({per_day:,}/day at"
            f" {share_percent}% of their daily caps): add senders, raise the share, or raise"
            " the mailboxes' daily caps.",
            field="subscribers",
        )
    return SendingPlan(start=start, mailboxes=paces, total=subscribers)


def _mailboxes(n: int) -> str:
    return "1 mailbox" if n == 1 else f"{n} mailboxes"


def describe_plan(plan: SendingPlan) -> str:
    """Say how an issue goes out: `2 mailboxes, 400/day, finishes Dec 9 ≈14:00 UTC`."""
    if plan.total == 0:
        return "no subscribers to send to"
    finish = plan.finish
    return (
        f"{plan.total:,} emails from {_mailboxes(len(plan.mailboxes))}, {plan.per_day:,}/day,"
        f" finishes {finish:%b} {finish.day} ≈{finish:%H:%M} UTC"
    )


# --- the preview card ------------------------------------------------------------------------


@dataclass(frozen=True)
class IssueCard:
    """What an issue's preview card shows (Block Kit is built from this by the handler)."""

    issue_id: int
    newsletter_name: str
    title: str
    status: IssueStatus
    fingerprint: str
    audience_count: int
    sample_email: str | None
    sample_subject: str
    sample_text: str
    plan_line: str
    note: str | None = None
    actor_slack_id: str | None = None
    planned_count: int = 0

    def as_json(self) -> dict[str, Any]:
        """Stored on the issue (the sweep posts and updates the message from it)."""
        return {
            "newsletter_name": self.newsletter_name,
            "title": self.title,
            "audience_count": self.audience_count,
            "sample_email": self.sample_email,
            "sample_subject": self.sample_subject,
            "sample_text": self.sample_text,
            "plan_line": self.plan_line,
            "note": self.note,
        }


def card_of(issue: NewsletterIssue, *, actor_slack_id: str | None = None) -> IssueCard | None:
    """The card of an issue as stored; None when it was never submitted."""
    stored = issue.card
    if not stored:
        return None
    return IssueCard(
        issue_id=issue.id,
        newsletter_name=str(stored.get("newsletter_name") or ""),
        title=issue.title,
        status=issue.status,
        fingerprint=issue.card_fingerprint or "",
        audience_count=int(stored.get("audience_count") or 0),
        sample_email=stored.get("sample_email"),
        sample_subject=str(stored.get("sample_subject") or ""),
        sample_text=str(stored.get("sample_text") or ""),
        plan_line=str(stored.get("plan_line") or ""),
        note=stored.get("note"),
        actor_slack_id=actor_slack_id,
        planned_count=issue.planned_count,
    )


# --- metrics ---------------------------------------------------------------------------------


class IssueMetrics(BaseModel):
    """An issue's numbers; opens and clicks only where the organization tracks them."""

    planned: int
    queued: int
    sent: int
    failed: int = Field(description="Not sent: refused at send time (opted out, bounced, …).")
    withdrawn: int = Field(
        default=0, description="Not sent: still queued when the issue was cancelled."
    )
    bounced: int
    unsubscribed: int = Field(description="From newsletters or from everything.")
    unsubscribed_newsletter: int
    unsubscribed_everything: int
    opened: int | None
    clicked: int | None
    tracking_note: str | None = Field(
        default=None, description="Why opened/clicked are null, when they are."
    )
