"""Rows the engagement tests build on: sends (with their cadence step) and inbound emails.

Plain builders like tests/support/builders.py: they add to the session given and flush.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from storage import models as m

_seq = itertools.count(1)


def make_campaign(session: Session, org_id: int, **overrides: Any) -> m.MarketingCampaign:
    """Add a marketing campaign."""
    n = next(_seq)
    row = m.MarketingCampaign(
        org_id=org_id, **{"name": f"Campaign {n}", "goal": "reactivation", **overrides}
    )
    session.add(row)
    session.flush()
    return row


def make_job(session: Session, org_id: int, *, campaign_id: int | None = None) -> m.Job:
    """Add a running job (of a campaign)."""
    row = m.Job(org_id=org_id, name=f"Job {next(_seq)}", status="running", campaign_id=campaign_id)
    session.add(row)
    session.flush()
    return row


def make_send(
    session: Session,
    org_id: int,
    contact: m.Contact,
    *,
    sent_at: datetime | None,
    campaign_id: int | None = None,
    job_id: int | None = None,
    step: int | None = None,
    subject: str = "Turn times are down",
    status: str = "sent",
) -> m.EmailSend:
    """Add an email send to a contact; with `step`, drafted by a card of a cadence task."""
    card_id = None
    if step is not None:
        if job_id is None:
            raise ValueError("a send with a step needs its job")
        task = m.JobTask(
            org_id=org_id, job_id=job_id, contact_id=contact.id, step=step, kind="draft_email"
        )
        session.add(task)
        session.flush()
        card = m.Card(
            org_id=org_id,
            job_id=job_id,
            task_id=task.id,
            contact_id=contact.id,
            type="send_email",
            state="done",
            title=subject,
        )
        session.add(card)
        session.flush()
        card_id = card.id
    row = m.EmailSend(
        org_id=org_id,
        card_id=card_id,
        job_id=job_id,
        campaign_id=campaign_id,
        contact_id=contact.id,
        message_id=f"<{next(_seq)}.test@salesbot.test>",
        to_email=contact.email,
        subject=subject,
        status=status,
        sent_at=sent_at,
    )
    session.add(row)
    session.flush()
    return row


def make_inbound(
    session: Session,
    org_id: int,
    *,
    contact_id: int | None = None,
    email_send_id: int | None = None,
    subject: str = "Re: Turn times are down",
    category: str | None = "OPPORTUNITY",
    intent: str | None = "interested",
    sentiment: str | None = "positive",
) -> m.InboundEmail:
    """Add a classified inbound email (a reply), linked to a contact and a send."""
    row = m.InboundEmail(
        org_id=org_id,
        gmail_message_id=f"g{next(_seq)}",
        subject=subject,
        category=category,
        intent=intent,
        sentiment=sentiment,
        contact_id=contact_id,
        email_send_id=email_send_id,
        status="processed",
    )
    session.add(row)
    session.flush()
    return row
