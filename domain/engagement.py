"""Engagement scoring: what a contact's interactions say about their interest, 0 to 100.

Every event (a send, a rep's LinkedIn touch or call, a reply and its sentiment, a meeting
request, an order after a reply, a bounce, an opt-out, ...) becomes one row of the
contact's engagement history with the points it adds (`score_delta`) and the score right
after it (`score_after`); the contact keeps the latest score, its trend and the dates of
its last reply and last positive interaction. `record_engagement` does all of that inside
the caller's unit of work.

The formula (pure functions below, unit-tested in tests/unit/test_engagement.py):

    score(t) = clamp(score(t_prev) · 2^(−Δdays / 30) + delta, 0, 100)

where `t_prev` is the previous event's time, Δdays = (t − t_prev) in days (fractions
count) and `delta` is the event's weight (`WEIGHTS`). Interest fades by half every 30 days
without news (`HALF_LIFE`); each event then adds or removes its points. `score_delta`
records the weight applied, so the clamp can make the visible change smaller (a positive
reply at 95 ends at 100). A contact's stored `engagement_score` is the score at its latest
event; the API decays it to the moment it answers (`score_at`).

The trend compares the score at a reference time T (the latest event, or now) with the
score at T − 30 days (`TREND_WINDOW`): rising when it gained at least 5 points
(`TREND_POINTS`), falling when it lost at least 5, steady otherwise, unknown before any
event. Decay alone therefore turns a trend to falling once a score of 10 or more has not
been fed for 30 days, which is what a re-engagement audience wants to see.

Events that arrive out of order (an `occurred_at` older than the contact's latest event:
a reply classified late, an order imported after the fact) are scored where they belong:
the new row starts from the last event at or before its time, and every later row's
`score_after` is recomputed from it, in time order (ties by id). The final score is thus
the one in-order arrival would have given, and the history stays a consistent series.
Dates only move forward: `last_replied_at` and `last_positive_interaction_at` keep the
later of the stored date and the event's.

Idempotence: an event that refers to an inbound email is recorded once per (event,
inbound email); else one that refers to a send once per (event, send); an order after a
reply once per (event, order id in `detail`). Events without a reference (an opt-out from
the unsubscribe page) are recorded each time they are asked for; their callers already
act once. The repository locks the contacts' rows before the check (`lock_contacts`),
so two concurrent writers of the same event serialise and the second one finds the first.

`record_engagements` records many events with a handful of statements (the order import
records an order after a reply for many contacts at once); `record_engagement` is it for
one event. Both, and `retract_engagements`, score the contacts' lead scores again in the
same unit of work (`refresh_lead_scores`: domain.lead_scoring reads the engagement).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel, Field

from domain.classification import Intent, Sentiment
from domain.contacts import EngagementTrend

if TYPE_CHECKING:
    from domain.ports import EngagementRepository


class EngagementEvent(StrEnum):
    """What happened between us and a contact."""

    SENT = "sent"
    REPLIED = "replied"  # a human reply, neither positive nor negative
    POSITIVE_REPLY = "positive_reply"
    NEGATIVE_REPLY = "negative_reply"
    MEETING_REQUEST = "meeting_request"  # a positive reply that asks for a meeting or call
    ORDER_AFTER_REPLY = "order_after_reply"  # the client ordered within 30 days of a reply
    BOUNCED = "bounced"  # a hard bounce: the address is gone
    SOFT_BOUNCE = "soft_bounce"
    OPTED_OUT = "opted_out"
    COMPLAINT = "complaint"  # marked as spam (an ARF report)
    OUT_OF_OFFICE = "out_of_office"  # an automatic answer: no interest either way
    # A rep's cadence step marked done in Slack (issue 13): a LinkedIn touch, a call.
    LINKEDIN_TOUCH = "linkedin_touch"
    CALL = "call"
    # The contact turned one type of email off or on (domain/email_preferences.py);
    # detail: email_type, subscribed, source.
    EMAIL_PREFERENCE = "email_preference"


# The points each event adds (or takes) on the 0..100 scale. Our own sends and automatic
# answers say nothing about interest; an order after a reply is the strongest signal;
# opting out or complaining ends interest whatever it was.
WEIGHTS: Final[Mapping[EngagementEvent, float]] = {
    EngagementEvent.SENT: 0.0,
    EngagementEvent.REPLIED: 10.0,
    EngagementEvent.POSITIVE_REPLY: 25.0,
    EngagementEvent.NEGATIVE_REPLY: -20.0,
    EngagementEvent.MEETING_REQUEST: 35.0,
    EngagementEvent.ORDER_AFTER_REPLY: 40.0,
    EngagementEvent.BOUNCED: -30.0,
    EngagementEvent.SOFT_BOUNCE: -2.0,
    EngagementEvent.OPTED_OUT: -100.0,
    EngagementEvent.COMPLAINT: -100.0,
    EngagementEvent.OUT_OF_OFFICE: 0.0,
    # Like a send, our own touch says nothing yet of the contact's interest; a reply does.
    EngagementEvent.LINKEDIN_TOUCH: 0.0,
    EngagementEvent.CALL: 0.0,
    # A choice of what to receive, not of interest: the global opt-out is what ends it.
    EngagementEvent.EMAIL_PREFERENCE: 0.0,
}

MIN_SCORE: Final = 0.0
MAX_SCORE: Final = 100.0
HALF_LIFE: Final = timedelta(days=30)
TREND_WINDOW: Final = timedelta(days=30)
TREND_POINTS: Final = 5.0
# A client that has not ordered for this long (or never has) is stale; a positive reply
# from one of its contacts re-engages it (`clients.re_engaged_at`).
STALE_CLIENT_AFTER: Final = timedelta(days=90)
# An order counts as following a reply when a contact of its client replied this long
# before it at most.
ORDER_AFTER_REPLY_WINDOW: Final = timedelta(days=30)

# Human replies: they set `last_replied_at` and open the window of an order after a reply.
REPLY_EVENTS: Final = frozenset(
    {
        EngagementEvent.REPLIED,
        EngagementEvent.POSITIVE_REPLY,
        EngagementEvent.NEGATIVE_REPLY,
        EngagementEvent.MEETING_REQUEST,
    }
)
POSITIVE_EVENTS: Final = frozenset(
    {
        EngagementEvent.POSITIVE_REPLY,
        EngagementEvent.MEETING_REQUEST,
        EngagementEvent.ORDER_AFTER_REPLY,
    }
)
# What re-engages a stale client: its contact answered with interest.
RE_ENGAGING_EVENTS: Final = frozenset(
    {EngagementEvent.POSITIVE_REPLY, EngagementEvent.MEETING_REQUEST}
)
# The sentiment an event implies when the caller gives none.
_IMPLIED_SENTIMENT: Final[Mapping[EngagementEvent, Sentiment]] = {
    EngagementEvent.REPLIED: Sentiment.NEUTRAL,
    EngagementEvent.POSITIVE_REPLY: Sentiment.POSITIVE,
    EngagementEvent.MEETING_REQUEST: Sentiment.POSITIVE,
    EngagementEvent.NEGATIVE_REPLY: Sentiment.NEGATIVE,
    EngagementEvent.COMPLAINT: Sentiment.NEGATIVE,
}
_POSITIVE_INTENTS: Final = frozenset({Intent.INTERESTED, Intent.INFO_REQUEST, Intent.REFERRAL})
_NEGATIVE_INTENTS: Final = frozenset({Intent.NOT_INTERESTED, Intent.UNSUBSCRIBE})


# --- the formula ----------------------------------------------------------------------


def clamp(score: float) -> float:
    """Return a score held within 0..100."""
    return min(MAX_SCORE, max(MIN_SCORE, score))


def decayed(score: float, *, since: datetime, at: datetime) -> float:
    """Return what a score reached at `since` is worth at `at` (halved every 30 days).

    A moment before `since` gets the score unchanged: time never adds interest back.
    """
    elapsed = at - since
    if elapsed <= timedelta(0):
        return score
    return float(score * 0.5 ** (elapsed / HALF_LIFE))


@dataclass(frozen=True)
class ScorePoint:
    """A score and the moment it was reached (an event's `score_after` and time)."""

    score: float
    at: datetime


def next_score(previous: ScorePoint | None, *, delta: float, at: datetime) -> float:
    """Return the score right after an event of weight `delta` at `at`."""
    base = 0.0 if previous is None else decayed(previous.score, since=previous.at, at=at)
    return clamp(base + delta)


def score_at(point: ScorePoint | None, at: datetime) -> float:
    """Return the score at `at` given the last score reached at or before it."""
    return 0.0 if point is None else decayed(point.score, since=point.at, at=at)


def trend_between(earlier: float, later: float) -> EngagementTrend:
    """Return the trend from the score 30 days ago (`earlier`) to the score now."""
    change = later - earlier
    if change >= TREND_POINTS:
        return EngagementTrend.RISING
    if change <= -TREND_POINTS:
        return EngagementTrend.FALLING
    return EngagementTrend.STEADY


def trend_of(timeline: list[ScorePoint], at: datetime) -> EngagementTrend:
    """Return the trend at `at` of a timeline of scores (time order); unknown when empty."""
    reached = [p for p in timeline if p.at <= at]
    if not reached:
        return EngagementTrend.UNKNOWN
    window_start = at - TREND_WINDOW
    before = [p for p in reached if p.at <= window_start]
    return trend_between(
        score_at(before[-1] if before else None, window_start), score_at(reached[-1], at)
    )


def reply_event(sentiment: str | None, intent: str | None) -> EngagementEvent:
    """Return the event a classified human reply is recorded as.

    A meeting request wins; an out-of-office answer is not a reply; else the sentiment
    decides, and without one the intent (interested → positive, not interested →
    negative); a reply that says neither is REPLIED.
    """
    if intent == Intent.MEETING_REQUEST:
        return EngagementEvent.MEETING_REQUEST
    if intent == Intent.OUT_OF_OFFICE:
        return EngagementEvent.OUT_OF_OFFICE
    if sentiment == Sentiment.POSITIVE:
        return EngagementEvent.POSITIVE_REPLY
    if sentiment == Sentiment.NEGATIVE:
        return EngagementEvent.NEGATIVE_REPLY
    if sentiment is None and intent in _POSITIVE_INTENTS:
        return EngagementEvent.POSITIVE_REPLY
    if sentiment is None and intent in _NEGATIVE_INTENTS:
        return EngagementEvent.NEGATIVE_REPLY
    return EngagementEvent.REPLIED


def orders_after_replies(
    orders: list[tuple[int, int, datetime]], replies: Mapping[int, list[datetime]]
) -> list[tuple[int, int, datetime]]:
    """Return (order id, contact id, ordered at) for each contact who replied within the 30
    days before an order (the reply at or before the order).

    `orders` are (order id, contact id, ordered at) pairs of an order with one contact of
    its client; `replies` the reply times of those contacts.
    """
    found = []
    for order_id, contact_id, ordered_at in orders:
        opens = ordered_at - ORDER_AFTER_REPLY_WINDOW
        if any(opens <= r <= ordered_at for r in replies.get(contact_id, [])):
            found.append((order_id, contact_id, ordered_at))
    return found


# --- what the repository hands over -----------------------------------------------------


@dataclass(frozen=True)
class ContactEngagement:
    """A contact's engagement as stored on the contact."""

    contact_id: int
    client_id: int | None
    score: float
    trend: EngagementTrend
    last_replied_at: datetime | None
    last_positive_interaction_at: datetime | None


@dataclass(frozen=True)
class ScoredEvent:
    """A history row as scoring needs it."""

    id: int
    occurred_at: datetime
    score_delta: float
    score_after: float | None

    @property
    def point(self) -> ScorePoint | None:
        """The score this row reached, if it was scored."""
        return None if self.score_after is None else ScorePoint(self.score_after, self.occurred_at)


@dataclass(frozen=True)
class NewEngagement:
    """A history row to store."""

    org_id: int
    contact_id: int
    event: EngagementEvent
    occurred_at: datetime
    sentiment: str | None
    score_delta: float
    score_after: float
    email_send_id: int | None
    inbound_email_id: int | None
    detail: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class EngagementKey:
    """What makes an event the same event twice: exactly one of the references is set."""

    inbound_email_id: int | None = None
    email_send_id: int | None = None
    order_id: int | None = None


@dataclass(frozen=True)
class EngagementChange:
    """What recording an event changed."""

    history_id: int
    contact_id: int
    event: EngagementEvent
    score_delta: float
    score_after: float  # right after this event
    score: float  # the contact's score at its latest event (this one, unless it came late)
    trend: EngagementTrend
    rescored: int  # later rows whose score_after was recomputed (an event that came late)
    re_engaged_client_id: int | None  # the stale client this event re-engaged


def engagement_key(
    event: EngagementEvent,
    *,
    inbound_email_id: int | None,
    email_send_id: int | None,
    detail: Mapping[str, object],
) -> EngagementKey | None:
    """Return what identifies an event for idempotence, or None for an unkeyed event."""
    if inbound_email_id is not None:
        return EngagementKey(inbound_email_id=inbound_email_id)
    if email_send_id is not None:
        return EngagementKey(email_send_id=email_send_id)
    if event == EngagementEvent.ORDER_AFTER_REPLY:
        order_id = detail.get("order_id")
        if not isinstance(order_id, int) or isinstance(order_id, bool):
            raise ValueError("an order_after_reply event needs detail['order_id'] (an int)")
        return EngagementKey(order_id=order_id)
    return None


def implied_sentiment(event: EngagementEvent, sentiment: str | None) -> str | None:
    """Return the sentiment to store: the one given (one of the three), else the event's."""
    if sentiment is not None:
        return Sentiment(sentiment.strip().lower()).value
    implied = _IMPLIED_SENTIMENT.get(event)
    return implied.value if implied is not None else None


# --- what the API shows ---------------------------------------------------------------


class SendRef(BaseModel):
    """The send an engagement event refers to."""

    id: int
    subject: str
    campaign_id: int | None
    campaign_name: str | None
    step: int | None = Field(
        description="The cadence step the email was drafted for (0 = first); null when it"
        " came from no cadence task."
    )


class InboundRef(BaseModel):
    """The inbound email an engagement event refers to."""

    id: int
    subject: str | None
    category: str | None
    intent: str | None


class EngagementEntry(BaseModel):
    """One event of a contact's timeline."""

    id: int
    event: EngagementEvent
    occurred_at: datetime
    sentiment: str | None
    score_delta: float = Field(description="The event's weight, applied after decay.")
    score_after: float | None = Field(description="The score right after the event (0..100).")
    detail: dict[str, Any]
    send: SendRef | None
    inbound_email: InboundRef | None


class EngagementHistory(BaseModel):
    """A page of a contact's timeline (oldest first) and the contact's engagement now."""

    contact_id: int
    score: float = Field(description="The score decayed to now (0..100).")
    trend: EngagementTrend
    last_replied_at: datetime | None
    last_positive_interaction_at: datetime | None
    entries: list[EngagementEntry]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


class EngagementCounts(BaseModel):
    """What a campaign's sends brought back."""

    sends: int
    replies: int = Field(description="Human replies (out-of-office answers excluded).")
    replied_sends: int = Field(description="Sends with at least one reply.")
    positive_replies: int
    neutral_replies: int
    negative_replies: int
    meeting_requests: int
    opt_outs: int
    complaints: int
    bounces: int = Field(description="Hard bounces.")
    soft_bounces: int
    out_of_office: int
    reply_rate: float = Field(description="replied_sends / sends (0 without sends).")


class StepEngagement(EngagementCounts):
    """The counts of one cadence step."""

    step: int | None = Field(description="The cadence step; null for sends outside a cadence.")


class CampaignEngagement(BaseModel):
    """A campaign's engagement, in total and by cadence step."""

    campaign_id: int
    campaign_name: str
    totals: EngagementCounts
    steps: list[StepEngagement]


# --- the use case -----------------------------------------------------------------------


@dataclass(frozen=True)
class EngagementInput:
    """One event to record (the arguments of `record_engagement`)."""

    contact_id: int
    event: EngagementEvent
    occurred_at: datetime
    sentiment: str | None = None
    email_send_id: int | None = None
    inbound_email_id: int | None = None
    detail: Mapping[str, object] | None = None


@dataclass
class _Row:
    """A history row while events are scored: stored (`id`), or new (`new` = its index)."""

    occurred_at: datetime
    order: int  # the id, or a number above every stored id for a new row, for ties
    score_delta: float
    score_after: float | None
    id: int | None = None
    new: int | None = None
    changed: bool = False

    def point(self) -> ScorePoint | None:
        return None if self.score_after is None else ScorePoint(self.score_after, self.occurred_at)


def timeline_since(occurred_at: datetime) -> datetime:
    """Return from when a contact's history must be read to score an event at `occurred_at`."""
    return occurred_at - TREND_WINDOW


def _last_point(rows: list[_Row], at: datetime) -> ScorePoint | None:
    for row in reversed(rows):
        if row.occurred_at <= at and row.score_after is not None:
            return row.point()
    return None


def _score(
    rows: list[_Row], new: _Row, contact: ContactEngagement, event: EngagementEvent
) -> tuple[ContactEngagement, int]:
    """Put a new row into a contact's timeline, score it and the rows after it; return the
    contact's new state and how many later rows were scored again."""
    key = (new.occurred_at, new.order)
    position = next((n for n, r in enumerate(rows) if (r.occurred_at, r.order) > key), len(rows))
    anchor = _last_point(rows[:position], new.occurred_at)
    new.score_after = next_score(anchor, delta=new.score_delta, at=new.occurred_at)
    rows.insert(position, new)
    latest = ScorePoint(new.score_after, new.occurred_at)
    later = rows[position + 1 :]
    for row in later:
        score = next_score(latest, delta=row.score_delta, at=row.occurred_at)
        if score != row.score_after:
            row.score_after, row.changed = score, True
        latest = ScorePoint(score, row.occurred_at)
    window_start = latest.at - TREND_WINDOW
    trend = trend_between(score_at(_last_point(rows, window_start), window_start), latest.score)
    at = new.occurred_at
    replied = contact.last_replied_at
    if event in REPLY_EVENTS and (replied is None or at > replied):
        replied = at
    positive = contact.last_positive_interaction_at
    if event in POSITIVE_EVENTS and (positive is None or at > positive):
        positive = at
    state = ContactEngagement(
        contact_id=contact.contact_id,
        client_id=contact.client_id,
        score=latest.score,
        trend=trend,
        last_replied_at=replied,
        last_positive_interaction_at=positive,
    )
    return state, len(later)


def record_engagements(
    repo: EngagementRepository, *, org_id: int, events: Sequence[EngagementInput]
) -> list[EngagementChange | None]:
    """Record engagement events, in the order given, inside the caller's unit of work (it
    does not commit); return what each changed, None for one not recorded (its contact does
    not exist, or the event was recorded before, or earlier in `events`).

    A handful of statements whatever the number of events: the contacts are locked in id
    order, the keys looked up, the histories read, and the rows and contacts written at
    once; the scoring between is pure.
    """
    checked: list[tuple[EngagementInput, EngagementKey | None, str | None]] = []
    for item in events:
        if item.occurred_at.tzinfo is None:
            raise ValueError("occurred_at must be timezone-aware")
        event = EngagementEvent(item.event)
        detail = dict(item.detail or {})
        key = engagement_key(
            event,
            inbound_email_id=item.inbound_email_id,
            email_send_id=item.email_send_id,
            detail=detail,
        )
        item = replace(item, event=event, detail=detail)
        checked.append((item, key, implied_sentiment(event, item.sentiment)))
    if not checked:
        return []
    contacts = repo.lock_contacts(org_id, sorted({i.contact_id for i, _, _ in checked}))
    keyed = [(i.contact_id, i.event, k) for i, k, _ in checked if k and i.contact_id in contacts]
    seen = repo.recorded(org_id, keyed) if keyed else set()
    since: dict[int, datetime] = {}
    for item, _, _ in checked:
        if item.contact_id in contacts:
            start = timeline_since(item.occurred_at)
            since[item.contact_id] = min(start, since.get(item.contact_id, start))
    stored = repo.timelines(org_id, since) if since else {}
    timelines = {
        contact_id: [_Row(r.occurred_at, r.id, r.score_delta, r.score_after, id=r.id) for r in rows]
        for contact_id, rows in stored.items()
    }
    top = max((r.id for rows in stored.values() for r in rows), default=0)

    entries: list[NewEngagement] = []
    new_rows: list[_Row] = []
    planned: list[tuple[int, EngagementInput, int, ContactEngagement] | None] = []
    touched: dict[int, ContactEngagement] = {}
    for item, key, sentiment in checked:
        contact = touched.get(item.contact_id) or contacts.get(item.contact_id)
        if contact is None or (key is not None and (item.contact_id, item.event, key) in seen):
            planned.append(None)
            continue
        if key is not None:
            seen.add((item.contact_id, item.event, key))
        delta = WEIGHTS[item.event]
        row = _Row(item.occurred_at, top + len(new_rows) + 1, delta, None, new=len(new_rows))
        state, rescored = _score(
            timelines.setdefault(item.contact_id, []), row, contact, item.event
        )
        touched[item.contact_id] = state
        new_rows.append(row)
        entries.append(
            NewEngagement(
                org_id=org_id,
                contact_id=item.contact_id,
                event=item.event,
                occurred_at=item.occurred_at,
                sentiment=sentiment,
                score_delta=delta,
                score_after=row.score_after or 0.0,
                email_send_id=item.email_send_id,
                inbound_email_id=item.inbound_email_id,
                detail=dict(item.detail or {}),
            )
        )
        planned.append((len(entries) - 1, item, rescored, state))

    if not entries:
        return [None] * len(checked)
    # A new row scored again by a later event of the same call is written with its score.
    final = [
        replace(e, score_after=r.score_after or 0.0) for e, r in zip(entries, new_rows, strict=True)
    ]
    ids = repo.add(final)
    repo.rescore(
        [
            (row.id, row.score_after or 0.0)
            for rows in timelines.values()
            for row in rows
            if row.id is not None and row.changed
        ]
    )
    repo.save_contacts(org_id, list(touched.values()))
    # The lead score reads the engagement: scored again in this transaction, so a
    # `min_lead_score` audience sees the event as soon as it is committed.
    repo.refresh_lead_scores(org_id, sorted(touched), at=max(e.occurred_at for e in entries))

    results: list[EngagementChange | None] = []
    for plan in planned:
        if plan is None:
            results.append(None)
            continue
        index, item, rescored, state = plan
        re_engaged = None
        if item.event in RE_ENGAGING_EVENTS and state.client_id is not None:
            if repo.mark_client_re_engaged(
                org_id,
                state.client_id,
                at=item.occurred_at,
                stale_before=item.occurred_at - STALE_CLIENT_AFTER,
            ):
                re_engaged = state.client_id
        results.append(
            EngagementChange(
                history_id=ids[index],
                contact_id=item.contact_id,
                event=item.event,
                score_delta=entries[index].score_delta,
                score_after=entries[index].score_after,
                score=state.score,
                trend=state.trend,
                rescored=rescored,
                re_engaged_client_id=re_engaged,
            )
        )
    return results


def record_engagement(
    repo: EngagementRepository,
    *,
    org_id: int,
    contact_id: int,
    event: EngagementEvent,
    occurred_at: datetime,
    sentiment: str | None = None,
    email_send_id: int | None = None,
    inbound_email_id: int | None = None,
    detail: Mapping[str, object] | None = None,
) -> EngagementChange | None:
    """Record an engagement event and update the contact's score, inside the caller's unit
    of work (it does not commit).

    Returns None, changing nothing, when the contact does not exist or the event was
    recorded before (see the module's docstring for what makes it the same event).
    """
    (change,) = record_engagements(
        repo,
        org_id=org_id,
        events=[
            EngagementInput(
                contact_id=contact_id,
                event=event,
                occurred_at=occurred_at,
                sentiment=sentiment,
                email_send_id=email_send_id,
                inbound_email_id=inbound_email_id,
                detail=detail,
            )
        ],
    )
    return change


def retract_engagements(
    repo: EngagementRepository,
    *,
    org_id: int,
    inbound_email_id: int,
    contact_id: int,
    events: Collection[EngagementEvent],
) -> list[EngagementEvent]:
    """Remove the events of these kinds a message recorded for a contact, inside the
    caller's unit of work; return the kinds removed.

    For a message read wrongly (a rep re-labelled it): the rows go, every later row of the
    contact's history is scored again without them, and the contact's score, trend and
    interaction dates are what they would be had the events never been recorded.
    """
    wanted = set(events)
    rows = [
        (row_id, event, occurred_at)
        for row_id, contact, event, occurred_at in repo.message_events(org_id, inbound_email_id)
        if contact == contact_id and event in wanted
    ]
    if not rows:
        return []
    contact = repo.lock_contacts(org_id, [contact_id]).get(contact_id)
    removed = {row_id for row_id, _, _ in rows}
    earliest = min(occurred_at for _, _, occurred_at in rows)
    stored = repo.timelines(org_id, {contact_id: timeline_since(earliest)}).get(contact_id, [])
    repo.delete(sorted(removed))
    if contact is None:
        return [event for _, event, _ in rows]
    kept = [
        _Row(r.occurred_at, r.id, r.score_delta, r.score_after, id=r.id)
        for r in stored
        if r.id not in removed
    ]
    first_after = next((n for n, r in enumerate(kept) if r.occurred_at >= earliest), len(kept))
    latest = _last_point(kept[:first_after], earliest)
    changed: list[tuple[int, float]] = []
    for row in kept[first_after:]:
        score = next_score(latest, delta=row.score_delta, at=row.occurred_at)
        if score != row.score_after and row.id is not None:
            row.score_after = score
            changed.append((row.id, score))
        latest = ScorePoint(score, row.occurred_at)
    if latest is None:
        score_now, trend = 0.0, EngagementTrend.UNKNOWN
    else:
        window_start = latest.at - TREND_WINDOW
        score_now = latest.score
        trend = trend_between(score_at(_last_point(kept, window_start), window_start), score_now)
    kinds = {event for _, event, _ in rows}
    replied = contact.last_replied_at
    if kinds & REPLY_EVENTS:
        replied = repo.latest_event_at(org_id, contact_id, sorted(REPLY_EVENTS))
    positive = contact.last_positive_interaction_at
    if kinds & POSITIVE_EVENTS:
        positive = repo.latest_event_at(org_id, contact_id, sorted(POSITIVE_EVENTS))
    repo.rescore(changed)
    repo.save_contacts(
        org_id,
        [
            ContactEngagement(
                contact_id=contact_id,
                client_id=contact.client_id,
                score=score_now,
                trend=trend,
                last_replied_at=replied,
                last_positive_interaction_at=positive,
            )
        ],
    )
    repo.refresh_lead_scores(
        org_id, [contact_id], at=max(occurred_at for _, _, occurred_at in rows)
    )
    return [event for _, event, _ in rows]
