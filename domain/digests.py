"""The engagement digest's subscriptions and posts (issue 14, docs/digest.md).

`/digest` is read here (`parse_digest_command`), its schedule computed here (`next_run_at`,
`period_for`, `on_demand_period`), and its use cases live here: `Digests` (subscribe,
unsubscribe, list, post now) and `DigestPoster` (claim the periods whose time has come,
then post each claimed digest once).

A subscription's `next_run_at` is the UTC instant of its next local posting time. The
claim of a due subscription inserts the `digest_posts` row of its period (unique per
subscription and period start: a second claim of the same period inserts nothing) and
moves `next_run_at` on, in one transaction. After downtime only the latest missed period
is posted. The poster takes pending posts under a lease, uploads the chart once (its file
id is stored before the message is posted), posts one message and records its ts.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Protocol
from zoneinfo import ZoneInfo

from domain import faults
from domain.analytics import TREND_DAYS, AnalyticsWindow, DayPoint, DigestFacts
from domain.cadence import time_zone as checked_time_zone
from domain.deps import Deps
from domain.digest_message import CHART_TITLE
from domain.errors import ExternalServiceError, InvalidInput, NotFound
from domain.mrkdwn import safe
from domain.reply_routing import ChannelUnavailable, parse_channel

if TYPE_CHECKING:
    from domain.outreach.common import Actor
    from domain.ports import (
        ChannelDirectory,
        DigestPostingUnitOfWork,
        DigestRepository,
        DigestsUnitOfWork,
    )

log = logging.getLogger(__name__)


class Frequency(StrEnum):
    """How often a subscription posts."""

    DAILY = "daily"
    WEEKLY = "weekly"


class PostKind(StrEnum):
    """Why a digest is posted: its subscription's period came, or someone asked."""

    SCHEDULED = "scheduled"
    ON_DEMAND = "on_demand"


class PostStatus(StrEnum):
    """A digest post's states, as an outbox row's: pending → posting (leased) → posted | failed."""

    PENDING = "pending"
    POSTING = "posting"
    POSTED = "posted"
    FAILED = "failed"


class Verb(StrEnum):
    """The sub-commands of `/digest`."""

    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    LIST = "list"
    NOW = "now"
    HELP = "help"


USAGE: Final = (
    "*Usage of /digest*\n"
    "• `/digest subscribe daily 08:00 [#channel] [--campaign &lt;name or id&gt;] [--rep @user]` — "
    "post yesterday's engagement digest every day at 08:00 in your time zone\n"
    "• `/digest subscribe weekly mon 08:00 [#channel] [--campaign …] [--rep @user]` — "
    "the last 7 days, once a week\n"
    "• `/digest unsubscribe [daily|weekly] [#channel] [--campaign …] [--rep @user]`\n"
    "• `/digest list` — this organization's digests, when each posts next, and any error\n"
    "• `/digest now [#channel] [--campaign …] [--rep @user] [--weekly]` — today so far "
    "(or the last 7 days) at once\n"
    "• `/digest help` — this message\n"
    "Without a channel, the digest goes to the channel you type the command in."
)

TIME_FORMS: Final = "08:00, 8:00, 17:30, 8am or 5:30pm"

_WEEKDAYS: Final = {
    "mon": 0,
    "monday": 0,
    "tue": 1,
    "tues": 1,
    "tuesday": 1,
    "wed": 2,
    "wednesday": 2,
    "thu": 3,
    "thur": 3,
    "thurs": 3,
    "thursday": 3,
    "fri": 4,
    "friday": 4,
    "sat": 5,
    "saturday": 5,
    "sun": 6,
    "sunday": 6,
}
DAY_NAMES: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

_TIME: Final = re.compile(
    r"^(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?\s*(?P<half>am|pm|a\.m\.|p\.m\.)?$", re.IGNORECASE
)
#: A flag; Slack clients may turn its two hyphens into a dash.
_FLAG: Final = re.compile(r"^(?:--|—|–)(?P<name>[a-z-]+)$", re.IGNORECASE)
#: How Slack escapes a user named in a command: <@U123|name> or <@U123>.
_USER_MENTION: Final = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")
_CHANNEL_NAME: Final = re.compile(r"^<#[A-Z0-9]+\|([^>]*)>$")

#: Attempts at posting one digest before it fails for good (retryable Slack errors).
MAX_ATTEMPTS: Final = 5
#: The wait before each retry: 1, 2, 4, 8 minutes.
RETRY_BASE: Final = timedelta(minutes=1)


# --- reading `/digest` ----------------------------------------------------------------------


@dataclass(frozen=True)
class DigestRequest:
    """One `/digest` command, read."""

    verb: Verb
    frequency: Frequency | None = None
    weekday: int | None = None
    local_time: time | None = None
    channel_id: str | None = None
    channel_name: str | None = None
    campaign: str | None = None
    rep_slack_id: str | None = None
    #: `now --weekly`: the last 7 days instead of today so far.
    weekly: bool = False
    #: Why help is shown instead (an unknown sub-command).
    problem: str | None = None


