"""Repositories of what reps teach the classifier: re-labels (`classifier_corrections`) and the
rules they propose (`rule_proposals`). The rules are in `domain/corrections.py`; callers own
the transaction, nothing here commits.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from domain.classification import Category, CorrectionExample, Intent, Sentiment
from domain.corrections import (
    EXAMPLE_BODY_CHARS,
    EXAMPLE_SUBJECT_CHARS,
    CorrectionView,
    LabelSet,
    NewCorrection,
    ProposalStatus,
    RelabelTarget,
    RuleProposalView,
    SameCorrections,
    clip,
)
from domain.errors import NotFound
from domain.rules import RuleType
from domain.safety import looks_like_injection
from storage import models as m
from storage.inbound import clean_text
from storage.sql import org_row, rowcount

_C = m.ClassifierCorrection
_P = m.RuleProposal
_E = m.InboundEmail
#: A rep's label is sure; the sentiment score follows the label the rep chose.
_SCORES: Final = {Sentiment.POSITIVE: 0.5, Sentiment.NEUTRAL: 0.0, Sentiment.NEGATIVE: -0.5}


def _labels(row: Any) -> LabelSet | None:
    if not row.category:
        return None
    try:
        return LabelSet(
            category=Category(row.category),
            intent=Intent(row.intent or Intent.NONE.value),
            sentiment=Sentiment(row.sentiment or Sentiment.NEUTRAL.value),
        )
    except ValueError:
        return None  # a value from an older vocabulary: not re-labellable as stored


class CorrectionRepo:
    """Reps' re-labels, and the parts of a message a re-label reads and writes."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def message(self, org_id: int, inbound_email_id: int) -> RelabelTarget:
        """Return the message as a re-label reads it, or raise NotFound."""
        row = self._s.execute(
            select(
                _E.id,
                _E.org_id,
                _E.status,
                _E.category,
                _E.intent,
                _E.sentiment,
                _E.from_email,
                _E.subject,
                _E.contact_id,
                _E.email_send_id,
                _E.received_at,
                _E.detection,
                _E.label_ids,
                _E.injection_attempt,
                _E.gmail_account_id,
            ).where(_E.org_id == org_id, _E.id == inbound_email_id)
        ).one_or_none()
        if row is None:
            raise NotFound(f"inbound email {inbound_email_id} not found")
        sender: int | None = None
        if row.from_email:
            address = row.from_email.strip()
            sender = self._s.scalar(
                select(func.min(m.Contact.id)).where(
                    m.Contact.org_id == org_id,
                    m.Contact.email.in_(sorted({address, address.lower()})),
                )
            )
        card_id = self._s.scalar(
            select(func.min(m.Card.id)).where(
                m.Card.org_id == org_id, m.Card.inbound_email_id == inbound_email_id
            )
        )
        mailbox_user_id = (
            self._s.scalar(
                select(m.GmailAccount.user_id).where(
                    m.GmailAccount.org_id == org_id, m.GmailAccount.id == row.gmail_account_id
                )
            )
            if row.gmail_account_id is not None
            else None
        )
        return RelabelTarget(
            id=row.id,
            org_id=row.org_id,
            status=row.status,
            labels=_labels(row),
            from_email=row.from_email,
            subject=row.subject,
            contact_id=row.contact_id,
            sender_contact_id=sender,
            email_send_id=row.email_send_id,
            received_at=row.received_at,
            detection=dict(row.detection or {}),
            sent_by_us="SENT" in (row.label_ids or ()),
            injection_attempt=bool(row.injection_attempt),
            card_id=card_id,
            mailbox_user_id=mailbox_user_id,
        )

    def card_message(self, org_id: int, card_id: int) -> int | None:
        """Return the inbound message a card was made from, or raise NotFound for no card."""
        row = self._s.execute(
            select(m.Card.inbound_email_id).where(m.Card.org_id == org_id, m.Card.id == card_id)
        ).one_or_none()
        if row is None:
            raise NotFound(f"card {card_id} not found")
        email_id: int | None = row.inbound_email_id
        return email_id

    def set_labels(
        self,
        org_id: int,
        inbound_email_id: int,
        labels: LabelSet,
        *,
        decided_detail: str,
        reason: str,
        now: datetime,
    ) -> None:
        """Write a rep's labels as the message's classification (no re-classification)."""
        self._s.execute(
            update(_E)
            .where(_E.org_id == org_id, _E.id == inbound_email_id)
            .values(
                category=labels.category.value,
                intent=labels.intent.value,
                sentiment=labels.sentiment.value,
                sentiment_score=_SCORES[labels.sentiment],
                confidence=1.0,
                classified_by="rep",
                decided_detail=clean_text(decided_detail, 200),
                classification_reason=clean_text(reason, 500),
                reclassify_at=None,
                next_attempt_at=None,
            )
        )

    def append_action(
        self,
        org_id: int,
        inbound_email_id: int,
        *,
        action: str,
        reason: str,
        contact_id: int | None,
        enrollment_ids: Sequence[int],
        at: datetime,
    ) -> None:
        """Append an entry to the message's `actions`."""
        current = self._s.scalar(
            select(_E.actions).where(_E.org_id == org_id, _E.id == inbound_email_id)
        )
        entry = {
            "action": action,
            "reason": reason,
            "contact_id": contact_id,
            "enrollment_ids": sorted(enrollment_ids),
            "at": at.isoformat(),
        }
        self._s.execute(
            update(_E)
            .where(_E.org_id == org_id, _E.id == inbound_email_id)
            .values(actions=[*(current or []), entry])
        )

    def set_reply_sentiment(self, org_id: int, inbound_email_id: int, sentiment: Sentiment) -> bool:
        """Give the send this message replied to, and its conversation when this is the latest
        reply there, the new sentiment; True if anything changed."""
        s = m.EmailSend
        sends = rowcount(
            self._s.execute(
                update(s)
                .where(
                    s.org_id == org_id,
                    s.reply_email_id == inbound_email_id,
                    s.reply_sentiment.is_distinct_from(sentiment.value),
                )
                .values(reply_sentiment=sentiment.value)
            )
        )
        row = self._s.execute(
            select(_E.conversation_id, _E.received_at).where(
                _E.org_id == org_id, _E.id == inbound_email_id
            )
        ).one_or_none()
        if row is None or row.conversation_id is None or row.received_at is None:
            return sends > 0
        later = self._s.scalar(
            select(func.count())
            .select_from(_E)
            .where(
                _E.org_id == org_id,
                _E.conversation_id == row.conversation_id,
                _E.id != inbound_email_id,
                _E.sentiment.is_not(None),
                _E.received_at > row.received_at,
            )
        )
        if later:
            return sends > 0
        c = m.EmailConversation
        conversations = rowcount(
            self._s.execute(
                update(c)
                .where(
                    c.org_id == org_id,
                    c.id == row.conversation_id,
                    c.last_sentiment.is_not(None),
                    c.last_sentiment != sentiment.value,
                )
                .values(last_sentiment=sentiment.value)
            )
        )
        return sends + conversations > 0

    def add(self, correction: NewCorrection) -> int:
        """Store a correction; return its id."""
        row = _C(
            org_id=correction.org_id,
            inbound_email_id=correction.inbound_email_id,
            card_id=correction.card_id,
            user_id=correction.user_id,
            sender_email=clean_text(correction.sender_email, 320),
            sender_domain=clean_text(correction.sender_domain, 255),
            before=correction.before.model_dump(mode="json"),
            after=correction.after.model_dump(mode="json"),
            note=clean_text(correction.note, 2000),
            created_at=correction.created_at,
        )
        self._s.add(row)
        self._s.flush()
        return row.id

    def list(self, org_id: int, *, limit: int, offset: int) -> builtins.list[CorrectionView]:
        """Return the organization's corrections, newest first."""
        rows = self._s.scalars(
            select(_C)
            .where(_C.org_id == org_id)
            .order_by(_C.created_at.desc(), _C.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return [
            CorrectionView(
                id=r.id,
                inbound_email_id=r.inbound_email_id,
                card_id=r.card_id,
                user_id=r.user_id,
                sender_email=r.sender_email,
                sender_domain=r.sender_domain,
                before=dict(r.before or {}),
                after=dict(r.after or {}),
                note=r.note,
                created_at=r.created_at,
            )
            for r in rows
        ]

    def examples(self, org_id: int, *, limit: int) -> builtins.list[CorrectionExample]:
        """Return the latest corrections (one per message, its latest) as examples."""
        return self.examples_for([org_id], limit=limit).get(org_id, [])

    def examples_for(
        self, org_ids: Sequence[int], *, limit: int
    ) -> dict[int, builtins.list[CorrectionExample]]:
        """Return `examples` for several organizations (those without any left out)."""
        found: dict[int, builtins.list[CorrectionExample]] = {}
        for org_id in sorted(set(org_ids)):
            # A message re-labelled twice counts once, with its latest labels: read a few
            # more rows than needed and keep the first of each message.
            rows = self._s.execute(
                select(
                    _C.inbound_email_id,
                    _C.after,
                    _E.from_email,
                    _E.subject,
                    func.substr(
                        func.coalesce(func.nullif(_E.reply_text, ""), _E.body_text, ""),
                        1,
                        EXAMPLE_BODY_CHARS + 1,
                    ).label("text"),
                )
                .join(_E, and_(_E.id == _C.inbound_email_id, _E.org_id == _C.org_id))
                # An example goes into every later prompt of the organization: never the
                # text of a message that tried to instruct the model.
                .where(_C.org_id == org_id, _E.injection_attempt.is_not(True))
                .order_by(_C.created_at.desc(), _C.id.desc())
                .limit(limit * 4)
            ).all()
            seen: set[int] = set()
            examples: builtins.list[CorrectionExample] = []
            for row in rows:
                if row.inbound_email_id in seen:
                    continue
                seen.add(row.inbound_email_id)
                after = dict(row.after or {})
                try:
                    example = CorrectionExample(
                        from_email=clip(row.from_email, 320) or None,
                        subject=clip(row.subject, EXAMPLE_SUBJECT_CHARS),
                        body=clip(row.text, EXAMPLE_BODY_CHARS),
                        category=Category(str(after.get("category"))),
                        intent=Intent(str(after.get("intent"))),
                        sentiment=Sentiment(str(after.get("sentiment"))),
                    )
                except ValueError:
                    continue  # labels outside today's lists: not an example any more
                if looks_like_injection(f"{example.subject or ''}\n{example.body or ''}"):
                    continue  # not flagged when it came, but it reads as instructions
                examples.append(example)
                if len(examples) == limit:
                    break
            if examples:
                found[org_id] = examples
        return found

    def training_set(
        self, org_id: int | None, *, body_chars: int
    ) -> builtins.list[tuple[int, int, CorrectionExample]]:
        """Return every re-labelled message with its latest labels, as (org id, message id,
        example), oldest message first: what `salesbot inbound train` learns from (all
        organizations, or one)."""
        query = (
            select(
                _C.org_id,
                _C.inbound_email_id,
                _C.after,
                _E.from_email,
                _E.subject,
                func.substr(
                    func.coalesce(func.nullif(_E.reply_text, ""), _E.body_text, ""),
                    1,
                    body_chars,
                ).label("text"),
            )
            .join(_E, and_(_E.id == _C.inbound_email_id, _E.org_id == _C.org_id))
            .order_by(_C.created_at.desc(), _C.id.desc())
        )
        if org_id is not None:
            query = query.where(_C.org_id == org_id)
        latest: dict[int, tuple[int, int, CorrectionExample]] = {}
        for row in self._s.execute(query):
            if row.inbound_email_id in latest:
                continue
            after = dict(row.after or {})
            try:
                example = CorrectionExample(
                    from_email=clip(row.from_email, 320) or None,
                    subject=clip(row.subject, 1_000),
                    body=(row.text or "")[:body_chars],
                    category=Category(str(after.get("category"))),
                    intent=Intent(str(after.get("intent"))),
                    sentiment=Sentiment(str(after.get("sentiment"))),
                )
            except ValueError:
                continue
            latest[row.inbound_email_id] = (row.org_id, row.inbound_email_id, example)
        return [latest[key] for key in sorted(latest)]

    def count_same(
        self,
        org_id: int,
        category: Category,
        *,
        sender_email: str | None = None,
        sender_domain: str | None = None,
    ) -> SameCorrections:
        """Count the messages of a sender (or domain) re-labelled to `category` from another
        category, and their distinct senders."""
        after = _C.after["category"].as_string()
        before = _C.before["category"].as_string()
        query = select(
            func.count(func.distinct(_C.inbound_email_id)),
            func.count(func.distinct(_C.sender_email)),
        ).where(_C.org_id == org_id, after == category.value, before != category.value)
        if sender_email is not None:
            query = query.where(_C.sender_email == sender_email)
        if sender_domain is not None:
            query = query.where(_C.sender_domain == sender_domain)
        messages, senders = self._s.execute(query).one()
        return SameCorrections(messages=int(messages or 0), senders=int(senders or 0))


def _proposal(row: m.RuleProposal) -> RuleProposalView:
    return RuleProposalView(
        id=row.id,
        rule_type=RuleType(row.rule_type),
        pattern=row.pattern,
        category=Category(row.category),
        corrections=row.corrections,
        status=ProposalStatus(row.status),
        rule_id=row.rule_id,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        slack_channel_id=row.slack_channel_id,
        slack_message_ts=row.slack_message_ts,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class RuleProposalRepo:
    """Rules proposed from reps' identical corrections."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def upsert(
        self,
        org_id: int,
        *,
        rule_type: RuleType,
        pattern: str,
        category: Category,
        corrections: int,
        now: datetime,
    ) -> tuple[RuleProposalView, bool]:
        """Open a proposal, or update the count of the one there (whatever its status);
        return it and True when this call opened it."""
        key = and_(
            _P.org_id == org_id,
            _P.rule_type == rule_type.value,
            _P.pattern == pattern,
            _P.category == category.value,
        )
        dialect = self._s.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        opened = self._s.scalar(
            insert(_P)
            .values(
                org_id=org_id,
                rule_type=rule_type.value,
                pattern=pattern,
                category=category.value,
                corrections=corrections,
                status=ProposalStatus.OPEN.value,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["org_id", "rule_type", "pattern", "category"])
            .returning(_P.id)
        )
        if opened is None:
            self._s.execute(
                update(_P)
                .where(key, _P.corrections < corrections)
                .values(corrections=corrections, updated_at=now)
            )
        row = self._s.scalars(select(_P).where(key).execution_options(populate_existing=True)).one()
        return _proposal(row), opened is not None

    def get(self, org_id: int, proposal_id: int) -> RuleProposalView:
        """Return a proposal or raise NotFound."""
        return _proposal(
            org_row(self._s, _P, org_id, proposal_id, what="rule proposal", populate_existing=True)
        )

    def list(
        self, org_id: int, *, status: ProposalStatus | None, limit: int
    ) -> builtins.list[RuleProposalView]:
        """Return proposals, newest first."""
        query = select(_P).where(_P.org_id == org_id)
        if status is not None:
            query = query.where(_P.status == status.value)
        rows = self._s.scalars(query.order_by(_P.updated_at.desc(), _P.id.desc()).limit(limit))
        return [_proposal(row) for row in rows]

    def decide(
        self, org_id: int, proposal_id: int, *, to: ProposalStatus, by: int | None, now: datetime
    ) -> bool:
        """Move an open proposal to accepted or dismissed (compare-and-set); True if moved.

        On PostgreSQL a second decision at the same moment waits on the row and then finds
        it decided; on SQLite write transactions are serialised (storage/db.py).
        """
        result = self._s.execute(
            update(_P)
            .where(
                _P.org_id == org_id,
                _P.id == proposal_id,
                _P.status == ProposalStatus.OPEN.value,
            )
            .values(status=to.value, decided_by=by, decided_at=now, updated_at=now)
        )
        return rowcount(result) == 1

    def set_rule(self, org_id: int, proposal_id: int, *, rule_id: int) -> None:
        """Name the rule an accepted proposal made."""
        self._s.execute(
            update(_P).where(_P.org_id == org_id, _P.id == proposal_id).values(rule_id=rule_id)
        )

    def set_message(self, org_id: int, proposal_id: int, *, channel: str, ts: str) -> None:
        """Remember the chat message that shows the proposal (the first one posted)."""
        self._s.execute(
            update(_P)
            .where(_P.org_id == org_id, _P.id == proposal_id, _P.slack_message_ts.is_(None))
            .values(slack_channel_id=channel[:32], slack_message_ts=ts[:32])
        )
