"""When a cadence step may go out: business days, send windows and time zones (issue 13).

Pure schedule arithmetic the cadence engine builds on. A step is due some days after the
previous one ran (calendar or business days), and goes out only inside the contact's send
window (by default 9:00 to 17:00, Monday to Friday) in the contact's time zone, never on a
holiday of the organization's calendar. A step whose time falls outside the window moves to
the next opening; the next step counts from when this one actually ran, so a late step
shifts the rest of the cadence instead of causing a catch-up burst.

The time zone is the contact's own, else the zone of the US state their client (or they)
are in, else the organization's; `resolve_time_zone` says which one it used, so a card can
tell the rep. Holidays come through the `HolidayCalendar` port (integrations/holiday_calendar.py
builds one from the `holidays` package); the domain only asks "is this day a holiday?".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Final, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from domain.email_preferences import EmailPreferences, email_type_of_step
from domain.email_preferences import stop_reason as unsubscribed_reason
from domain.errors import InvalidInput

DEFAULT_ZONE: Final = "America/Chicago"
WEEKDAYS: Final = frozenset(range(5))  # Monday (0) to Friday (4)
# A window with no business day in a year (every weekday a holiday) is a configuration
# error, not a reason to loop forever.
MAX_SEARCH_DAYS: Final = 366

# The zone most of each state's people live in (states split across zones take the larger).
US_STATE_ZONES: Final[Mapping[str, str]] = {
    "AL": "America/Chicago",
    "AK": "America/Anchorage",
    "AZ": "America/Phoenix",
    "AR": "America/Chicago",
    "CA": "America/Los_Angeles",
    "CO": "America/Denver",
    "CT": "America/New_York",
    "DE": "America/New_York",
    "DC": "America/New_York",
    "FL": "America/New_York",
    "GA": "America/New_York",
    "HI": "Pacific/Honolulu",
    "ID": "America/Boise",
    "IL": "America/Chicago",
    "IN": "America/Indiana/Indianapolis",
    "IA": "America/Chicago",
    "KS": "America/Chicago",
    "KY": "America/New_York",
    "LA": "America/Chicago",
    "ME": "America/New_York",
    "MD": "America/New_York",
    "MA": "America/New_York",
    "MI": "America/Detroit",
    "MN": "America/Chicago",
    "MS": "America/Chicago",
    "MO": "America/Chicago",
    "MT": "America/Denver",
    "NE": "America/Chicago",
    "NV": "America/Los_Angeles",
    "NH": "America/New_York",
    "NJ": "America/New_York",
    "NM": "America/Denver",
    "NY": "America/New_York",
    "NC": "America/New_York",
    "ND": "America/Chicago",
    "OH": "America/New_York",
    "OK": "America/Chicago",
    "OR": "America/Los_Angeles",
    "PA": "America/New_York",
    "RI": "America/New_York",
    "SC": "America/New_York",
    "SD": "America/Chicago",
    "TN": "America/Chicago",
    "TX": "America/Chicago",
    "UT": "America/Denver",
    "VT": "America/New_York",
    "VA": "America/New_York",
    "WA": "America/Los_Angeles",
    "WV": "America/New_York",
    "WI": "America/Chicago",
    "WY": "America/Denver",
    "PR": "America/Puerto_Rico",
    "GU": "Pacific/Guam",
    "VI": "America/St_Thomas",
}


class Channel(StrEnum):
    """How a cadence step reaches the contact."""

    EMAIL = "email"
    LINKEDIN = "linkedin"
    CALL = "call"
    TASK = "task"


class HolidayCalendar(Protocol):
    """The days nobody is sent anything: an organization's public holidays."""

    def is_holiday(self, day: date) -> bool:
        """Tell whether `day` is a holiday."""
        ...


class NoHolidays:
    """A calendar without holidays (an organization that set no country)."""

    def is_holiday(self, day: date) -> bool:
        """Tell whether `day` is a holiday: never."""
        return False


