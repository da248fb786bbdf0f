"""Audience rules: which contacts a campaign's targeting reaches."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from domain.contacts import US_STATES, RoleCategory
from domain.fields import Label

MAX_LIST = 500


def _clean_strings(values: list[str], *, lower: bool) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        item = value.strip()
        if lower:
            item = item.lower()
        if item:
            seen.setdefault(item, None)
    return list(seen)


class AudienceCriteria(BaseModel):
    """Targeting of a campaign; every field narrows the audience, none widens it.

    Opted-out, bounced and complained contacts are always left out, whatever the criteria,
    and so are contacts paused until a later date (a "not now, try me in January").
    """

    model_config = ConfigDict(extra="forbid")

    target_role_codes: list[Label] = Field(default_factory=list, max_length=MAX_LIST)
    target_role_categories: list[RoleCategory] = Field(default_factory=list, max_length=MAX_LIST)
    exclude_role_codes: list[Label] = Field(default_factory=list, max_length=MAX_LIST)
    include_tags: list[Label] = Field(
        default_factory=list,
        max_length=MAX_LIST,
        description="Contact must carry at least one of these tags.",
    )
    exclude_tags: list[Label] = Field(
        default_factory=list,
        max_length=MAX_LIST,
        description="Contact must carry none of these tags.",
    )
    min_lead_score: int | None = Field(default=None, ge=0, le=100)
    states: list[Label] = Field(
        default_factory=list, max_length=MAX_LIST, description="Two-letter US state codes."
    )
    stale_client_days: int | None = Field(
        default=None,
        ge=1,
        le=3650,
        description="Only contacts whose client's last order is older than this many days.",
    )
    include_never_ordered: bool = Field(
        default=True,
        description="With stale_client_days: also count clients that never ordered.",
    )
    min_days_since_contacted: int | None = Field(
        default=None,
        ge=1,
        le=3650,
        description="Only contacts not emailed in at least this many days (or never).",
    )

    @field_validator("target_role_codes", "exclude_role_codes")
    @classmethod
    def _role_codes(cls, values: list[str]) -> list[str]:
        return _clean_strings(values, lower=False)

    @field_validator("include_tags", "exclude_tags")
    @classmethod
    def _tags(cls, values: list[str]) -> list[str]:
        return _clean_strings(values, lower=True)

    @field_validator("states")
    @classmethod
    def _states(cls, values: list[str]) -> list[str]:
        cleaned = [v.upper() for v in _clean_strings(values, lower=False)]
        unknown = [v for v in cleaned if v not in US_STATES]
        if unknown:
            raise ValueError(f"unknown US state code(s): {', '.join(unknown)}")
        return cleaned

    @model_validator(mode="after")
    def _no_contradiction(self) -> AudienceCriteria:
        both = set(self.target_role_codes) & set(self.exclude_role_codes)
        if both:
            raise ValueError(f"role code(s) both targeted and excluded: {', '.join(sorted(both))}")
        tags = set(self.include_tags) & set(self.exclude_tags)
        if tags:
            raise ValueError(f"tag(s) both included and excluded: {', '.join(sorted(tags))}")
        return self


class AudienceMember(BaseModel):
    """One contact of an audience, as shown in a sample."""

    contact_id: int
    email: str
    first_name: str | None
    last_name: str | None
    role_code: str | None
    client_name: str | None
    state: str | None
    lead_score: int | None


class AudienceSize(BaseModel):
    """How many contacts a targeting reaches, and a few of them."""

    count: int
    sample: list[AudienceMember]