def parse_time(text: str) -> time:
    """Read a posting time: 08:00, 8:00, 17:30, 8am, 5:30pm; InvalidInput naming the forms."""
    found = _TIME.match(text.strip())
    if found is None or (found["minute"] is None and found["half"] is None):
        raise InvalidInput(f"`{text[:20]}` is not a time I know: use {TIME_FORMS}", field="time")
    hour, minute = int(found["hour"]), int(found["minute"] or 0)
    half = (found["half"] or "").replace(".", "").lower()
    if half:
        if not 1 <= hour <= 12:
            raise InvalidInput(
                f"`{text[:20]}` is not a time: with am/pm the hour is 1 to 12", field="time"
            )
        hour = hour % 12 + (12 if half == "pm" else 0)
    if hour > 23 or minute > 59:
        raise InvalidInput(f"`{text[:20]}` is not a time of day: use {TIME_FORMS}", field="time")
    return time(hour, minute)


def parse_weekday(text: str) -> int | None:
    """Read a weekday (mon … sun, or its full name); None if it is not one."""
    return _WEEKDAYS.get(text.strip().lower().rstrip("."))


def _tokens(text: str) -> list[str]:
    """Split a command's text into words, keeping quoted names whole and `8 am` together."""
    words: list[str] = []
    for match in re.finditer(r'"(?P<q>[^"]*)"|“(?P<c>[^”]*)”|(?P<w>\S+)', text):
        value = match["q"] if match["q"] is not None else match["c"]
        if value is not None:
            words.append(value)
            continue
        word = match["w"]
        if words and word.lower() in ("am", "pm", "a.m.", "p.m.") and _looks_like_hour(words[-1]):
            words[-1] += word
            continue
        words.append(word)
    return words


def _looks_like_hour(word: str) -> bool:
    return bool(re.match(r"^\d{1,2}(?::\d{2})?$", word))


def _is_flag(word: str) -> str | None:
    found = _FLAG.match(word)
    return found["name"].lower() if found else None


def parse_digest_command(text: str) -> DigestRequest:
    """Read the text of a `/digest` command; InvalidInput says what is wrong with it."""
    words = _tokens(text or "")
    if not words:
        return DigestRequest(Verb.HELP)
    verb_word = words[0].lower()
    try:
        verb = Verb(verb_word)
    except ValueError:
        shown = " ".join(words)[:60]
        return DigestRequest(Verb.HELP, problem=f"I don't know `/digest {shown}`.")
    rest = words[1:]
    if verb in (Verb.HELP, Verb.LIST):
        if rest:
            raise InvalidInput(f"`/digest {verb.value}` takes nothing more.")
        return DigestRequest(verb)
    positional, options = _split_options(rest, allow_weekly=verb == Verb.NOW)
    channel_id, channel_name, plain = _take_channel(positional)
    request = DigestRequest(
        verb,
        channel_id=channel_id,
        channel_name=channel_name,
        campaign=options.get("campaign"),
        rep_slack_id=options.get("rep"),
        weekly=options.get("weekly") == "yes",
    )
    if verb == Verb.NOW:
        if plain:
            raise InvalidInput(f"`/digest now` does not know `{' '.join(plain)[:40]}`.")
        return request
    if verb == Verb.UNSUBSCRIBE:
        frequency = None
        if plain:
            frequency = _frequency(plain[0])
            if frequency is None or len(plain) > 1:
                raise InvalidInput(
                    "`/digest unsubscribe` takes `daily` or `weekly`, a channel and the "
                    f"filters of the digest, not `{' '.join(plain)[:40]}`."
                )
        return _replace(request, frequency=frequency)
    return _subscription(request, plain)


def _replace(request: DigestRequest, **changes: Any) -> DigestRequest:
    return replace(request, **changes)


def _frequency(word: str) -> Frequency | None:
    try:
        return Frequency(word.lower())
    except ValueError:
        return None


def _subscription(request: DigestRequest, plain: list[str]) -> DigestRequest:
    """Read `daily 08:00` or `weekly mon 08:00` (day and time in either order)."""
    if not plain or (frequency := _frequency(plain[0])) is None:
        raise InvalidInput(
            "`/digest subscribe` needs `daily` or `weekly` first, e.g. "
            "`/digest subscribe daily 08:00` or `/digest subscribe weekly mon 08:00`."
        )
    rest = plain[1:]
    weekday: int | None = None
    if frequency == Frequency.WEEKLY:
        days = [w for w in rest if parse_weekday(w) is not None]
        if len(days) != 1:
            raise InvalidInput(
                "a weekly digest needs one day, mon to sun, e.g. `/digest subscribe weekly "
                "mon 08:00`."
            )
        weekday = parse_weekday(days[0])
        rest = [w for w in rest if w is not days[0]]
    if len(rest) != 1:
        shown = " ".join(rest)[:40] or "nothing"
        raise InvalidInput(
            f"`/digest subscribe {frequency.value}` needs one posting time ({TIME_FORMS}), "
            f"not {shown if rest else 'nothing'}.",
            field="time",
        )
    return _replace(request, frequency=frequency, weekday=weekday, local_time=parse_time(rest[0]))