@dataclass(frozen=True)
class SendWindow:
    """When, in the contact's local time, a step may go out."""

    start: time = time(9, 0)
    end: time = time(17, 0)
    weekdays: frozenset[int] = field(default=WEEKDAYS)

    def __post_init__(self) -> None:
        if not self.start < self.end:
            raise InvalidInput(
                f"the send window must start before it ends ({self.start:%H:%M} is not before "
                f"{self.end:%H:%M})",
                field="send_window",
            )
        if not self.weekdays or not self.weekdays <= frozenset(range(7)):
            raise InvalidInput(
                "the send window needs at least one weekday, numbered 0 (Monday) to 6 (Sunday)",
                field="send_window",
            )
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise InvalidInput("send window times are local times, without a zone")


@dataclass(frozen=True)
class ResolvedZone:
    """The time zone a contact's steps are scheduled in, and where it came from."""

    zone: ZoneInfo
    source: str  # "contact", "state", "organization" or "default"

    def describe(self) -> str:
        """Say which zone was used and why, for a card."""
        reasons = {
            "contact": "the contact's time zone",
            "state": "the time zone of the contact's state",
            "organization": "the organization's time zone (the contact has none)",
            "default": "the default time zone (neither the contact nor the organization has one)",
        }
        return f"{self.zone.key}: {reasons[self.source]}"


def time_zone(name: str, *, field_name: str = "timezone") -> ZoneInfo:
    """Return the IANA zone of this name, or raise InvalidInput naming the field."""
    cleaned = name.strip()
    if not cleaned or cleaned not in _zone_names():
        raise InvalidInput(
            f"{name!r} is not a time zone: use an IANA name such as America/Chicago",
            field=field_name,
        )
    try:
        return ZoneInfo(cleaned)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"{name!r} is not a time zone", field=field_name) from None


_ZONES: set[str] = set()


def _zone_names() -> set[str]:
    if not _ZONES:
        _ZONES.update(available_timezones())
    return _ZONES


def resolve_time_zone(
    *, contact_zone: str | None, state: str | None, org_zone: str | None
) -> ResolvedZone:
    """Return the zone to schedule a contact's steps in: contact, state, org, default.

    A stored zone that is not a real one (imported data) is skipped like a missing one.
    """
    if contact_zone and contact_zone.strip() in _zone_names():
        return ResolvedZone(ZoneInfo(contact_zone.strip()), "contact")
    if state and (by_state := US_STATE_ZONES.get(state.strip().upper())) is not None:
        return ResolvedZone(ZoneInfo(by_state), "state")
    if org_zone and org_zone.strip() in _zone_names():
        return ResolvedZone(ZoneInfo(org_zone.strip()), "organization")
    return ResolvedZone(ZoneInfo(DEFAULT_ZONE), "default")


def is_business_day(day: date, window: SendWindow, holidays: HolidayCalendar) -> bool:
    """Tell whether steps may go out on `day`: one of the window's weekdays, not a holiday."""
    return day.weekday() in window.weekdays and not holidays.is_holiday(day)


def add_business_days(day: date, count: int, window: SendWindow, holidays: HolidayCalendar) -> date:
    """Return the `count`-th business day after `day` (count 0: `day` itself)."""
    if count < 0:
        raise ValueError("count must not be negative")
    current = day
    for _ in range(count):
        current = _next_business_day(current + timedelta(days=1), window, holidays)
    return current


def _next_business_day(day: date, window: SendWindow, holidays: HolidayCalendar) -> date:
    """Return `day` or the first business day after it."""
    current = day
    for _ in range(MAX_SEARCH_DAYS):
        if is_business_day(current, window, holidays):
            return current
        current += timedelta(days=1)
    raise InvalidInput(
        f"no business day within {MAX_SEARCH_DAYS} days of {day.isoformat()}: check the send "
        "window's weekdays and the holiday calendar",
        field="send_window",
    )


