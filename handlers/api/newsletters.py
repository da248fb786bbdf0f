"""Newsletters (docs/newsletters.md): newsletters and their issues (CRUD), submitting an
issue for review (its preview card goes to Slack), and an issue's numbers.

Anyone with a token of the organization reads; writes need a write token. A newsletter is
changed by an admin or its creator; an issue by them or its author; approving happens on
the card in Slack (an admin or the newsletter's creator), and so does cancelling a sending
(the card's Cancel sending, or `POST …/issues/{issue_id}/cancel`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from domain.fields import Id
from domain.newsletter_service import Newsletters
from domain.newsletters import (
    IssueIn,
    IssueMetrics,
    IssueStatus,
    IssueUpdate,
    Newsletter,
    NewsletterIn,
    NewsletterIssue,
    NewsletterUpdate,
)
from handlers.api.deps import ActorDep, IdentityDep

router = APIRouter(prefix="/api/marketing/newsletters", tags=["newsletters"])


def get_newsletters(request: Request) -> Newsletters:
    """Return the newsletter use cases the app was built with."""
    newsletters: Newsletters = request.app.state.runtime.newsletters
    return newsletters


NewslettersDep = Annotated[Newsletters, Depends(get_newsletters)]


class NewsletterOut(BaseModel):
    """A newsletter."""

    id: int
    name: str
    description: str
    sender_user_ids: list[int]
    cap_share_percent: int
    slack_channel_id: str | None
    created_by: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, newsletter: Newsletter) -> NewsletterOut:
        """The API's view of a newsletter."""
        return cls(**newsletter.as_json())


class IssueOut(BaseModel):
    """An issue of a newsletter; `metrics` only when one issue is asked for."""

    id: int
    newsletter_id: int
    title: str
    subject_template: str
    text_template: str
    html_template: str
    variables: dict[str, Any]
    status: IssueStatus
    audience_count: int | None
    planned_count: int
    planned_start: datetime | None
    planned_finish: datetime | None
    plan_summary: str | None
    slack_channel_id: str | None
    slack_message_ts: str | None
    error: str | None
    submitted_by: int | None
    approved_by: int | None
    approved_at: datetime | None
    rejected_reason: str | None
    sent_at: datetime | None
    cancelled_by: int | None = None
    cancelled_at: datetime | None = None
    sent_before_cancel: int | None = None
    withdrawn_count: int | None = None
    created_by: int | None
    created_at: datetime
    updated_at: datetime
    metrics: IssueMetrics | None = None

    @classmethod
    def of(cls, issue: NewsletterIssue, metrics: IssueMetrics | None = None) -> IssueOut:
        """The API's view of an issue."""
        card = issue.card or {}
        return cls(
            id=issue.id,
            newsletter_id=issue.newsletter_id,
            title=issue.title,
            subject_template=issue.subject_template,
            text_template=issue.text_template,
            html_template=issue.html_template,
            variables=issue.variables,
            status=issue.status,
            audience_count=issue.audience_count,
            planned_count=issue.planned_count,
            planned_start=issue.planned_start,
            planned_finish=issue.planned_finish,
            plan_summary=card.get("plan_line"),
            slack_channel_id=issue.slack_channel_id,
            slack_message_ts=issue.slack_message_ts if issue.slack_message_ts != "-" else None,
            error=issue.error,
            submitted_by=issue.submitted_by,
            approved_by=issue.approved_by,
            approved_at=issue.approved_at,
            rejected_reason=issue.rejected_reason,
            sent_at=issue.sent_at,
            cancelled_by=issue.cancelled_by,
            cancelled_at=issue.cancelled_at,
            sent_before_cancel=issue.sent_before_cancel,
            withdrawn_count=issue.withdrawn_count,
            created_by=issue.created_by,
            created_at=issue.created_at,
            updated_at=issue.updated_at,
            metrics=metrics,
        )


# --- newsletters -----------------------------------------------------------------------------


@router.get("", response_model=list[NewsletterOut])
def list_newsletters(who: IdentityDep, newsletters: NewslettersDep) -> list[NewsletterOut]:
    """List the organization's newsletters, newest first."""
    return [NewsletterOut.of(n) for n in newsletters.list_newsletters(who.org_id)]


@router.post("", status_code=201, response_model=NewsletterOut)
def create_newsletter(
    body: NewsletterIn, who: IdentityDep, actor: ActorDep, newsletters: NewslettersDep
) -> NewsletterOut:
    """Create a newsletter: its senders (users whose connected Gmail mailboxes send it),
    the share of each mailbox's daily cap it may use, its cards' Slack channel."""
    return NewsletterOut.of(newsletters.create(actor, who.org_id, body))


@router.get("/{newsletter_id}", response_model=NewsletterOut)
def get_newsletter(
    newsletter_id: Id, who: IdentityDep, newsletters: NewslettersDep
) -> NewsletterOut:
    """Return one newsletter."""
    return NewsletterOut.of(newsletters.get(who.org_id, newsletter_id))


