"""An organization's analytics settings (`organizations.analytics_settings`, issue 14).

One JSON object with a section per capability; an empty object means the defaults:

- `tracking` (domain.tracking.TrackingSettings): opens and clicks, **off by default**;
- `lead_scoring` (domain.lead_scoring.LeadScoringSettings): how contacts are scored;
- `targeting` (domain.targeting.StaleTargetingSettings): which clients are stale and how
  they are ranked.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from domain.lead_scoring import LeadScoringSettings
from domain.targeting import StaleTargetingSettings


class TrackingSettings(BaseModel):
    """Whether the organization tracks opens (a 1×1 pixel) and clicks (redirecting links).

    Off by default: a pixel and rewritten links tell the recipient's mail provider that the
    email is marketing (deliverability suffers: link rewriting to another domain is a spam
    signal), they report when and where a person read, and Apple's Mail Privacy Protection
    and Gmail's image proxy make opens unreliable anyway. Replies are the signal that counts.
    """

    model_config = ConfigDict(extra="forbid")

    opens: bool = Field(default=False, description="Add a 1×1 pixel to each email.")
    clicks: bool = Field(default=False, description="Send links through a signed redirect.")


class AnalyticsSettings(BaseModel):
    """The whole `organizations.analytics_settings` object."""

    model_config = ConfigDict(extra="forbid")

    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    # Lead scores: weights, role weights, windows (domain.lead_scoring's docstring).
    lead_scoring: LeadScoringSettings = Field(default_factory=LeadScoringSettings)
    # Stale clients and their ranking (domain.targeting's docstring).
    targeting: StaleTargetingSettings = Field(default_factory=StaleTargetingSettings)
