"""The reply context read model: what an answer to one inbound message may use.

`ReplyContextRepo.reply_context` builds a `domain.replies.ReplyContext` from an
`inbound_emails` row of one organization, with a fixed number of bounded queries whatever
the history (each uses an index; each returns at most a few dozen rows):

1. the message, with its contact, the contact's client (else the client the pipeline
   linked), the send it answers, that send's campaign, job and cadence step
   (`cards.task_id → job_tasks.step`), and the mailbox it arrived in: one row;
2. the client's order statistics: one aggregate over `(org_id, client_id, ordered_at)`;
3. the client's active orders (neither completed nor cancelled), newest first;
4. the properties the message names, matched against the client's latest orders only: a
   sender never learns of another client's order at the same address;
5. the rep and the firm's name;
6. the thread: our sends in the Gmail thread (`(org_id, gmail_thread_id)`) or named by the
   message's References (`message_id` is unique), and the earlier replies named by the
   References (`(org_id, message_id_header)`) or, for a known contact, in the same thread
   or conversation (`(org_id, contact_id)`). `inbound_emails` has no index on
   `gmail_thread_id` or `conversation_id`, so a reply of an unknown sender that carries no
   References brings no earlier replies of theirs (our sends still come by thread).

Only the visible reply text of a message (`reply_text`: quoted history cut, hidden HTML
dropped by the parser) is ever read, never `body_text`. Nothing here writes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session, aliased

from domain.classification import Category, Entities, Intent, Sentiment
from domain.contacts import OrderStatus
from domain.email_message import EmailFlag
from domain.errors import NotFound
from domain.imports import address_key
from domain.replies import (
    MAX_ACTIVE_ORDERS,
    MAX_PROPERTIES,
    MAX_PROPERTY_ORDERS,
    MAX_THREAD_ENTRIES,
    ActiveOrder,
    CampaignStep,
    ClientAccount,
    ContactInfo,
    InboundMessage,
    PropertyInfo,
    PropertyOrder,
    Rep,
    ReplyContext,
    ThreadEntry,
)
from storage import models as m

#: How many of the client's latest orders are searched for the addresses a message names.
PROPERTY_SEARCH_ORDERS: Final = 500
#: How many Message-IDs of the References header are followed (the newest ones).
MAX_REFERENCES: Final = 20
_CLOSED: Final = (OrderStatus.COMPLETED.value, OrderStatus.CANCELLED.value)


def _enum(kind: Any, value: str | None) -> Any:
    """A stored enum value, or None when it is missing or unknown (stored by an older
    version): a context is never refused for a label."""
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        return None


def _entities(raw: dict[str, Any]) -> Entities:
    try:
        return Entities.model_validate(raw or {})
    except ValueError:
        return Entities()


def _status(value: str) -> OrderStatus:
    try:
        return OrderStatus(value)
    except ValueError:
        return OrderStatus.ORDERED


class ReplyContextRepo:
    """Reads the business context of an inbound message (implements
    domain.ports.ReplyContextRepository)."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def reply_context(self, org_id: int, inbound_email_id: int, *, now: datetime) -> ReplyContext:
        """Return what an answer to the message may use; raise NotFound outside the org."""
        i = m.InboundEmail
        contact = aliased(m.Contact)
        send = aliased(m.EmailSend)
        row = self._s.execute(
            select(
                i,
                contact,
                send,
                m.MarketingCampaign.name,
                m.MarketingCampaign.goal,
                m.Job.name,
                m.Job.owner_id,
                m.JobTask.step,
                m.GmailAccount.email,
                m.GmailAccount.user_id,
            )
            .outerjoin(contact, (contact.id == i.contact_id) & (contact.org_id == org_id))
            .outerjoin(send, (send.id == i.email_send_id) & (send.org_id == org_id))
            .outerjoin(
                m.MarketingCampaign,
                (m.MarketingCampaign.id == send.campaign_id)
                & (m.MarketingCampaign.org_id == org_id),
            )
            .outerjoin(m.Job, (m.Job.id == send.job_id) & (m.Job.org_id == org_id))
            .outerjoin(m.Card, (m.Card.id == send.card_id) & (m.Card.org_id == org_id))
            .outerjoin(m.JobTask, (m.JobTask.id == m.Card.task_id) & (m.JobTask.org_id == org_id))
            .outerjoin(
                m.GmailAccount,
                (m.GmailAccount.id == i.gmail_account_id) & (m.GmailAccount.org_id == org_id),
            )
            .where(i.id == inbound_email_id, i.org_id == org_id)
        ).one_or_none()
        if row is None:
            raise NotFound(f"inbound email {inbound_email_id} not found")
        (
            inbound,
            contact_row,
            send_row,
            campaign_name,
            campaign_goal,
            job_name,
            job_owner,
            step,
            mailbox,
            mailbox_user,
        ) = row
        entities = _entities(inbound.entities)
        client_id = (
            contact_row.client_id
            if contact_row is not None and contact_row.client_id
            else inbound.client_id
        )
        client = self.client_account(org_id, client_id, now=now) if client_id else None
        contact_id = contact_row.id if contact_row is not None else None
        sender_user = (send_row.sender_user_id if send_row is not None else None) or (
            job_owner or mailbox_user
        )
        rep = self._rep(
            org_id,
            sender_user,
            mailbox=(send_row.from_email if send_row is not None else None) or mailbox,
        )
        message = InboundMessage(
            id=inbound.id,
            subject=inbound.subject or "",
            reply_text=(inbound.reply_text or "").strip(),
            received_at=inbound.received_at,
            from_email=inbound.from_email,
            from_name=inbound.from_name,
            category=_enum(Category, inbound.category),
            confidence=inbound.confidence,
            intent=_enum(Intent, inbound.intent) or Intent.NONE,
            sentiment=_enum(Sentiment, inbound.sentiment),
            entities=entities,
            injection_attempt=bool(inbound.injection_attempt)
            or EmailFlag.HIDDEN_INSTRUCTIONS.value in (inbound.flags or []),
            hidden_text_removed=EmailFlag.HIDDEN_TEXT.value in (inbound.flags or []),
        )
        return ReplyContext(
            org_id=org_id,
            as_of=now,
            message=message,
            contact=self._contact(contact_row),
            client=client,
            active_orders=tuple(self._active_orders(org_id, client_id, contact_id)),
            properties=tuple(self._properties(org_id, client_id, entities.property_addresses)),
            campaign=self._campaign(send_row, campaign_name, campaign_goal, job_name, step),
            rep=rep,
            thread=tuple(self._thread(org_id, inbound, contact_id, mailbox)),
        )

    # --- the parts ---

    @staticmethod
    def _contact(row: m.Contact | None) -> ContactInfo | None:
        if row is None:
            return None
        return ContactInfo(
            id=row.id,
            email=row.email,
            first_name=row.first_name,
            last_name=row.last_name,
            title=row.title,
            role_code=row.role_code,
            opted_out=row.opted_out_at is not None,
        )

    def client_account(self, org_id: int, client_id: int, *, now: datetime) -> ClientAccount | None:
        """Return a client of the organization with its order statistics, or None."""
        o = m.AppraisalOrder
        year_ago = now - timedelta(days=365)
        row = self._s.execute(
            select(
                m.Client,
                select(func.count())
                .where(o.org_id == org_id, o.client_id == client_id)
                .scalar_subquery(),
                select(func.coalesce(func.sum(case((o.ordered_at >= year_ago, 1), else_=0)), 0))
                .where(o.org_id == org_id, o.client_id == client_id)
                .scalar_subquery(),
                select(func.min(o.ordered_at))
                .where(o.org_id == org_id, o.client_id == client_id)
                .scalar_subquery(),
                select(func.max(o.ordered_at))
                .where(o.org_id == org_id, o.client_id == client_id)
                .scalar_subquery(),
            ).where(m.Client.id == client_id, m.Client.org_id == org_id)
        ).one_or_none()
        if row is None:
            return None
        client, total, recent, first, last = row
        return ClientAccount(
            id=client.id,
            name=client.name,
            client_type=client.client_type,
            domain=client.domain,
            total_orders=int(total or 0),
            orders_last_12_months=int(recent or 0),
            first_order_at=first,
            last_order_at=last or client.last_ordered_at,
        )

    def _active_orders(
        self, org_id: int, client_id: int | None, contact_id: int | None
    ) -> list[ActiveOrder]:
        o = m.AppraisalOrder
        if client_id is not None:
            owner = o.client_id == client_id  # ix_appraisal_orders_org_client_ordered
        elif contact_id is not None:
            owner = o.contact_id == contact_id  # ix_appraisal_orders_org_contact
        else:
            return []
        rows = self._s.execute(
            select(o.order_number, o.status, o.ordered_at, o.due_at, o.property_address)
            .where(o.org_id == org_id, owner, o.status.not_in(_CLOSED))
            .order_by(o.ordered_at.desc(), o.id.desc())
            .limit(MAX_ACTIVE_ORDERS)
        ).all()
        return [
            ActiveOrder(
                order_number=number,
                status=_status(status),
                ordered_at=ordered_at,
                due_at=due_at,
                property_address=address,
            )
            for number, status, ordered_at, due_at, address in rows
        ]

    def _properties(
        self, org_id: int, client_id: int | None, named: list[str]
    ) -> list[PropertyInfo]:
        """The properties the message names, among the client's latest orders only."""
        keys = [k for k in (address_key(a) for a in named) if k]
        if client_id is None or not keys:
            return []
        o, p = m.AppraisalOrder, m.Property
        recent = (
            select(o.id)
            .where(o.org_id == org_id, o.client_id == client_id)
            .order_by(o.ordered_at.desc())
            .limit(PROPERTY_SEARCH_ORDERS)
            .scalar_subquery()
        )
        rows = self._s.execute(
            select(p, o.order_number, o.status, o.ordered_at, o.completed_at)
            .join(o, (o.property_id == p.id) & (o.org_id == org_id))
            .where(p.org_id == org_id, o.id.in_(recent))
            .order_by(o.ordered_at.desc())
        ).all()
        found: dict[int, PropertyInfo] = {}
        orders: dict[int, list[PropertyOrder]] = {}
        for prop, number, status, ordered_at, completed_at in rows:
            key = prop.address_key
            line_key = address_key(prop.address_line)
            if not any(k == key or key.startswith(k + " ") or k == line_key for k in keys):
                continue
            if prop.id not in found:
                if len(found) >= MAX_PROPERTIES:
                    continue
                found[prop.id] = PropertyInfo(
                    id=prop.id,
                    address=prop.address_line,
                    city=prop.city,
                    state=prop.state,
                    postal_code=prop.postal_code,
                )
                orders[prop.id] = []
            if len(orders[prop.id]) < MAX_PROPERTY_ORDERS:
                orders[prop.id].append(
                    PropertyOrder(
                        order_number=number,
                        status=_status(status),
                        ordered_at=ordered_at,
                        completed_at=completed_at,
                    )
                )
        return [
            info.model_copy(update={"orders": tuple(orders[pid])}) for pid, info in found.items()
        ]

    @staticmethod
    def _campaign(
        send: m.EmailSend | None,
        name: str | None,
        goal: str | None,
        job_name: str | None,
        step: int | None,
    ) -> CampaignStep | None:
        if send is None:
            return None
        return CampaignStep(
            campaign_id=send.campaign_id,
            campaign_name=name,
            campaign_goal=goal,
            job_name=job_name,
            step_number=step + 1 if step is not None else None,
            our_subject=send.subject,
            sent_at=send.sent_at,
        )

    def _rep(self, org_id: int, user_id: int | None, *, mailbox: str | None) -> Rep:
        row = self._s.execute(
            select(
                m.Organization.name,
                select(m.User.name)
                .where(m.User.id == user_id, m.User.org_id == org_id)
                .scalar_subquery(),
                select(m.User.email)
                .where(m.User.id == user_id, m.User.org_id == org_id)
                .scalar_subquery(),
            ).where(m.Organization.id == org_id)
        ).one_or_none()
        firm, name, email = row if row is not None else ("", None, None)
        return Rep(
            user_id=user_id if email is not None else None,
            name=name,
            email=mailbox or email,
            firm_name=firm or "",
        )

    def _thread(
        self,
        org_id: int,
        inbound: m.InboundEmail,
        contact_id: int | None,
        mailbox: str | None,
    ) -> list[ThreadEntry]:
        """Earlier messages of the conversation, oldest first, the newest kept."""
        references = [r for r in (inbound.references or []) if r][-MAX_REFERENCES:]
        if inbound.in_reply_to and inbound.in_reply_to not in references:
            references.append(inbound.in_reply_to)
        thread_id = inbound.gmail_thread_id
        before = inbound.received_at
        entries: list[tuple[datetime | None, int, ThreadEntry]] = []

        s = m.EmailSend
        ours = []
        if thread_id:
            ours.append(and_(s.org_id == org_id, s.gmail_thread_id == thread_id))
        if references:
            ours.append(and_(s.org_id == org_id, s.message_id.in_(references)))
        if ours:
            query = select(s.id, s.sent_at, s.subject, s.body_text).where(
                or_(*ours), s.status == "sent"
            )
            if before is not None:
                query = query.where(s.sent_at <= before)
            sent = self._s.execute(
                query.order_by(s.sent_at.desc(), s.id.desc()).limit(MAX_THREAD_ENTRIES)
            ).all()
            for send_id, sent_at, our_subject, body in sent:
                entry = ThreadEntry(
                    direction="us", at=sent_at, subject=our_subject, text=body or ""
                )
                entries.append((sent_at, send_id, entry))

        i = m.InboundEmail
        theirs = []
        if references:
            theirs.append(and_(i.org_id == org_id, i.message_id_header.in_(references)))
        if contact_id is not None:
            same = []
            if thread_id:
                same.append(i.gmail_thread_id == thread_id)
            if inbound.conversation_id is not None:
                same.append(i.conversation_id == inbound.conversation_id)
            if same:
                theirs.append(and_(i.org_id == org_id, i.contact_id == contact_id, or_(*same)))
        if theirs:
            asked = select(
                i.id, i.received_at, i.subject, i.reply_text, i.from_email, i.label_ids
            ).where(or_(*theirs), i.id != inbound.id)
            if before is not None:
                asked = asked.where(i.received_at <= before)
            replies = self._s.execute(
                asked.order_by(i.received_at.desc(), i.id.desc()).limit(MAX_THREAD_ENTRIES)
            ).all()
            own = (mailbox or "").casefold()
            for reply_id, at, subject, text, sender, labels in replies:
                # The rep's own mail in the thread (sent by hand from Gmail) is ours.
                ours_by_hand = "SENT" in (labels or []) or (
                    bool(own) and (sender or "").casefold() == own
                )
                entry = ThreadEntry(
                    direction="us" if ours_by_hand else "them",
                    at=at,
                    subject=subject,
                    text=(text or "").strip(),
                )
                entries.append((at, reply_id, entry))
        # Oldest first; a message without a date goes last (it cannot be placed).
        dated = sorted((e for e in entries if e[0] is not None), key=lambda e: (e[0], e[1]))
        undated = sorted((e for e in entries if e[0] is None), key=lambda e: e[1])
        return [entry for _, _, entry in dated + undated][-MAX_THREAD_ENTRIES:]
