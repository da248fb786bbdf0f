"""Marketing campaigns, as in the original system, plus the targeting they carry."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from domain.audience import AudienceCriteria


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


class CampaignFields(AudienceCriteria):
    """Fields a campaign may be given, shared by create and full views."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    goal: CampaignGoal = CampaignGoal.REACTIVATION
    status: CampaignStatus = CampaignStatus.DRAFT
    start_date: date | None = None
    end_date: date | None = None
    channels: list[Channel] = Field(default_factory=lambda: [Channel.EMAIL])
    metrics: dict[str, Any] = Field(default_factory=dict)
    email_template_ids: list[int] = Field(
        default_factory=list, description="Templates of the cadence's steps, in order."
    )
    cadence_days: list[int] = Field(default_factory=lambda: list(DEFAULT_CADENCE_DAYS))
    review_channel_id: str | None = Field(
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
    if len(values) > 20:
        raise ValueError("cadence_days may have at most 20 steps")
    return values


class CampaignCreate(CampaignFields):
    """A new campaign."""


class CampaignUpdate(BaseModel):
    """A partial change to a campaign; only the fields given are changed."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    goal: CampaignGoal | None = None
    status: CampaignStatus | None = None
    start_date: date | None = None
    end_date: date | None = None
    target_role_codes: list[str] | None = None
    target_role_categories: list[str] | None = None
    exclude_role_codes: list[str] | None = None
    include_tags: list[str] | None = None
    exclude_tags: list[str] | None = None
    min_lead_score: int | None = None
    states: list[str] | None = None
    stale_client_days: int | None = None
    include_never_ordered: bool | None = None
    min_days_since_contacted: int | None = None
    channels: list[Channel] | None = None
    metrics: dict[str, Any] | None = None
    email_template_ids: list[int] | None = None
    cadence_days: list[int] | None = None
    review_channel_id: str | None = None

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