def _split_options(words: list[str], *, allow_weekly: bool) -> tuple[list[str], dict[str, str]]:
    """Take `--campaign <name…>`, `--rep @user` (and `--weekly`) out of the words."""
    positional: list[str] = []
    options: dict[str, str] = {}
    index = 0
    while index < len(words):
        word = words[index]
        name = _is_flag(word)
        if name is None:
            positional.append(word)
            index += 1
            continue
        if name == "weekly" and allow_weekly:
            options["weekly"] = "yes"
            index += 1
            continue
        if name not in ("campaign", "rep"):
            known = "`--campaign`, `--rep`" + (", `--weekly`" if allow_weekly else "")
            raise InvalidInput(f"`{word[:30]}` is not an option here; the options are {known}.")
        if name in options:
            raise InvalidInput(f"`--{name}` is given twice.")
        value: list[str] = []
        index += 1
        while index < len(words) and _is_flag(words[index]) is None:
            if value and (words[index].startswith("<#") or name == "rep"):
                break
            value.append(words[index])
            index += 1
        if not value:
            raise InvalidInput(
                "`--campaign` needs a campaign name or id."
                if name == "campaign"
                else "`--rep` needs a person, e.g. `--rep @maria`."
            )
        if name == "rep":
            mention = _USER_MENTION.match(value[0])
            if mention is None:
                raise InvalidInput(
                    f"`{value[0][:40]}` is not a person I know: pick one from the list Slack "
                    "offers as you type `@`."
                )
            options["rep"] = mention.group(1)
        else:
            # Slack sends `&`, `<` and `>` typed in a command as &amp;, &lt; and &gt;.
            options["campaign"] = html.unescape(" ".join(value))
    return positional, options


def _take_channel(words: list[str]) -> tuple[str | None, str | None, list[str]]:
    """Take the one channel named among the words: (id, name, the other words)."""
    channel_id: str | None = None
    channel_name: str | None = None
    rest: list[str] = []
    for word in words:
        if word.startswith("<#") or (word.startswith("#") and len(word) > 1):
            found = parse_channel(word)
            if found is None:
                raise InvalidInput(
                    f"`{word[:40]}` is not a channel I know: pick one from the list Slack "
                    "offers as you type `#`."
                )
            if channel_id is not None and found != channel_id:
                raise InvalidInput("name one channel only.")
            channel_id = found
            named = _CHANNEL_NAME.match(word)
            channel_name = named.group(1) if named and named.group(1) else channel_name
            continue
        rest.append(word)
    return channel_id, channel_name, rest


# --- the schedule ---------------------------------------------------------------------------


def zone_of(name: str) -> ZoneInfo:
    """The IANA zone of a stored name (UTC when it is not one)."""
    try:
        return checked_time_zone(name)
    except InvalidInput:
        return ZoneInfo("UTC")


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local wall time: a time the clocks skip moves forward by the gap,
    a time they show twice is its first occurrence (fold 0 does both)."""
    return datetime.combine(day, at, tzinfo=zone).replace(fold=0).astimezone(UTC)


def next_run_at(
    local_time: time, time_zone: str, frequency: Frequency, weekday: int | None, after: datetime
) -> datetime:
    """The first posting time strictly after `after`, in UTC."""
    if after.tzinfo is None:
        raise ValueError("`after` must be timezone-aware")
    zone = zone_of(time_zone)
    start = after.astimezone(zone).date() - timedelta(days=1)
    for offset in range(10):
        day = start + timedelta(days=offset)
        if frequency == Frequency.WEEKLY and day.weekday() != (weekday or 0):
            continue
        at = local_instant(day, local_time, zone)
        if at > after:
            return at
    raise AssertionError("a posting time always comes within 9 days")  # pragma: no cover


def latest_run_at(
    local_time: time, time_zone: str, frequency: Frequency, weekday: int | None, now: datetime
) -> datetime:
    """The last posting time at or before `now` (what a late claim posts: the latest
    missed period only)."""
    span = timedelta(days=7 if frequency == Frequency.WEEKLY else 1)
    at = next_run_at(local_time, time_zone, frequency, weekday, now - span - timedelta(days=1))
    latest = at
    while at <= now:
        latest = at
        at = next_run_at(local_time, time_zone, frequency, weekday, at)
    return latest


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant a local day starts."""
    return local_instant(day, time(0, 0), zone)


def period_for(run_at: datetime, frequency: Frequency, time_zone: str) -> AnalyticsWindow:
    """The period a posting time reports: the local day before the posting day (daily), or
    the 7 local days before it (weekly), in UTC."""
    zone = zone_of(time_zone)
    day = run_at.astimezone(zone).date()
    days = 7 if frequency == Frequency.WEEKLY else 1
    return AnalyticsWindow(
        since=local_midnight(day - timedelta(days=days), zone), until=local_midnight(day, zone)
    )