def _local(day: date, at: time, zone: ZoneInfo) -> datetime:
    """Return the instant of a local wall-clock time (a time skipped by DST moves forward)."""
    moment = datetime.combine(day, at, tzinfo=zone)
    # A wall-clock time in a spring-forward gap does not exist; round-tripping through UTC
    # gives the instant an hour later, which is what a person's clock shows then.
    return moment.astimezone(UTC).astimezone(zone)


def next_opening(
    at: datetime, zone: ZoneInfo, window: SendWindow, holidays: HolidayCalendar
) -> datetime:
    """Return the first instant at or after `at` inside the window, in UTC."""
    if at.tzinfo is None:
        raise ValueError("a naive datetime has no place in a schedule")
    local = at.astimezone(zone)
    day = local.date()
    if is_business_day(day, window, holidays):
        opens, closes = _local(day, window.start, zone), _local(day, window.end, zone)
        if local < opens:
            return opens.astimezone(UTC)
        if local < closes:
            return at.astimezone(UTC)
    day = _next_business_day(day + timedelta(days=1), window, holidays)
    return _local(day, window.start, zone).astimezone(UTC)


def next_step_at(
    previous_at: datetime,
    gap_days: int,
    *,
    zone: ZoneInfo,
    window: SendWindow,
    holidays: HolidayCalendar,
    business_days: bool = False,
) -> datetime:
    """Return when a step is due: `gap_days` after the previous step ran, inside the window.

    The gap counts from the previous step's actual time, in the contact's local calendar
    (calendar days, or business days), keeping its wall-clock time; the result then moves to
    the next opening of the window. A previous step that ran late pushes this one later too.
    """
    if gap_days < 0:
        raise ValueError("a gap between steps cannot be negative")
    local = previous_at.astimezone(zone)
    if business_days:
        day = add_business_days(local.date(), gap_days, window, holidays)
    else:
        day = local.date() + timedelta(days=gap_days)
    candidate = _local(day, local.time().replace(tzinfo=None), zone)
    return next_opening(candidate, zone, window, holidays)


def step_gaps(days: list[int]) -> list[int]:
    """Return the gaps between a cadence's steps (days 0, 4, 10 → gaps 0, 4, 6)."""
    return [b - a for a, b in zip([0, *days], days, strict=False)]


# --- the organization's cadence settings ------------------------------------------------


class CadenceSettings(BaseModel):
    """An organization's send window, calendar, fatigue limits and deliverability guard.

    Stored as `organizations.cadence_settings`; every field has the default a firm
    without settings gets.
    """

    model_config = ConfigDict(extra="forbid")

    timezone: str | None = Field(
        default=None,
        description="The organization's IANA zone, for contacts without one and no state.",
    )
    holiday_country: str | None = Field(
        default="US", description="ISO 3166 country whose public holidays nobody is sent."
    )
    holiday_subdivision: str | None = Field(
        default=None, description="A state or province of that country (e.g. TX)."
    )
    window_start: time = Field(default=time(9, 0), description="Local time steps start.")
    window_end: time = Field(default=time(17, 0), description="Local time steps stop.")
    # Strict: JSON `true` is not weekday 1.
    weekdays: list[StrictInt] = Field(
        default_factory=lambda: sorted(WEEKDAYS),
        description="Weekdays steps go out, 0 (Monday) to 6 (Sunday).",
    )
    max_emails_per_contact_week: int = Field(
        default=3,
        ge=1,
        le=50,
        description="Emails one person receives in any 7 days, across campaigns and replies.",
    )
    max_emails_per_domain_day: int = Field(
        default=25,
        ge=1,
        le=10_000,
        description="Emails one client domain receives in any 24 hours.",
    )
    max_bounce_rate: float = Field(
        default=0.05, gt=0, le=1, description="Hard bounces per send that pause a job."
    )
    max_opt_out_rate: float = Field(
        default=0.02, gt=0, le=1, description="Opt-outs per send that pause a job."
    )
    guard_min_sends: int = Field(
        default=20, ge=1, le=100_000, description="Sends a job makes before the guard judges it."
    )
    guard_window_days: int = Field(
        default=7, ge=1, le=90, description="The rolling window the guard counts in."
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return time_zone(value, field_name="timezone").key

    @field_validator("holiday_country", "holiday_subdivision")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        return value.strip().upper() or None if value is not None else None

    @field_validator("window_start", "window_end")
    @classmethod
    def _local_time(cls, value: time) -> time:
        # The window is read in each contact's own zone; an offset would say whose it is
        # (and an aware time cannot be compared with a naive one).
        if value.tzinfo is not None:
            raise ValueError("a local time without offset, e.g. 09:00")
        return value

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, values: list[int]) -> list[int]:
        if not values or any(not 0 <= v <= 6 for v in values):
            raise ValueError("weekdays are numbered 0 (Monday) to 6 (Sunday); give at least one")
        return sorted(set(values))

    @model_validator(mode="after")
    def _window_ok(self) -> CadenceSettings:
        if not self.window_start < self.window_end:
            raise InvalidInput(
                f"the send window must start before it ends ({self.window_start:%H:%M} is not "
                f"before {self.window_end:%H:%M})",
                field="window_end",
            )
        self.window()  # raises InvalidInput with any other reason
        return self

    def window(self) -> SendWindow:
        """The send window these settings describe."""
        return SendWindow(self.window_start, self.window_end, frozenset(self.weekdays))


