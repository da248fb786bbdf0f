"""The repository of review cards, and the in-flight cards the recovery sweep resumes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import fields as dataclass_fields
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, exists, func, insert, or_, select, update
from sqlalchemy.orm import Session

from domain.cards import (
    OPEN_STATES,
    UNDECIDED_STATES,
    Card,
    CardState,
    CardType,
    InFlightCard,
    Priority,
    SnoozedCard,
    sends_email,
    states_that_can_become,
)
from domain.jobs import TaskKind, TaskStatus
from domain.mail import SendOutcome, SendStatus
from integrations import metrics
from storage import models as m
from storage.sql import org_row, rowcount

_CARD_FIELDS = tuple(f.name for f in dataclass_fields(Card))


class CardRepo:
    """Cards; state changes are compare-and-set so concurrent clicks act once."""

    def __init__(self, session: Session) -> None:
        self._s = session

    @staticmethod
    def _to_domain(row: m.Card) -> Card:
        data = {name: getattr(row, name) for name in _CARD_FIELDS}
        data["type"] = CardType(row.type)
        data["state"] = CardState(row.state)
        data["priority"] = Priority(row.priority)
        data["action_payload"] = dict(row.action_payload or {})
        return Card(**data)

    def add(self, org_id: int, **values: Any) -> Card:
        """Store a new card."""
        for key in ("type", "state", "priority"):
            if key in values and hasattr(values[key], "value"):
                values[key] = values[key].value
        row = m.Card(org_id=org_id, **values)
        self._s.add(row)
        self._s.flush()
        self._s.refresh(row)
        return self._to_domain(row)

    def get(self, org_id: int, card_id: int) -> Card:
        """Return a card of the organization or raise NotFound."""
        # populate_existing: the row as the database has it now, even when this session
        # already holds it and a Core UPDATE (counters, compare-and-set) changed it since.
        row = org_row(self._s, m.Card, org_id, card_id, what="card", populate_existing=True)
        return self._to_domain(row)

    def add_many(self, org_id: int, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Insert cards in one statement; return their ids in the order given."""
        if not rows:
            return []
        columns = set(m.Card.__table__.columns.keys())
        values = [
            {"org_id": org_id, **{k: v for k, v in row.items() if k in columns}} for row in rows
        ]
        result = self._s.execute(
            insert(m.Card).returning(m.Card.id, sort_by_parameter_order=True), values
        )
        return [row[0] for row in result]

    def for_inbound_email(self, org_id: int, inbound_email_id: int) -> int | None:
        """Return the id of the card an inbound message made, or None."""
        return self._s.scalars(
            select(m.Card.id)
            .where(m.Card.org_id == org_id, m.Card.inbound_email_id == inbound_email_id)
            .order_by(m.Card.id)
            .limit(1)
        ).first()

    def compare_and_set(
        self,
        org_id: int,
        card_id: int,
        *,
        expected: Iterable[CardState],
        to: CardState,
        now: datetime,
        **changes: Any,
    ) -> bool:
        """Move a card to `to` only if it is still in one of `expected`; True if it moved."""
        result = self._s.execute(
            update(m.Card)
            .where(
                m.Card.org_id == org_id,
                m.Card.id == card_id,
                m.Card.state.in_([s.value for s in expected]),
            )
            .values(state=to.value, updated_at=now, **changes)
        )
        moved = rowcount(result) > 0
        if moved:
            # Counted as the change is made (a rollback after it, rare, still counts).
            metrics.CARD_TRANSITIONS.labels(to.value).inc()
        return moved

    def stale_in_flight(self, *, before: datetime, limit: int) -> list[InFlightCard]:
        """Return cards left `approved` or `executing` since before `before`, oldest first.

        An `executing` card whose email is queued or being sent is the outbox's (it tells
        the card when the email went); the others are for the recovery sweep: `approved`
        ones were never executed, `executing` ones either never reached the outbox (no
        row, or a failed one: certainly not sent) or were not told that it was sent.
        """
        c, e = m.Card, m.EmailSend
        rows = self._s.execute(
            select(
                c.org_id,
                c.id,
                c.state,
                c.type,
                c.inbound_email_id,
                e.id,
                e.status,
                e.message_id,
                e.gmail_message_id,
                e.gmail_thread_id,
            )
            .outerjoin(e, e.card_id == c.id)
            .where(
                c.state.in_([CardState.APPROVED.value, CardState.EXECUTING.value]),
                c.updated_at < before,
                or_(
                    c.state == CardState.APPROVED.value,
                    e.id.is_(None),
                    e.status.in_(["sent", "failed"]),
                ),
            )
            .order_by(c.updated_at, c.id)
            .limit(limit)
        ).all()
        found = []
        for (
            org_id,
            card_id,
            state,
            kind,
            inbound_email_id,
            send_id,
            status,
            message_id,
            gmail_id,
            thread_id,
        ) in rows:
            sent = None
            if status == "sent":
                sent = SendOutcome(
                    status=SendStatus.SENT,
                    email_send_id=send_id,
                    message_id=message_id,
                    gmail_message_id=gmail_id,
                    gmail_thread_id=thread_id,
                )
            email = sends_email(CardType(kind), answers_inbound=inbound_email_id is not None)
            found.append(InFlightCard(org_id, card_id, CardState(state), email, sent))
        return found

    def reset_unsent(self, org_id: int, card_id: int, *, before: datetime, now: datetime) -> bool:
        """Put an `executing` card that never reached Gmail back to `approved`, to run again.

        Only when it has been executing since before `before` (its executor is gone) and
        its email has no outbox row other than a failed one: nothing can have been sent.
        Not a move of the state machine (a card cannot go from executing to approved): it
        undoes a start that died before it reached the outbox.
        """
        e = m.EmailSend
        reached_outbox = exists().where(e.card_id == card_id, e.status != "failed")
        result = self._s.execute(
            update(m.Card)
            .where(
                m.Card.org_id == org_id,
                m.Card.id == card_id,
                m.Card.state == CardState.EXECUTING.value,
                m.Card.updated_at < before,
                ~reached_outbox,
            )
            .values(state=CardState.APPROVED.value, updated_at=now)
        )
        moved = rowcount(result) > 0
        if moved:
            metrics.CARD_TRANSITIONS.labels(CardState.APPROVED.value).inc()
        return moved

    def update_fields(self, org_id: int, card_id: int, *, now: datetime, **changes: Any) -> None:
        """Change a card's fields (not its state)."""
        if "state" in changes:
            raise ValueError("use compare_and_set to change a card's state")
        self._s.execute(
            update(m.Card)
            .where(m.Card.org_id == org_id, m.Card.id == card_id)
            .values(updated_at=now, **changes)
        )

    def set_message(self, card_id: int, *, channel: str, ts: str) -> None:
        """Remember the Slack message that shows a card."""
        self._s.execute(
            update(m.Card)
            .where(m.Card.id == card_id)
            .values(slack_channel_id=channel, slack_message_ts=ts)
        )

    def list_for_job(
        self,
        org_id: int,
        job_id: int,
        *,
        states: Sequence[CardState] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Card]:
        """Return a job's cards in creation order (a page of them with `limit`)."""
        query = select(m.Card).where(m.Card.org_id == org_id, m.Card.job_id == job_id)
        if states:
            query = query.where(m.Card.state.in_([s.value for s in states]))
        query = query.order_by(m.Card.id).offset(offset)
        if limit is not None:
            query = query.limit(limit)
        return [self._to_domain(r) for r in self._s.scalars(query)]

    def count_for_job(
        self, org_id: int, job_id: int, *, states: Sequence[CardState] | None = None
    ) -> int:
        """Count a job's cards (in `states`)."""
        query = (
            select(func.count())
            .select_from(m.Card)
            .where(m.Card.org_id == org_id, m.Card.job_id == job_id)
        )
        if states:
            query = query.where(m.Card.state.in_([s.value for s in states]))
        return self._s.scalar(query) or 0

    def has_undecided(self, org_id: int, job_id: int) -> bool:
        """Tell whether a card of the job still waits for review or for its send."""
        found = self._s.scalar(
            select(m.Card.id)
            .where(
                m.Card.org_id == org_id,
                m.Card.job_id == job_id,
                m.Card.state.in_([s.value for s in UNDECIDED_STATES]),
            )
            .limit(1)
        )
        return found is not None

    def withdraw_for_job(
        self, org_id: int, job_id: int, *, reason: str, now: datetime
    ) -> list[tuple[int, str | None]]:
        """Withdraw every card of a job the state machine lets become withdrawn, except
        the cards made from inbound mail: a contact who wrote still needs an answer from a
        person, whatever became of the campaign.

        One compare-and-set over the job's cards: a card that moved on meanwhile (an
        approval that began sending) is left alone. Returns (card id, Slack message ts)
        of the cards withdrawn.
        """
        movable = states_that_can_become(CardState.WITHDRAWN)
        rows = self._s.execute(
            update(m.Card)
            .where(
                m.Card.org_id == org_id,
                m.Card.job_id == job_id,
                m.Card.inbound_email_id.is_(None),
                m.Card.state.in_([s.value for s in movable]),
            )
            .values(state=CardState.WITHDRAWN.value, updated_at=now, withdrawn_reason=reason)
            .returning(m.Card.id, m.Card.slack_message_ts)
            .execution_options(synchronize_session=False)
        ).all()
        if rows:
            metrics.CARD_TRANSITIONS.labels(CardState.WITHDRAWN.value).inc(len(rows))
        return sorted((row[0], row[1]) for row in rows)

    def list_for_batch(
        self, org_id: int, job_id: int, batch: int, *, states: Sequence[CardState]
    ) -> list[Card]:
        """Return the cards drafted by a batch of a job's tasks."""
        query = (
            select(m.Card)
            .join(m.JobTask, m.JobTask.id == m.Card.task_id)
            .where(
                m.Card.org_id == org_id,
                m.Card.job_id == job_id,
                m.JobTask.batch == batch,
                m.Card.state.in_([s.value for s in states]),
            )
            .order_by(m.Card.id)
        )
        return [self._to_domain(r) for r in self._s.scalars(query)]

    def unposted_reply_cards(self, org_id: int, *, limit: int) -> list[tuple[int, int]]:
        """Return (card id, job id) of reply cards drafted and waiting for a person that have
        no chat message (nowhere took them) and no post_card task pending or running (it
        will post them), oldest first."""
        # A JSON value compares differently on SQLite and PostgreSQL: the card ids of the
        # queued posts are read and left out here instead.
        queued = {
            card_id
            for (payload,) in self._s.execute(
                select(m.JobTask.input).where(
                    m.JobTask.org_id == org_id,
                    m.JobTask.kind == TaskKind.POST_CARD.value,
                    m.JobTask.status.in_([TaskStatus.PENDING.value, TaskStatus.RUNNING.value]),
                )
            )
            if isinstance(card_id := (payload or {}).get("card_id"), int)
        }
        query = (
            select(m.Card.id, m.Card.job_id)
            .where(
                m.Card.org_id == org_id,
                m.Card.inbound_email_id.is_not(None),
                m.Card.job_id.is_not(None),
                m.Card.slack_message_ts.is_(None),
                m.Card.state.in_([s.value for s in OPEN_STATES if s != CardState.SUGGESTED]),
            )
            .order_by(m.Card.id)
            .limit(limit + len(queued))
        )
        rows = self._s.execute(query).all()
        waiting = [
            (card_id, job_id)
            for card_id, job_id in rows
            if job_id is not None and card_id not in queued
        ]
        return waiting[:limit]

    def snooze(
        self,
        org_id: int,
        card_id: int,
        *,
        until: datetime,
        expected: Iterable[CardState],
        now: datetime,
        action_payload: dict[str, Any],
    ) -> bool:
        """Snooze a card until `until` only if it is still in one of `expected`; True if so."""
        result = self._s.execute(
            update(m.Card)
            .where(
                m.Card.org_id == org_id,
                m.Card.id == card_id,
                m.Card.state.in_([s.value for s in expected]),
            )
            .values(snoozed_until=until, updated_at=now, action_payload=action_payload)
        )
        return rowcount(result) > 0

    def unsnooze(self, org_id: int, card_id: int, *, now: datetime) -> bool:
        """End a card's snooze now; True if it was snoozed."""
        result = self._s.execute(
            update(m.Card)
            .where(
                m.Card.org_id == org_id,
                m.Card.id == card_id,
                m.Card.snoozed_until.is_not(None),
            )
            .values(snoozed_until=None, updated_at=now)
        )
        return rowcount(result) > 0

    def claim_due_snoozed(
        self, *, now: datetime, lease_until: datetime, limit: int
    ) -> list[SnoozedCard]:
        """Claim cards whose snooze ended by `now`, oldest first, pushing their
        `snoozed_until` to `lease_until`: a sweep that dies before it posts a card again
        leaves it to be claimed once the lease is over.

        On PostgreSQL the rows are locked with SKIP LOCKED, so two sweeps claim disjoint
        cards; the UPDATE re-checks `snoozed_until <= now` on each row in any case, so a
        card another sweep claimed meanwhile is not claimed twice (SQLite's writer lock
        serialises the claims).
        """
        c = m.Card
        due = (
            select(c.id)
            .where(c.snoozed_until.is_not(None), c.snoozed_until <= now)
            .order_by(c.snoozed_until, c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        ids = list(self._s.scalars(due))
        if not ids:
            return []
        rows = self._s.execute(
            update(c)
            .where(c.id.in_(ids), c.snoozed_until.is_not(None), c.snoozed_until <= now)
            .values(snoozed_until=lease_until)
            .returning(c.org_id, c.id, c.state, c.slack_channel_id, c.slack_message_ts)
            .execution_options(synchronize_session=False)
        ).all()
        return sorted(
            (
                SnoozedCard(
                    org_id=org_id,
                    card_id=card_id,
                    state=CardState(state),
                    claimed_until=lease_until,
                    slack_channel_id=channel,
                    slack_message_ts=ts,
                )
                for org_id, card_id, state, channel, ts in rows
            ),
            key=lambda card: ids.index(card.card_id),
        )

    def end_snooze(
        self, org_id: int, card_id: int, *, claimed_until: datetime, now: datetime
    ) -> bool:
        """Clear a claimed card's snooze while it still holds the claim; True if cleared."""
        result = self._s.execute(
            update(m.Card)
            .where(
                m.Card.org_id == org_id,
                m.Card.id == card_id,
                m.Card.snoozed_until == claimed_until,
            )
            .values(snoozed_until=None, updated_at=now)
        )
        return rowcount(result) > 0

    def _open_of(self, org_id: int, owner_id: int | None) -> Any:
        """The open cards of an organization; with `owner_id`, the rep's: cards of the
        jobs they own, and cards answering messages that arrived in their mailbox."""
        query = select(m.Card).where(
            m.Card.org_id == org_id, m.Card.state.in_([s.value for s in OPEN_STATES])
        )
        if owner_id is not None:
            query = (
                query.outerjoin(m.Job, m.Job.id == m.Card.job_id)
                .outerjoin(m.InboundEmail, m.InboundEmail.id == m.Card.inbound_email_id)
                .outerjoin(m.GmailAccount, m.GmailAccount.id == m.InboundEmail.gmail_account_id)
                .where(or_(m.Job.owner_id == owner_id, m.GmailAccount.user_id == owner_id))
            )
        return query

    def list_open(self, org_id: int, *, owner_id: int | None, limit: int = 20) -> list[Card]:
        """Return cards waiting for a human (of `owner_id`'s jobs and mailbox; all if None):
        reply cards waiting for review first, then the others, snoozed cards last."""
        snoozed = case((m.Card.snoozed_until.is_(None), 0), else_=1)
        reply_first = case(
            (
                and_(
                    m.Card.inbound_email_id.is_not(None),
                    m.Card.state == CardState.IN_REVIEW.value,
                ),
                0,
            ),
            else_=1,
        )
        query = self._open_of(org_id, owner_id).order_by(snoozed, reply_first, m.Card.id)
        return [self._to_domain(r) for r in self._s.scalars(query.limit(limit))]

    def count_open(self, org_id: int, *, owner_id: int | None) -> int:
        """Count the cards waiting for a human (of `owner_id`'s jobs and mailbox)."""
        query = select(func.count()).select_from(self._open_of(org_id, owner_id).subquery())
        return self._s.scalar(query) or 0
