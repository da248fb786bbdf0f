"""The analytics read model (issue 14): a campaign's numbers of a window, and the facts of
the engagement digest, with set-based SQL that runs on SQLite and PostgreSQL.

Every number follows the glossary of domain/analytics.py. One measurement (`_measure`)
makes them all: three statements (enrollments, sends, engagement events) grouped by what
the caller needs: campaign, cadence step, rep, and the parts of time a row falls in (the
local day, the period or the one before, the campaign's life). `campaign_analytics` groups
a campaign's window by step and rep; the digest measures its period, the period before,
the trend's days and the running campaigns' lives in one pass over their span (from the
oldest running campaign's start), grouped by campaign; `marketing_campaigns.metrics` is
the campaigns' lives grouped by campaign. Same statements, same numbers.

How an engagement event finds its send (and so its campaign, step and rep), in SQL:
- the send it names (`email_send_id`), else the send its inbound email answers;
- an opt-out that names neither (the unsubscribe link): the contact's last sent send at
  or before the opt-out (a correlated subquery);
- an order after a reply: the send the contact last replied to in the 30 days before the
  order (ORDER_AFTER_REPLY_WINDOW), through that reply's own send.

Callers own the transaction; nothing here commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Interval,
    Select,
    Table,
    and_,
    bindparam,
    case,
    func,
    literal,
    null,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import Null

from domain.analytics import (
    MAX_WINDOW,
    TREND_DAYS,
    AnalyticsWindow,
    CampaignAnalytics,
    CampaignFunnel,
    Counts,
    DayPoint,
    DigestFacts,
    HotReply,
    Metric,
    NewsletterLine,
    RankedClient,
    RepCounts,
    ReputationLine,
    RevenueSignal,
    SentimentMetrics,
    StepCounts,
    TrackingCounts,
    WaitingCard,
)
from domain.cadence import time_zone as checked_time_zone
from domain.campaigns import CampaignStatus
from domain.cards import OPEN_STATES
from domain.content import ContentWeek, week_of
from domain.content_service import week_summary
from domain.email_campaigns import StepSends
from domain.engagement import (
    ORDER_AFTER_REPLY_WINDOW,
    REPLY_EVENTS,
    STALE_CLIENT_AFTER,
    EngagementEvent,
)
from domain.errors import NotFound
from domain.sending import OutboxStatus
from storage import models as m
from storage.content import ContentScheduleRepo
from storage.newsletters import IssueRepo
from storage.reputation import ReviewRepo
from storage.types import JsonType, UTCDateTime

E = EngagementEvent
_H = m.ContactEngagementEvent
_S = m.EmailSend

_SENT: Final = OutboxStatus.SENT.value
_REPLIES: Final = sorted(e.value for e in REPLY_EVENTS)
# The events the counts read (out-of-office answers, our own sends and a rep's touches
# are no part of them).
_COUNTED: Final = sorted(
    {
        *_REPLIES,
        E.BOUNCED.value,
        E.SOFT_BOUNCE.value,
        E.OPTED_OUT.value,
        E.COMPLAINT.value,
        E.ORDER_AFTER_REPLY.value,
    }
)
# Replies that make a stale client's contact "hot".
_POSITIVE: Final = [E.POSITIVE_REPLY.value, E.MEETING_REQUEST.value]
_OPEN_CARD_STATES: Final = sorted(s.value for s in OPEN_STATES)

HOTTEST_LIMIT: Final = 3
WAITING_LIMIT: Final = 5
# The clients the digest names as ordering again; the metric counts every order event.
REVENUE_LIMIT: Final = 10
STALE_CLIENTS_LIMIT: Final = 10
#: Newsletter issues the digest reads (sent in the period or on their way).
NEWSLETTER_ISSUES: Final = 20
_MICROSECOND: Final = timedelta(microseconds=1)


class _Dim(StrEnum):
    """What a measurement is grouped by."""

    CAMPAIGN = "campaign"
    STEP = "step"
    REP = "rep"
    # The index of the local day (`_Scope.days`) or period (`_Scope.periods`) a row's time
    # falls in; NULL outside them.
    DAY = "day"
    PERIOD = "period"
    # 1 when the row is within its campaign's life (`_Scope.starts` to `_Scope.life_until`).
    LIFE = "life"


@dataclass(frozen=True)
class _Scope:
    """Which of an organization's rows a measurement reads, and the time divisions of its
    DAY, PERIOD and LIFE dimensions (each inside the measurement's [since, until))."""

    org_id: int
    # None: every send of the organization (a campaign's or not).
    campaign_ids: tuple[int, ...] | None = None
    # The rep: sends they sent (`sender_user_id`), enrollments of the jobs they own.
    rep_user_id: int | None = None
    # With _Dim.DAY and _Dim.PERIOD: ascending bounds (n parts, n + 1 instants).
    days: Sequence[datetime] = ()
    periods: Sequence[datetime] = ()
    # With _Dim.LIFE: where each campaign's life starts, and where every life ends.
    starts: Mapping[int, datetime] = field(default_factory=dict)
    life_until: datetime | None = None


@dataclass
class _Tally:
    """The raw counters of one group; `counts()` derives the rest."""

    enrolled: int = 0
    sent: int = 0
    replied: int = 0
    replies: int = 0
    positive: int = 0
    negative: int = 0
    meetings: int = 0
    bounced_hard: int = 0
    bounced_soft: int = 0
    unsubscribed: int = 0
    complaints: int = 0
    orders_after_reply: int = 0

    def add(self, other: _Tally) -> None:
        """Add another group's counters (groups partition the sends, so `replied` adds)."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def counts(self) -> Counts:
        """The counts as the glossary defines them."""
        return Counts(
            enrolled=self.enrolled,
            sent=self.sent,
            delivered=self.sent - self.bounced_hard,
            replied=self.replied,
            replies=self.replies,
            reply_rate=round(self.replied / self.sent, 4) if self.sent else 0.0,
            positive=self.positive,
            neutral=self.replies - self.positive - self.negative,
            negative=self.negative,
            meetings=self.meetings,
            bounced_hard=self.bounced_hard,
            bounced_soft=self.bounced_soft,
            unsubscribed=self.unsubscribed,
            complaints=self.complaints,
            orders_after_reply=self.orders_after_reply,
        )


_Key = tuple[Any, ...]


@dataclass
class _Measured:
    """What one measurement found: activity (sends and events) by its dimensions, and
    enrollments by the same dimensions except the step (enrollments belong to no step)."""

    dims: tuple[_Dim, ...]
    activity: dict[_Key, _Tally]
    # Keyed by `dims` without STEP; the DAY of an enrollment is NULL (no trend of them).
    enrolled: dict[_Key, int]

    def total(self) -> Counts:
        """The counts of every group together."""
        tally = _Tally(enrolled=sum(self.enrolled.values()))
        for group in self.activity.values():
            tally.add(group)
        return tally.counts()

    def by(self, dim: _Dim) -> dict[Any, Counts]:
        """The counts by one dimension (enrolled stays 0 by step)."""
        position = self.dims.index(dim)
        tallies: dict[Any, _Tally] = {}
        for key, group in self.activity.items():
            tallies.setdefault(key[position], _Tally()).add(group)
        if dim != _Dim.STEP:
            enrolled_dims = tuple(d for d in self.dims if d != _Dim.STEP)
            at = enrolled_dims.index(dim)
            for key, count in self.enrolled.items():
                tallies.setdefault(key[at], _Tally()).enrolled += count
        return {value: tally.counts() for value, tally in tallies.items()}

    def pick(self, dim: _Dim, value: Any) -> _Measured:
        """The groups whose `dim` is `value`, without that dimension."""
        position = self.dims.index(dim)
        enrolled_dims = tuple(d for d in self.dims if d != _Dim.STEP)
        at = enrolled_dims.index(dim)
        return _Measured(
            dims=self.dims[:position] + self.dims[position + 1 :],
            activity={
                key[:position] + key[position + 1 :]: tally
                for key, tally in self.activity.items()
                if key[position] == value
            },
            enrolled={
                key[:at] + key[at + 1 :]: count
                for key, count in self.enrolled.items()
                if key[at] == value
            },
        )


def _table(model: type[m.Base]) -> Table:
    table = model.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not mapped to a table")
    return table


def _at(value: datetime) -> ColumnElement[datetime]:
    """A timestamp parameter stored as the columns store theirs (UTC, on both databases)."""
    return literal(value, UTCDateTime())


def _full_name(first: str | None, last: str | None, email: str | None) -> str:
    name = " ".join(part for part in (first, last) if part)
    return name or email or ""


def _lifetime(start: datetime, until: datetime) -> AnalyticsWindow | None:
    """[start, until) held within the longest window; None when it would be empty."""
    since = max(start, until - MAX_WINDOW)
    if since >= until:
        return None
    return AnalyticsWindow(since=since, until=until)


def local_days(time_zone: str, until: datetime) -> list[tuple[str, datetime, datetime]]:
    """The TREND_DAYS local days of `time_zone` ending with the one that holds the last
    instant before `until`: (YYYY-MM-DD, its start, its end) in UTC, oldest first.

    Days are cut at local midnight through zoneinfo, so a day of a DST change lasts 23 or
    25 hours."""
    zone = checked_time_zone(time_zone, field_name="time_zone")
    last = (until - _MICROSECOND).astimezone(zone).date()
    dates = [last - timedelta(days=n) for n in range(TREND_DAYS - 1, -1, -1)]
    bounds = [
        datetime.combine(d, time(), tzinfo=zone).astimezone(UTC)
        for d in [*dates, last + timedelta(days=1)]
    ]
    return [(d.isoformat(), bounds[n], bounds[n + 1]) for n, d in enumerate(dates)]


class AnalyticsViews:
    """What the analytics route and the digest show, and the campaigns' stored metrics."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def _for_counting(self) -> None:
        """Set the transaction up for a few large aggregates (PostgreSQL).

        Without JIT: the estimated cost of these statements passes `jit_above_cost` as
        an organization grows (the digest's engagement events: 169,000 at 1,000,000
        enrollments, bench/bench_analytics.py), and compiling is not worth it for
        statements that run once: a variant of that statement whose cost passed the
        optimizing thresholds at 300,000 enrollments spent 0.74 s of its 0.89 s compiling
        (EXPLAIN ANALYZE)."""
        if self._s.get_bind().dialect.name == "postgresql":
            self._s.execute(text("SET LOCAL jit = off"))
            # The hash of an organization's sends (joined by its engagement events) holds
            # 500,000 rows at 1,000,000 enrollments: in memory, not in batches on disk.
            self._s.execute(text("SET LOCAL work_mem = '64MB'"))

    # --- the API ----------------------------------------------------------------------

    def campaign_analytics(
        self, org_id: int, campaign_id: int, window: AnalyticsWindow
    ) -> CampaignAnalytics:
        """Return a campaign's counts of the window: in total, by cadence step (sends
        without a card have none) and by rep (the sender; enrollments by the job's owner),
        and its opens and clicks when some of the window's sends were tracked."""
        name = self._campaign_name(org_id, campaign_id)
        self._for_counting()
        scope = _Scope(org_id, campaign_ids=(campaign_id,))
        measured = self._measure(scope, window.since, window.until, (_Dim.STEP, _Dim.REP))
        steps = measured.by(_Dim.STEP)
        reps = measured.by(_Dim.REP)
        users = self._users(org_id, [rep for rep in reps if rep is not None])
        return CampaignAnalytics(
            campaign_id=campaign_id,
            campaign_name=name,
            since=window.since,
            until=window.until,
            totals=measured.total(),
            steps=[
                StepCounts(step=step, **counts.model_dump())
                for step, counts in sorted(
                    steps.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)
                )
            ],
            reps=[
                RepCounts(
                    user_id=rep,
                    name=users.get(rep, (None, None))[0] if rep is not None else None,
                    email=users.get(rep, (None, None))[1] if rep is not None else None,
                    **counts.model_dump(),
                )
                for rep, counts in sorted(
                    reps.items(), key=lambda kv: (-kv[1].sent, kv[0] is None, kv[0] or 0)
                )
            ],
            tracking=self._tracking(scope, window.since, window.until),
        )

    def campaign_lifetime_window(
        self, org_id: int, campaign_id: int, now: datetime
    ) -> AnalyticsWindow:
        """Return a campaign's whole life: from its first enrollment or its creation,
        whichever came first, to now (at most MAX_WINDOW; a campaign created after `now`,
        as a clock running behind the database's may have it, gets the last microsecond)."""
        self._campaign_name(org_id, campaign_id)
        start = self._lifetime_starts(org_id, [campaign_id])[campaign_id]
        return _lifetime(start, now) or AnalyticsWindow(since=now - _MICROSECOND, until=now)

    # --- the email side of campaigns (`email_campaigns`, issue 16) -----------------------

    def campaign_steps(
        self, org_id: int, campaign_ids: Sequence[int], now: datetime
    ) -> dict[int, dict[int | None, Counts]]:
        """Return each campaign's counts by cadence step over its whole life to `now`: the
        window `campaign_lifetime_window` gives the analytics route when it is asked for
        none, measured by the same statements (`_measure`) as `campaign_analytics`.
        Campaigns not of the organization, or begun after `now`, are left out."""
        lives = self._lives(org_id, campaign_ids, until=now)
        if not lives:
            return {}
        self._for_counting()
        measured = self._measure(
            _Scope(org_id, campaign_ids=tuple(lives), starts=lives, life_until=now),
            min(lives.values()),
            now,
            (_Dim.CAMPAIGN, _Dim.STEP, _Dim.LIFE),
        ).pick(_Dim.LIFE, 1)
        return {cid: measured.pick(_Dim.CAMPAIGN, cid).by(_Dim.STEP) for cid in lives}

    def campaign_step_sends(
        self, org_id: int, campaign_ids: Sequence[int], now: datetime, *, subjects: int
    ) -> dict[int, dict[int | None, StepSends]]:
        """Return, by campaign and step, the subjects of the sends `campaign_steps` counts
        (the `subjects` most used, with how many used each) and their first and last time.
        One statement; its rows are bounded by `subjects` per step."""
        lives = self._lives(org_id, campaign_ids, until=now)
        if not lives:
            return {}
        scope = _Scope(org_id, campaign_ids=tuple(lives), starts=lives, life_until=now)
        columns: list[Any] = [
            _S.campaign_id.label("campaign_id"),
            m.JobTask.step.label("step"),
            _S.subject.label("subject"),
            func.count().label("n"),
            func.min(_S.sent_at).label("first"),
            func.max(_S.sent_at).label("last"),
        ]
        per_subject = select(*columns).select_from(_S)
        grouped = (
            self._with_step(per_subject, scope, _S, (_Dim.STEP,))
            .where(
                *self._send_filters(scope, _S),
                _S.sent_at >= min(lives.values()),
                _S.sent_at < now,
                self._in_life(scope, _S.campaign_id, _S.sent_at).is_not(None),
            )
            .group_by(_S.campaign_id, m.JobTask.step, _S.subject)
            .subquery("by_subject")
        )
        g = grouped.c
        step_of = (g.campaign_id, g.step)
        ranked = select(
            g.campaign_id,
            g.step,
            g.subject,
            g.n,
            func.min(g.first).over(partition_by=step_of).label("first"),
            func.max(g.last).over(partition_by=step_of).label("last"),
            func.row_number()
            .over(partition_by=step_of, order_by=(g.n.desc(), g.subject))
            .label("rank"),
        ).subquery("ranked")
        r = ranked.c
        found: dict[int, dict[int | None, StepSends]] = {}
        for row in self._s.execute(
            select(r.campaign_id, r.step, r.subject, r.n, r.first, r.last)
            .where(r.rank <= subjects)
            .order_by(r.campaign_id, r.step, r.rank)
        ):
            sends = found.setdefault(row.campaign_id, {}).setdefault(
                row.step,
                StepSends(first_sent_at=_utc(row.first), last_sent_at=_utc(row.last)),
            )
            sends.subjects.append((row.subject, int(row.n)))
        return found

    # --- the stored metrics -------------------------------------------------------------

    def campaign_org_ids(self) -> list[int]:
        """Return the organizations that have campaigns."""
        c = m.MarketingCampaign
        return list(self._s.scalars(select(c.org_id).distinct().order_by(c.org_id)))

    def refresh_campaign_metrics(self, org_id: int, now: datetime) -> int:
        """Write each campaign's lifetime totals (`Counts` and `updated_at`) into
        `marketing_campaigns.metrics`; return how many campaigns were written."""
        c = m.MarketingCampaign
        ids = list(self._s.scalars(select(c.id).where(c.org_id == org_id).order_by(c.id)))
        if not ids:
            return 0
        self._for_counting()
        lives = self._lives(org_id, ids, until=now)
        lifetimes: dict[int, Counts] = {}
        if lives:
            lifetimes = (
                self._measure(
                    _Scope(org_id, campaign_ids=tuple(lives), starts=lives, life_until=now),
                    min(lives.values()),
                    now,
                    (_Dim.CAMPAIGN, _Dim.LIFE),
                )
                .pick(_Dim.LIFE, 1)
                .by(_Dim.CAMPAIGN)
            )
        table = _table(c)
        self._s.execute(
            update(table)
            .where(table.c.org_id == org_id, table.c.id == bindparam("campaign"))
            .values(metrics=bindparam("metrics", type_=JsonType)),
            [
                {
                    "campaign": campaign_id,
                    "metrics": {
                        **lifetimes.get(campaign_id, Counts()).model_dump(),
                        "updated_at": now.isoformat(),
                    },
                }
                for campaign_id in ids
            ],
        )
        return len(ids)

    # --- the digest --------------------------------------------------------------------

    def digest_facts(
        self,
        org_id: int,
        window: AnalyticsWindow,
        *,
        campaign_id: int | None = None,
        rep_user_id: int | None = None,
        time_zone: str,
        now: datetime,
    ) -> DigestFacts:
        """Return everything the digest of `window` shows, compared with the window before
        it; `campaign_id` keeps one campaign's sends, enrollments and cards, `rep_user_id`
        the rep's sends and the cards and enrollments of the jobs they own."""
        days = local_days(time_zone, window.until)
        if campaign_id is not None:
            self._campaign_name(org_id, campaign_id)
        self._for_counting()
        previous_window = window.previous
        scope = _Scope(
            org_id,
            campaign_ids=None if campaign_id is None else (campaign_id,),
            rep_user_id=rep_user_id,
        )
        running = self._running_campaigns(scope)
        lives = self._lives(org_id, [cid for cid, _ in running], until=window.until)
        scope = replace(
            scope,
            days=[start for _, start, _ in days] + [days[-1][2]],
            periods=[previous_window.since, window.since, window.until],
            starts=lives,
            life_until=window.until,
        )
        # The period, the one before, the trend's days and the running campaigns' lives:
        # one measurement of their span.
        measured = self._measure(
            scope,
            min(previous_window.since, scope.days[0], *lives.values()),
            max(window.until, scope.days[-1]),
            (_Dim.CAMPAIGN, _Dim.PERIOD, _Dim.DAY, _Dim.LIFE),
        )
        period = measured.pick(_Dim.PERIOD, 1)
        current, previous = period.total(), measured.pick(_Dim.PERIOD, 0).total()
        period_by_campaign = period.by(_Dim.CAMPAIGN)
        lifetime_by_campaign = measured.pick(_Dim.LIFE, 1).by(_Dim.CAMPAIGN)

        def metric(name: str) -> Metric:
            return Metric(current=getattr(current, name), previous=getattr(previous, name))

        waiting_count, waiting = self._waiting(scope, now)
        return DigestFacts(
            org_id=org_id,
            since=window.since,
            until=window.until,
            campaign_id=campaign_id,
            rep_user_id=rep_user_id,
            sent=metric("sent"),
            replies=SentimentMetrics(
                positive=metric("positive"), neutral=metric("neutral"), negative=metric("negative")
            ),
            hottest=self._hottest(scope, window),
            meetings=metric("meetings"),
            opt_outs=metric("unsubscribed"),
            bounces=metric("bounced_hard"),
            waiting_count=waiting_count,
            waiting=waiting,
            # A campaign begun after the period has no life in it yet: zeros.
            funnels=[
                CampaignFunnel(
                    campaign_id=cid,
                    campaign_name=name,
                    lifetime=lifetime_by_campaign.get(cid, Counts()),
                    period=period_by_campaign.get(cid, Counts()),
                )
                for cid, name in running
            ],
            orders_after_reply=metric("orders_after_reply"),
            revenue=self._revenue(scope, window),
            trend=self._trend(days, measured.by(_Dim.DAY)),
            stale_clients=self._stale_clients(org_id),
            tracking=self._tracking(scope, window.since, window.until),
            reputation=self._reputation(org_id, window.since, window.until),
            content=self._content_week(org_id, window.until, time_zone),
            newsletters=self._newsletters(org_id, window.since, window.until),
        )

    def _newsletters(self, org_id: int, since: datetime, until: datetime) -> list[NewsletterLine]:
        """The newsletter issues that sent in the period or are on their way, each with the
        numbers of the issue route's own query (`IssueRepo.metrics`)."""
        issues = IssueRepo(self._s)
        lines: list[NewsletterLine] = []
        for issue_id, name, title, status, finish in issues.active_in(
            org_id, since, until, limit=NEWSLETTER_ISSUES
        ):
            metrics = issues.metrics(org_id, issue_id)
            lines.append(
                NewsletterLine(
                    issue_id=issue_id,
                    newsletter_name=name,
                    title=title,
                    status=status.value,
                    sent=metrics.sent,
                    planned=metrics.planned,
                    bounced=metrics.bounced,
                    unsubscribed=metrics.unsubscribed,
                    finish=finish,
                )
            )
        return lines

    def _content_week(self, org_id: int, until: datetime, time_zone: str) -> ContentWeek | None:
        """The week's scheduled posts (the local week holding the period's end: the week
        the digest is read in), from the calendar's own query (None without any)."""
        since, end = week_of(until, time_zone)
        entries = ContentScheduleRepo(self._s).window(org_id, since, end)
        return week_summary(since, end, entries) if entries else None

    def _reputation(self, org_id: int, since: datetime, until: datetime) -> ReputationLine | None:
        """The period's reviews, from the trends API's own totals (None without reviews)."""
        totals = ReviewRepo(self._s).totals(org_id, since, until)
        if not (totals.reviews or totals.unresponded):
            return None
        return ReputationLine(
            reviews=totals.reviews,
            average_rating=totals.average_rating,
            negative=totals.negative,
            unresponded=totals.unresponded,
            escalated=totals.escalated,
        )

    def _running_campaigns(self, scope: _Scope) -> list[tuple[int, str]]:
        """The campaigns in scope that are running: active, with a job (the rep's)."""
        c, j = m.MarketingCampaign, m.Job
        query = (
            select(c.id, c.name)
            .where(
                c.org_id == scope.org_id,
                c.status == CampaignStatus.ACTIVE.value,
                select(j.id)
                .where(
                    j.org_id == scope.org_id,
                    j.campaign_id == c.id,
                    *([j.owner_id == scope.rep_user_id] if scope.rep_user_id is not None else []),
                )
                .exists(),
            )
            .order_by(c.name, c.id)
        )
        if scope.campaign_ids is not None:
            query = query.where(c.id.in_(scope.campaign_ids))
        return [(row.id, row.name) for row in self._s.execute(query)]

    # --- one measurement ---------------------------------------------------------------

    def _measure(
        self,
        scope: _Scope,
        since: datetime,
        until: datetime,
        dims: tuple[_Dim, ...],
    ) -> _Measured:
        """Count enrollments, sends and engagement events of [since, until) in scope,
        grouped by `dims`: three statements whatever the number of groups."""
        activity: dict[_Key, _Tally] = {}
        for row in self._s.execute(self._sent_query(scope, since, until, dims)):
            activity.setdefault(tuple(row)[:-1], _Tally()).sent += int(row.n)
        for row in self._s.execute(self._events_query(scope, since, until, dims)):
            values = tuple(row)
            tally = activity.setdefault(values[: len(dims)], _Tally())
            (
                tally.replied,
                tally.replies,
                tally.positive,
                tally.negative,
                tally.meetings,
                tally.bounced_hard,
                tally.bounced_soft,
                tally.unsubscribed,
                tally.complaints,
                tally.orders_after_reply,
            ) = (int(v or 0) for v in values[len(dims) :])
        counted: dict[_Key, int] = {}
        for row in self._s.execute(self._enrolled_query(scope, since, until, dims)):
            counted[tuple(row)[:-1]] = int(row.n)
        return _Measured(dims=dims, activity=activity, enrolled=counted)

    @staticmethod
    def _send_filters(scope: _Scope, send: Any) -> list[ColumnElement[bool]]:
        """The conditions that keep a send (email_sends or an alias) in scope."""
        conditions: list[ColumnElement[bool]] = [
            send.org_id == scope.org_id,
            send.status == _SENT,
        ]
        if scope.campaign_ids is not None:
            conditions.append(send.campaign_id.in_(scope.campaign_ids))
        if scope.rep_user_id is not None:
            conditions.append(send.sender_user_id == scope.rep_user_id)
        return conditions

    @staticmethod
    def _part_of(bounds: Sequence[datetime], at: Any) -> Any:
        """The index of the part of `bounds` that `at` falls in (NULL outside them): a CASE
        over the bounds, since local days need the zone's rules, which SQLite lacks."""
        return case(
            (at < _at(bounds[0]), None),
            *[(at < _at(bound), n) for n, bound in enumerate(bounds[1:])],
            else_=None,
        )

    @staticmethod
    def _in_life(scope: _Scope, campaign: Any, at: Any) -> Any:
        """1 when `at` is within its campaign's life, else NULL."""
        if scope.life_until is None:
            raise ValueError("a LIFE dimension needs the lives' end")
        if not scope.starts:
            return null()
        start = case(
            {cid: _at(start) for cid, start in scope.starts.items()},
            value=campaign,
        )
        return case((and_(at >= start, at < _at(scope.life_until)), 1), else_=None)

    def _dim_columns(
        self, scope: _Scope, dims: Sequence[_Dim], *, campaign: Any, step: Any, rep: Any, at: Any
    ) -> list[Any]:
        columns = {
            _Dim.CAMPAIGN: lambda: campaign,
            _Dim.STEP: lambda: step,
            _Dim.REP: lambda: rep,
            _Dim.DAY: lambda: self._part_of(scope.days, at),
            _Dim.PERIOD: lambda: self._part_of(scope.periods, at),
            _Dim.LIFE: lambda: self._in_life(scope, campaign, at),
        }
        return [columns[d]().label(d.value) for d in dims]

    def _with_step(
        self, query: Select[Any], scope: _Scope, send: Any, dims: Sequence[_Dim]
    ) -> Select[Any]:
        """Join the card and task a send was drafted for when the step is asked for.

        A send's card and task are its job's, and a send's campaign is its job's: with
        campaigns in scope, only their jobs' cards and tasks are read (PostgreSQL then
        hashes a campaign's cards, not the organization's)."""
        if _Dim.STEP not in dims:
            return query
        card, task = m.Card, m.JobTask
        card_on = [card.id == send.card_id]
        task_on = [task.id == card.task_id]
        if scope.campaign_ids is not None:
            jobs = select(m.Job.id).where(
                m.Job.org_id == scope.org_id, m.Job.campaign_id.in_(scope.campaign_ids)
            )
            card_on += [card.org_id == scope.org_id, card.job_id.in_(jobs)]
            task_on += [task.org_id == scope.org_id, task.job_id.in_(jobs)]
        return query.outerjoin(card, and_(*card_on)).outerjoin(task, and_(*task_on))

    def _sent_query(
        self, scope: _Scope, since: datetime, until: datetime, dims: Sequence[_Dim]
    ) -> Select[Any]:
        columns = self._dim_columns(
            scope,
            dims,
            campaign=_S.campaign_id,
            step=m.JobTask.step,
            rep=_S.sender_user_id,
            at=_S.sent_at,
        )
        query = self._with_step(
            select(*columns, func.count().label("n")).select_from(_S), scope, _S, dims
        )
        return query.where(
            *self._send_filters(scope, _S),
            _S.sent_at >= since,
            _S.sent_at < until,
        ).group_by(*_grouping(columns))

    @staticmethod
    def _send_of(event: Any) -> Any:
        """The send an engagement event names, or the one its inbound email answers.

        The inbound email is read only for an event that names no send (COALESCE stops at
        the first value), by its key: most events name theirs, and joining every event to
        the inbound emails hashed the organization's whole inbox."""
        i = m.InboundEmail
        answered = (
            select(i.email_send_id)
            .where(i.id == event.inbound_email_id)
            .correlate(event)
            .scalar_subquery()
        )
        return func.coalesce(event.email_send_id, answered)

    def _linked_send(self) -> Any:
        """The send an engagement event counts for (see the module's docstring)."""
        last_sent = aliased(m.EmailSend)
        last_send = (
            select(last_sent.id)
            .where(
                last_sent.org_id == _H.org_id,
                last_sent.contact_id == _H.contact_id,
                last_sent.status == _SENT,
                last_sent.sent_at <= _H.occurred_at,
            )
            .order_by(last_sent.sent_at.desc(), last_sent.id.desc())
            .limit(1)
            .correlate(_H)
            .scalar_subquery()
        )
        reply = aliased(_H)
        replied_send = self._send_of(reply)
        last_replied = (
            select(replied_send)
            .where(
                reply.org_id == _H.org_id,
                reply.contact_id == _H.contact_id,
                reply.event.in_(_REPLIES),
                reply.occurred_at <= _H.occurred_at,
                reply.occurred_at >= self._earlier(_H.occurred_at, ORDER_AFTER_REPLY_WINDOW),
                replied_send.is_not(None),
            )
            .order_by(reply.occurred_at.desc(), reply.id.desc())
            .limit(1)
            .correlate(_H)
            .scalar_subquery()
        )
        return func.coalesce(
            self._send_of(_H),
            case(
                (
                    and_(_H.event == E.OPTED_OUT.value, _H.inbound_email_id.is_(None)),
                    last_send,
                ),
                (_H.event == E.ORDER_AFTER_REPLY.value, last_replied),
                else_=None,
            ),
        )

    def _earlier(self, at: Any, by: timedelta) -> Any:
        """`at` minus a whole number of seconds, in SQL.

        SQLite keeps timestamps as 'YYYY-MM-DD HH:MM:SS.ffffff' text: `datetime()` moves
        the seconds and the fraction is put back unchanged, so the result compares exactly
        with the stored values."""
        if self._s.get_bind().dialect.name == "postgresql":
            return at - literal(by, Interval())
        seconds = int(by.total_seconds())
        return func.datetime(at, f"-{seconds} seconds").concat(func.substr(at, 20))

    def _events_query(
        self, scope: _Scope, since: datetime, until: datetime, dims: Sequence[_Dim]
    ) -> Select[Any]:
        events = (
            select(
                _H.event.label("event"),
                _H.sentiment.label("sentiment"),
                _H.occurred_at.label("occurred_at"),
                self._linked_send().label("send_id"),
            )
            .select_from(_H)
            .where(
                _H.org_id == scope.org_id,
                _H.event.in_(_COUNTED),
                _H.occurred_at >= since,
                _H.occurred_at < until,
            )
            .subquery("ev")
        )
        ev = events.c
        is_reply = ev.event.in_(_REPLIES)

        def number(condition: ColumnElement[bool]) -> Any:
            return func.sum(case((condition, 1), else_=0))

        columns = self._dim_columns(
            scope,
            dims,
            campaign=_S.campaign_id,
            step=m.JobTask.step,
            rep=_S.sender_user_id,
            at=ev.occurred_at,
        )
        query = select(
            *columns,
            func.count(case((is_reply, _S.id), else_=None).distinct()),
            number(is_reply),
            number(and_(is_reply, ev.sentiment == "positive")),
            number(and_(is_reply, ev.sentiment == "negative")),
            number(ev.event == E.MEETING_REQUEST.value),
            number(ev.event == E.BOUNCED.value),
            number(ev.event == E.SOFT_BOUNCE.value),
            number(ev.event == E.OPTED_OUT.value),
            number(ev.event == E.COMPLAINT.value),
            number(ev.event == E.ORDER_AFTER_REPLY.value),
        ).select_from(events.join(_S, _S.id == ev.send_id))
        return (
            self._with_step(query, scope, _S, dims)
            .where(*self._send_filters(scope, _S))
            .group_by(*_grouping(columns))
        )

    def _enrolled_query(
        self, scope: _Scope, since: datetime, until: datetime, dims: Sequence[_Dim]
    ) -> Select[Any]:
        e, j = m.Enrollment, m.Job
        kept = [d for d in dims if d != _Dim.STEP]
        grouped = self._dim_columns(
            scope,
            [d for d in kept if d != _Dim.DAY],
            campaign=j.campaign_id,
            step=None,
            rep=j.owner_id,
            at=e.created_at,
        )
        # The trend shows no enrollments: their day is left NULL, not computed per row.
        by_name = {column.name: column for column in grouped}
        columns = [by_name[d.value] if d != _Dim.DAY else null().label("day") for d in kept]
        query = (
            select(*columns, func.count().label("n"))
            .select_from(e)
            .join(j, j.id == e.job_id)
            .where(
                e.org_id == scope.org_id,
                j.org_id == scope.org_id,
                e.created_at >= since,
                e.created_at < until,
            )
        )
        if scope.campaign_ids is not None:
            query = query.where(j.campaign_id.in_(scope.campaign_ids))
        if scope.rep_user_id is not None:
            query = query.where(j.owner_id == scope.rep_user_id)
        return query.group_by(*_grouping(grouped))

    def _lifetime_starts(self, org_id: int, campaign_ids: Sequence[int]) -> dict[int, datetime]:
        """When each campaign's life began: its first enrollment or its creation, the
        earlier (an imported campaign may have enrolled before its row was made)."""
        c, j, e = m.MarketingCampaign, m.Job, m.Enrollment
        # Each job's first enrollment: the top of its (job_id, created_at) index.
        first_enrolled = (
            select(
                j.campaign_id.label("campaign_id"),
                select(func.min(e.created_at))
                .where(e.org_id == org_id, e.job_id == j.id)
                .correlate(j)
                .scalar_subquery()
                .label("at"),
            )
            .where(j.org_id == org_id, j.campaign_id.in_(campaign_ids))
            .subquery()
        )
        firsts: dict[int, datetime] = {
            campaign_id: at
            for campaign_id, at in self._s.execute(
                select(first_enrolled.c.campaign_id, func.min(first_enrolled.c.at))
                .where(first_enrolled.c.at.is_not(None))
                .group_by(first_enrolled.c.campaign_id)
            )
        }
        starts: dict[int, datetime] = {}
        for campaign_id, created_at in self._s.execute(
            select(c.id, c.created_at).where(c.org_id == org_id, c.id.in_(campaign_ids))
        ):
            first = firsts.get(campaign_id)
            starts[campaign_id] = created_at if first is None else min(first, created_at)
        return starts

    def _lives(
        self, org_id: int, campaign_ids: Sequence[int], *, until: datetime
    ) -> dict[int, datetime]:
        """Where each campaign's life to `until` starts (campaigns begun after it: none)."""
        lives = {}
        for cid, start in self._lifetime_starts(org_id, campaign_ids).items():
            life = _lifetime(start, until)
            if life is not None:
                lives[cid] = life.since
        return lives

    # --- the digest's lists ------------------------------------------------------------

    @staticmethod
    def _trend(
        days: list[tuple[str, datetime, datetime]], measured: Mapping[Any, Counts]
    ) -> list[DayPoint]:
        points = []
        for n, (day, _, _) in enumerate(days):
            counts = measured.get(n, Counts())
            points.append(
                DayPoint(
                    day=day,
                    sent=counts.sent,
                    positive=counts.positive,
                    neutral=counts.neutral,
                    negative=counts.negative,
                )
            )
        return points

    def _scoped_send(self, scope: _Scope) -> bool:
        return scope.campaign_ids is not None or scope.rep_user_id is not None

    def _hottest(self, scope: _Scope, window: AnalyticsWindow) -> list[HotReply]:
        """Positive replies of the window from contacts of clients stale at the time (no
        order in the STALE_CLIENT_AFTER before the reply), one per contact (their latest),
        the highest engagement score first."""
        c, cl, o = m.Contact, m.Client, m.AppraisalOrder
        # The client's last order at the reply: the stored date, unless the client has
        # ordered since (then its orders say).
        last_order = case(
            (cl.last_ordered_at <= _H.occurred_at, cl.last_ordered_at),
            else_=select(func.max(o.ordered_at))
            .where(
                o.org_id == scope.org_id,
                o.client_id == cl.id,
                o.ordered_at <= _H.occurred_at,
            )
            .correlate(cl, _H)
            .scalar_subquery(),
        )
        candidates = (
            select(
                _H.id.label("id"),
                _H.contact_id.label("contact_id"),
                _H.occurred_at.label("occurred_at"),
                _H.inbound_email_id.label("inbound_email_id"),
                last_order.label("last_order"),
                func.row_number()
                .over(partition_by=_H.contact_id, order_by=(_H.occurred_at.desc(), _H.id.desc()))
                .label("rank"),
            )
            .select_from(_H)
            .join(c, and_(c.id == _H.contact_id, c.org_id == scope.org_id))
            .join(cl, and_(cl.id == c.client_id, cl.org_id == scope.org_id))
            .where(
                _H.org_id == scope.org_id,
                _H.event.in_(_POSITIVE),
                _H.occurred_at >= window.since,
                _H.occurred_at < window.until,
                _H.inbound_email_id.is_not(None),
                or_(
                    last_order.is_(None),
                    last_order < self._earlier(_H.occurred_at, STALE_CLIENT_AFTER),
                ),
            )
        )
        if self._scoped_send(scope):
            candidates = candidates.join(_S, _S.id == self._send_of(_H))
            candidates = candidates.where(*self._send_filters(scope, _S))
        hot = candidates.subquery("hot")
        rows = list(
            self._s.execute(
                select(
                    hot.c.contact_id,
                    hot.c.occurred_at,
                    hot.c.inbound_email_id,
                    hot.c.last_order,
                    c.first_name,
                    c.last_name,
                    c.email,
                    c.engagement_score,
                    cl.name.label("client_name"),
                )
                .select_from(hot)
                .join(c, c.id == hot.c.contact_id)
                .outerjoin(cl, cl.id == c.client_id)
                .where(hot.c.rank == 1)
                .order_by(c.engagement_score.desc(), hot.c.occurred_at.desc(), hot.c.id.desc())
                .limit(HOTTEST_LIMIT)
            )
        )
        cards = self._reply_cards(scope.org_id, [row.inbound_email_id for row in rows])
        hottest = []
        for row in rows:
            ordered = _utc(row.last_order)
            card = cards.get(row.inbound_email_id)
            hottest.append(
                HotReply(
                    contact_id=row.contact_id,
                    contact_name=_full_name(row.first_name, row.last_name, row.email),
                    contact_email=row.email,
                    client_name=row.client_name,
                    days_since_order=None if ordered is None else (row.occurred_at - ordered).days,
                    replied_at=row.occurred_at,
                    inbound_email_id=row.inbound_email_id,
                    engagement_score=round(float(row.engagement_score), 2),
                    card_id=card[0] if card else None,
                    slack_channel_id=card[1] if card else None,
                    slack_message_ts=card[2] if card else None,
                )
            )
        return hottest

    def _reply_cards(
        self, org_id: int, inbound_ids: Sequence[int]
    ) -> dict[int, tuple[int, str | None, str | None]]:
        """The latest card made from each of these inbound emails: (id, channel, ts)."""
        if not inbound_ids:
            return {}
        card = m.Card
        found: dict[int, tuple[int, str | None, str | None]] = {}
        for row in self._s.execute(
            select(card.inbound_email_id, card.id, card.slack_channel_id, card.slack_message_ts)
            .where(card.org_id == org_id, card.inbound_email_id.in_(sorted(set(inbound_ids))))
            .order_by(card.id)
        ):
            found[row.inbound_email_id] = (row.id, row.slack_channel_id, row.slack_message_ts)
        return found

    def _waiting(self, scope: _Scope, now: datetime) -> tuple[int, list[WaitingCard]]:
        """Cards waiting for a person's decision (not snoozed past now): how many, and the
        oldest few with their rep (the job's owner)."""
        card, j, u = m.Card, m.Job, m.User
        conditions: list[ColumnElement[bool]] = [
            card.org_id == scope.org_id,
            card.state.in_(_OPEN_CARD_STATES),
            or_(card.snoozed_until.is_(None), card.snoozed_until <= now),
        ]
        if scope.campaign_ids is not None:
            conditions.append(j.campaign_id.in_(scope.campaign_ids))
        if scope.rep_user_id is not None:
            conditions.append(j.owner_id == scope.rep_user_id)
        count = int(
            self._s.scalar(
                select(func.count())
                .select_from(card)
                .outerjoin(j, j.id == card.job_id)
                .where(*conditions)
            )
            or 0
        )
        if not count:
            return 0, []
        rows = self._s.execute(
            select(
                card.id,
                card.title,
                card.created_at,
                card.slack_channel_id,
                card.slack_message_ts,
                u.name,
                u.email,
                u.slack_user_id,
            )
            .select_from(card)
            .outerjoin(j, j.id == card.job_id)
            .outerjoin(u, u.id == j.owner_id)
            .where(*conditions)
            .order_by(card.created_at, card.id)
            .limit(WAITING_LIMIT)
        )
        return count, [
            WaitingCard(
                card_id=row.id,
                title=row.title,
                created_at=row.created_at,
                rep_name=row.name or row.email,
                rep_slack_user_id=row.slack_user_id,
                slack_channel_id=row.slack_channel_id,
                slack_message_ts=row.slack_message_ts,
            )
            for row in rows
        ]

    def _revenue(self, scope: _Scope, window: AnalyticsWindow) -> list[RevenueSignal]:
        """Clients that ordered after a reply in the window: their orders (each once, however
        many of their contacts had replied), the orders' fees, and the contact of the latest
        such event."""
        o, cl, c = m.AppraisalOrder, m.Client, m.Contact
        order_id = _H.detail["order_id"].as_integer()
        events = (
            select(
                o.client_id.label("client_id"),
                o.id.label("order_id"),
                o.fee.label("fee"),
                _H.contact_id.label("contact_id"),
                _H.occurred_at.label("occurred_at"),
                _H.id.label("id"),
            )
            .select_from(_H)
            .join(o, and_(o.id == order_id, o.org_id == scope.org_id))
            .where(
                _H.org_id == scope.org_id,
                _H.event == E.ORDER_AFTER_REPLY.value,
                _H.occurred_at >= window.since,
                _H.occurred_at < window.until,
            )
        )
        if self._scoped_send(scope):
            linked = self._linked_send()
            events = events.join(_S, _S.id == linked).where(*self._send_filters(scope, _S))
        found = events.subquery("found")
        orders = (
            select(found.c.client_id, found.c.order_id, found.c.fee).distinct().subquery("orders")
        )
        rows = list(
            self._s.execute(
                select(
                    orders.c.client_id,
                    cl.name,
                    func.count().label("orders"),
                    func.sum(orders.c.fee).label("fees"),
                )
                .select_from(orders)
                .join(cl, cl.id == orders.c.client_id)
                .group_by(orders.c.client_id, cl.name)
                .order_by(
                    func.coalesce(func.sum(orders.c.fee), 0).desc(),
                    func.count().desc(),
                    orders.c.client_id,
                )
                .limit(REVENUE_LIMIT)
            )
        )
        if not rows:
            return []
        latest = (
            select(
                found.c.client_id,
                found.c.contact_id,
                func.row_number()
                .over(
                    partition_by=found.c.client_id,
                    order_by=(found.c.occurred_at.desc(), found.c.id.desc()),
                )
                .label("rank"),
            )
            .where(found.c.client_id.in_([row.client_id for row in rows]))
            .subquery("latest")
        )
        names = {
            row.client_id: _full_name(row.first_name, row.last_name, row.email)
            for row in self._s.execute(
                select(latest.c.client_id, c.first_name, c.last_name, c.email)
                .join(c, c.id == latest.c.contact_id)
                .where(latest.c.rank == 1)
            )
        }
        return [
            RevenueSignal(
                client_id=row.client_id,
                client_name=row.name,
                orders=int(row.orders),
                fees=None if row.fees is None else round(float(row.fees), 2),
                contact_name=names.get(row.client_id),
            )
            for row in rows
        ]

    def _stale_clients(self, org_id: int) -> list[RankedClient]:
        """The top of the day's stale-client ranking, with the contact to call."""
        r, cl, c = m.ClientRanking, m.Client, m.Contact
        rows = self._s.execute(
            select(
                r.client_id,
                cl.name,
                r.rank,
                r.score,
                r.days_since_order,
                r.past_order_rate,
                r.best_contact_id,
                c.first_name,
                c.last_name,
                c.email,
            )
            .join(cl, cl.id == r.client_id)
            .outerjoin(c, c.id == r.best_contact_id)
            .where(r.org_id == org_id)
            .order_by(r.rank, r.client_id)
            .limit(STALE_CLIENTS_LIMIT)
        )
        return [
            RankedClient(
                client_id=row.client_id,
                client_name=row.name,
                rank=row.rank,
                score=float(row.score),
                days_since_order=row.days_since_order,
                past_order_rate=float(row.past_order_rate),
                contact_id=row.best_contact_id,
                contact_name=None
                if row.best_contact_id is None
                else _full_name(row.first_name, row.last_name, row.email),
                contact_email=row.email,
            )
            for row in rows
        ]

    # --- opens and clicks --------------------------------------------------------------

    def _tracking(self, scope: _Scope, since: datetime, until: datetime) -> TrackingCounts | None:
        """Opens and clicks of the tracked sends of [since, until) in scope, people and
        bots apart; None without a tracked send.

        A cohort: the window's sends and whatever opened them, whenever (an open rate is
        of sends, and an email opened the day after the window was still opened)."""
        t = m.EmailTrackingEvent
        person, bot = t.by_bot.is_(False), t.by_bot.is_(True)
        per_send = (
            select(
                _S.id.label("send_id"),
                func.max(case((and_(t.kind == "open", person), 1), else_=0)).label("opened"),
                func.max(case((and_(t.kind == "click", person), 1), else_=0)).label("clicked"),
                func.max(case((and_(t.kind == "open", bot), 1), else_=0)).label("bot_open"),
                func.sum(case((and_(t.kind == "click", bot), 1), else_=0)).label("bot_clicks"),
            )
            .select_from(_S)
            .outerjoin(t, t.email_send_id == _S.id)
            .where(
                *self._send_filters(scope, _S),
                _S.tracked.is_(True),
                _S.sent_at >= since,
                _S.sent_at < until,
            )
            .group_by(_S.id)
            .subquery("hits")
        )
        row = self._s.execute(
            select(
                func.count(),
                func.sum(per_send.c.opened),
                func.sum(per_send.c.clicked),
                func.sum(
                    case((and_(per_send.c.bot_open == 1, per_send.c.opened == 0), 1), else_=0)
                ),
                func.sum(per_send.c.bot_clicks),
            )
        ).one()
        tracked, opened, clicked, bot_opens, bot_clicks = (int(v or 0) for v in row)
        if not tracked:
            return None
        return TrackingCounts(
            tracked_sends=tracked,
            opened=opened,
            clicked=clicked,
            bot_opens=bot_opens,
            bot_clicks=bot_clicks,
            open_rate=round(opened / tracked, 4),
            click_rate=round(clicked / tracked, 4),
        )

    # --- small lookups -----------------------------------------------------------------

    def _campaign_name(self, org_id: int, campaign_id: int) -> str:
        c = m.MarketingCampaign
        name = self._s.scalar(select(c.name).where(c.org_id == org_id, c.id == campaign_id))
        if name is None:
            raise NotFound(f"campaign {campaign_id} not found")
        return name

    def _users(self, org_id: int, ids: Iterable[int]) -> dict[int, tuple[str | None, str]]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        u = m.User
        return {
            row.id: (row.name, row.email)
            for row in self._s.execute(
                select(u.id, u.name, u.email).where(u.org_id == org_id, u.id.in_(wanted))
            )
        }


def _grouping(columns: Sequence[Any]) -> list[Any]:
    """The columns to group by: not the constant NULL ones (PostgreSQL refuses a constant
    in GROUP BY; a LIFE dimension without a life to measure is one)."""
    return [c for c in columns if not isinstance(getattr(c, "element", c), Null)]


def _utc(value: Any) -> datetime | None:
    """A timestamp computed in SQL (no column type to read it back): aware UTC.

    PostgreSQL returns it aware; SQLite returns the stored text."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"not a timestamp: {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