def on_demand_period(now: datetime, time_zone: str, *, weekly: bool) -> AnalyticsWindow:
    """What `/digest now` reports: today so far (local midnight to now), or the last 7 days."""
    if weekly:
        return AnalyticsWindow(since=now - timedelta(days=7), until=now)
    zone = zone_of(time_zone)
    since = local_midnight(now.astimezone(zone).date(), zone)
    if since >= now:  # exactly midnight: yesterday, whole
        since = local_midnight(now.astimezone(zone).date() - timedelta(days=1), zone)
    return AnalyticsWindow(since=since, until=now)


def scope_key(campaign_id: int | None, rep_user_id: int | None) -> str:
    """The filters of a subscription as one key: all, c12, r7, c12-r7."""
    parts = [f"c{campaign_id}"] if campaign_id is not None else []
    parts += [f"r{rep_user_id}"] if rep_user_id is not None else []
    return "-".join(parts) or "all"


def describe_local(at: datetime, time_zone: str) -> str:
    """A UTC instant as the subscriber reads it: Tue 2026-12-01 08:00 CST."""
    local = at.astimezone(zone_of(time_zone))
    return f"{local:%a %Y-%m-%d %H:%M} {local.tzname()}"


def retry_delay(attempts: int) -> timedelta:
    """The wait before attempt `attempts + 1`: 1, 2, 4, 8 minutes."""
    factor: int = 2 ** max(0, min(attempts, 6) - 1)
    return RETRY_BASE * factor


# --- what storage keeps -----------------------------------------------------------------------


@dataclass(frozen=True)
class Subscription:
    """A channel's daily or weekly digest."""

    id: int
    org_id: int
    channel_id: str
    channel_name: str | None
    frequency: Frequency
    weekday: int | None
    local_time: str
    time_zone: str
    scope_key: str
    next_run_at: datetime
    campaign_id: int | None = None
    campaign_name: str | None = None
    rep_user_id: int | None = None
    rep_name: str | None = None
    rep_slack_user_id: str | None = None
    created_by: int | None = None
    last_error: str | None = None

    @property
    def posting_time(self) -> time:
        """The local posting time."""
        return time.fromisoformat(self.local_time)

    @property
    def when(self) -> str:
        """When it posts, as people say it: daily at 08:00, weekly on Mon at 08:00."""
        if self.frequency == Frequency.WEEKLY and self.weekday is not None:
            return f"weekly on {DAY_NAMES[self.weekday]} at {self.local_time}"
        return f"daily at {self.local_time}"


@dataclass(frozen=True)
class DigestPost:
    """One digest to post (a claimed one carries the names its title shows)."""

    id: int
    org_id: int
    subscription_id: int | None
    kind: PostKind
    frequency: Frequency
    channel_id: str
    time_zone: str
    period_start: datetime
    period_end: datetime
    status: PostStatus
    attempts: int = 0
    campaign_id: int | None = None
    campaign_name: str | None = None
    rep_user_id: int | None = None
    rep_name: str | None = None
    requested_by: str | None = None
    file_id: str | None = None
    slack_ts: str | None = None
    error: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def window(self) -> AnalyticsWindow:
        """The period reported."""
        return AnalyticsWindow(since=self.period_start, until=self.period_end)


@dataclass(frozen=True)
class NewPost:
    """A digest post to store."""

    org_id: int
    kind: PostKind
    frequency: Frequency
    channel_id: str
    time_zone: str
    period: AnalyticsWindow
    subscription_id: int | None = None
    campaign_id: int | None = None
    rep_user_id: int | None = None
    requested_by: str | None = None


@dataclass(frozen=True)
class NewSubscription:
    """A subscription to store (or to update, when its channel, frequency and scope have one)."""

    org_id: int
    channel_id: str
    channel_name: str | None
    frequency: Frequency
    weekday: int | None
    local_time: str
    time_zone: str
    campaign_id: int | None
    rep_user_id: int | None
    created_by: int | None
    next_run_at: datetime

    @property
    def scope_key(self) -> str:
        """The key of its filters."""
        return scope_key(self.campaign_id, self.rep_user_id)


# --- the use cases ------------------------------------------------------------------------


@dataclass(frozen=True)
class Subscribed:
    """The answer to `/digest subscribe`."""

    subscription: Subscription
    created: bool
    #: Where the time zone came from: your Slack profile, the organization, or UTC.
    zone_source: str


@dataclass(frozen=True)
class Queued:
    """The answer to `/digest now`."""

    post_id: int
    channel_id: str
    period: AnalyticsWindow
    time_zone: str
    zone_source: str


@dataclass(frozen=True)
class _Scope:
    campaign_id: int | None
    campaign_name: str | None
    rep_user_id: int | None
    rep_name: str | None


