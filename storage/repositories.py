"""Repositories: domain objects in, domain objects out, every query scoped by org."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, and_, cast, exists, false, func, or_, select
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, array
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import type_coerce

from domain.audience import AudienceCriteria, AudienceMember, AudienceSize
from domain.campaigns import Campaign, CampaignFields
from domain.contacts import EmailStatus
from domain.errors import Conflict, NotFound
from domain.fields import STORED
from domain.templates import EmailTemplate, EmailTemplateFields
from storage import models as m

_CAMPAIGN_FIELDS = tuple(CampaignFields.model_fields)


class CampaignRepo:
    """Campaigns of one organization."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def _row(self, org_id: int, campaign_id: int) -> m.MarketingCampaign:
        row = self._s.scalars(
            select(m.MarketingCampaign).where(
                m.MarketingCampaign.org_id == org_id, m.MarketingCampaign.id == campaign_id
            )
        ).one_or_none()
        if row is None:
            raise NotFound(f"campaign {campaign_id} not found")
        return row

    @staticmethod
    def _to_domain(row: m.MarketingCampaign) -> Campaign:
        data: dict[str, Any] = {name: getattr(row, name) for name in _CAMPAIGN_FIELDS}
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
        _assign(row, fields.model_dump(mode="json"), _CAMPAIGN_FIELDS)
        self._s.add(row)
        _flush(self._s, f"a campaign named {fields.name!r} already exists")
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
        _assign(row, fields.model_dump(mode="json"), _CAMPAIGN_FIELDS)
        row.updated_at = now
        _flush(self._s, f"a campaign named {fields.name!r} already exists")
        return self._to_domain(row)


class TemplateRepo:
    """Email templates of one organization."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def _row(self, org_id: int, template_id: int) -> m.EmailTemplate:
        row = self._s.scalars(
            select(m.EmailTemplate).where(
                m.EmailTemplate.org_id == org_id, m.EmailTemplate.id == template_id
            )
        ).one_or_none()
        if row is None:
            raise NotFound(f"email template {template_id} not found")
        return row

    @staticmethod
    def _to_domain(row: m.EmailTemplate) -> EmailTemplate:
        return EmailTemplate(
            id=row.id,
            name=row.name,
            category=row.category,
            subject=row.subject,
            body=row.body,
            body_html=row.body_html,
            variables=list(row.variables),
            created_by=row.created_by,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    def add(
        self,
        org_id: int,
        fields: EmailTemplateFields,
        *,
        variables: Sequence[str],
        created_by: int | None,
    ) -> EmailTemplate:
        """Store a new template."""
        row = m.EmailTemplate(org_id=org_id, created_by=created_by, variables=list(variables))
        _assign(row, fields.model_dump(mode="json"), tuple(EmailTemplateFields.model_fields))
        self._s.add(row)
        _flush(self._s, f"a template named {fields.name!r} already exists")
        return self._to_domain(row)

    def get(self, org_id: int, template_id: int) -> EmailTemplate:
        """Return a template or raise NotFound."""
        return self._to_domain(self._row(org_id, template_id))

    def list(self, org_id: int, *, category: str | None) -> list[EmailTemplate]:
        """Return templates by name."""
        query = select(m.EmailTemplate).where(m.EmailTemplate.org_id == org_id)
        if category:
            query = query.where(m.EmailTemplate.category == category)
        return [self._to_domain(r) for r in self._s.scalars(query.order_by(m.EmailTemplate.name))]

    def update(
        self,
        org_id: int,
        template_id: int,
        fields: EmailTemplateFields,
        *,
        variables: Sequence[str],
        now: datetime,
    ) -> EmailTemplate:
        """Replace a template's fields."""
        row = self._row(org_id, template_id)
        _assign(row, fields.model_dump(mode="json"), tuple(EmailTemplateFields.model_fields))
        row.variables = list(variables)
        row.updated_at = now
        _flush(self._s, f"a template named {fields.name!r} already exists")
        return self._to_domain(row)

    def delete(self, org_id: int, template_id: int) -> None:
        """Delete a template or raise NotFound."""
        self._s.delete(self._row(org_id, template_id))
        self._s.flush()

    def existing_ids(self, org_id: int, ids: Sequence[int]) -> set[int]:
        """Return which of these template ids exist in the organization."""
        if not ids:
            return set()
        return set(
            self._s.scalars(
                select(m.EmailTemplate.id).where(
                    m.EmailTemplate.org_id == org_id, m.EmailTemplate.id.in_(list(ids))
                )
            )
        )


