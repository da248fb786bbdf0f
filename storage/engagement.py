"""Contacts' engagement history: the repository the scoring writes through, the read model
the API answers from, and the orders that follow a reply (found after an order import).

Callers own the transaction; nothing here commits.

Idempotence under concurrent writers: `record_engagement` (domain/engagement.py) first
calls `lock_contact`, a `SELECT ... FOR UPDATE` of the contact's row on PostgreSQL, and
only then asks `recorded`. Two transactions recording the same event for the same
contact therefore take turns: the second one waits for the first to commit (or roll back)
and then finds its row. A unique index over (event, inbound email / send / order) would
say the same without the lock, but needs a migration (and a partial, expression index for
the order id kept in `detail`); the lock also serialises the score's read-modify-write,
which an index would not. On SQLite every write transaction begins IMMEDIATE
(storage/db.py), so writers are serialised anyway.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from sqlalchemy import ColumnElement, Table, and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from domain.contacts import EngagementTrend
from domain.engagement import (
    ORDER_AFTER_REPLY_WINDOW,
    REPLY_EVENTS,
    CampaignEngagement,
    ContactEngagement,
    EngagementCounts,
    EngagementEntry,
    EngagementEvent,
    EngagementHistory,
    EngagementInput,
    EngagementKey,
    InboundRef,
    NewEngagement,
    ScoredEvent,
    SendRef,
    StepEngagement,
    orders_after_replies,
    record_engagements,
    score_at,
    trend_of,
)
from domain.engagement import TREND_WINDOW as _TREND_WINDOW
from domain.errors import InvalidInput, NotFound
from domain.fields import MAX_ID
from domain.lead_scoring import rescore_contacts
from domain.sending import OutboxStatus
from storage import models as m
from storage.sql import rowcount
from storage.targeting import TargetingRepo

log = logging.getLogger(__name__)

_H = m.ContactEngagementEvent
_T = TypeVar("_T")

# Rows written before the engagement service by other names: the card's send recorded
# `email_sent`. Read as the event they are.
_LEGACY_EVENTS: Final[dict[str, EngagementEvent]] = {"email_sent": EngagementEvent.SENT}
_KNOWN_EVENTS: Final = [e.value for e in EngagementEvent] + list(_LEGACY_EVENTS)


def _table(model: type[m.Base]) -> Table:
    table = model.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not mapped to a table")
    return table


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _scored(row: Any) -> ScoredEvent:
    return ScoredEvent(
        id=row.id,
        occurred_at=row.occurred_at,
        score_delta=float(row.score_delta),
        score_after=None if row.score_after is None else float(row.score_after),
    )


def _trend(value: str) -> EngagementTrend:
    try:
        return EngagementTrend(value)
    except ValueError:
        return EngagementTrend.UNKNOWN


class EngagementRepo:
    """The engagement history of contacts and the scores kept on contacts and clients."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def _history(self, org_id: int, contact_id: int) -> ColumnElement[bool]:
        return and_(_H.org_id == org_id, _H.contact_id == contact_id)

    def lock_contacts(
        self, org_id: int, contact_ids: Sequence[int]
    ) -> dict[int, ContactEngagement]:
        """Return the contacts' engagement, their rows locked (in id order) on PostgreSQL."""
        c = m.Contact
        found: dict[int, ContactEngagement] = {}
        for chunk in _chunks(sorted(set(contact_ids)), 1000):
            query = (
                select(
                    c.id,
                    c.client_id,
                    c.engagement_score,
                    c.engagement_trend,
                    c.last_replied_at,
                    c.last_positive_interaction_at,
                )
                .where(c.org_id == org_id, c.id.in_(chunk))
                .order_by(c.id)
            )
            if _postgres(self._s):
                query = query.with_for_update()
            for row in self._s.execute(query):
                found[row.id] = ContactEngagement(
                    contact_id=row.id,
                    client_id=row.client_id,
                    score=float(row.engagement_score),
                    trend=_trend(row.engagement_trend),
                    last_replied_at=row.last_replied_at,
                    last_positive_interaction_at=row.last_positive_interaction_at,
                )
        return found

    def recorded(
        self, org_id: int, keys: Sequence[tuple[int, EngagementEvent, EngagementKey]]
    ) -> set[tuple[int, EngagementEvent, EngagementKey]]:
        """Return which of these (contact id, event, reference) the history already holds."""
        wanted = set(keys)
        found: set[tuple[int, EngagementEvent, EngagementKey]] = set()
        by_kind: dict[str, list[tuple[int, EngagementEvent, EngagementKey]]] = {}
        for key in wanted:
            ref = key[2]
            kind = (
                "inbound"
                if ref.inbound_email_id is not None
                else "send"
                if ref.email_send_id is not None
                else "order"
            )
            by_kind.setdefault(kind, []).append(key)
        for kind, group in by_kind.items():
            column: Any = {
                "inbound": _H.inbound_email_id,
                "send": _H.email_send_id,
                "order": _H.detail["order_id"].as_integer(),
            }[kind]
            for chunk in _chunks(sorted({k[0] for k in group}), 1000):
                rows = self._s.execute(
                    select(_H.contact_id, _H.event, column).where(
                        _H.org_id == org_id,
                        _H.contact_id.in_(chunk),
                        _H.event.in_(sorted({k[1].value for k in group})),
                        column.is_not(None),
                    )
                )
                for contact_id, event, ref in rows:
                    key = (
                        contact_id,
                        _event(event),
                        EngagementKey(
                            inbound_email_id=ref if kind == "inbound" else None,
                            email_send_id=ref if kind == "send" else None,
                            order_id=ref if kind == "order" else None,
                        ),
                    )
                    if key in wanted:
                        found.add(key)
        return found

    def last_scored_at_or_before(
        self, org_id: int, contact_id: int, at: datetime
    ) -> ScoredEvent | None:
        """Return the contact's latest scored row at or before `at` (the read model's)."""
        row = self._s.execute(
            select(_H.id, _H.occurred_at, _H.score_delta, _H.score_after)
            .where(
                self._history(org_id, contact_id),
                _H.occurred_at <= at,
                _H.score_after.is_not(None),
            )
            .order_by(_H.occurred_at.desc(), _H.id.desc())
            .limit(1)
        ).one_or_none()
        return None if row is None else _scored(row)

    def timelines(self, org_id: int, since: Mapping[int, datetime]) -> dict[int, list[ScoredEvent]]:
        """Return each contact's rows from the earliest `since` of the call on, after its
        latest scored row before that: two queries for any number of contacts."""
        result: dict[int, list[ScoredEvent]] = {}
        if not since:
            return result
        start = min(since.values())
        columns = (_H.contact_id, _H.id, _H.occurred_at, _H.score_delta, _H.score_after)
        for chunk in _chunks(sorted(since), 1000):
            ranked = (
                select(
                    *columns,
                    func.row_number()
                    .over(
                        partition_by=_H.contact_id,
                        order_by=(_H.occurred_at.desc(), _H.id.desc()),
                    )
                    .label("rank"),
                )
                .where(
                    _H.org_id == org_id,
                    _H.contact_id.in_(chunk),
                    _H.occurred_at < start,
                    _H.score_after.is_not(None),
                )
                .subquery()
            )
            before = {
                row.contact_id: _scored(row)
                for row in self._s.execute(select(ranked).where(ranked.c.rank == 1))
            }
            for contact_id in chunk:
                result[contact_id] = [before[contact_id]] if contact_id in before else []
            for row in self._s.execute(
                select(*columns)
                .where(_H.org_id == org_id, _H.contact_id.in_(chunk), _H.occurred_at >= start)
                .order_by(_H.contact_id, _H.occurred_at, _H.id)
            ):
                result[row.contact_id].append(_scored(row))
        return result

    def add(self, entries: Sequence[NewEngagement]) -> list[int]:
        """Store history rows; return their ids, in order."""
        rows = [
            _H(
                org_id=entry.org_id,
                contact_id=entry.contact_id,
                event=entry.event.value,
                occurred_at=entry.occurred_at,
                sentiment=entry.sentiment,
                score_delta=entry.score_delta,
                score_after=entry.score_after,
                email_send_id=entry.email_send_id,
                inbound_email_id=entry.inbound_email_id,
                detail=dict(entry.detail),
            )
            for entry in entries
        ]
        self._s.add_all(rows)
        self._s.flush()
        return [row.id for row in rows]

    def rescore(self, scores: Sequence[tuple[int, float]]) -> None:
        """Change rows' `score_after`."""
        if not scores:
            return
        # Core statements: an ORM UPDATE with many parameter sets is a bulk update by
        # primary key, which wants the key under its own name.
        table = _table(_H)
        self._s.execute(
            update(table)
            .where(table.c.id == bindparam("row_id"))
            .values(score_after=bindparam("score")),
            [{"row_id": row_id, "score": score} for row_id, score in scores],
        )

    def save_contacts(self, org_id: int, states: Sequence[ContactEngagement]) -> None:
        """Write contacts' score, trend and interaction dates."""
        if not states:
            return
        c = _table(m.Contact).c
        self._s.execute(
            update(_table(m.Contact))
            .where(c.org_id == org_id, c.id == bindparam("contact"))
            .values(
                engagement_score=bindparam("score"),
                engagement_trend=bindparam("trend"),
                last_replied_at=bindparam("replied"),
                last_positive_interaction_at=bindparam("positive"),
            ),
            [
                {
                    "contact": state.contact_id,
                    "score": state.score,
                    "trend": state.trend.value,
                    "replied": state.last_replied_at,
                    "positive": state.last_positive_interaction_at,
                }
                for state in states
            ],
        )

    def mark_client_re_engaged(
        self, org_id: int, client_id: int, *, at: datetime, stale_before: datetime
    ) -> bool:
        """Set the client's `re_engaged_at` if it is stale and not re-engaged since its last
        order (compare-and-set); True if this call set it."""
        c = m.Client
        result = self._s.execute(
            update(c)
            .where(
                c.org_id == org_id,
                c.id == client_id,
                or_(c.last_ordered_at.is_(None), c.last_ordered_at < stale_before),
                or_(
                    c.re_engaged_at.is_(None),
                    and_(c.last_ordered_at.is_not(None), c.re_engaged_at < c.last_ordered_at),
                ),
            )
            .values(re_engaged_at=at, updated_at=at),
            execution_options={"synchronize_session": False},
        )
        return rowcount(result) == 1

    def count_events(
        self, org_id: int, contact_id: int, event: EngagementEvent, since: datetime
    ) -> int:
        """Count the contact's events of one kind that occurred at or after `since`."""
        return int(
            self._s.scalar(
                select(func.count())
                .select_from(_H)
                .where(
                    self._history(org_id, contact_id),
                    _H.event == event.value,
                    _H.occurred_at >= since,
                )
            )
            or 0
        )

    def message_events(
        self, org_id: int, inbound_email_id: int
    ) -> list[tuple[int, int, EngagementEvent, datetime]]:
        """Return the history rows an inbound message recorded: (id, contact id, event,
        occurred at), in time order."""
        rows = self._s.execute(
            select(_H.id, _H.contact_id, _H.event, _H.occurred_at)
            .where(_H.org_id == org_id, _H.inbound_email_id == inbound_email_id)
            .order_by(_H.occurred_at, _H.id)
        )
        return [(row.id, row.contact_id, _event(row.event), row.occurred_at) for row in rows]

    def delete(self, ids: Sequence[int]) -> None:
        """Remove history rows; the caller scores the rest again."""
        for chunk in _chunks(sorted(set(ids)), 1000):
            self._s.execute(
                _table(_H).delete().where(_table(_H).c.id.in_(chunk)),
                execution_options={"synchronize_session": False},
            )

    def latest_event_at(
        self, org_id: int, contact_id: int, events: Sequence[EngagementEvent]
    ) -> datetime | None:
        """Return when the contact's latest event of these kinds occurred, if any."""
        names = sorted({e.value for e in events})
        found: datetime | None = self._s.scalar(
            select(func.max(_H.occurred_at)).where(
                self._history(org_id, contact_id), _H.event.in_(names)
            )
        )
        return found

    def refresh_lead_scores(self, org_id: int, contact_ids: Sequence[int], *, at: datetime) -> None:
        """Score again contacts whose engagement just changed, in this transaction.

        Settings that no longer read (stored before a bound existed) do not stop the event
        from being recorded: the scores wait, and the daily run records the reason where
        the stale-client API shows it."""
        try:
            rescore_contacts(TargetingRepo(self._s), org_id, at=at, contact_ids=contact_ids)
        except InvalidInput as exc:
            log.warning(
                "lead scores not refreshed",
                extra={"org_id": org_id, "contacts": len(contact_ids), "reason": exc.message},
            )