class Digests:
    """`/digest`: subscribe a channel, unsubscribe it, list, and post one now."""

    def __init__(
        self,
        deps: Deps[DigestsUnitOfWork],
        *,
        channels: ChannelDirectory | None = None,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self._uow = deps.uow
        self._clock = deps.clock
        self._channels = channels
        self.on_queued = on_queued

    def subscribe(
        self,
        actor: Actor,
        request: DigestRequest,
        *,
        channel_id: str | None,
        user_time_zone: str | None,
    ) -> Subscribed:
        """Subscribe a channel (the one named, else `channel_id`, where the command was
        typed) to a daily or weekly digest; a channel Salesbot cannot post in is refused."""
        if request.frequency is None or request.local_time is None:
            raise InvalidInput("`/digest subscribe` needs `daily` or `weekly` and a time.")
        target = self._channel(actor.org_id, request.channel_id or channel_id, request)
        now = self._clock.now()
        with self._uow() as uow:
            scope = _resolve_scope(uow, actor.org_id, request)
            zone, source = _zone(uow, actor.org_id, user_time_zone)
            local = f"{request.local_time:%H:%M}"
            new = NewSubscription(
                org_id=actor.org_id,
                channel_id=target[0],
                channel_name=target[1],
                frequency=request.frequency,
                weekday=request.weekday,
                local_time=local,
                time_zone=zone,
                campaign_id=scope.campaign_id,
                rep_user_id=scope.rep_user_id,
                created_by=actor.user_id,
                next_run_at=next_run_at(
                    request.local_time, zone, request.frequency, request.weekday, now
                ),
            )
            subscription, created = uow.digests.save_subscription(new, now=now)
            uow.commit()
        log.info(
            "digest subscribed",
            extra={
                "org_id": actor.org_id,
                "subscription_id": subscription.id,
                "channel_id": subscription.channel_id,
                "frequency": subscription.frequency.value,
            },
        )
        return Subscribed(subscription, created, source)

    def unsubscribe(
        self, actor: Actor, request: DigestRequest, *, channel_id: str | None
    ) -> tuple[str, list[Subscription]]:
        """Remove a channel's subscriptions (of one frequency, of one scope when filters are
        given); return the channel and what was removed."""
        channel = request.channel_id or channel_id
        if not channel:
            raise InvalidInput("name a channel, e.g. `/digest unsubscribe #sales-digest`.")
        with self._uow() as uow:
            key = None
            if request.campaign is not None or request.rep_slack_id is not None:
                scope = _resolve_scope(uow, actor.org_id, request)
                key = scope_key(scope.campaign_id, scope.rep_user_id)
            removed = uow.digests.remove_subscriptions(
                actor.org_id, channel_id=channel, frequency=request.frequency, scope_key=key
            )
            uow.commit()
        log.info(
            "digest unsubscribed",
            extra={"org_id": actor.org_id, "channel_id": channel, "removed": len(removed)},
        )
        return channel, removed

    def list(self, org_id: int) -> list[Subscription]:
        """The organization's subscriptions, by channel."""
        with self._uow() as uow:
            return uow.digests.subscriptions(org_id)

    def post_now(
        self,
        actor: Actor,
        request: DigestRequest,
        *,
        channel_id: str | None,
        user_time_zone: str | None,
    ) -> Queued:
        """Queue a digest of today so far (or the last 7 days) for a channel, posted at once
        by the digest job."""
        target = self._channel(actor.org_id, request.channel_id or channel_id, request)
        now = self._clock.now()
        with self._uow() as uow:
            scope = _resolve_scope(uow, actor.org_id, request)
            zone, source = _zone(uow, actor.org_id, user_time_zone)
            period = on_demand_period(now, zone, weekly=request.weekly)
            post_id = uow.digests.add_post(
                NewPost(
                    org_id=actor.org_id,
                    kind=PostKind.ON_DEMAND,
                    frequency=Frequency.WEEKLY if request.weekly else Frequency.DAILY,
                    channel_id=target[0],
                    time_zone=zone,
                    period=period,
                    campaign_id=scope.campaign_id,
                    rep_user_id=scope.rep_user_id,
                    requested_by=actor.slack_user_id,
                ),
                now=now,
            )
            uow.commit()
        assert post_id is not None  # an on-demand post has no period to collide on
        log.info(
            "digest queued",
            extra={"org_id": actor.org_id, "post_id": post_id, "channel_id": target[0]},
        )
        if self.on_queued is not None:
            self.on_queued()
        return Queued(post_id, target[0], period, zone, source)

    def _channel(
        self, org_id: int, channel_id: str | None, request: DigestRequest
    ) -> tuple[str, str | None]:
        """Check that Salesbot can post in the channel; return (id, name)."""
        found = parse_channel(channel_id or "")
        if found is None:
            raise InvalidInput(
                "name a channel for the digest, e.g. `#sales-digest` (a direct message "
                "cannot take one)."
            )
        name = request.channel_name if request.channel_id == found else None
        if self._channels is None:
            raise ExternalServiceError("Slack is not connected to this server.")
        status = self._channels.channel_status(org_id, found)
        shown = f"#{status.name or name}" if (status.name or name) else f"<#{found}>"
        if not status.found or not status.is_member:
            raise InvalidInput(
                f"Salesbot cannot post in {shown}: invite it with /invite @salesbot in {shown}, "
                "then subscribe again.",
                field="channel",
            )
        if status.is_archived:
            raise InvalidInput(f"{shown} is archived: choose another channel.", field="channel")
        return found, status.name or name


def _zone(uow: DigestsUnitOfWork, org_id: int, user_time_zone: str | None) -> tuple[str, str]:
    """The subscriber's Slack time zone, else the organization's, else UTC; and which."""
    if user_time_zone and zone_of(user_time_zone).key == user_time_zone:
        return user_time_zone, "your Slack profile"
    org_zone = uow.digests.org_time_zone(org_id)
    if org_zone and zone_of(org_zone).key == org_zone:
        return org_zone, "the organization's cadence settings"
    return "UTC", "UTC (neither your Slack profile nor the organization sets one)"


def _resolve_scope(uow: DigestsUnitOfWork, org_id: int, request: DigestRequest) -> _Scope:
    """The campaign and rep a request filters on, of the organization; NotFound otherwise."""
    campaign_id = campaign_name = rep_user_id = rep_name = None
    if request.campaign is not None:
        wanted = request.campaign.strip().lstrip("#")
        campaign = uow.campaigns.find_by_name(org_id, wanted)
        if campaign is None and wanted.isascii() and wanted.isdigit() and len(wanted) <= 18:
            try:
                campaign = uow.campaigns.get(org_id, int(wanted))
            except NotFound:
                campaign = None
        if campaign is None:
            raise NotFound(
                f"no campaign “{safe(request.campaign, 80)}” in your organization; "
                "`/campaign list` shows them."
            )
        campaign_id, campaign_name = campaign.id, campaign.name
    if request.rep_slack_id is not None:
        user = uow.users.find_by_slack_id(org_id, request.rep_slack_id)
        if user is None:
            raise NotFound(
                f"<@{request.rep_slack_id}> is not a Salesbot user of your organization yet "
                "(they become one when they first use Salesbot)."
            )
        rep_user_id, rep_name = user.id, user.name or user.email
    return _Scope(campaign_id, campaign_name, rep_user_id, rep_name)


# --- posting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedDigest:
    """A digest message: the text (notification and fallback), its blocks, what overflows
    into a thread reply, and the chart's alt text."""

    text: str
    blocks: list[dict[str, Any]]
    rest: list[dict[str, Any]]
    chart_alt: str
    #: The fallback text of the thread reply (empty without `rest`).
    rest_text: str = ""


class DigestRenderer(Protocol):
    """Renders the digest's message and its chart (domain/digest_message.py, the chart
    module)."""

    def render(
        self,
        facts: DigestFacts,
        *,
        frequency: Frequency,
        time_zone: str,
        title: str,
        permalinks: Mapping[int, str],
        asked_by: str | None,
    ) -> RenderedDigest:
        """Return the message of a digest."""
        ...

    def with_chart(
        self, blocks: list[dict[str, Any]], file_id: str, alt: str
    ) -> list[dict[str, Any]]:
        """Return the blocks with the chart's image block."""
        ...

    def chart_png(self, points: Sequence[DayPoint], *, title: str) -> bytes:
        """Return the trend chart as a PNG."""
        ...


class DigestChat(Protocol):
    """Posts digests to chat (Slack); raises ExternalServiceError (ChannelUnavailable when
    the channel refuses Salesbot)."""

    def permalink(self, org_id: int, channel_id: str, ts: str) -> str | None:
        """Return a link to a message, or None when the chat does not give one."""
        ...

    def upload_png(
        self, org_id: int, content: bytes, *, filename: str, title: str, alt: str
    ) -> str:
        """Upload an image without sharing it anywhere; return its file id."""
        ...

    def post(
        self,
        org_id: int,
        channel_id: str,
        *,
        text: str,
        blocks: list[dict[str, Any]],
        thread_ts: str | None = None,
    ) -> str:
        """Post a message (a thread reply with `thread_ts`); return its ts."""
        ...


def digest_title(post: DigestPost) -> str:
    """The digest's title (the message adds its period): which digest, of what."""
    head = "Weekly engagement digest" if post.frequency == Frequency.WEEKLY else "Engagement digest"
    if post.kind == PostKind.ON_DEMAND:
        head = "Engagement digest, last 7 days" if post.frequency == Frequency.WEEKLY else head
    shown = _scope_shown(post)
    return f"{head} · {shown}" if shown else head


def chart_title(post: DigestPost) -> str:
    """The title drawn on the digest's chart: what it plots (the last TREND_DAYS days,
    whatever the digest's own period), of what campaign or rep."""
    shown = _scope_shown(post)
    return f"{CHART_TITLE} · {shown}" if shown else CHART_TITLE


def _scope_shown(post: DigestPost) -> str:
    return " · ".join(s for s in (post.campaign_name or "", post.rep_name or "") if s)


@dataclass(frozen=True)
class PostReport:
    """What one round of the poster did."""

    claimed: int = 0
    posted: int = 0
    retrying: int = 0
    failed: int = 0

    @property
    def handled(self) -> int:
        """Digests claimed or finished this round."""
        return self.claimed + self.posted + self.retrying + self.failed


def claim_due_periods(digests: DigestRepository, *, now: datetime, limit: int) -> int:
    """In the caller's transaction: for each subscription whose time came, store the post of
    its latest period (once: a period already stored is skipped) and move its next run past
    `now`. After downtime only the latest missed period is posted. Return the periods
    stored."""
    claimed = 0
    for sub in digests.lock_due(now=now, limit=limit):
        run_at = latest_run_at(sub.posting_time, sub.time_zone, sub.frequency, sub.weekday, now)
        period = period_for(max(run_at, sub.next_run_at), sub.frequency, sub.time_zone)
        post_id = digests.add_post(
            NewPost(
                org_id=sub.org_id,
                kind=PostKind.SCHEDULED,
                frequency=sub.frequency,
                channel_id=sub.channel_id,
                time_zone=sub.time_zone,
                period=period,
                subscription_id=sub.id,
                campaign_id=sub.campaign_id,
                rep_user_id=sub.rep_user_id,
            ),
            now=now,
        )
        following = next_run_at(sub.posting_time, sub.time_zone, sub.frequency, sub.weekday, now)
        moved = digests.move_next_run(sub.id, expected=sub.next_run_at, to=following, now=now)
        if post_id is None or not moved:
            continue
        claimed += 1
        log.info(
            "digest period claimed",
            extra={
                "org_id": sub.org_id,
                "subscription_id": sub.id,
                "post_id": post_id,
                "period_start": period.since.isoformat(),
            },
        )
    return claimed


class DigestPoster:
    """Claims the periods whose time has come and posts each claimed digest once.

    Each `with self._uow()` block is one transaction: the claim of due periods, the lease of
    pending posts, the chart's file id (stored before the message is posted, so a retry
    posts the same file), and the outcome. No transaction is open while Slack is called.
    The one window left: Slack accepted the message and the process died before recording
    its ts; the lease runs out and the digest is posted a second time (docs/digest.md).
    """

    def __init__(
        self,
        deps: Deps[DigestPostingUnitOfWork],
        *,
        chat: DigestChat,
        renderer: DigestRenderer,
        lease: timedelta,
        worker: str,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self._uow = deps.uow
        self._clock = deps.clock
        self._chat = chat
        self._renderer = renderer
        self._lease = lease
        self._worker = worker
        self._max_attempts = max_attempts

    def claim_due(self, *, limit: int = 100) -> int:
        """Store the post of each due subscription's latest period and move its next run on
        (one transaction); return how many periods were claimed."""
        with self._uow() as uow:
            claimed = claim_due_periods(uow.digests, now=self._clock.now(), limit=limit)
            uow.commit()
        return claimed

    def post_pending(self, *, limit: int = 10) -> PostReport:
        """Lease pending digests (and those whose lease ran out) and post each."""
        now = self._clock.now()
        with self._uow() as uow:
            posts = uow.digests.claim_posts(
                now=now, limit=limit, lease_until=now + self._lease, worker=self._worker
            )
            uow.commit()
        if not posts:
            return PostReport()
        faults.reach("digest.claimed")
        posted = retrying = failed = 0
        for post in posts:
            if post.attempts > self._max_attempts:
                # Each claim counts an attempt, and a failure that is recorded stops at
                # the last one: this post was taken again each time a worker stopped
                # while posting it (killed, or a crash the post itself causes). Give it
                # up rather than take it again every time a lease runs out.
                outcome = self._failed(
                    post,
                    f"gave up after {self._max_attempts} attempts: each time the worker "
                    "stopped before the post was recorded (see the worker's log)",
                    retryable=False,
                    context={"org_id": post.org_id, "post_id": post.id},
                )
            else:
                outcome = self._post(post)
            posted += outcome == PostStatus.POSTED
            retrying += outcome == PostStatus.PENDING
            failed += outcome == PostStatus.FAILED
        return PostReport(claimed=len(posts), posted=posted, retrying=retrying, failed=failed)

    def _post(self, post: DigestPost) -> PostStatus | None:
        context = {
            "org_id": post.org_id,
            "post_id": post.id,
            "subscription_id": post.subscription_id,
        }
        try:
            figures = self._publish(post)
        except ExternalServiceError as exc:
            return self._failed(post, exc.message, retryable=exc.retryable, context=context)
        except InvalidInput as exc:
            # The period cannot be computed (e.g. a clock set back): retrying will not help.
            return self._failed(post, exc.message, retryable=False, context=context)
        except Exception as exc:  # noqa: BLE001 - recorded on the post and retried with backoff
            log.exception("digest post failed", extra=context)
            return self._failed(post, f"internal error ({type(exc).__name__})", True, context)
        if figures is None:
            return None
        log.info("digest posted", extra=context)
        return PostStatus.POSTED

    def _publish(self, post: DigestPost) -> dict[str, Any] | None:
        """Compute, render, upload the chart once, post once, record; None if the lease
        was lost meanwhile."""
        now = self._clock.now()
        with self._uow() as uow:
            facts = uow.analytics.digest_facts(
                post.org_id,
                post.window,
                campaign_id=post.campaign_id,
                rep_user_id=post.rep_user_id,
                time_zone=post.time_zone,
                now=now,
            )
        permalinks = self._permalinks(post.org_id, facts)
        title = digest_title(post)
        message = self._renderer.render(
            facts,
            frequency=post.frequency,
            time_zone=post.time_zone,
            title=title,
            permalinks=permalinks,
            asked_by=post.requested_by,
        )
        blocks = message.blocks
        if not facts.empty and facts.trend:
            file_id = post.file_id or self._upload_chart(post, facts, message.chart_alt)
            if file_id is None:
                return None
            blocks = self._renderer.with_chart(blocks, file_id, message.chart_alt)
        ts = self._chat.post(post.org_id, post.channel_id, text=message.text, blocks=blocks)
        if message.rest:
            try:
                self._chat.post(
                    post.org_id,
                    post.channel_id,
                    text=message.rest_text or f"{title} (continued)",
                    blocks=message.rest,
                    thread_ts=ts,
                )
            except ExternalServiceError as exc:
                # The digest itself is posted: its overflow is lost, not the post recorded.
                log.warning(
                    "digest overflow not posted",
                    extra={"org_id": post.org_id, "post_id": post.id, "reason": exc.message},
                )
        figures = facts.model_dump(mode="json")
        with self._uow() as uow:
            recorded = uow.digests.mark_posted(
                post.id, worker=self._worker, ts=ts, figures=figures, at=self._clock.now()
            )
            uow.commit()
        if not recorded:
            log.warning(
                "digest posted after its lease ran out",
                extra={"org_id": post.org_id, "post_id": post.id},
            )
        return figures

    def _upload_chart(self, post: DigestPost, facts: DigestFacts, alt: str) -> str | None:
        # The chart plots TREND_DAYS days whatever the digest's period: its title says so.
        drawn = chart_title(post)
        png = self._renderer.chart_png(facts.trend, title=drawn)
        file_id = self._chat.upload_png(
            post.org_id, png, filename=f"engagement-{TREND_DAYS}d.png", title=drawn, alt=alt
        )
        with self._uow() as uow:
            kept = uow.digests.set_file(post.id, worker=self._worker, file_id=file_id)
            uow.commit()
        if not kept:
            log.warning(
                "digest lease lost while its chart uploaded",
                extra={"org_id": post.org_id, "post_id": post.id},
            )
            return None
        faults.reach("digest.uploaded")
        return file_id

    def _permalinks(self, org_id: int, facts: DigestFacts) -> dict[int, str]:
        """Links to the cards the digest names (the hottest replies and the waiting cards)."""
        links: dict[int, str] = {}
        wanted = [(h.card_id, h.slack_channel_id, h.slack_message_ts) for h in facts.hottest] + [
            (w.card_id, w.slack_channel_id, w.slack_message_ts) for w in facts.waiting
        ]
        for card_id, channel, ts in wanted:
            if card_id is None or not channel or not ts or card_id in links:
                continue
            try:
                link = self._chat.permalink(org_id, channel, ts)
            except ExternalServiceError as exc:
                log.info(
                    "no permalink for a card",
                    extra={"org_id": org_id, "card_id": card_id, "reason": exc.message},
                )
                continue
            if link:
                links[card_id] = link
        return links

    def _failed(
        self, post: DigestPost, error: str, retryable: bool, context: dict[str, Any]
    ) -> PostStatus | None:
        now = self._clock.now()
        attempts = post.attempts
        again = retryable and attempts < self._max_attempts
        retry_at = now + retry_delay(attempts) if again else None
        with self._uow() as uow:
            recorded = uow.digests.mark_failed(
                post.id, worker=self._worker, error=error[:500], retry_at=retry_at, at=now
            )
            uow.commit()
        log.warning(
            "digest not posted",
            extra={**context, "reason": error[:200], "attempts": attempts, "retry": again},
        )
        if not recorded:
            return None
        return PostStatus.PENDING if again else PostStatus.FAILED


def permanent_error(error: ChannelUnavailable) -> str:
    """What `/digest list` says about a channel that refuses Salesbot."""
    channel = f"<#{error.channel_id}>"
    if error.error == "is_archived":
        return f"{channel} is archived: unsubscribe it or choose another channel"
    return f"Salesbot cannot post in {channel}: invite it with /invite @salesbot there"
