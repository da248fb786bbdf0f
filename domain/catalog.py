"""The catalog: campaigns, templates and audiences. Each use case owns one unit of work."""

from __future__ import annotations

from pydantic import ValidationError

from domain.audience import AudienceCriteria, AudienceSize
from domain.campaigns import Campaign, CampaignCreate, CampaignFields, CampaignUpdate
from domain.deps import Deps
from domain.errors import InvalidInput
from domain.ports import CatalogUnitOfWork
from domain.templates import EmailTemplate, EmailTemplateFields, EmailTemplateUpdate

SAMPLE_SIZE = 10


class Catalog:
    """Create and change campaigns and templates; size an audience."""

    def __init__(self, deps: Deps[CatalogUnitOfWork]) -> None:
        self._uow = deps.uow
        self._clock = deps.clock

    def create_campaign(
        self, org_id: int, fields: CampaignCreate, *, created_by: int | None
    ) -> Campaign:
        """Create a campaign in an organization."""
        with self._uow() as uow:
            _check_templates(uow, org_id, fields)
            campaign = uow.campaigns.add(org_id, fields, created_by=created_by)
            uow.commit()
        return campaign

    def update_campaign(self, org_id: int, campaign_id: int, change: CampaignUpdate) -> Campaign:
        """Apply a partial change to a campaign, validated as a whole."""
        with self._uow() as uow:
            current = uow.campaigns.get(org_id, campaign_id)
            try:
                fields = change.apply_to(current)
            except ValidationError as exc:
                raise _invalid(exc) from exc
            _check_templates(uow, org_id, fields)
            campaign = uow.campaigns.update(org_id, campaign_id, fields, now=self._clock.now())
            uow.commit()
        return campaign

    def create_template(
        self, org_id: int, fields: EmailTemplateFields, *, created_by: int | None
    ) -> EmailTemplate:
        """Check a template renders in the sandbox, then store it."""
        variables = fields.check()
        with self._uow() as uow:
            template = uow.templates.add(org_id, fields, variables=variables, created_by=created_by)
            uow.commit()
        return template

    def update_template(
        self, org_id: int, template_id: int, change: EmailTemplateUpdate
    ) -> EmailTemplate:
        """Apply a change to a template; the result must still render in the sandbox."""
        with self._uow() as uow:
            current = uow.templates.get(org_id, template_id)
            try:
                fields = change.apply_to(current)
            except ValidationError as exc:
                raise _invalid(exc) from exc
            variables = fields.check()
            template = uow.templates.update(
                org_id, template_id, fields, variables=variables, now=self._clock.now()
            )
            uow.commit()
        return template

    def delete_template(self, org_id: int, template_id: int) -> None:
        """Delete a template."""
        with self._uow() as uow:
            uow.templates.delete(org_id, template_id)
            uow.commit()

    def calculate_audience_size(
        self, org_id: int, criteria: AudienceCriteria, *, sample_size: int = SAMPLE_SIZE
    ) -> AudienceSize:
        """Count the contacts a targeting reaches and return a sample of them."""
        with self._uow() as uow:
            return uow.audience.size(
                org_id, criteria, now=self._clock.now(), sample_size=sample_size
            )


def _check_templates(uow: CatalogUnitOfWork, org_id: int, fields: CampaignFields) -> None:
    missing = set(fields.email_template_ids) - uow.templates.existing_ids(
        org_id, fields.email_template_ids
    )
    if missing:
        raise InvalidInput(
            f"email template(s) {', '.join(map(str, sorted(missing)))} not found",
            field="email_template_ids",
        )


def _invalid(exc: ValidationError) -> InvalidInput:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ()))
    message = str(first["msg"]).removeprefix("Value error, ")
    return InvalidInput(f"{loc}: {message}" if loc else message, field=loc or None)
