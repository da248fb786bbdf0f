"""Analytics: the numbers of a window, one read model for the API and the digest (issue 14).

`CampaignAnalytics` answers `GET /api/marketing/campaigns/{id}/analytics`; `DigestFacts` is
everything the engagement digest shows. Both are computed by storage (storage/analytics.py,
set-based SQL on SQLite and PostgreSQL) from the same definitions, so the digest's numbers
equal the API's for the same window:

- **enrolled**: enrollments of the campaign's jobs created in the window;
- **sent**: the campaign's sends with status `sent` whose `sent_at` is in the window; a
  send's **step** is the step of the task its card was drafted for (sends without a card
  have none), its **rep** is `email_sends.sender_user_id`;
- every other count is of engagement events (`contact_engagement_history`) whose
  `occurred_at` is in the window, linked to one of the campaign's sends (an opt-out from
  the unsubscribe link, which names no send, counts for the contact's last send before
  it), and counts for that send's step and rep:
  - **replied**: sends with at least one human reply (`replies`: the replies themselves);
    **reply_rate** = replied / sent (0 without sends);
  - **positive / neutral / negative**: replies by sentiment; **meetings**: meeting
    requests; **bounced_hard / bounced_soft**; **unsubscribed**; **complaints**;
  - **delivered** = sent − bounced_hard;
  - **orders_after_reply**: "order after a reply" events whose contact replied to one of
    the campaign's sends within the 30 days before the order.
- **opens / clicks** (only for sends made while the organization tracked them): sends
  opened or clicked by a person; what bots and prefetchers fetched is counted apart.

A window is [since, until) in UTC; it may not be reversed, empty or start in the future.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.content import ContentWeek
from domain.errors import InvalidInput

# The longest window one request may ask for (the API's and the digest's).
MAX_WINDOW: Final = timedelta(days=3660)
# Days of the digest's trend chart.
TREND_DAYS: Final = 30


class AnalyticsWindow(BaseModel):
    """[since, until) in UTC."""

    model_config = ConfigDict(frozen=True)

    since: datetime
    until: datetime

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise ValueError("give since and until with a time zone (e.g. 2026-12-01T00:00Z)")
        if self.until <= self.since:
            raise ValueError("until must come after since")
        if self.until - self.since > MAX_WINDOW:
            raise ValueError("a window may span at most ten years")
        return self

    @classmethod
    def checked(cls, since: datetime, until: datetime, *, now: datetime) -> AnalyticsWindow:
        """A window a person asked for: InvalidInput (said plainly) when it is reversed,
        empty, too long or starts in the future; `until` later than now is cut to now."""
        if since.tzinfo is None or until.tzinfo is None:
            raise InvalidInput("give since and until with a time zone, e.g. 2026-12-01T00:00Z")
        try:
            # Stored and compared in UTC: a time the calendar cannot hold there (year 1 at
            # +01:00) is refused here, not a failure of the query.
            since.astimezone(UTC)
            until.astimezone(UTC)
        except OverflowError:
            raise InvalidInput(
                "the window lies outside the calendar in UTC; give a date after year 1"
            ) from None
        if since >= now:
            raise InvalidInput(
                f"the window starts in the future ({since.isoformat()}); "
                "analytics only count what already happened"
            )
        if until <= since:
            raise InvalidInput(
                f"the window is reversed or empty: until ({until.isoformat()}) "
                f"must come after since ({since.isoformat()})"
            )
        if until - since > MAX_WINDOW:
            raise InvalidInput("a window may span at most ten years")
        return cls(since=since, until=min(until, now))

    @property
    def previous(self) -> AnalyticsWindow:
        """The window of the same length just before this one (the digest's comparison)."""
        span = self.until - self.since
        return AnalyticsWindow(since=self.since - span, until=self.since)


class Counts(BaseModel):
    """What a campaign's (a step's, a rep's) outreach did in a window."""

    enrolled: int = 0
    sent: int = 0
    delivered: int = Field(default=0, description="sent − bounced_hard.")
    replied: int = Field(default=0, description="Sends with at least one human reply.")
    replies: int = Field(default=0, description="Human replies (out-of-office excluded).")
    reply_rate: float = Field(default=0.0, description="replied / sent (0 without sends).")
    positive: int = 0
    neutral: int = 0
    negative: int = 0
    meetings: int = Field(default=0, description="Replies asking for a meeting or a call.")
    bounced_hard: int = 0
    bounced_soft: int = 0
    unsubscribed: int = 0
    complaints: int = 0
    orders_after_reply: int = Field(
        default=0, description="Orders of a client within 30 days after its contact replied."
    )


class StepCounts(Counts):
    """The counts of one cadence step (null: sends outside a cadence)."""

    step: int | None


class RepCounts(Counts):
    """The counts of one rep (the user the emails went out as; null: unknown)."""

    user_id: int | None
    name: str | None = None
    email: str | None = None


class TrackingCounts(BaseModel):
    """Opens and clicks of tracked sends; people and bots apart."""

    tracked_sends: int = 0
    opened: int = Field(default=0, description="Tracked sends a person opened.")
    clicked: int = Field(default=0, description="Tracked sends a person clicked a link of.")
    bot_opens: int = Field(default=0, description="Sends whose pixel only a proxy/bot fetched.")
    bot_clicks: int = Field(default=0, description="Link fetches by scanners and prefetchers.")
    open_rate: float = 0.0
    click_rate: float = 0.0


class CampaignAnalytics(BaseModel):
    """`GET /api/marketing/campaigns/{id}/analytics`."""

    campaign_id: int
    campaign_name: str
    since: datetime
    until: datetime
    totals: Counts
    steps: list[StepCounts]
    reps: list[RepCounts]
    tracking: TrackingCounts | None = Field(
        default=None, description="Null unless some of the window's sends were tracked."
    )


# --- the digest's read model --------------------------------------------------------------


class Metric(BaseModel):
    """A number of the period and of the period before it."""

    current: int = 0
    previous: int = 0

    @property
    def change(self) -> int:
        return self.current - self.previous


class SentimentMetrics(BaseModel):
    positive: Metric = Metric()
    neutral: Metric = Metric()
    negative: Metric = Metric()

    @property
    def total(self) -> Metric:
        return Metric(
            current=self.positive.current + self.neutral.current + self.negative.current,
            previous=self.positive.previous + self.neutral.previous + self.negative.previous,
        )


class HotReply(BaseModel):
    """A stale client's contact who replied positively in the period."""

    contact_id: int
    contact_name: str
    contact_email: str
    client_name: str | None
    days_since_order: int | None = Field(description="Null: the client never ordered.")
    replied_at: datetime
    inbound_email_id: int
    engagement_score: float
    # The reply card in Slack, when it was posted.
    card_id: int | None = None
    slack_channel_id: str | None = None
    slack_message_ts: str | None = None


class WaitingCard(BaseModel):
    """A card waiting for a person's decision."""

    card_id: int
    title: str
    created_at: datetime
    rep_name: str | None
    rep_slack_user_id: str | None
    slack_channel_id: str | None
    slack_message_ts: str | None


class CampaignFunnel(BaseModel):
    """A running campaign from its first enrollment to the period's end (lifetime), with
    what the period itself added."""

    campaign_id: int
    campaign_name: str
    lifetime: Counts
    period: Counts


class RevenueSignal(BaseModel):
    """A client that ordered again after one of its contacts replied."""

    client_id: int
    client_name: str
    orders: int
    fees: float | None
    contact_name: str | None


class DayPoint(BaseModel):
    """One day of the trend chart (the digest channel's local day)."""

    day: str = Field(description="YYYY-MM-DD")
    sent: int = 0
    positive: int = 0
    neutral: int = 0
    negative: int = 0


class RankedClient(BaseModel):
    """A stale client of the daily ranking."""

    client_id: int
    client_name: str
    rank: int
    score: float
    days_since_order: int | None
    past_order_rate: float
    contact_id: int | None
    contact_name: str | None
    contact_email: str | None


class ReputationLine(BaseModel):
    """The digest's reputation line: the period's reviews (docs/reputation.md), filled from
    the same totals `GET /api/reputation/trends` answers with for the same window."""

    reviews: int = 0
    average_rating: float | None = None
    negative: int = 0
    unresponded: int = 0
    escalated: int = 0


class NewsletterLine(BaseModel):
    """One newsletter issue in the digest (docs/newsletters.md): one that sent during the
    period or is on its way, with the numbers `GET …/issues/{issue_id}` answers with (the
    same storage query: `IssueRepo.metrics`)."""

    issue_id: int
    newsletter_name: str
    title: str
    status: str
    sent: int
    planned: int = Field(description="The issue's emails (one per subscriber planned).")
    bounced: int
    unsubscribed: int
    #: While on its way: the planned finish; once sent or cancelled: when it ended.
    finish: datetime | None = None


class DigestFacts(BaseModel):
    """Everything the digest of one period shows (filters: a campaign, a rep)."""

    org_id: int
    since: datetime
    until: datetime
    campaign_id: int | None = None
    rep_user_id: int | None = None
    sent: Metric = Metric()
    replies: SentimentMetrics = SentimentMetrics()
    hottest: list[HotReply] = Field(default_factory=list)
    meetings: Metric = Metric()
    opt_outs: Metric = Metric()
    bounces: Metric = Metric()
    waiting_count: int = 0
    waiting: list[WaitingCard] = Field(default_factory=list, description="Oldest first.")
    funnels: list[CampaignFunnel] = Field(default_factory=list)
    orders_after_reply: Metric = Metric()
    revenue: list[RevenueSignal] = Field(default_factory=list)
    trend: list[DayPoint] = Field(default_factory=list, description="TREND_DAYS local days.")
    stale_clients: list[RankedClient] = Field(default_factory=list)
    tracking: TrackingCounts | None = None
    #: None when the organization had no reviews in the period (no line is shown).
    reputation: ReputationLine | None = None
    #: "This week's content": the posts scheduled in the local week the digest is read in,
    #: as `GET /api/marketing/content-schedule` answers for the same week (None: none).
    content: ContentWeek | None = None
    #: Newsletter issues that sent in the period or are being sent (empty: no section).
    newsletters: list[NewsletterLine] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing happened in the period (the digest says so in one line)."""
        return not (
            self.sent.current
            or self.replies.total.current
            or self.meetings.current
            or self.opt_outs.current
            or self.bounces.current
            or self.orders_after_reply.current
        )
