"""Marketing campaigns, as in the original system, plus the targeting and cadence they carry.

A campaign's cadence is either `cadence_days` (every step an email, one template each) or
a multi-channel `cadence` (issue 13): steps with a day and a channel, email → LinkedIn →
call, in calendar or business days. The same `Cadence` model is a job's (domain.jobs
re-exports it): a job launched from a campaign runs the campaign's cadence.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from enum import StrEnum

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from domain.audience import MAX_LIST, AudienceCriteria
from domain.cadence import Channel as StepChannel
from domain.contacts import RoleCategory
from domain.fields import Id, JsonObject, Label, Text


class CampaignGoal(StrEnum):
    """Why a campaign runs."""

    REACTIVATION = "reactivation"
    NURTURE = "nurture"
    ACQUISITION = "acquisition"
    EDUCATION = "education"
    RETENTION = "retention"
    BRAND_AWARENESS = "brand_awareness"


class CampaignStatus(StrEnum):
    """Where a campaign is in its life."""

    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    ARCHIVED = "archived"


class Channel(StrEnum):
    """Channels a campaign may use."""

    EMAIL = "email"
    LINKEDIN = "linkedin"
    SUBSTACK = "substack"
    TIKTOK = "tiktok"
    INSTAGRAM = "instagram"
    FACEBOOK = "facebook"
    PINTEREST = "pinterest"
    YOUTUBE = "youtube"
    BLOG = "blog"
    NEWSLETTER = "newsletter"
    WEBINAR = "webinar"
    PODCAST = "podcast"


DEFAULT_CADENCE_DAYS: tuple[int, ...] = (0, 4, 10, 21)
MAX_STEPS = 20
MAX_DAY = 365


def field_errors(problems: Sequence[tuple[tuple[str | int, ...], str, object]]) -> ValidationError:
    """A validation error naming each field at fault: (location, reason, value) each.

    Raised from a model's validator, pydantic puts the model's own location before each
    one, so the API's error names e.g. `cadence.steps.2.channel` rather than the whole
    body.
    """
    details: list[InitErrorDetails] = [
        {"type": PydanticCustomError("invalid_cadence", message), "loc": loc, "input": value}
        for loc, message, value in problems
    ]
    return ValidationError.from_exception_data("Cadence", details)


class CadenceStep(BaseModel):
    """One step of a multi-channel cadence: on which day, by which channel."""

    model_config = ConfigDict(extra="forbid")

    day: int = Field(
        ge=0, le=MAX_DAY, description="Days after enrollment (the first step is day 0)."
    )
    channel: StepChannel = Field(
        default=StepChannel.EMAIL,
        description="`email` (the next template, in the thread of the first), `linkedin`, "
        "`call` or `task` (a card for the rep with Done / Skip).",
    )
    title: Text | None = Field(default=None, max_length=300)
    description: Text | None = Field(default=None, max_length=5000)


class Cadence(BaseModel):
    """When each step goes out, in days after enrollment (day 0, 4, 10, 21 ...).

    `days` alone is an all-email cadence (one template per step); `steps` names each
    step's channel (email → LinkedIn → call ...). Days count calendar days, or business
    days (the org's send window's weekdays, without holidays) with `business_days`.
    """

    model_config = ConfigDict(extra="forbid")

    days: list[int] = Field(default_factory=lambda: list(DEFAULT_CADENCE_DAYS))
    steps: list[CadenceStep] | None = Field(default=None, max_length=MAX_STEPS)
    business_days: bool = False

    @field_validator("days")
    @classmethod
    def _days(cls, values: list[int]) -> list[int]:
        return validate_cadence_days(values)

    @field_validator("steps", mode="before")
    @classmethod
    def _not_too_many(cls, value: object) -> object:
        # Before the list's own bound, for a reason that says what to do.
        if isinstance(value, list) and len(value) > MAX_STEPS:
            raise ValueError(
                f"a cadence has at most {MAX_STEPS} steps; this one has {len(value)}: "
                "merge or drop steps"
            )
        return value

    @field_validator("steps")
    @classmethod
    def _in_order(cls, steps: list[CadenceStep] | None) -> list[CadenceStep] | None:
        if steps is None:
            return None
        if not steps:
            raise ValueError("a cadence needs at least one step (day 0)")
        problems: list[tuple[tuple[str | int, ...], str, object]] = []
        if steps[0].day != 0:
            problems.append(
                (
                    (0, "day"),
                    f"the first step must be on day 0 (the day the contact is enrolled), "
                    f"not day {steps[0].day}",
                    steps[0].day,
                )
            )
        for n, (before, step) in enumerate(zip(steps, steps[1:], strict=False), start=1):
            if step.day <= before.day:
                problems.append(
                    (
                        (n, "day"),
                        f"step {n + 1} is on day {step.day}, not after step {n} (day "
                        f"{before.day}): step days must strictly increase, e.g. 0, 2, 5",
                        step.day,
                    )
                )
        if problems:
            raise field_errors(problems)
        return steps

    @model_validator(mode="after")
    def _steps_days(self) -> Cadence:
        if self.steps is not None:
            self.days = [step.day for step in self.steps]
        return self

    def email_steps(self) -> int:
        """How many of the steps are emails (each needs its template)."""
        if self.steps is None:
            return len(self.days)
        return sum(1 for step in self.steps if step.channel == StepChannel.EMAIL)


# The campaign channel a cadence step's channel needs; calls and tasks are the rep's own.
_NEEDS_CHANNEL: dict[StepChannel, Channel] = {
    StepChannel.EMAIL: Channel.EMAIL,
    StepChannel.LINKEDIN: Channel.LINKEDIN,
}


class CampaignFields(AudienceCriteria):
    """Fields a campaign may be given, shared by create and full views."""

    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=200)
    description: Text | None = Field(default=None, max_length=5000)
    goal: CampaignGoal = CampaignGoal.REACTIVATION
    status: CampaignStatus = CampaignStatus.DRAFT
    start_date: date | None = None
    end_date: date | None = None
    channels: list[Channel] = Field(default_factory=lambda: [Channel.EMAIL], max_length=20)
    metrics: JsonObject = Field(default_factory=dict)
    email_template_ids: list[Id] = Field(
        default_factory=list,
        max_length=MAX_STEPS,
        description="Templates of the cadence's steps, in order.",
    )
    cadence_days: list[int] = Field(
        default_factory=lambda: list(DEFAULT_CADENCE_DAYS),
        max_length=MAX_STEPS,
        description="The days of an all-email cadence; with `cadence`, its steps' days.",
    )
    cadence: Cadence | None = Field(
        default=None,
        description="A multi-channel cadence: `steps` (day and channel: email, linkedin, "
        "call, task) and `business_days`. A `linkedin` step needs `linkedin` in `channels`, "
        "an `email` step `email` and one of `email_template_ids`. Null: `cadence_days`, "
        "every step an email.",
    )
    review_channel_id: Text | None = Field(
        default=None, max_length=64, description="Slack channel where drafts are reviewed."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("name must not be blank")
        return value

    @field_validator("channels")
    @classmethod
    def _channels(cls, values: list[Channel]) -> list[Channel]:
        return list(dict.fromkeys(values))

    @field_validator("cadence_days")
    @classmethod
    def _cadence(cls, values: list[int]) -> list[int]:
        return validate_cadence_days(values)

    @model_validator(mode="after")
    def _dates(self) -> CampaignFields:
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValueError("end_date must not be before start_date")
        return self

    @model_validator(mode="after")
    def _cadence_fits(self, info: ValidationInfo) -> CampaignFields:
        cadence = self.cadence
        stored = isinstance(info.context, dict) and info.context.get("stored") is True
        if cadence is None or stored:
            return self  # a stored campaign is served as it was accepted
        if cadence.steps is None:
            raise field_errors(
                [
                    (
                        ("cadence", "steps"),
                        "a campaign's cadence lists its steps (day and channel); leave "
                        "`cadence` out to send every step by email on `cadence_days`",
                        None,
                    )
                ]
            )
        problems = cadence_problems(cadence, self.channels, len(self.email_template_ids))
        days = [step.day for step in cadence.steps]
        if "cadence_days" in self.model_fields_set and self.cadence_days != days:
            problems.append(
                (
                    ("cadence_days",),
                    f"cadence_days {self.cadence_days} differ from the days of cadence.steps "
                    f"{days}; leave cadence_days out (it follows the steps), or set cadence "
                    "to null to send every step by email",
                    self.cadence_days,
                )
            )
        if problems:
            raise field_errors(problems)
        # One schedule: cadence_days reads as the steps' days.
        self.cadence_days = days
        return self

    def criteria(self) -> AudienceCriteria:
        """Return the audience targeting of this campaign."""
        return AudienceCriteria.model_validate(
            {name: getattr(self, name) for name in AudienceCriteria.model_fields}
        )


def cadence_problems(
    cadence: Cadence, channels: Sequence[Channel], templates: int
) -> list[tuple[tuple[str | int, ...], str, object]]:
    """What keeps a campaign from running a cadence: a step whose channel the campaign does
    not use, or more email steps than email templates. Each is (location, reason, value)."""
    problems: list[tuple[tuple[str | int, ...], str, object]] = []
    for n, step in enumerate(cadence.steps or []):
        needed = _NEEDS_CHANNEL.get(step.channel)
        if needed is not None and needed not in channels:
            problems.append(
                (
                    ("cadence", "steps", n, "channel"),
                    f"step {n + 1} ({step.channel.value}) needs {needed.value!r} in the "
                    "campaign's channels: add it to `channels`, or change the step (call and "
                    "task steps need no channel)",
                    step.channel.value,
                )
            )
    emails = cadence.email_steps()
    if emails > templates:
        problems.append(
            (
                ("cadence", "steps"),
                f"the cadence has {emails} email steps but the campaign has {templates} email "
                f"template{'' if templates == 1 else 's'}: give one template per email step in "
                "`email_template_ids`",
                emails,
            )
        )
    return problems


def validate_cadence_days(values: list[int]) -> list[int]:
    """Check a cadence: starts at day 0, strictly increasing, at most a year long."""
    if not values:
        raise ValueError("cadence_days needs at least one step (day 0)")
    if values[0] != 0:
        raise ValueError("cadence_days must start at day 0")
    if any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise ValueError("cadence_days must be strictly increasing, e.g. [0, 4, 10, 21]")
    if values[-1] > 365:
        raise ValueError("cadence_days must end within 365 days")
    if len(values) > MAX_STEPS:
        raise ValueError(f"cadence_days may have at most {MAX_STEPS} steps")
    return values


class CampaignCreate(CampaignFields):
    """A new campaign."""


class CampaignUpdate(BaseModel):
    """A partial change to a campaign; only the fields given are changed."""

    model_config = ConfigDict(extra="forbid")

    name: Text | None = Field(default=None, min_length=1, max_length=200)
    description: Text | None = Field(default=None, max_length=5000)
    goal: CampaignGoal | None = None
    status: CampaignStatus | None = None
    start_date: date | None = None
    end_date: date | None = None
    target_role_codes: list[Label] | None = Field(default=None, max_length=MAX_LIST)
    target_role_categories: list[RoleCategory] | None = Field(default=None, max_length=MAX_LIST)
    exclude_role_codes: list[Label] | None = Field(default=None, max_length=MAX_LIST)
    include_tags: list[Label] | None = Field(default=None, max_length=MAX_LIST)
    exclude_tags: list[Label] | None = Field(default=None, max_length=MAX_LIST)
    min_lead_score: int | None = Field(default=None, ge=0, le=100)
    states: list[Label] | None = Field(default=None, max_length=MAX_LIST)
    stale_client_days: int | None = Field(default=None, ge=1, le=3650)
    include_never_ordered: bool | None = None
    min_days_since_contacted: int | None = Field(default=None, ge=1, le=3650)
    channels: list[Channel] | None = Field(default=None, max_length=20)
    metrics: JsonObject | None = None
    email_template_ids: list[Id] | None = Field(default=None, max_length=MAX_STEPS)
    cadence_days: list[int] | None = Field(default=None, max_length=MAX_STEPS)
    cadence: Cadence | None = Field(
        default=None, description="A new multi-channel cadence; null: back to cadence_days."
    )
    review_channel_id: Text | None = Field(default=None, max_length=64)

    def apply_to(self, current: CampaignFields) -> CampaignFields:
        """Return the campaign with this change applied, validated as a whole."""
        merged = current.model_dump(include=set(CampaignFields.model_fields))
        change = self.model_dump(exclude_unset=True)
        if change.get("cadence") is not None and "cadence_days" not in change:
            # The old cadence_days were the old steps' days: they follow the new steps.
            merged.pop("cadence_days", None)
        merged.update(change)
        if merged.get("cadence") is None:
            merged.pop("cadence", None)
        return CampaignFields.model_validate(merged)


class Campaign(CampaignFields):
    """A stored campaign."""

    model_config = ConfigDict(extra="ignore")

    id: int
    created_by: int | None = None
    created_at: datetime
    updated_at: datetime