# --- orders that follow a reply --------------------------------------------------------


Repliers = dict[int, list[tuple[int, datetime]]]  # client id → (contact id, last reply)


def load_repliers(session: Session, org_id: int) -> Repliers:
    """Return, by client, the organization's contacts that ever replied, with their last
    reply: the only contacts an order can follow."""
    found: Repliers = {}
    c = m.Contact
    for contact_id, client_id, last_reply in session.execute(
        select(c.id, c.client_id, c.last_replied_at).where(
            c.org_id == org_id, c.last_replied_at.is_not(None), c.client_id.is_not(None)
        )
    ):
        if client_id is not None and last_reply is not None:
            found.setdefault(client_id, []).append((contact_id, last_reply))
    return found


def record_orders_after_replies(
    session: Session,
    org_id: int,
    orders: Sequence[tuple[str, int, datetime]],
    *,
    repliers: Repliers | None = None,
) -> int:
    """Record ORDER_AFTER_REPLY for each contact who replied within the 30 days before one
    of these orders (order number, client id, ordered at) of their client; return how many
    were recorded (an order recorded before records nothing).

    Set-based: the contacts that ever replied (`repliers`, which an import reads once for
    all its batches) say which orders may follow a reply, in memory; most batches stop
    there. For the others one query reads the orders' ids, one the reply times of their
    contacts, and `record_engagements` records them with a handful of statements.
    """
    if repliers is None:
        repliers = load_repliers(session, org_id)
    window = ORDER_AFTER_REPLY_WINDOW
    maybe = [
        (number, contact_id, ordered_at)
        for number, client_id, ordered_at in orders
        for contact_id, last_reply in repliers.get(client_id, [])
        if last_reply >= ordered_at - window
    ]
    if not maybe:
        return 0
    o = m.AppraisalOrder
    numbers = sorted({number for number, _, _ in maybe})
    order_ids: dict[str, int] = {}
    for batch in _chunks(numbers, 1000):
        for number, order_id in session.execute(
            select(o.order_number, o.id).where(o.org_id == org_id, o.order_number.in_(batch))
        ):
            order_ids[number] = order_id
    candidates = sorted(
        {(order_ids[n], contact_id, at) for n, contact_id, at in maybe if n in order_ids},
        key=lambda c: (c[1], c[0]),
    )
    if not candidates:
        return 0
    opens = min(at for _, _, at in candidates) - window
    latest = max(at for _, _, at in candidates)
    replies: dict[int, list[datetime]] = {}
    for chunk in _chunks(sorted({contact for _, contact, _ in candidates}), 1000):
        for contact_id, occurred_at in session.execute(
            select(_H.contact_id, _H.occurred_at).where(
                _H.org_id == org_id,
                _H.contact_id.in_(chunk),
                _H.event.in_([e.value for e in REPLY_EVENTS]),
                _H.occurred_at >= opens,
                _H.occurred_at <= latest,
            )
        ):
            replies.setdefault(contact_id, []).append(occurred_at)
    found = orders_after_replies(candidates, replies)
    changes = record_engagements(
        EngagementRepo(session),
        org_id=org_id,
        events=[
            EngagementInput(
                contact_id=contact_id,
                event=EngagementEvent.ORDER_AFTER_REPLY,
                occurred_at=ordered_at,
                detail={"order_id": order_id},
            )
            for order_id, contact_id, ordered_at in found
        ],
    )
    return sum(change is not None for change in changes)


