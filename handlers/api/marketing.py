"""Campaigns, email templates and audiences: the original system's marketing routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from domain.audience import AudienceCriteria, AudienceSize
from domain.campaigns import Campaign, CampaignCreate, CampaignStatus, CampaignUpdate
from domain.catalog import Catalog
from domain.fields import Id, Offset
from domain.outreach import Jobs
from domain.templates import (
    EmailTemplate,
    EmailTemplateFields,
    EmailTemplateUpdate,
    TemplateCategory,
)
from handlers.api.deps import ActorDep, IdentityDep, UowDep
from handlers.api.jobs import RuntimeDep

router = APIRouter(prefix="/api/marketing", tags=["marketing"])


@router.post("/campaigns", status_code=201, response_model=Campaign)
def create_campaign(body: CampaignCreate, who: IdentityDep, runtime: RuntimeDep) -> Campaign:
    """Create a campaign."""
    catalog: Catalog = runtime.catalog
    return catalog.create_campaign(who.org_id, body, created_by=who.user_id)


@router.get("/campaigns", response_model=list[Campaign])
def list_campaigns(
    who: IdentityDep,
    uow: UowDep,
    status: CampaignStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
) -> list[Campaign]:
    """List campaigns, newest first."""
    with uow:
        return uow.campaigns.list(
            who.org_id, status=status.value if status else None, limit=limit, offset=offset
        )


@router.get("/campaigns/{campaign_id}", response_model=Campaign)
def get_campaign(campaign_id: Id, who: IdentityDep, uow: UowDep) -> Campaign:
    """Return one campaign."""
    with uow:
        return uow.campaigns.get(who.org_id, campaign_id)


@router.put("/campaigns/{campaign_id}", response_model=Campaign)
def update_campaign(
    campaign_id: Id,
    body: CampaignUpdate,
    who: IdentityDep,
    actor: ActorDep,
    runtime: RuntimeDep,
) -> Campaign:
    """Change a campaign; fields left out keep their values. Setting `status` (pause,
    resume, …) is for the user who created the campaign or an admin, as in Slack."""
    if body.status is not None:
        jobs: Jobs = runtime.outreach.jobs
        jobs.authorize_campaign_status(actor, who.org_id, campaign_id, to=body.status)
    catalog: Catalog = runtime.catalog
    return catalog.update_campaign(who.org_id, campaign_id, body)


@router.get("/email-templates", response_model=list[EmailTemplate])
def list_templates(
    who: IdentityDep, uow: UowDep, category: TemplateCategory | None = None
) -> list[EmailTemplate]:
    """List email templates by name."""
    with uow:
        return uow.templates.list(who.org_id, category=category.value if category else None)


@router.post("/email-templates", status_code=201, response_model=EmailTemplate)
def create_template(
    body: EmailTemplateFields, who: IdentityDep, runtime: RuntimeDep
) -> EmailTemplate:
    """Create a template; one that does not render in the sandbox is refused."""
    catalog: Catalog = runtime.catalog
    return catalog.create_template(who.org_id, body, created_by=who.user_id)


@router.get("/email-templates/{template_id}", response_model=EmailTemplate)
def get_template(template_id: Id, who: IdentityDep, uow: UowDep) -> EmailTemplate:
    """Return one template."""
    with uow:
        return uow.templates.get(who.org_id, template_id)


@router.put("/email-templates/{template_id}", response_model=EmailTemplate)
def update_template(
    template_id: Id,
    body: EmailTemplateUpdate,
    who: IdentityDep,
    runtime: RuntimeDep,
) -> EmailTemplate:
    """Change a template; the result must still render in the sandbox."""
    catalog: Catalog = runtime.catalog
    return catalog.update_template(who.org_id, template_id, body)


@router.delete("/email-templates/{template_id}", status_code=204)
def delete_template(template_id: Id, who: IdentityDep, runtime: RuntimeDep) -> Response:
    """Delete a template."""
    catalog: Catalog = runtime.catalog
    catalog.delete_template(who.org_id, template_id)
    return Response(status_code=204)


@router.post("/audiences/calculate-size", response_model=AudienceSize)
def calculate_size(body: AudienceCriteria, who: IdentityDep, runtime: RuntimeDep) -> AudienceSize:
    """Count the contacts a targeting reaches (opted-out and bounced never count)."""
    catalog: Catalog = runtime.catalog
    return catalog.calculate_audience_size(who.org_id, body)
