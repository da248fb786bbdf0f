"""What the thread of an inbound message says about who answers it (domain/reply_routing.py).

Three bounded reads, each by primary key or an indexed aggregate: the user of the mailbox
the message arrived in, the answered send's job owner, campaign and cadence step
(`email_sends.card_id → cards.task_id → job_tasks.step`), and the client's order history.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.contacts import OrderStatus
from domain.jobs import JobKind
from domain.reply_routing import RoutingFacts
from storage import models as m
from storage.reply_context import ReplyContextRepo

_CLOSED = (OrderStatus.COMPLETED.value, OrderStatus.CANCELLED.value)

#: How many order numbers of one message are looked up (the entities hold 20 at most).
MAX_ORDER_NUMBERS = 20


class ReplyRoutingRepo:
    """Implements domain.ports.ReplyRoutingRepository."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def routing_facts(
        self,
        org_id: int,
        inbound_email_id: int,
        *,
        send_id: int | None,
        client_id: int | None,
        now: datetime,
    ) -> RoutingFacts:
        """Return the mailbox's user, the answered send's job owner, campaign and step, and
        the client with its order history (each None when unknown)."""
        i, account = m.InboundEmail, m.GmailAccount
        mailbox_user = self._s.scalar(
            select(account.user_id)
            .join(i, (i.gmail_account_id == account.id) & (i.org_id == org_id))
            .where(i.id == inbound_email_id, account.org_id == org_id)
        )
        owner: int | None = None
        campaign: str | None = None
        step: int | None = None
        if send_id is not None:
            s, job, card, task = m.EmailSend, m.Job, m.Card, m.JobTask
            row = self._s.execute(
                select(job.owner_id, job.kind, job.name, m.MarketingCampaign.name, task.step)
                .select_from(s)
                .outerjoin(job, (job.id == s.job_id) & (job.org_id == org_id))
                .outerjoin(
                    m.MarketingCampaign,
                    (m.MarketingCampaign.id == s.campaign_id)
                    & (m.MarketingCampaign.org_id == org_id),
                )
                .outerjoin(card, (card.id == s.card_id) & (card.org_id == org_id))
                .outerjoin(task, (task.id == card.task_id) & (task.org_id == org_id))
                .where(s.id == send_id, s.org_id == org_id)
            ).one_or_none()
            if row is not None:
                owner, kind, job_name, campaign_name, step = row
                # A job launched without a campaign (the jobs API) is named by the job; an
                # answer we sent from the replies inbox answers no campaign.
                campaign = campaign_name or (job_name if kind != JobKind.INBOX.value else None)
        client = (
            ReplyContextRepo(self._s).client_account(org_id, client_id, now=now)
            if client_id is not None
            else None
        )
        return RoutingFacts(
            mailbox_user_id=mailbox_user,
            job_owner_id=owner,
            campaign_name=campaign,
            step=step,
            client=client,
        )

    def order_known(
        self,
        org_id: int,
        order_numbers: Sequence[str],
        *,
        client_id: int | None,
        contact_id: int | None,
    ) -> bool:
        """For a status request: with order numbers, whether the organization has an order
        with one of them (any client's); without, whether the client (else the contact) has
        an order still open. One indexed read."""
        o = m.AppraisalOrder
        numbers = sorted({n.strip() for n in order_numbers if n.strip()})[:MAX_ORDER_NUMBERS]
        if numbers:  # uq (org_id, order_number)
            where = [o.org_id == org_id, o.order_number.in_(numbers)]
        elif client_id is not None:  # ix_appraisal_orders_org_client_ordered
            where = [o.org_id == org_id, o.client_id == client_id, o.status.not_in(_CLOSED)]
        elif contact_id is not None:  # ix_appraisal_orders_org_contact
            where = [o.org_id == org_id, o.contact_id == contact_id, o.status.not_in(_CLOSED)]
        else:
            return False
        return self._s.scalar(select(o.id).where(*where).limit(1)) is not None