# --- the read model of the API ---------------------------------------------------------


@dataclass(frozen=True)
class _Cursor:
    occurred_at: datetime
    id: int


def encode_cursor(occurred_at: datetime, history_id: int) -> str:
    """Return the opaque cursor that continues a timeline after this row."""
    raw = f"{occurred_at.isoformat()}|{history_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> _Cursor:
    refused = InvalidInput("this cursor is not one the API gave", field="cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, history_id = raw.partition("|")
        occurred_at = datetime.fromisoformat(at)
        if occurred_at.tzinfo is None:
            raise refused
        parsed = _Cursor(occurred_at.astimezone(UTC), int(history_id))
    except (ValueError, OverflowError, UnicodeDecodeError, binascii.Error) as exc:
        raise refused from exc
    if not 1 <= parsed.id <= MAX_ID:
        raise refused
    return parsed


def _event(value: str) -> EngagementEvent:
    return _LEGACY_EVENTS.get(value) or EngagementEvent(value)


class EngagementViews:
    """What the engagement routes show: a contact's timeline and a campaign's results."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def contact_history(
        self,
        org_id: int,
        contact_id: int,
        *,
        now: datetime,
        limit: int,
        cursor: str | None,
        newest: bool = False,
    ) -> EngagementHistory:
        """Return a page of a contact's timeline (oldest first) with its score now.

        `newest`: the `limit` most recent events instead of the first page (still oldest
        first, with no cursor: what a glance at the contact shows).
        """
        after = _decode_cursor(cursor) if cursor is not None and not newest else None
        contact = self._s.execute(
            select(
                m.Contact.engagement_score,
                m.Contact.last_replied_at,
                m.Contact.last_positive_interaction_at,
            ).where(m.Contact.org_id == org_id, m.Contact.id == contact_id)
        ).one_or_none()
        if contact is None:
            raise NotFound(f"contact {contact_id} not found")
        repo = EngagementRepo(self._s)
        latest = repo.last_scored_at_or_before(org_id, contact_id, now)
        before = repo.last_scored_at_or_before(org_id, contact_id, now - _TREND_WINDOW)
        points = [p.point for p in (before, latest) if p is not None and p.point is not None]
        score = score_at(latest.point, now) if latest else float(contact.engagement_score)
        entries = self._entries(org_id, contact_id, after=after, limit=limit + 1, newest=newest)
        more = len(entries) > limit and not newest
        entries = entries[-limit:] if newest else entries[:limit]
        last = entries[-1] if entries else None
        return EngagementHistory(
            contact_id=contact_id,
            score=round(score, 2),
            trend=trend_of(points, now),
            last_replied_at=contact.last_replied_at,
            last_positive_interaction_at=contact.last_positive_interaction_at,
            entries=entries,
            next_cursor=encode_cursor(last.occurred_at, last.id) if more and last else None,
        )

    def _entries(
        self,
        org_id: int,
        contact_id: int,
        *,
        after: _Cursor | None,
        limit: int,
        newest: bool = False,
    ) -> list[EngagementEntry]:
        s, i, card, task = m.EmailSend, m.InboundEmail, m.Card, m.JobTask
        campaign = m.MarketingCampaign
        query = (
            select(
                _H.id,
                _H.event,
                _H.occurred_at,
                _H.sentiment,
                _H.score_delta,
                _H.score_after,
                _H.detail,
                s.id.label("send_id"),
                s.subject.label("send_subject"),
                s.campaign_id,
                campaign.name.label("campaign_name"),
                task.step,
                i.id.label("inbound_id"),
                i.subject.label("inbound_subject"),
                i.category,
                i.intent,
            )
            .outerjoin(s, and_(s.id == _H.email_send_id, s.org_id == org_id))
            .outerjoin(campaign, and_(campaign.id == s.campaign_id, campaign.org_id == org_id))
            .outerjoin(card, card.id == s.card_id)
            .outerjoin(task, task.id == card.task_id)
            .outerjoin(i, and_(i.id == _H.inbound_email_id, i.org_id == org_id))
            .where(
                _H.org_id == org_id,
                _H.contact_id == contact_id,
                _H.event.in_(_KNOWN_EVENTS),
            )
            .order_by(
                *((_H.occurred_at.desc(), _H.id.desc()) if newest else (_H.occurred_at, _H.id))
            )
            .limit(limit)
        )
        if after is not None:
            query = query.where(
                or_(
                    _H.occurred_at > after.occurred_at,
                    and_(_H.occurred_at == after.occurred_at, _H.id > after.id),
                )
            )
        rows = list(self._s.execute(query))
        if newest:
            rows.reverse()
        return [
            EngagementEntry(
                id=row.id,
                event=_event(row.event),
                occurred_at=row.occurred_at,
                sentiment=row.sentiment,
                score_delta=float(row.score_delta),
                score_after=None if row.score_after is None else float(row.score_after),
                detail=dict(row.detail or {}),
                send=None
                if row.send_id is None
                else SendRef(
                    id=row.send_id,
                    subject=row.send_subject,
                    campaign_id=row.campaign_id,
                    campaign_name=row.campaign_name,
                    step=row.step,
                ),
                inbound_email=None
                if row.inbound_id is None
                else InboundRef(
                    id=row.inbound_id,
                    subject=row.inbound_subject,
                    category=row.category,
                    intent=row.intent,
                ),
            )
            for row in rows
        ]

    def count_entries(self, org_id: int, contact_id: int) -> int:
        """Count the events of a contact's timeline."""
        return int(
            self._s.scalar(
                select(func.count())
                .select_from(_H)
                .where(
                    _H.org_id == org_id,
                    _H.contact_id == contact_id,
                    _H.event.in_(_KNOWN_EVENTS),
                )
            )
            or 0
        )

    def event_counts(
        self, org_id: int, contact_id: int
    ) -> dict[tuple[EngagementEvent, str | None], int]:
        """Count a contact's events by kind and sentiment: the totals of their timeline."""
        counts: dict[tuple[EngagementEvent, str | None], int] = {}
        for event, sentiment, count in self._s.execute(
            select(_H.event, _H.sentiment, func.count())
            .where(
                _H.org_id == org_id,
                _H.contact_id == contact_id,
                _H.event.in_(_KNOWN_EVENTS),
            )
            .group_by(_H.event, _H.sentiment)
        ):
            key = (_event(event), sentiment)
            counts[key] = counts.get(key, 0) + int(count)
        return counts

    def campaign_engagement(self, org_id: int, campaign_id: int) -> CampaignEngagement:
        """Return a campaign's sends, replies by sentiment, meetings, opt-outs and bounces,
        in total and by cadence step.

        A send's step is the step of the task its card was drafted for (email_sends.card_id
        → cards.task_id → job_tasks.step): the step it was sent at, whereas
        `enrollments.step` has moved on since. Sends without a card (one-off emails) have
        no step. An event counts for the campaign through its send, or through the send
        its inbound email answers; an opt-out that names no send (the unsubscribe link)
        counts for the contact's last send before it, when that send is the campaign's.
        """
        name = self._s.scalar(
            select(m.MarketingCampaign.name).where(
                m.MarketingCampaign.org_id == org_id, m.MarketingCampaign.id == campaign_id
            )
        )
        if name is None:
            raise NotFound(f"campaign {campaign_id} not found")
        s, card, task, i = m.EmailSend, m.Card, m.JobTask, m.InboundEmail
        sends: dict[int, tuple[int | None, int | None]] = {}  # send id → (step, contact id)
        sent_at: dict[int, list[tuple[datetime, int]]] = {}  # contact → its campaign sends
        for send_id, send_step, contact_id, at in self._s.execute(
            select(s.id, task.step, s.contact_id, s.sent_at)
            .outerjoin(card, card.id == s.card_id)
            .outerjoin(task, task.id == card.task_id)
            .where(
                s.org_id == org_id,
                s.campaign_id == campaign_id,
                s.status == OutboxStatus.SENT.value,
            )
        ):
            sends[send_id] = (send_step, contact_id)
            if contact_id is not None and at is not None:
                sent_at.setdefault(contact_id, []).append((at, send_id))
        tally: dict[int | None, _Tally] = {}

        def bucket(step: int | None) -> _Tally:
            return tally.setdefault(step, _Tally())

        for step, _ in sends.values():
            bucket(step).sends += 1
        linked_send = func.coalesce(_H.email_send_id, i.email_send_id)
        counted = [e.value for e in _COUNTED]
        for send_id, event, sentiment in self._s.execute(
            select(linked_send, _H.event, _H.sentiment)
            .outerjoin(i, and_(i.id == _H.inbound_email_id, i.org_id == org_id))
            .join(s, s.id == linked_send)
            .where(
                _H.org_id == org_id,
                s.org_id == org_id,
                s.campaign_id == campaign_id,
                _H.event.in_(counted),
            )
        ):
            if send_id in sends:
                bucket(sends[send_id][0]).add(EngagementEvent(event), sentiment, send_id)
        if sent_at:
            self._count_unlinked_opt_outs(org_id, sends, sent_at, bucket)
        steps = [
            StepEngagement(step=step, **t.counts().model_dump())
            for step, t in sorted(tally.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
        ]
        total = _Tally()
        for t in tally.values():
            total.merge(t)
        return CampaignEngagement(
            campaign_id=campaign_id, campaign_name=name, totals=total.counts(), steps=steps
        )

    def _count_unlinked_opt_outs(
        self,
        org_id: int,
        sends: dict[int, tuple[int | None, int | None]],
        sent_at: dict[int, list[tuple[datetime, int]]],
        bucket: Callable[[int | None], _Tally],
    ) -> None:
        """Count opt-outs without a send for the campaign send that came last before them,
        unless a send of another campaign came after it."""
        contacts = sorted(sent_at)
        for chunk in _chunks(contacts, 1000):
            opt_outs = self._s.execute(
                select(_H.contact_id, _H.occurred_at).where(
                    _H.org_id == org_id,
                    _H.contact_id.in_(chunk),
                    _H.event == EngagementEvent.OPTED_OUT.value,
                    _H.email_send_id.is_(None),
                    _H.inbound_email_id.is_(None),
                )
            ).all()
            if not opt_outs:
                continue
            others: dict[int, list[datetime]] = {}
            s = m.EmailSend
            for contact_id, at in self._s.execute(
                select(s.contact_id, s.sent_at).where(
                    s.org_id == org_id,
                    s.contact_id.in_(sorted({c for c, _ in opt_outs})),
                    s.status == OutboxStatus.SENT.value,
                    s.id.not_in(list(sends)),
                )
            ):
                if at is not None and contact_id is not None:
                    others.setdefault(contact_id, []).append(at)
            for contact_id, at in opt_outs:
                mine = [(sent, sid) for sent, sid in sent_at[contact_id] if sent <= at]
                if not mine:
                    continue
                last_sent, send_id = max(mine)
                if any(last_sent < other <= at for other in others.get(contact_id, [])):
                    continue
                bucket(sends[send_id][0]).add(EngagementEvent.OPTED_OUT, None, send_id)


_COUNTED: Final = frozenset(
    {
        EngagementEvent.REPLIED,
        EngagementEvent.POSITIVE_REPLY,
        EngagementEvent.NEGATIVE_REPLY,
        EngagementEvent.MEETING_REQUEST,
        EngagementEvent.OPTED_OUT,
        EngagementEvent.COMPLAINT,
        EngagementEvent.BOUNCED,
        EngagementEvent.SOFT_BOUNCE,
        EngagementEvent.OUT_OF_OFFICE,
    }
)


class _Tally:
    """Counters of one step (or of the whole campaign)."""

    def __init__(self) -> None:
        self.sends = 0
        self.replies = 0
        self.positive = 0
        self.neutral = 0
        self.negative = 0
        self.meetings = 0
        self.opt_outs = 0
        self.complaints = 0
        self.bounces = 0
        self.soft_bounces = 0
        self.out_of_office = 0
        self.replied_sends: set[int] = set()

    def add(self, event: EngagementEvent, sentiment: str | None, send_id: int) -> None:
        """Count one event linked to one of the campaign's sends."""
        if event in REPLY_EVENTS:
            self.replies += 1
            self.replied_sends.add(send_id)
            if sentiment == "positive":
                self.positive += 1
            elif sentiment == "negative":
                self.negative += 1
            else:
                self.neutral += 1
            if event == EngagementEvent.MEETING_REQUEST:
                self.meetings += 1
        elif event == EngagementEvent.OPTED_OUT:
            self.opt_outs += 1
        elif event == EngagementEvent.COMPLAINT:
            self.complaints += 1
        elif event == EngagementEvent.BOUNCED:
            self.bounces += 1
        elif event == EngagementEvent.SOFT_BOUNCE:
            self.soft_bounces += 1
        elif event == EngagementEvent.OUT_OF_OFFICE:
            self.out_of_office += 1

    def merge(self, other: _Tally) -> None:
        """Add another tally's counts to this one."""
        for name, value in vars(other).items():
            if name == "replied_sends":
                self.replied_sends |= other.replied_sends
            else:
                setattr(self, name, getattr(self, name) + value)

    def counts(self) -> EngagementCounts:
        """Return the counts, with the reply rate (sends with a reply / sends)."""
        return EngagementCounts(
            sends=self.sends,
            replies=self.replies,
            replied_sends=len(self.replied_sends),
            positive_replies=self.positive,
            neutral_replies=self.neutral,
            negative_replies=self.negative,
            meeting_requests=self.meetings,
            opt_outs=self.opt_outs,
            complaints=self.complaints,
            bounces=self.bounces,
            soft_bounces=self.soft_bounces,
            out_of_office=self.out_of_office,
            reply_rate=round(len(self.replied_sends) / self.sends, 4) if self.sends else 0.0,
        )


def _chunks(values: Sequence[_T], size: int) -> Iterable[list[_T]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])