def settings_from(stored: Mapping[str, object] | None) -> CadenceSettings:
    """Read stored settings; settings that no longer validate fall back to the defaults
    field by field is not attempted: the whole stored object is refused at write time."""
    return CadenceSettings.model_validate(dict(stored or {}))


# --- the engine ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StepSpec:
    """A cadence step as the engine needs it (see domain.jobs.PlannedStep)."""

    index: int
    day: int
    channel: Channel


@dataclass(frozen=True)
class JobFacts:
    """What the stop rules read of a job and its campaign."""

    job_id: int
    status: str  # domain.jobs.JobStatus values
    started_at: datetime
    steps: tuple[StepSpec, ...]
    business_days: bool = False
    campaign_status: str | None = None
    campaign_end: date | None = None


@dataclass(frozen=True)
class ContactFacts:
    """What the stop rules and the schedule read of one contact, at the tick."""

    contact_id: int
    email: str
    opted_out: bool = False
    email_status: str = "valid"
    last_replied_at: datetime | None = None
    paused_until: datetime | None = None
    pause_reason: str | None = None
    client_last_order_at: datetime | None = None
    time_zone: str | None = None
    state: str | None = None
    #: Emails sent to the person in the last 7 days, and to their domain in the last 24 h.
    emails_last_week: int = 0
    domain_emails_last_day: int = 0
    #: The types of email the contact turned off (domain/email_preferences.py).
    email_preferences: EmailPreferences = field(default_factory=EmailPreferences)


@dataclass(frozen=True)
class DueEnrollment:
    """An enrollment whose step came due."""

    id: int
    org_id: int
    job_id: int
    contact_id: int
    step: int
    enrolled_at: datetime
    last_step_at: datetime | None


class Outcome(StrEnum):
    """What the tick does with a due enrollment."""

    RUN = "run"  # the step runs now (a draft, a card)
    DEFER = "defer"  # not yet: a later time, with the reason
    PAUSE = "pause"  # paused until a person (or the job's resumption) starts it again
    STOP = "stop"  # the cadence ends for the contact, with the reason
    COMPLETE = "complete"  # every step ran


@dataclass(frozen=True)
class Decision:
    """The engine's verdict on one due enrollment."""

    outcome: Outcome
    reason: str | None = None
    #: DEFER: when to look again; RUN: when the step was scheduled for.
    at: datetime | None = None
    step: StepSpec | None = None
    zone: ResolvedZone | None = None
    #: STOP for a new order: the campaign won the client back.
    win: bool = False


