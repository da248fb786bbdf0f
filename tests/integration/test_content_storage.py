"""The content calendar's claims in storage, on SQLite and PostgreSQL: a due post is leased to
one worker, a second sweep takes nothing while the lease runs, a lease that runs out lets
the next worker take it (which finds the card the first one posted instead of posting
another), a post that cannot be posted is tried again later with its reason, and a post
marked done while its card was being posted is not made due again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from domain.content import (
    ContentIn,
    DueCard,
    ScheduleEntry,
    ScheduleIn,
    ScheduleStatus,
    ScheduleUpdate,
)
from domain.content_service import NOWHERE, ContentCalendar
from domain.deps import Deps
from domain.errors import ExternalServiceError, NotFound
from domain.outreach.common import Actor
from storage import models as m
from storage.uow import UnitOfWork
from tests.support.accounts import ensure_user
from tests.support.builders import make_org

DUE = datetime(2026, 12, 9, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


@dataclass
class RecordingChat:
    """A chat that keeps what it was asked to post (a fake of the ContentChat port)."""

    posted: list[tuple[str, int]] = field(default_factory=list)
    fail_with: ExternalServiceError | None = None
    updated: list[int] = field(default_factory=list)

    def open_target(self, org_id: int, target: str) -> str:
        return f"D-{target}" if target.startswith("U") else target

    def find_card(self, org_id: int, channel_id: str, card: DueCard) -> str | None:
        key = (channel_id, card.entry.id)
        found = [i for i, posted in enumerate(self.posted) if posted == key]
        return f"{found[0]}.0" if found else None

    def post_card(self, org_id: int, channel_id: str, card: DueCard) -> str:
        if self.fail_with is not None:
            raise self.fail_with
        self.posted.append((channel_id, card.entry.id))
        return f"{len(self.posted) - 1}.0"

    def update_card(self, org_id: int, entry: ScheduleEntry, **_: object) -> None:
        self.updated.append(entry.id)


def build(
    session_factory: Callable[[], Session], clock: FixedClock, chat: RecordingChat, worker: str
) -> ContentCalendar:
    deps = Deps(uow=lambda: UnitOfWork(session_factory), clock=clock)
    return ContentCalendar(deps, chat=chat, lease=LEASE, worker=worker)


def seed(session: Session, *, slack_id: str | None = "U0MARIA01") -> tuple[int, Actor]:
    org = make_org(session)
    user_id = ensure_user(session, org.id, email="maria@lonestar.example.com")
    user = session.get(m.User, user_id)
    assert user is not None
    user.slack_user_id = slack_id
    session.commit()
    return org.id, Actor(org_id=org.id, user_id=user_id, role="rep", slack_user_id=slack_id)


def add_post(calendar: ContentCalendar, actor: Actor) -> int:
    entry = calendar.create_scheduled(
        actor,
        ContentIn(content_type="blog", title="Turn times", body="Text"),
        ScheduleIn(channel="blog", scheduled_for=DUE + timedelta(hours=5)),
    )
    return entry.id


def test_a_due_post_is_claimed_once_and_taken_again_only_after_its_lease(
    session: Session, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    org_id, actor = seed(session)
    chat = RecordingChat()
    first = build(session_factory, clock, chat, "w1")
    entry_id = add_post(first, actor)
    clock._at = DUE - timedelta(seconds=1)
    assert first.post_due() == 0

    # Claimed at 09:00 by a worker that dies before posting: nothing posted, leased.
    clock._at = DUE
    with UnitOfWork(session_factory) as uow:
        (card,) = uow.content_schedule.claim_due(
            now=DUE, limit=10, lease_until=DUE + LEASE, worker="dead"
        )
        uow.commit()
    assert card.target == "U0MARIA01"
    second = build(session_factory, clock, chat, "w2")
    assert second.post_due() == 0  # the lease runs
    clock._at = DUE + LEASE
    assert second.post_due() == 1
    assert chat.posted == [("D-U0MARIA01", entry_id)]
    entry = second.get_entry(org_id, None, entry_id)
    assert (entry.status, entry.attempts, entry.card_ts) == (ScheduleStatus.DUE, 2, "0.0")
    assert second.post_due() == 0


def test_a_worker_taking_a_post_whose_card_slack_already_has_records_that_card(
    session: Session, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    org_id, actor = seed(session)
    chat = RecordingChat()
    calendar = build(session_factory, clock, chat, "w1")
    entry_id = add_post(calendar, actor)
    with UnitOfWork(session_factory) as uow:
        (card,) = uow.content_schedule.claim_due(
            now=DUE, limit=10, lease_until=DUE + LEASE, worker="dead"
        )
        uow.commit()
    chat.post_card(org_id, "D-U0MARIA01", card)  # Slack took it; the worker died after
    clock._at = DUE + LEASE
    assert calendar.post_due() == 1
    assert chat.posted == [("D-U0MARIA01", entry_id)]  # not a second card
    assert calendar.get_entry(org_id, None, entry_id).card_ts == "0.0"


def test_a_post_with_nowhere_to_go_or_a_slack_failure_is_tried_again_later(
    session: Session, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    org_id, actor = seed(session, slack_id=None)
    chat = RecordingChat()
    calendar = build(session_factory, clock, chat, "w1")
    entry_id = add_post(calendar, actor)
    clock._at = DUE
    assert calendar.post_due() == 1
    entry = calendar.get_entry(org_id, None, entry_id)
    assert (entry.status, entry.last_error) == (ScheduleStatus.SCHEDULED, NOWHERE)
    assert calendar.post_due() == 0

    calendar.update_settings(
        None, org_id, calendar.settings(org_id).model_copy(update={"channel_id": "C0MARKET"})
    )
    chat.fail_with = ExternalServiceError("Slack answered internal_error", retryable=True)
    clock._at = DUE + timedelta(minutes=1)
    assert calendar.post_due() == 1
    assert calendar.get_entry(org_id, None, entry_id).last_error == "Slack answered internal_error"
    chat.fail_with = None
    clock._at = DUE + timedelta(minutes=3)
    assert calendar.post_due() == 1
    assert chat.posted == [("C0MARKET", entry_id)]
    entry = calendar.get_entry(org_id, None, entry_id)
    assert (entry.status, entry.last_error, entry.attempts) == (ScheduleStatus.DUE, None, 3)


def test_a_post_marked_done_while_its_card_was_posted_stays_done(
    session: Session, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    org_id, actor = seed(session)
    chat = RecordingChat()
    calendar = build(session_factory, clock, chat, "w1")
    entry_id = add_post(calendar, actor)
    clock._at = DUE
    with UnitOfWork(session_factory) as uow:
        (card,) = uow.content_schedule.claim_due(
            now=DUE, limit=10, lease_until=DUE + LEASE, worker="w1"
        )
        uow.commit()
    calendar.mark_done(actor, entry_id)
    calendar._post(card)  # the sweep's post of what it claimed
    entry = calendar.get_entry(org_id, None, entry_id)
    assert entry.status == ScheduleStatus.DONE
    assert chat.updated == [entry_id]  # its card says it is done


def test_another_organization_cannot_act_on_a_post(
    session: Session, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    _, actor = seed(session)
    other = make_org(session, slug="rival")
    session.commit()
    calendar = build(session_factory, clock, RecordingChat(), "w1")
    entry_id = add_post(calendar, actor)
    stranger = Actor(org_id=other.id, user_id=actor.user_id, role="admin")
    with pytest.raises(NotFound):
        calendar.mark_done(stranger, entry_id)


def test_a_post_moved_while_its_card_was_posted_keeps_its_new_time(
    session: Session, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    org_id, actor = seed(session)
    chat = RecordingChat()
    calendar = build(session_factory, clock, chat, "w1")
    entry_id = add_post(calendar, actor)
    entry = calendar.get_entry(org_id, None, entry_id)
    clock._at = DUE
    with UnitOfWork(session_factory) as uow:
        (card,) = uow.content_schedule.claim_due(
            now=DUE, limit=10, lease_until=DUE + LEASE, worker="w1"
        )
        uow.commit()
    next_week = DUE + timedelta(days=7, hours=5)
    calendar.update_entry(
        actor, org_id, entry.content_id, entry_id, ScheduleUpdate(scheduled_for=next_week)
    )
    calendar._post(card)  # the sweep's post of what it claimed, for the old time
    moved = calendar.get_entry(org_id, None, entry_id)
    assert (moved.status, moved.scheduled_for) == (ScheduleStatus.SCHEDULED, next_week)
    assert chat.updated == [entry_id]  # the card just posted says it was moved
    # Its card comes on the new morning.
    clock._at = moved.due_at
    assert calendar.post_due() == 1
    assert calendar.get_entry(org_id, None, entry_id).status == ScheduleStatus.DUE