class AudienceRepo:
    """The audience builder's query: one statement, evaluated in the database."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def conditions(
        self, org_id: int, criteria: AudienceCriteria, *, now: datetime
    ) -> list[ColumnElement[bool]]:
        """Return the WHERE conditions of an audience over contacts joined to clients."""
        dialect = self._s.get_bind().dialect.name
        c, cl = m.Contact, m.Client
        where: list[ColumnElement[bool]] = [
            c.org_id == org_id,
            c.opted_out_at.is_(None),
            c.email_status == EmailStatus.VALID.value,
        ]
        if criteria.target_role_codes:
            where.append(c.role_code.in_(criteria.target_role_codes))
        if criteria.target_role_categories:
            where.append(c.role_category.in_([r.value for r in criteria.target_role_categories]))
        if criteria.exclude_role_codes:
            where.append(
                or_(c.role_code.is_(None), c.role_code.not_in(criteria.exclude_role_codes))
            )
        if criteria.include_tags:
            where.append(_has_any_tag(dialect, criteria.include_tags))
        if criteria.exclude_tags:
            where.append(~_has_any_tag(dialect, criteria.exclude_tags))
        if criteria.min_lead_score is not None:
            where.append(c.lead_score >= criteria.min_lead_score)
        if criteria.states:
            where.append(c.state.in_(criteria.states))
        if criteria.stale_client_days is not None:
            cutoff = now - timedelta(days=criteria.stale_client_days)
            stale = cl.last_ordered_at < cutoff
            if criteria.include_never_ordered:
                stale = or_(stale, cl.last_ordered_at.is_(None))
            where.append(and_(cl.id.is_not(None), stale))
        if criteria.min_days_since_contacted is not None:
            cutoff = now - timedelta(days=criteria.min_days_since_contacted)
            where.append(or_(c.last_contacted_at.is_(None), c.last_contacted_at < cutoff))
        return where

    def size(
        self, org_id: int, criteria: AudienceCriteria, *, now: datetime, sample_size: int
    ) -> AudienceSize:
        """Return how many contacts match and a sample of them (lowest ids first)."""
        c, cl = m.Contact, m.Client
        where = self.conditions(org_id, criteria, now=now)
        joined = c.__table__.outerjoin(
            cl.__table__, and_(cl.id == c.client_id, cl.org_id == c.org_id)
        )
        count = self._s.execute(select(func.count()).select_from(joined).where(*where)).scalar_one()
        sample: list[AudienceMember] = []
        if count and sample_size:
            rows = self._s.execute(
                select(
                    c.id,
                    c.email,
                    c.first_name,
                    c.last_name,
                    c.role_code,
                    cl.name,
                    c.state,
                    c.lead_score,
                )
                .select_from(joined)
                .where(*where)
                .order_by(c.id)
                .limit(sample_size)
            )
            sample = [
                AudienceMember(
                    contact_id=r[0],
                    email=r[1],
                    first_name=r[2],
                    last_name=r[3],
                    role_code=r[4],
                    client_name=r[5],
                    state=r[6],
                    lead_score=r[7],
                )
                for r in rows
            ]
        return AudienceSize(count=count, sample=sample)


def _has_any_tag(dialect: str, tags: Sequence[str]) -> ColumnElement[bool]:
    """True where a contact carries at least one of `tags`."""
    if not tags:
        return false()
    if dialect == "postgresql":
        # jsonb ?| text[]: served by the GIN index on contacts.tags.
        return type_coerce(m.Contact.tags, JSONB).has_any(cast(array(list(tags)), ARRAY(String)))
    each = func.json_each(m.Contact.tags).table_valued("value")
    return exists(select(1).select_from(each).where(each.c.value.in_(list(tags))))


def _assign(row: Any, data: dict[str, Any], names: Sequence[str]) -> None:
    for name in names:
        setattr(row, name, data[name])


def _flush(session: Session, conflict_message: str) -> None:
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(conflict_message) from exc