#: Stop reasons, as enrollments record them (at most 64 characters).
REPLIED: Final = "replied"
OPTED_OUT: Final = "opted out"
BOUNCED: Final = "bounced"
COMPLAINED: Final = "complained"
NEW_ORDER: Final = "re-engaged: new order"
JOB_PAUSED: Final = "job paused"
CAMPAIGN_ENDED: Final = "campaign ended"


def decide(
    due: DueEnrollment,
    contact: ContactFacts | None,
    job: JobFacts,
    settings: CadenceSettings,
    holidays: HolidayCalendar,
    *,
    now: datetime,
) -> Decision:
    """Decide what happens to a due enrollment now: run its step, wait, pause, stop or end.

    The rules, in order: the job must run and its campaign must not have ended; a contact
    gone (deleted), opted out, bounced or complained stops; an email step of a type the
    contact turned off (a follow-up, a first campaign email) stops; a reply since
    enrollment stops; an order of the contact's client since the job started stops as a
    win; a person paused until a date waits until then; the step waits for its day and
    for the send window in the contact's zone; an email step waits while the person or
    their domain had their fill of email (fatigue). Otherwise the step runs.
    """
    if job.status == "paused":
        return Decision(Outcome.PAUSE, JOB_PAUSED)
    if job.status != "running":
        return Decision(Outcome.STOP, f"job {job.status}")
    if job.campaign_status in ("completed", "archived"):
        return Decision(Outcome.STOP, f"{CAMPAIGN_ENDED} ({job.campaign_status})")
    if contact is None:
        return Decision(Outcome.STOP, "contact deleted")
    zone = resolve_time_zone(
        contact_zone=contact.time_zone, state=contact.state, org_zone=settings.timezone
    )
    if job.campaign_end is not None and now.astimezone(zone.zone).date() > job.campaign_end:
        return Decision(Outcome.STOP, f"{CAMPAIGN_ENDED} ({job.campaign_end.isoformat()})")
    if due.step >= len(job.steps):
        return Decision(Outcome.COMPLETE, "every step ran")
    if contact.opted_out:
        return Decision(Outcome.STOP, OPTED_OUT)
    if contact.email_status == "bounced":
        return Decision(Outcome.STOP, BOUNCED)
    if contact.email_status == "complained":
        return Decision(Outcome.STOP, COMPLAINED)
    if job.steps[due.step].channel == Channel.EMAIL:
        # A follow-up step for a contact who turned follow-ups off (or a first step for one
        # who turned campaign emails off since the launch): the cadence ends for them.
        email_type = email_type_of_step(due.step)
        if not contact.email_preferences.allows(email_type):
            return Decision(Outcome.STOP, unsubscribed_reason(email_type))
    if contact.last_replied_at is not None and contact.last_replied_at >= due.enrolled_at:
        return Decision(Outcome.STOP, REPLIED)
    if contact.client_last_order_at is not None and contact.client_last_order_at >= job.started_at:
        return Decision(Outcome.STOP, NEW_ORDER, win=True)
    window = settings.window()
    if contact.paused_until is not None and contact.paused_until > now:
        until = next_opening(contact.paused_until, zone.zone, window, holidays)
        why = contact.pause_reason or "paused"
        return Decision(
            Outcome.DEFER, f"{why}: until {_when(until, zone)}"[:200], at=until, zone=zone
        )
    step = job.steps[due.step]
    if due.step == 0:
        scheduled = next_opening(due.enrolled_at, zone.zone, window, holidays)
    else:
        # From when the previous step ended; an enrollment that never recorded it (made
        # before cadences ran) counts the step's day from its enrollment.
        since, gap = (
            (due.last_step_at, step.day - job.steps[due.step - 1].day)
            if due.last_step_at is not None
            else (due.enrolled_at, step.day)
        )
        scheduled = next_step_at(
            since,
            gap,
            zone=zone.zone,
            window=window,
            holidays=holidays,
            business_days=job.business_days,
        )
    if scheduled > now:
        return Decision(
            Outcome.DEFER,
            f"step {step.index + 1} is due {_when(scheduled, zone)}",
            at=scheduled,
            zone=zone,
        )
    opening = next_opening(now, zone.zone, window, holidays)
    if opening > now:
        return Decision(
            Outcome.DEFER,
            f"outside business hours in {zone.zone.key}; next window {_when(opening, zone)}",
            at=opening,
            zone=zone,
        )
    if step.channel == Channel.EMAIL:
        if contact.emails_last_week >= settings.max_emails_per_contact_week:
            later = _next_day_opening(now, zone, window, holidays)
            return Decision(
                Outcome.DEFER,
                f"fatigue: {contact.emails_last_week} emails to {contact.email} in 7 days "
                f"(limit {settings.max_emails_per_contact_week}); retry {_when(later, zone)}"[:200],
                at=later,
                zone=zone,
            )
        if contact.domain_emails_last_day >= settings.max_emails_per_domain_day:
            later = _next_day_opening(now, zone, window, holidays)
            domain = contact.email.rsplit("@", 1)[-1]
            return Decision(
                Outcome.DEFER,
                f"fatigue: {contact.domain_emails_last_day} emails to {domain} today "
                f"(limit {settings.max_emails_per_domain_day}); retry {_when(later, zone)}"[:200],
                at=later,
                zone=zone,
            )
    return Decision(Outcome.RUN, at=scheduled, step=step, zone=zone)


