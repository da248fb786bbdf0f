"""The content calendar (seed §1 `marketing_content`, `content_schedule`; issue 16 scope 3).

Pure rules, no I/O: what a content item and a schedule entry are, the channels and types,
which channel a campaign allows, when the due card comes (the organization's local
morning of the day the post is scheduled), when a snooze ends, the moves an entry may
make, the week a calendar or digest shows, and how `/content` is read. The use cases are
in `domain/content_service.py`; the flow is in docs/content-calendar.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from domain.campaigns import Channel
from domain.errors import InvalidInput, InvalidTransition
from domain.fields import Id, Text


class ContentType(StrEnum):
    """What a piece of content is."""

    BLOG = "blog"
    SOCIAL_POST = "social_post"
    EMAIL = "email"
    CASE_STUDY = "case_study"
    WHITEPAPER = "whitepaper"
    VIDEO = "video"
    INFOGRAPHIC = "infographic"
    WEBINAR = "webinar"
    PODCAST = "podcast"
    OTHER = "other"


class ContentStatus(StrEnum):
    """Where a piece of content stands."""

    DRAFT = "draft"
    READY = "ready"
    PUBLISHED = "published"
    ARCHIVED = "archived"


class ScheduleStatus(StrEnum):
    """Where one scheduled post stands: waiting, its card posted, done, snoozed, skipped."""

    SCHEDULED = "scheduled"  # waiting for its due morning
    DUE = "due"  # the card is posted; a person has not acted yet
    DONE = "done"  # a person posted it (maybe with the post's URL)
    SNOOZED = "snoozed"  # the card comes again at `snoozed_until`
    SKIPPED = "skipped"  # not posted, on purpose


#: The entries the due-card sweep looks at.
WAITING: Final = frozenset({ScheduleStatus.SCHEDULED, ScheduleStatus.SNOOZED})
#: The entries a person may still act on.
OPEN: Final = frozenset({ScheduleStatus.SCHEDULED, ScheduleStatus.DUE, ScheduleStatus.SNOOZED})

_ALLOWED: Final[dict[ScheduleStatus, frozenset[ScheduleStatus]]] = {
    ScheduleStatus.SCHEDULED: frozenset(
        {ScheduleStatus.DUE, ScheduleStatus.DONE, ScheduleStatus.SKIPPED, ScheduleStatus.SNOOZED}
    ),
    ScheduleStatus.DUE: frozenset(
        {ScheduleStatus.DONE, ScheduleStatus.SNOOZED, ScheduleStatus.SKIPPED}
    ),
    ScheduleStatus.SNOOZED: frozenset(
        {ScheduleStatus.DUE, ScheduleStatus.DONE, ScheduleStatus.SKIPPED, ScheduleStatus.SNOOZED}
    ),
    # Re-opened by rescheduling it (REST).
    ScheduleStatus.DONE: frozenset({ScheduleStatus.SCHEDULED}),
    ScheduleStatus.SKIPPED: frozenset({ScheduleStatus.SCHEDULED}),
}


def check_transition(entry_id: int, current: ScheduleStatus, to: ScheduleStatus) -> None:
    """Refuse a move the schedule's state machine does not allow."""
    if to not in _ALLOWED[current]:
        raise InvalidTransition(
            f"scheduled post {entry_id} is {current.value}; it cannot become {to.value}"
        )


#: Channels Salesbot sends on itself, through campaigns and newsletters; the rest are a
#: person's step (Salesbot has no LinkedIn, TikTok, ... integration).
SENT_BY_SALESBOT: Final = frozenset({Channel.EMAIL, Channel.NEWSLETTER})

_LABELS: Final = {
    Channel.EMAIL: "email",
    Channel.LINKEDIN: "LinkedIn",
    Channel.SUBSTACK: "Substack",
    Channel.TIKTOK: "TikTok",
    Channel.INSTAGRAM: "Instagram",
    Channel.FACEBOOK: "Facebook",
    Channel.PINTEREST: "Pinterest",
    Channel.YOUTUBE: "YouTube",
    Channel.BLOG: "the blog",
    Channel.NEWSLETTER: "the newsletter",
    Channel.WEBINAR: "the webinar",
    Channel.PODCAST: "the podcast",
}
CHANNELS: Final = ", ".join(c.value for c in Channel)
TYPES: Final = ", ".join(t.value for t in ContentType)
#: The morning a due card comes when the organization's cadence settings name none.
DEFAULT_MORNING: Final = time(9, 0)
# The most scheduled posts one read returns (a calendar page, a week in the digest or
# `/content list`): an organization with more is paged, never loaded whole.
MAX_CALENDAR_ROWS: Final = 1_000


