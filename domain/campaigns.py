"""Marketing campaigns, as in the original system, plus the targeting they carry."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from domain.audience import MAX_LIST, AudienceCriteria
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
        default_factory=lambda: list(DEFAULT_CADENCE_DAYS), max_length=MAX_STEPS
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

    def criteria(self) -> AudienceCriteria:
        """Return the audience targeting of this campaign."""
        return AudienceCriteria.model_validate(
            {name: getattr(self, name) for name in AudienceCriteria.model_fields}
        )


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
    review_channel_id: Text | None = Field(default=None, max_length=64)

    def apply_to(self, current: CampaignFields) -> CampaignFields:
        """Return the campaign with this change applied, validated as a whole."""
        merged = current.model_dump(include=set(CampaignFields.model_fields))
        merged.update(self.model_dump(exclude_unset=True))
        return CampaignFields.model_validate(merged)


class Campaign(CampaignFields):
    """A stored campaign."""

    model_config = ConfigDict(extra="ignore")

    id: int
    created_by: int | None = None
    created_at: datetime
    updated_at: datetime