def _next_day_opening(
    now: datetime, zone: ResolvedZone, window: SendWindow, holidays: HolidayCalendar
) -> datetime:
    """The window's first opening on a later local day than `now`'s."""
    tomorrow = now.astimezone(zone.zone).date() + timedelta(days=1)
    return next_opening(_local(tomorrow, time(0, 0), zone.zone), zone.zone, window, holidays)


def _when(at: datetime, zone: ResolvedZone) -> str:
    """A time as the contact's clock shows it, e.g. "Mon 2026-12-07 09:00 CST"."""
    local = at.astimezone(zone.zone)
    return f"{local:%a %Y-%m-%d %H:%M} {local.tzname()}"


@dataclass(frozen=True)
class GuardCounts:
    """A job's sends, hard bounces and opt-outs in the guard's rolling window."""

    sends: int
    bounces: int
    opt_outs: int


@dataclass(frozen=True)
class GuardThresholds:
    """The rates past which a job pauses itself (the org's, or the job's own)."""

    max_bounce_rate: float
    max_opt_out_rate: float
    min_sends: int


def guard_verdict(counts: GuardCounts, limits: GuardThresholds) -> str | None:
    """Return why a job must pause (bounces or opt-outs past their rate), or None.

    A job with fewer sends than `min_sends` in the window is not judged: two bounces out
    of ten sends is noise, not a spike.
    """
    if counts.sends < limits.min_sends:
        return None
    bounce_rate = counts.bounces / counts.sends
    if bounce_rate > limits.max_bounce_rate:
        return (
            f"paused by the deliverability guard: {counts.bounces} hard bounces in "
            f"{counts.sends} sends ({bounce_rate:.1%}, limit {limits.max_bounce_rate:.1%}). "
            "Clean the list (remove bounced addresses), then resume the job."
        )
    opt_out_rate = counts.opt_outs / counts.sends
    if opt_out_rate > limits.max_opt_out_rate:
        return (
            f"paused by the deliverability guard: {counts.opt_outs} opt-outs in "
            f"{counts.sends} sends ({opt_out_rate:.1%}, limit {limits.max_opt_out_rate:.1%}). "
            "Check the audience and the message, then resume the job."
        )
    return None


@dataclass(frozen=True)
class Settlement:
    """How the tick leaves one enrollment: its status, due time and reasons."""

    id: int
    status: str  # domain.jobs.EnrollmentStatus values
    next_due_at: datetime | None
    stop_reason: str | None = None
    defer_reason: str | None = None
    time_zone: str | None = None
    #: RUN: the step is in flight from this time.
    step_started_at: datetime | None = None