def channel_label(channel: Channel) -> str:
    """How a person names a channel: LinkedIn, YouTube, the blog."""
    return _LABELS[channel]


def parse_channel(value: object) -> Channel:
    """Read a channel name (any case); InvalidInput naming the channels otherwise."""
    text = str(value or "").strip().lower()
    try:
        return Channel(text)
    except ValueError:
        raise InvalidInput(
            f"unknown channel {str(value)[:40]!r}; use one of {CHANNELS}", field="channel"
        ) from None


def parse_content_type(value: object) -> ContentType:
    """Read a content type (any case); InvalidInput naming the types otherwise."""
    text = str(value or "").strip().lower().replace("-", "_").replace(" ", "_")
    try:
        return ContentType(text)
    except ValueError:
        raise InvalidInput(
            f"unknown content type {str(value)[:40]!r}; use one of {TYPES}", field="content_type"
        ) from None


def check_campaign_channel(
    channel: Channel, *, campaign_name: str, campaign_channels: Sequence[str]
) -> None:
    """Refuse a channel the item's campaign does not use, naming the ones it does."""
    if channel.value in campaign_channels:
        return
    uses = ", ".join(campaign_channels) or "no channel"
    raise InvalidInput(
        f"campaign “{campaign_name[:100]}” does not use {channel.value}: its channels are "
        f"{uses}. Schedule it on one of those, or add {channel.value} to the campaign.",
        field="channel",
    )


def human_step(channel: Channel) -> str:
    """What the card says about who posts: a person, except what Salesbot sends itself."""
    if channel in SENT_BY_SALESBOT:
        return (
            f"Salesbot sends {channel_label(channel)} through a campaign or newsletter issue, "
            "not from this card: send it there, then click Done."
        )
    return (
        f"Salesbot cannot post to {channel_label(channel)} itself: copy the text, post it "
        "there, then click Done (with the post's link if you have it)."
    )


# --- time ------------------------------------------------------------------------------------


def zone_named(name: str | None) -> ZoneInfo:
    """The IANA zone of a stored name, UTC when it is none or unknown."""
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ValueError, KeyError, OSError):
        return ZoneInfo("UTC")


@dataclass(frozen=True)
class Morning:
    """When an organization's day starts: its time zone and its morning (the cadence
    settings' time zone and send-window start, as the cadence and digests read them)."""

    time_zone: str = "UTC"
    at: time = DEFAULT_MORNING

    @property
    def zone(self) -> ZoneInfo:
        """The zone."""
        return zone_named(self.time_zone)


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local wall time (a skipped time moves forward by the gap)."""
    return datetime.combine(day, at, tzinfo=zone).replace(fold=0).astimezone(UTC)


def due_morning(scheduled_for: datetime, morning: Morning) -> datetime:
    """When a post's card comes: the morning of its local day, or the post's own time when
    that is earlier (a 07:00 post is not told about at 09:00)."""
    if scheduled_for.tzinfo is None:
        raise ValueError("scheduled_for must be timezone-aware")
    zone = morning.zone
    day = scheduled_for.astimezone(zone).date()
    return min(local_instant(day, morning.at, zone), scheduled_for.astimezone(UTC))


class SnoozeChoice(StrEnum):
    """How long a card is snoozed: to tomorrow's morning, two days, next Monday's."""

    TOMORROW = "tomorrow"
    TWO_DAYS = "two_days"
    NEXT_WEEK = "next_week"


def snooze_until(choice: SnoozeChoice, *, now: datetime, morning: Morning) -> datetime:
    """When a snooze chosen at `now` ends: a later local morning, in UTC."""
    zone = morning.zone
    today = now.astimezone(zone).date()
    if choice is SnoozeChoice.TOMORROW:
        day = today + timedelta(days=1)
    elif choice is SnoozeChoice.TWO_DAYS:
        day = today + timedelta(days=2)
    else:
        day = today + timedelta(days=7 - today.weekday())
    return local_instant(day, morning.at, zone)


def week_of(at: datetime, time_zone: str) -> tuple[datetime, datetime]:
    """The local week (Monday 00:00 to the next Monday 00:00) holding `at`, in UTC."""
    zone = zone_named(time_zone)
    day = at.astimezone(zone).date()
    monday = day - timedelta(days=day.weekday())
    return (
        local_instant(monday, time(0, 0), zone),
        local_instant(monday + timedelta(days=7), time(0, 0), zone),
    )


def describe_day(at: datetime, time_zone: str) -> str:
    """An instant as the reader's calendar shows it: Tue Dec 8, 15:00."""
    local = at.astimezone(zone_named(time_zone))
    return f"{local:%a %b} {local.day}, {local:%H:%M}"