@router.patch("/{newsletter_id}", response_model=NewsletterOut)
def update_newsletter(
    newsletter_id: Id,
    body: NewsletterUpdate,
    who: IdentityDep,
    actor: ActorDep,
    newsletters: NewslettersDep,
) -> NewsletterOut:
    """Change a newsletter (an admin or its creator)."""
    return NewsletterOut.of(newsletters.update(actor, who.org_id, newsletter_id, body))


@router.delete("/{newsletter_id}", status_code=204)
def delete_newsletter(
    newsletter_id: Id, who: IdentityDep, actor: ActorDep, newsletters: NewslettersDep
) -> Response:
    """Delete a newsletter and its issues (an admin or its creator; not while sending)."""
    newsletters.remove(actor, who.org_id, newsletter_id)
    return Response(status_code=204)


# --- issues ----------------------------------------------------------------------------------


@router.get("/{newsletter_id}/issues", response_model=list[IssueOut])
def list_issues(newsletter_id: Id, who: IdentityDep, newsletters: NewslettersDep) -> list[IssueOut]:
    """List a newsletter's issues, newest first."""
    return [IssueOut.of(i) for i in newsletters.list_issues(who.org_id, newsletter_id)]


@router.post("/{newsletter_id}/issues", status_code=201, response_model=IssueOut)
def create_issue(
    newsletter_id: Id,
    body: IssueIn,
    who: IdentityDep,
    actor: ActorDep,
    newsletters: NewslettersDep,
) -> IssueOut:
    """Add a draft issue. Its templates (Jinja2, in the sandbox) may use first_name,
    last_name, full_name, email, title, company_name, state, firm_name, newsletter_name,
    issue_title and the issue's own `variables`; one that does not render is refused with
    its line."""
    return IssueOut.of(newsletters.create_issue(actor, who.org_id, newsletter_id, body))


@router.get("/{newsletter_id}/issues/{issue_id}", response_model=IssueOut)
def get_issue(
    newsletter_id: Id, issue_id: Id, who: IdentityDep, newsletters: NewslettersDep
) -> IssueOut:
    """Return an issue with its numbers: sent, bounced, unsubscribed (from newsletters or
    everything, after this issue's email); opened and clicked only where the organization
    tracks them (else null, with the reason in `tracking_note`)."""
    issue, metrics = newsletters.get_issue(who.org_id, newsletter_id, issue_id)
    return IssueOut.of(issue, metrics)


@router.patch("/{newsletter_id}/issues/{issue_id}", response_model=IssueOut)
def update_issue(
    newsletter_id: Id,
    issue_id: Id,
    body: IssueUpdate,
    who: IdentityDep,
    actor: ActorDep,
    newsletters: NewslettersDep,
) -> IssueOut:
    """Change an issue not yet scheduled (checked again; an issue in review gets a new
    preview card, and an approval of the old one is refused)."""
    return IssueOut.of(newsletters.update_issue(actor, who.org_id, newsletter_id, issue_id, body))


@router.delete("/{newsletter_id}/issues/{issue_id}", status_code=204)
def delete_issue(
    newsletter_id: Id,
    issue_id: Id,
    who: IdentityDep,
    actor: ActorDep,
    newsletters: NewslettersDep,
) -> Response:
    """Delete an issue that is not scheduled or being sent."""
    newsletters.remove_issue(actor, who.org_id, newsletter_id, issue_id)
    return Response(status_code=204)


@router.post("/{newsletter_id}/issues/{issue_id}/submit", response_model=IssueOut)
def submit_issue(
    newsletter_id: Id,
    issue_id: Id,
    who: IdentityDep,
    actor: ActorDep,
    newsletters: NewslettersDep,
) -> IssueOut:
    """Put an issue up for review: its preview card (rendered for a sample subscriber, the
    audience, the sending plan) is posted to the newsletter's channel. Refused with the
    reason when a template does not render, no sender has a connected mailbox, or the
    subscribers are more than the mailboxes can send in 30 days."""
    return IssueOut.of(newsletters.submit(actor, who.org_id, newsletter_id, issue_id))


@router.post("/{newsletter_id}/issues/{issue_id}/cancel", response_model=IssueOut)
def cancel_issue(
    newsletter_id: Id,
    issue_id: Id,
    who: IdentityDep,
    actor: ActorDep,
    newsletters: NewslettersDep,
) -> IssueOut:
    """Cancel sending a scheduled or sending issue (an admin or the newsletter's creator):
    its planning stops and every email still queued is withdrawn; those already sent, or
    on their way, are not recalled. The issue becomes `cancelled` with `sent_before_cancel`
    and `withdrawn_count`, and its card says who cancelled (and, once the emails on their
    way then have ended, the final figures, those of its metrics). Cancelling it again changes
    nothing; a draft, an issue in review or one already sent is refused (409)."""
    return IssueOut.of(newsletters.cancel(actor, who.org_id, issue_id, newsletter_id=newsletter_id))
