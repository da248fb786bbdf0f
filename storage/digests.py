"""Digest subscriptions and their posts (issue 14, docs/digest.md).

A due subscription is locked (SKIP LOCKED on PostgreSQL; SQLite's BEGIN IMMEDIATE
serialises writers), the post of its period inserted with ON CONFLICT DO NOTHING on
(subscription_id, period_start), and its next run moved on by compare-and-set. Posts are
leased like the outbox's rows: claimed with SKIP LOCKED, finished by compare-and-set on
the claim. Callers own the transaction; nothing here commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from domain.digests import (
    DigestPost,
    Frequency,
    NewPost,
    NewSubscription,
    PostKind,
    PostStatus,
    Subscription,
)
from domain.errors import NotFound
from storage import models as m
from storage.sql import rowcount

_Rep = aliased(m.User)


def _subscription_query() -> Any:
    sub = m.DigestSubscription
    return (
        select(sub, m.MarketingCampaign.name, _Rep.name, _Rep.email, _Rep.slack_user_id)
        .outerjoin(m.MarketingCampaign, m.MarketingCampaign.id == sub.campaign_id)
        .outerjoin(_Rep, _Rep.id == sub.rep_user_id)
    )


def _subscription(row: Any) -> Subscription:
    sub, campaign_name, rep_name, rep_email, rep_slack = row
    return Subscription(
        id=sub.id,
        org_id=sub.org_id,
        channel_id=sub.channel_id,
        channel_name=sub.channel_name,
        frequency=Frequency(sub.frequency),
        weekday=sub.weekday,
        local_time=sub.local_time,
        time_zone=sub.time_zone,
        scope_key=sub.scope_key,
        next_run_at=sub.next_run_at,
        campaign_id=sub.campaign_id,
        campaign_name=campaign_name,
        rep_user_id=sub.rep_user_id,
        rep_name=rep_name or rep_email,
        rep_slack_user_id=rep_slack,
        created_by=sub.created_by,
        last_error=sub.last_error,
    )


def _post(row: Any) -> DigestPost:
    post, campaign_name, rep_name, rep_email = row
    return DigestPost(
        id=post.id,
        org_id=post.org_id,
        subscription_id=post.subscription_id,
        kind=PostKind(post.kind),
        frequency=Frequency(post.frequency),
        channel_id=post.channel_id,
        time_zone=post.time_zone,
        period_start=post.period_start,
        period_end=post.period_end,
        status=PostStatus(post.status),
        attempts=post.attempts,
        campaign_id=post.campaign_id,
        campaign_name=campaign_name,
        rep_user_id=post.rep_user_id,
        rep_name=rep_name or rep_email,
        requested_by=post.requested_by,
        file_id=post.file_id,
        slack_ts=post.slack_ts,
        error=post.error,
        figures=dict(post.figures or {}),
    )


def _held_by(worker: str) -> tuple[ColumnElement[bool], ...]:
    return (
        m.DigestPost.status == PostStatus.POSTING.value,
        m.DigestPost.claimed_by == worker,
    )


class DigestRepo:
    """Digest subscriptions and posts."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def _postgresql(self) -> bool:
        return self._s.get_bind().dialect.name == "postgresql"

    # subscriptions -----------------------------------------------------------------------

    def save_subscription(
        self, new: NewSubscription, *, now: datetime
    ) -> tuple[Subscription, bool]:
        """Store a subscription, or update the one of its channel, frequency and scope."""
        sub = m.DigestSubscription
        values: dict[str, Any] = {
            "channel_name": new.channel_name,
            "weekday": new.weekday,
            "local_time": new.local_time,
            "time_zone": new.time_zone,
            "next_run_at": new.next_run_at,
            "last_error": None,
            "updated_at": now,
        }
        insert = postgresql.insert if self._postgresql() else sqlite.insert
        stmt = (
            insert(sub)
            .values(
                org_id=new.org_id,
                channel_id=new.channel_id,
                frequency=new.frequency.value,
                scope_key=new.scope_key,
                campaign_id=new.campaign_id,
                rep_user_id=new.rep_user_id,
                created_by=new.created_by,
                created_at=now,
                **values,
            )
            .on_conflict_do_nothing(
                index_elements=["org_id", "channel_id", "frequency", "scope_key"]
            )
            .returning(sub.id)
        )
        new_id = self._s.execute(stmt).scalar_one_or_none()
        created = new_id is not None
        if new_id is None:
            new_id = self._s.execute(
                update(sub)
                .where(
                    sub.org_id == new.org_id,
                    sub.channel_id == new.channel_id,
                    sub.frequency == new.frequency.value,
                    sub.scope_key == new.scope_key,
                )
                .values(**values)
                .returning(sub.id)
            ).scalar_one()
        return self._subscription(new_id), created

    def _subscription(self, subscription_id: int) -> Subscription:
        row = self._s.execute(
            _subscription_query()
            .where(m.DigestSubscription.id == subscription_id)
            .execution_options(populate_existing=True)
        ).one()
        return _subscription(row)

    def subscriptions(self, org_id: int) -> list[Subscription]:
        """Return the organization's subscriptions, by channel, frequency and scope."""
        sub = m.DigestSubscription
        rows = self._s.execute(
            _subscription_query()
            .where(sub.org_id == org_id)
            .order_by(sub.channel_id, sub.frequency, sub.scope_key)
            .execution_options(populate_existing=True)
        ).all()
        return [_subscription(r) for r in rows]

    def remove_subscriptions(
        self,
        org_id: int,
        *,
        channel_id: str,
        frequency: Frequency | None,
        scope_key: str | None,
    ) -> list[Subscription]:
        """Delete a channel's subscriptions (of one frequency and scope when given)."""
        sub = m.DigestSubscription
        where: list[ColumnElement[bool]] = [sub.org_id == org_id, sub.channel_id == channel_id]
        if frequency is not None:
            where.append(sub.frequency == frequency.value)
        if scope_key is not None:
            where.append(sub.scope_key == scope_key)
        found = [
            _subscription(r)
            for r in self._s.execute(_subscription_query().where(*where).order_by(sub.id)).all()
        ]
        if found:
            self._s.execute(delete(sub).where(sub.id.in_([s.id for s in found])))
        return found

    def org_time_zone(self, org_id: int) -> str | None:
        """Return the time zone of the organization's cadence settings, if it set one."""
        stored = self._s.scalar(
            select(m.Organization.cadence_settings).where(m.Organization.id == org_id)
        )
        zone = stored.get("timezone") if isinstance(stored, dict) else None
        return str(zone) if zone else None

    def lock_due(self, *, now: datetime, limit: int) -> list[Subscription]:
        """Lock subscriptions whose next run has come, earliest first (SKIP LOCKED)."""
        sub = m.DigestSubscription
        query = (
            select(sub.id)
            .where(sub.next_run_at <= now)
            .order_by(sub.next_run_at, sub.id)
            .limit(limit)
        )
        if self._postgresql():
            query = query.with_for_update(skip_locked=True)
        ids = list(self._s.scalars(query))
        if not ids:
            return []
        rows = self._s.execute(
            _subscription_query()
            .where(sub.id.in_(ids))
            .order_by(sub.next_run_at, sub.id)
            .execution_options(populate_existing=True)
        ).all()
        return [_subscription(r) for r in rows]

    def move_next_run(
        self, subscription_id: int, *, expected: datetime, to: datetime, now: datetime
    ) -> bool:
        """Move a subscription's next run from `expected` to `to` (compare-and-set)."""
        sub = m.DigestSubscription
        result = self._s.execute(
            update(sub)
            .where(sub.id == subscription_id, sub.next_run_at == expected)
            .values(next_run_at=to, updated_at=now)
        )
        return rowcount(result) == 1

    # posts --------------------------------------------------------------------------------

    def add_post(self, new: NewPost, *, now: datetime) -> int | None:
        """Store a pending post; None when its subscription already has this period."""
        insert = postgresql.insert if self._postgresql() else sqlite.insert
        stmt = (
            insert(m.DigestPost)
            .values(
                org_id=new.org_id,
                subscription_id=new.subscription_id,
                kind=new.kind.value,
                frequency=new.frequency.value,
                channel_id=new.channel_id,
                time_zone=new.time_zone,
                period_start=new.period.since,
                period_end=new.period.until,
                campaign_id=new.campaign_id,
                rep_user_id=new.rep_user_id,
                requested_by=new.requested_by,
                status=PostStatus.PENDING.value,
                attempts=0,
                not_before=now,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["subscription_id", "period_start"])
            .returning(m.DigestPost.id)
        )
        return self._s.execute(stmt).scalar_one_or_none()

    def _posts(self, *where: ColumnElement[bool]) -> list[DigestPost]:
        post = m.DigestPost
        rows = self._s.execute(
            select(post, m.MarketingCampaign.name, _Rep.name, _Rep.email)
            .outerjoin(m.MarketingCampaign, m.MarketingCampaign.id == post.campaign_id)
            .outerjoin(_Rep, _Rep.id == post.rep_user_id)
            .where(*where)
            .order_by(post.id)
            .execution_options(populate_existing=True)
        ).all()
        return [_post(r) for r in rows]

    def get_post(self, post_id: int) -> DigestPost:
        """Return a post or raise NotFound."""
        found = self._posts(m.DigestPost.id == post_id)
        if not found:
            raise NotFound(f"digest post {post_id} not found")
        return found[0]

    def claim_posts(
        self, *, now: datetime, limit: int, lease_until: datetime, worker: str
    ) -> list[DigestPost]:
        """Lease pending posts that are due and `posting` ones whose lease ran out, oldest
        first (SKIP LOCKED); each claim counts an attempt."""
        post = m.DigestPost
        query = (
            select(post.id)
            .where(
                or_(
                    (post.status == PostStatus.PENDING.value)
                    & or_(post.not_before.is_(None), post.not_before <= now),
                    (post.status == PostStatus.POSTING.value) & (post.claimed_until < now),
                )
            )
            .order_by(post.id)
            .limit(limit)
        )
        if self._postgresql():
            query = query.with_for_update(skip_locked=True)
        ids = list(self._s.scalars(query))
        if not ids:
            return []
        self._s.execute(
            update(post)
            .where(post.id.in_(ids))
            .values(
                status=PostStatus.POSTING.value,
                claimed_by=worker,
                claimed_until=lease_until,
                attempts=post.attempts + 1,
            )
        )
        return self._posts(post.id.in_(ids))

    def set_file(self, post_id: int, *, worker: str, file_id: str) -> bool:
        """Record the uploaded chart of a post this worker holds."""
        result = self._s.execute(
            update(m.DigestPost)
            .where(m.DigestPost.id == post_id, *_held_by(worker))
            .values(file_id=file_id)
        )
        return rowcount(result) == 1

    def mark_posted(
        self, post_id: int, *, worker: str, ts: str, figures: dict[str, Any], at: datetime
    ) -> bool:
        """Record the message of a post this worker holds (its lease may have run out, if
        nobody took it since); its subscription's error clears."""
        post = m.DigestPost
        result = self._s.execute(
            update(post)
            .where(post.id == post_id, *_held_by(worker))
            .values(
                status=PostStatus.POSTED.value,
                slack_ts=ts,
                figures=figures,
                posted_at=at,
                error=None,
                claimed_by=None,
                claimed_until=None,
                not_before=None,
            )
        )
        done = rowcount(result) == 1
        if done:
            self._set_subscription_error(post_id, None, at)
        return done

    def mark_failed(
        self, post_id: int, *, worker: str, error: str, retry_at: datetime | None, at: datetime
    ) -> bool:
        """Put a post back to pending until `retry_at`, or (None) fail it for good and show
        the error on its subscription."""
        status = PostStatus.PENDING if retry_at is not None else PostStatus.FAILED
        result = self._s.execute(
            update(m.DigestPost)
            .where(m.DigestPost.id == post_id, *_held_by(worker))
            .values(
                status=status.value,
                error=error,
                not_before=retry_at,
                claimed_by=None,
                claimed_until=None,
            )
        )
        done = rowcount(result) == 1
        if done and retry_at is None:
            self._set_subscription_error(post_id, error, at)
        return done

    def _set_subscription_error(self, post_id: int, error: str | None, at: datetime) -> None:
        subscription_id = self._s.scalar(
            select(m.DigestPost.subscription_id).where(m.DigestPost.id == post_id)
        )
        if subscription_id is None:
            return
        sub = m.DigestSubscription
        self._s.execute(
            update(sub).where(sub.id == subscription_id).values(last_error=error, updated_at=at)
        )
