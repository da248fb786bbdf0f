"""The repository of email templates."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.templates import EmailTemplate, EmailTemplateFields
from storage import models as m
from storage.sql import assign_fields, flush_or_conflict, org_row


class TemplateRepo:
    """Email templates of one organization."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def _row(self, org_id: int, template_id: int) -> m.EmailTemplate:
        return org_row(self._s, m.EmailTemplate, org_id, template_id, what="email template")

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
        assign_fields(row, fields.model_dump(mode="json"), tuple(EmailTemplateFields.model_fields))
        self._s.add(row)
        flush_or_conflict(self._s, f"a template named {fields.name!r} already exists")
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
        assign_fields(row, fields.model_dump(mode="json"), tuple(EmailTemplateFields.model_fields))
        row.variables = list(variables)
        row.updated_at = now
        flush_or_conflict(self._s, f"a template named {fields.name!r} already exists")
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
