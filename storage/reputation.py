"""Repositories of reputation: reviews and their trends, response templates, escalation
rules, and each organization's reputation settings. The unit of work commits."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Date, and_, case, cast, func, insert, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from domain.classification import Sentiment
from domain.errors import Conflict
from domain.reputation import (
    EscalationKind,
    EscalationRule,
    Platform,
    ReputationSettings,
    ReputationTotals,
    ReputationTrends,
    ResponseTemplate,
    Review,
    ReviewStatus,
    RouteTo,
    Scenario,
    TrendDay,
    response_totals,
)
from storage import models as m
from storage.sql import org_row

#: Pairs looked up per query (a batch of 1,000 is one query on PostgreSQL and SQLite).
_CHUNK = 500


def _review(row: m.Review) -> Review:
    return Review(
        id=row.id,
        org_id=row.org_id,
        platform=Platform(row.platform),
        external_id=row.external_id,
        author=row.author,
        rating=row.rating,
        text=row.text,
        url=row.url,
        posted_at=row.posted_at,
        received_at=row.received_at,
        sentiment=Sentiment(row.sentiment),
        sentiment_score=row.sentiment_score,
        sentiment_source=row.sentiment_source,
        status=ReviewStatus(row.status),
        escalated=row.escalated,
        escalation_reason=row.escalation_reason,
        escalated_to=RouteTo(row.escalated_to) if row.escalated_to else None,
        escalated_user_id=row.escalated_user_id,
        response_text=row.response_text,
        responded_at=row.responded_at,
        responded_by=row.responded_by,
        response_card_id=row.response_card_id,
        escalation_card_id=row.escalation_card_id,
        source=row.source,
    )


class ReviewRepo:
    """Stored reviews, and the one query behind the trends API and the digest's line."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def existing(self, org_id: int, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Return which (platform, external id) pairs are stored already."""
        found: set[tuple[str, str]] = set()
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            rows = self._s.execute(
                select(m.Review.platform, m.Review.external_id).where(
                    m.Review.org_id == org_id,
                    tuple_(m.Review.platform, m.Review.external_id).in_(chunk),
                )
            )
            found.update((p, e) for p, e in rows)
        return found

    def add_many(self, org_id: int, rows: Sequence[dict[str, Any]]) -> builtins.list[int]:
        """Insert reviews (column values); return their ids in order."""
        if not rows:
            return []
        values = [{**row, "org_id": org_id} for row in rows]
        try:
            if self._s.get_bind().dialect.name == "postgresql":
                result = self._s.execute(
                    insert(m.Review).returning(m.Review.id, sort_by_parameter_order=True), values
                )
                return [int(i) for i in result.scalars()]
            # SQLite: RETURNING with executemany is not ordered; insert one at a time.
            return [
                int(
                    self._s.execute(
                        insert(m.Review).values(**v).returning(m.Review.id)
                    ).scalar_one()
                )
                for v in values
            ]
        except IntegrityError as exc:
            # Another request stored one of these reviews since they were looked up.
            raise Conflict("a review of this batch was stored by another request") from exc

    def get(self, org_id: int, review_id: int) -> Review:
        """Return a review or raise NotFound."""
        return _review(org_row(self._s, m.Review, org_id, review_id, what="review"))

    def by_card(self, org_id: int, card_id: int) -> Review | None:
        """Return the review whose response or escalation card this is."""
        row = self._s.scalars(
            select(m.Review).where(
                m.Review.org_id == org_id,
                or_(m.Review.response_card_id == card_id, m.Review.escalation_card_id == card_id),
            )
        ).first()
        return _review(row) if row is not None else None

    def list(
        self,
        org_id: int,
        *,
        platform: Platform | None = None,
        status: ReviewStatus | None = None,
        escalated: bool | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[Review]:
        """Return reviews, newest received first."""
        query = select(m.Review).where(m.Review.org_id == org_id)
        if platform is not None:
            query = query.where(m.Review.platform == platform.value)
        if status is not None:
            query = query.where(m.Review.status == status.value)
        if escalated is not None:
            query = query.where(m.Review.escalated.is_(escalated))
        if since is not None:
            query = query.where(m.Review.received_at >= since)
        if until is not None:
            query = query.where(m.Review.received_at < until)
        query = query.order_by(m.Review.received_at.desc(), m.Review.id.desc())
        return [_review(r) for r in self._s.scalars(query.limit(limit).offset(offset))]

    def update(self, org_id: int, review_id: int, **values: Any) -> None:
        """Change columns of a review."""
        self._s.execute(
            update(m.Review)
            .where(m.Review.org_id == org_id, m.Review.id == review_id)
            .values(**values)
        )

    def _window(self, org_id: int, since: datetime, until: datetime) -> Any:
        return and_(
            m.Review.org_id == org_id, m.Review.received_at >= since, m.Review.received_at < until
        )

    def totals(self, org_id: int, since: datetime, until: datetime) -> ReputationTotals:
        """The totals of reviews received in [since, until)."""
        r = m.Review
        needing = r.response_card_id.is_not(None) | r.status.in_(
            [
                ReviewStatus.AWAITING_RESPONSE.value,
                ReviewStatus.RESPONDED.value,
                ReviewStatus.DECLINED.value,
            ]
        )
        row = self._s.execute(
            select(
                func.count(r.id),
                func.avg(r.rating),
                func.count(case((r.sentiment == Sentiment.POSITIVE.value, 1))),
                func.count(case((r.sentiment == Sentiment.NEUTRAL.value, 1))),
                func.count(case((r.sentiment == Sentiment.NEGATIVE.value, 1))),
                func.count(case((needing, 1))),
                func.count(case((r.status == ReviewStatus.RESPONDED.value, 1))),
                func.count(case((r.status == ReviewStatus.AWAITING_RESPONSE.value, 1))),
                func.count(case((r.escalated.is_(True), 1))),
            ).where(self._window(org_id, since, until))
        ).one()
        hours = [
            max((responded - (posted or received)).total_seconds(), 0.0) / 3600
            for posted, received, responded in self._s.execute(
                select(r.posted_at, r.received_at, r.responded_at).where(
                    self._window(org_id, since, until), r.responded_at.is_not(None)
                )
            )
            if responded is not None
        ]
        total, avg, pos, neu, neg, need, responded, waiting, escalated = row
        return ReputationTotals(
            reviews=total,
            average_rating=round(float(avg), 2) if avg is not None else None,
            positive=pos,
            neutral=neu,
            negative=neg,
            needing_response=need,
            responded=responded,
            unresponded=waiting,
            escalated=escalated,
            **response_totals(needing=need, responded=responded, hours=hours),
        )

    def trends(self, org_id: int, since: datetime, until: datetime) -> ReputationTrends:
        """The UTC days and totals of reviews received in [since, until)."""
        r = m.Review
        bind = self._s.get_bind()
        day = (
            cast(func.timezone("UTC", r.received_at), Date)
            if bind.dialect.name == "postgresql"
            else func.date(r.received_at)
        )
        rows = self._s.execute(
            select(
                day.label("day"),
                func.count(r.id),
                func.avg(r.rating),
                func.count(case((r.sentiment == Sentiment.POSITIVE.value, 1))),
                func.count(case((r.sentiment == Sentiment.NEUTRAL.value, 1))),
                func.count(case((r.sentiment == Sentiment.NEGATIVE.value, 1))),
                func.avg(r.sentiment_score),
            )
            .where(self._window(org_id, since, until))
            .group_by(day)
            .order_by(day)
        )
        by_day: dict[date, TrendDay] = {}
        for d, count, rating, pos, neu, neg, score in rows:
            key = d if isinstance(d, date) else date.fromisoformat(str(d))
            by_day[key] = TrendDay(
                day=key,
                reviews=count,
                average_rating=round(float(rating), 2),
                positive=pos,
                neutral=neu,
                negative=neg,
                average_score=round(float(score), 3),
            )
        days: list[TrendDay] = []
        current = since.astimezone(UTC).date()
        last = (until.astimezone(UTC) - timedelta(microseconds=1)).date()
        while current <= last:
            days.append(
                by_day.get(current)
                or TrendDay(
                    day=current,
                    reviews=0,
                    average_rating=None,
                    positive=0,
                    neutral=0,
                    negative=0,
                    average_score=None,
                )
            )
            current += timedelta(days=1)
        return ReputationTrends(
            since=since, until=until, days=days, totals=self.totals(org_id, since, until)
        )


class ResponseTemplateRepo:
    """Response templates of an organization."""

    def __init__(self, session: Session) -> None:
        self._s = session

    @staticmethod
    def _to_domain(row: m.ReviewResponseTemplate) -> ResponseTemplate:
        return ResponseTemplate(
            id=row.id,
            org_id=row.org_id,
            scenario=Scenario(row.scenario),
            name=row.name,
            body=row.body,
            is_active=row.is_active,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    def _row(self, org_id: int, template_id: int) -> m.ReviewResponseTemplate:
        return org_row(
            self._s, m.ReviewResponseTemplate, org_id, template_id, what="response template"
        )

    def list(self, org_id: int) -> builtins.list[ResponseTemplate]:
        """Return every template, by id."""
        query = (
            select(m.ReviewResponseTemplate)
            .where(m.ReviewResponseTemplate.org_id == org_id)
            .order_by(m.ReviewResponseTemplate.id)
        )
        return [self._to_domain(r) for r in self._s.scalars(query)]

    def get(self, org_id: int, template_id: int) -> ResponseTemplate:
        """Return a template or raise NotFound."""
        return self._to_domain(self._row(org_id, template_id))

    def add(
        self,
        org_id: int,
        *,
        scenario: Scenario,
        name: str,
        body: str,
        is_active: bool,
        now: datetime,
    ) -> ResponseTemplate:
        """Store a new template."""
        row = m.ReviewResponseTemplate(
            org_id=org_id,
            scenario=scenario.value,
            name=name,
            body=body,
            is_active=is_active,
            created_at=now,
            updated_at=now,
        )
        self._s.add(row)
        self._s.flush()
        return self._to_domain(row)

    def update(self, org_id: int, template_id: int, *, now: datetime, **values: Any) -> None:
        """Change a template's columns."""
        row = self._row(org_id, template_id)
        for key, value in values.items():
            setattr(row, key, value.value if isinstance(value, Scenario) else value)
        row.updated_at = now
        self._s.flush()

    def remove(self, org_id: int, template_id: int) -> None:
        """Delete a template or raise NotFound."""
        self._s.delete(self._row(org_id, template_id))
        self._s.flush()


class EscalationRuleRepo:
    """Escalation rules of an organization."""

    def __init__(self, session: Session) -> None:
        self._s = session

    @staticmethod
    def _to_domain(row: m.ReviewEscalationRule) -> EscalationRule:
        return EscalationRule(
            id=row.id,
            org_id=row.org_id,
            kind=EscalationKind(row.kind),
            pattern=row.pattern,
            route_to=RouteTo(row.route_to),
            user_id=row.user_id,
            is_active=row.is_active,
            created_at=row.created_at,
        )

    def _row(self, org_id: int, rule_id: int) -> m.ReviewEscalationRule:
        return org_row(self._s, m.ReviewEscalationRule, org_id, rule_id, what="escalation rule")

    def list(self, org_id: int) -> builtins.list[EscalationRule]:
        """Return every rule, by id."""
        query = (
            select(m.ReviewEscalationRule)
            .where(m.ReviewEscalationRule.org_id == org_id)
            .order_by(m.ReviewEscalationRule.id)
        )
        return [self._to_domain(r) for r in self._s.scalars(query)]

    def get(self, org_id: int, rule_id: int) -> EscalationRule:
        """Return a rule or raise NotFound."""
        return self._to_domain(self._row(org_id, rule_id))

    def add(
        self,
        org_id: int,
        *,
        kind: EscalationKind,
        pattern: str,
        route_to: RouteTo,
        user_id: int | None,
        is_active: bool,
    ) -> EscalationRule:
        """Store a new rule."""
        row = m.ReviewEscalationRule(
            org_id=org_id,
            kind=kind.value,
            pattern=pattern,
            route_to=route_to.value,
            user_id=user_id,
            is_active=is_active,
        )
        self._s.add(row)
        self._s.flush()
        self._s.refresh(row)
        return self._to_domain(row)

    def update(self, org_id: int, rule_id: int, **values: Any) -> None:
        """Change a rule's columns."""
        row = self._row(org_id, rule_id)
        for key, value in values.items():
            setattr(row, key, value)
        self._s.flush()

    def remove(self, org_id: int, rule_id: int) -> None:
        """Delete a rule or raise NotFound."""
        self._s.delete(self._row(org_id, rule_id))
        self._s.flush()


class ReputationSettingsRepo:
    """Per-organization reputation settings."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def get(self, org_id: int) -> ReputationSettings:
        """Return the settings (defaults when none are stored)."""
        row = self._s.get(m.ReputationSetting, org_id)
        if row is None:
            return ReputationSettings(org_id=org_id)
        return ReputationSettings(
            org_id=org_id,
            account_manager_user_id=row.account_manager_user_id,
            legal_user_id=row.legal_user_id,
            channel_id=row.channel_id,
            firm_name=row.firm_name,
            has_webhook_secret=row.webhook_secret_encrypted is not None,
        )

    def save(self, org_id: int, **values: Any) -> None:
        """Store settings columns (creating the row on first use)."""
        row = self._s.get(m.ReputationSetting, org_id)
        if row is None:
            row = m.ReputationSetting(org_id=org_id, firm_name="")
            self._s.add(row)
        for key, value in values.items():
            setattr(row, key, value)
        self._s.flush()

    def webhook_secret(self, org_id: int) -> bytes | None:
        """Return the encrypted webhook secret, if one is set."""
        return self._s.scalar(
            select(m.ReputationSetting.webhook_secret_encrypted).where(
                m.ReputationSetting.org_id == org_id
            )
        )

    def org_id_by_slug(self, slug: str) -> int | None:
        """Return the id of the organization with this slug."""
        return self._s.scalar(select(m.Organization.id).where(m.Organization.slug == slug))
