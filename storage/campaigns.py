"""The repository of marketing campaigns."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from domain.campaigns import Campaign, CampaignFields
from domain.errors import Conflict
from domain.fields import STORED
from storage import models as m
from storage.sql import assign_fields, flush_or_conflict, org_row

_CAMPAIGN_FIELDS = tuple(CampaignFields.model_fields)


def _column_values(fields: CampaignFields) -> dict[str, Any]:
    """Return the campaign's fields as its columns take them.

    JSON values for the JSON columns (enums as strings), but dates as dates: SQLite's Date
    type refuses the ISO strings JSON mode makes of them.
    """
    values = fields.model_dump(mode="json")
    values["start_date"] = fields.start_date
    values["end_date"] = fields.end_date
    # The column is not nullable: an empty object is "no multi-channel cadence".
    values["cadence"] = values["cadence"] or {}
    return values


class CampaignRepo:
    """Campaigns of one organization."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def _row(self, org_id: int, campaign_id: int) -> m.MarketingCampaign:
        return org_row(self._s, m.MarketingCampaign, org_id, campaign_id, what="campaign")

    @staticmethod
    def _to_domain(row: m.MarketingCampaign) -> Campaign:
        data: dict[str, Any] = {name: getattr(row, name) for name in _CAMPAIGN_FIELDS}
        data["cadence"] = row.cadence or None
        data.update(
            id=row.id,
            created_by=row.created_by,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
        return Campaign.model_validate(data, context=STORED)

    def _check_unique_name(self, org_id: int, name: str, *, except_id: int | None) -> None:
        found = self.find_by_name(org_id, name)
        if found is not None and found.id != except_id:
            raise Conflict(f"a campaign named {name!r} already exists (id {found.id})")

    def add(self, org_id: int, fields: CampaignFields, *, created_by: int | None) -> Campaign:
        """Store a new campaign."""
        self._check_unique_name(org_id, fields.name, except_id=None)
        row = m.MarketingCampaign(org_id=org_id, created_by=created_by)
        assign_fields(row, _column_values(fields), _CAMPAIGN_FIELDS)
        self._s.add(row)
        flush_or_conflict(self._s, f"a campaign named {fields.name!r} already exists")
        return self._to_domain(row)

    def get(self, org_id: int, campaign_id: int) -> Campaign:
        """Return a campaign or raise NotFound."""
        return self._to_domain(self._row(org_id, campaign_id))

    def find_by_name(self, org_id: int, name: str) -> Campaign | None:
        """Return the campaign with this name (case-insensitive), if any."""
        row = self._s.scalars(
            select(m.MarketingCampaign).where(
                m.MarketingCampaign.org_id == org_id,
                func.lower(m.MarketingCampaign.name) == name.strip().lower(),
            )
        ).first()
        return None if row is None else self._to_domain(row)

    def list(self, org_id: int, *, status: str | None, limit: int, offset: int) -> list[Campaign]:
        """Return campaigns, newest first."""
        query = select(m.MarketingCampaign).where(m.MarketingCampaign.org_id == org_id)
        if status:
            query = query.where(m.MarketingCampaign.status == status)
        query = query.order_by(m.MarketingCampaign.id.desc()).limit(limit).offset(offset)
        return [self._to_domain(r) for r in self._s.scalars(query)]

    def update(
        self, org_id: int, campaign_id: int, fields: CampaignFields, *, now: datetime
    ) -> Campaign:
        """Replace a campaign's fields."""
        row = self._row(org_id, campaign_id)
        self._check_unique_name(org_id, fields.name, except_id=campaign_id)
        assign_fields(row, _column_values(fields), _CAMPAIGN_FIELDS)
        row.updated_at = now
        flush_or_conflict(self._s, f"a campaign named {fields.name!r} already exists")
        return self._to_domain(row)