# --- what is stored and shown ---------------------------------------------------------------


#: The years a post may be scheduled in: a wider range reaches the ends of `datetime`
#: when the time is moved to UTC or to the organization's zone (an OverflowError, a 500).
YEARS: Final = range(2000, 3000)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if value is not None:
        try:
            year = value.astimezone(UTC).year
        except OverflowError:
            year = 0
        if year not in YEARS:
            raise ValueError(f"must be in the years {YEARS.start} to {YEARS.stop - 1}")
    return value


class ContentIn(BaseModel):
    """A piece of content as a caller gives it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    content_type: ContentType = Field(description=f"One of {TYPES}.")
    title: Text = Field(min_length=1, max_length=300)
    body: Text = Field(default="", max_length=20_000, description="The text ready to copy.")
    link: Text | None = Field(default=None, max_length=2_000)
    status: ContentStatus = ContentStatus.DRAFT
    campaign_id: Id | None = None
    owner_user_id: Id | None = Field(
        default=None, description="Whose DM gets the due cards (default: the creator)."
    )
    tags: list[Text] = Field(default_factory=list, max_length=20)

    @field_validator("content_type", mode="before")
    @classmethod
    def _known_type(cls, value: object) -> ContentType:
        try:
            return parse_content_type(value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None


class ContentUpdate(BaseModel):
    """A change of a piece of content; fields left out keep their values."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    content_type: ContentType | None = None
    title: Text | None = Field(default=None, min_length=1, max_length=300)
    body: Text | None = Field(default=None, max_length=20_000)
    link: Text | None = Field(default=None, max_length=2_000)
    status: ContentStatus | None = None
    campaign_id: Id | None = None
    owner_user_id: Id | None = None
    tags: list[Text] | None = Field(default=None, max_length=20)

    @field_validator("content_type", mode="before")
    @classmethod
    def _known_type(cls, value: object) -> ContentType | None:
        if value is None:
            return None
        try:
            return parse_content_type(value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None

    @field_validator("content_type", "title", "body", "status", "tags")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Left out keeps the value; null is only for what may be empty (link, campaign,
        # owner). Validators run on given values only, so this sees an explicit null.
        if value is None:
            raise ValueError("cannot be null; leave it out to keep its value")
        return value


class ContentItem(BaseModel):
    """A stored piece of content."""

    id: int
    org_id: int
    campaign_id: int | None
    content_type: ContentType
    title: str
    body: str
    link: str | None
    status: ContentStatus
    owner_user_id: int | None
    tags: list[str]
    created_by: int | None
    created_at: datetime
    updated_at: datetime


class ScheduleIn(BaseModel):
    """A post of a piece of content on one channel at one time."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    channel: Channel = Field(description=f"One of {CHANNELS}.")
    scheduled_for: datetime = Field(description="When it goes out (ISO 8601; UTC if no zone).")
    note: Text | None = Field(default=None, max_length=2_000)

    @field_validator("channel", mode="before")
    @classmethod
    def _known_channel(cls, value: object) -> Channel:
        try:
            return parse_channel(value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None

    @field_validator("scheduled_for")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        aware = _aware(value)
        assert aware is not None
        return aware


class ScheduleUpdate(BaseModel):
    """A change of a scheduled post: move it, or record what happened."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    channel: Channel | None = None
    scheduled_for: datetime | None = Field(
        default=None, description="A new time; a done or skipped post is scheduled again."
    )
    note: Text | None = Field(default=None, max_length=2_000)
    status: ScheduleStatus | None = Field(
        default=None, description="`done` or `skipped` record what happened."
    )
    posted_url: Text | None = Field(default=None, max_length=2_000)

    @field_validator("channel", mode="before")
    @classmethod
    def _known_channel(cls, value: object) -> Channel | None:
        if value is None:
            return None
        try:
            return parse_channel(value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None

    @field_validator("scheduled_for")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return _aware(value)


class ScheduleEntry(BaseModel):
    """A stored scheduled post, with what the calendar shows of its content."""

    id: int
    org_id: int
    content_id: int
    channel: Channel
    scheduled_for: datetime
    due_at: datetime
    status: ScheduleStatus
    note: str | None
    title: str
    content_type: ContentType
    campaign_id: int | None
    owner_user_id: int | None
    card_channel_id: str | None
    card_ts: str | None
    card_posted_at: datetime | None
    attempts: int
    last_error: str | None
    acted_by: int | None
    acted_at: datetime | None
    posted_url: str | None
    snoozed_until: datetime | None
    created_by: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class DueCard:
    """A claimed entry, with what its card shows and where it goes."""

    entry: ScheduleEntry
    body: str
    link: str | None
    #: The owner's Slack id (their DM), when they have one.
    owner_slack_id: str | None
    #: The organization's marketing channel, when set.
    marketing_channel: str | None
    time_zone: str

    @property
    def target(self) -> str | None:
        """Where the card goes: the owner's DM, else the marketing channel."""
        return self.owner_slack_id or self.marketing_channel


class ContentWeekItem(BaseModel):
    """A line of the digest's "This week's content": one scheduled post."""

    schedule_id: int
    content_id: int
    title: str
    channel: Channel
    scheduled_for: datetime
    status: ScheduleStatus


class ContentWeek(BaseModel):
    """The digest's "This week's content": the local week's scheduled posts, by time."""

    since: datetime
    until: datetime
    items: list[ContentWeekItem] = Field(default_factory=list)


class ContentSettings(BaseModel):
    """Per organization: the channel content cards go to when their item has no owner in
    Slack."""

    model_config = ConfigDict(extra="forbid")

    channel_id: str | None = Field(
        default=None, max_length=32, description="A Slack channel id (C…); null: none."
    )

    @field_validator("channel_id")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.fullmatch(r"[CG][A-Z0-9]{2,30}", value or ""):
            raise ValueError("must be a Slack channel id such as C0123ABCD")
        return value


class ContentSettingsSet(ContentSettings):
    """The content settings as a change answers them: with a warning when Salesbot may not
    be able to post in the marketing channel just set."""

    warning: str | None = Field(
        default=None,
        description="Set when Salesbot is not in the channel, cannot see it, or could not ask "
        "Slack: invite it (/invite @Salesbot) or due cards cannot be posted there.",
    )


# --- `/content` ---------------------------------------------------------------------------


class Verb(StrEnum):
    """The sub-commands of `/content`."""

    LIST = "list"
    ADD = "add"
    DONE = "done"
    HELP = "help"


USAGE: Final = (
    "*Usage of /content*\n"
    "• `/content list` — this week's scheduled posts, their channel, day and status\n"
    "• `/content add` — a form: title, type, the text, channel, day and time, campaign\n"
    "• `/content done &lt;id&gt;` — mark a scheduled post done (the id `/content list` shows)\n"
    "• `/content help` — this message"
)


@dataclass(frozen=True)
class ContentRequest:
    """One `/content` command, read."""

    verb: Verb
    schedule_id: int | None = None
    #: Why help is shown instead (an unknown sub-command).
    problem: str | None = None


def parse_content_command(text: str) -> ContentRequest:
    """Read a `/content` command; InvalidInput says what is wrong with it."""
    words = (text or "").split()
    if not words:
        return ContentRequest(Verb.LIST)
    try:
        verb = Verb(words[0].lower())
    except ValueError:
        shown = " ".join(words)[:60]
        return ContentRequest(Verb.HELP, problem=f"I don't know `/content {shown}`.")
    rest = words[1:]
    if verb is Verb.DONE:
        if len(rest) != 1:
            raise InvalidInput("`/content done` takes the id of one scheduled post, e.g. `12`.")
        raw = rest[0].lstrip("#")
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
            raise InvalidInput(
                f"`{rest[0][:20]}` is not the id of a scheduled post; `/content list` shows them."
            )
        return ContentRequest(verb, schedule_id=int(raw))
    if rest:
        raise InvalidInput(f"`/content {verb.value}` takes nothing more.")
    return ContentRequest(verb)
