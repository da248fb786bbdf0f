"""Use cases of the catalog: campaigns, templates, audiences. Each owns one unit of work."""

from __future__ import annotations

from pydantic import ValidationError

from domain.audience import AudienceCriteria, AudienceSize
from domain.campaigns import Campaign, CampaignCreate, CampaignFields, CampaignUpdate
from domain.clock import Clock
from domain.errors import InvalidInput
from domain.ports import UnitOfWork
from domain.templates import EmailTemplate, EmailTemplateFields, EmailTemplateUpdate

SAMPLE_SIZE = 10


def _check_templates(uow: UnitOfWork, org_id: int, fields: CampaignFields) -> None:
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


def create_campaign(
    org_id: int, fields: CampaignCreate, *, created_by: int | None, uow: UnitOfWork
) -> Campaign:
    """Create a campaign in an organization."""
    with uow:
        _check_templates(uow, org_id, fields)
        campaign = uow.campaigns.add(org_id, fields, created_by=created_by)
        uow.commit()
    return campaign


def update_campaign(
    org_id: int, campaign_id: int, change: CampaignUpdate, *, uow: UnitOfWork, clock: Clock
) -> Campaign:
    """Apply a partial change to a campaign, validated as a whole."""
    with uow:
        current = uow.campaigns.get(org_id, campaign_id)
        try:
            fields = change.apply_to(current)
        except ValidationError as exc:
            raise _invalid(exc) from exc
        _check_templates(uow, org_id, fields)
        campaign = uow.campaigns.update(org_id, campaign_id, fields, now=clock.now())
        uow.commit()
    return campaign


def create_template(
    org_id: int, fields: EmailTemplateFields, *, created_by: int | None, uow: UnitOfWork
) -> EmailTemplate:
    """Check a template renders in the sandbox, then store it."""
    variables = fields.check()
    with uow:
        template = uow.templates.add(org_id, fields, variables=variables, created_by=created_by)
        uow.commit()
    return template


def update_template(
    org_id: int, template_id: int, change: EmailTemplateUpdate, *, uow: UnitOfWork, clock: Clock
) -> EmailTemplate:
    """Apply a change to a template; the result must still render in the sandbox."""
    with uow:
        current = uow.templates.get(org_id, template_id)
        try:
            fields = change.apply_to(current)
        except ValidationError as exc:
            raise _invalid(exc) from exc
        variables = fields.check()
        template = uow.templates.update(
            org_id, template_id, fields, variables=variables, now=clock.now()
        )
        uow.commit()
    return template


def delete_template(org_id: int, template_id: int, *, uow: UnitOfWork) -> None:
    """Delete a template."""
    with uow:
        uow.templates.delete(org_id, template_id)
        uow.commit()


def calculate_audience_size(
    org_id: int,
    criteria: AudienceCriteria,
    *,
    uow: UnitOfWork,
    clock: Clock,
    sample_size: int = SAMPLE_SIZE,
) -> AudienceSize:
    """Count the contacts a targeting reaches and return a sample of them."""
    with uow:
        return uow.audience.size(org_id, criteria, now=clock.now(), sample_size=sample_size)
