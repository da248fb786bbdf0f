"""Opting out on a fake unit of work: the contact's choice wins, once, and for good."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType

import pytest

from domain.clock import FixedClock
from domain.contacts import EngagementTrend
from domain.engagement import EngagementEvent, record_engagement
from domain.suppression import ContactSummary, Suppression
from tests.unit.fakes import EngagementStore, FakeEngagement

ORG = 1
DANA, RAY = 100, 101
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


@dataclass
class _Enrollment:
    contact_id: int
    status: str
    stop_reason: str | None = None


@dataclass
class _Queued:
    contact_id: int | None
    to_email: str
    status: str = "queued"
    error: str | None = None


@dataclass
class Stored:
    """What the fake database holds once committed."""

    emails: dict[int, str] = field(default_factory=dict)
    opted_out_at: dict[int, datetime] = field(default_factory=dict)
    enrollments: list[_Enrollment] = field(default_factory=list)
    outbox: list[_Queued] = field(default_factory=list)
    engagement: EngagementStore = field(default_factory=EngagementStore)

    @property
    def history(self) -> list[tuple[int, str, datetime, object]]:
        """The engagement history: contact, event, when, the opt-out's source."""
        return [
            (r.contact_id, r.event, r.occurred_at, r.detail.get("source"))
            for r in self.engagement.rows
        ]


class FakeOptOuts:
    def __init__(self, data: Stored) -> None:
        self._d = data

    def summary(self, org_id: int, contact_id: int) -> ContactSummary | None:
        email = self._d.emails.get(contact_id)
        if org_id != ORG or email is None:
            return None
        return ContactSummary(
            contact_id, email, "Lone Star Appraisals", self._d.opted_out_at.get(contact_id)
        )

    def mark_opted_out(self, org_id: int, contact_id: int, *, at: datetime) -> bool:
        if contact_id in self._d.opted_out_at:
            return False
        self._d.opted_out_at[contact_id] = at
        return True

    def stop_enrollments(self, org_id: int, contact_id: int, *, reason: str, at: datetime) -> int:
        running = [
            e
            for e in self._d.enrollments
            if e.contact_id == contact_id and e.status in ("active", "paused")
        ]
        for enrollment in running:
            enrollment.status, enrollment.stop_reason = "stopped", reason
        return len(running)

    def cancel_queued_emails(self, org_id: int, contact_id: int, *, email: str, reason: str) -> int:
        queued = [
            q
            for q in self._d.outbox
            if q.status == "queued" and (q.contact_id == contact_id or q.to_email == email)
        ]
        for row in queued:
            row.status, row.error = "failed", reason
        return len(queued)


class FakeUnitOfWork:
    """Works on a copy of what is stored; only a commit makes the copy what is stored."""

    def __init__(self, stored: Stored) -> None:
        self.stored = stored
        self.commits = 0
        self._work = stored

    @property
    def opt_outs(self) -> FakeOptOuts:
        return FakeOptOuts(self._work)

    @property
    def engagement(self) -> FakeEngagement:
        return FakeEngagement(self._work)

    def __enter__(self) -> FakeUnitOfWork:
        self._work = copy.deepcopy(self.stored)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._work = self.stored

    def commit(self) -> None:
        self.stored.__dict__.update(copy.deepcopy(self._work).__dict__)
        self.commits += 1


@dataclass
class World:
    suppression: Suppression
    uow: FakeUnitOfWork
    clock: FixedClock

    @property
    def stored(self) -> Stored:
        return self.uow.stored

    def enroll(self, contact_id: int, *statuses: str) -> None:
        self.stored.enrollments += [_Enrollment(contact_id, s) for s in statuses]

    def enrollments(self, contact_id: int) -> list[tuple[str, str | None]]:
        return [
            (e.status, e.stop_reason) for e in self.stored.enrollments if e.contact_id == contact_id
        ]


@pytest.fixture
def world() -> World:
    stored = Stored(emails={DANA: "Dana@pinnacle.example.com", RAY: "ray@pinnacle.example.com"})
    for contact_id in (DANA, RAY):
        stored.engagement.add_contact(ORG, contact_id)
    uow = FakeUnitOfWork(stored)
    clock = FixedClock(NOW)
    return World(Suppression(lambda: uow, clock=clock), uow, clock)


def test_an_opt_out_stops_running_enrollments_and_cancels_queued_emails_at_once(
    world: World,
) -> None:
    world.enroll(DANA, "active", "paused", "completed")
    world.enroll(RAY, "active")
    world.stored.outbox += [
        _Queued(DANA, "Dana@pinnacle.example.com"),
        _Queued(None, "Dana@pinnacle.example.com"),
        _Queued(DANA, "Dana@pinnacle.example.com", status="sent"),
        _Queued(RAY, "ray@pinnacle.example.com"),
    ]

    result = world.suppression.opt_out(ORG, DANA, source="one_click")

    assert result is not None
    assert (result.email, result.already_opted_out) == ("Dana@pinnacle.example.com", False)
    assert (result.stopped_enrollments, result.cancelled_sends) == (2, 2)
    assert world.stored.opted_out_at == {DANA: NOW}
    assert world.stored.history == [(DANA, "opted_out", NOW, "one_click")]
    assert world.enrollments(DANA) == [
        ("stopped", "opted out"),
        ("stopped", "opted out"),
        ("completed", None),
    ]
    assert world.enrollments(RAY) == [("active", None)]
    assert [(q.status, q.error) for q in world.stored.outbox] == [
        ("failed", "Dana@pinnacle.example.com opted out; nothing was sent."),
        ("failed", "Dana@pinnacle.example.com opted out; nothing was sent."),
        ("sent", None),
        ("queued", None),
    ]
    assert world.uow.commits == 1


def test_a_repeated_opt_out_keeps_the_first_date_and_records_one_history_entry(
    world: World,
) -> None:
    world.suppression.opt_out(ORG, DANA, source="unsubscribe_page")
    world.clock.advance(days=3)

    again = world.suppression.opt_out(ORG, DANA, source="one_click")

    assert again is not None
    assert (again.already_opted_out, again.stopped_enrollments, again.cancelled_sends) == (
        True,
        0,
        0,
    )
    assert world.stored.opted_out_at == {DANA: NOW}
    assert world.stored.history == [(DANA, "opted_out", NOW, "unsubscribe_page")]


def test_a_repeated_opt_out_stops_enrollments_made_since(world: World) -> None:
    world.suppression.opt_out(ORG, DANA, source="one_click")
    world.enroll(DANA, "active")

    again = world.suppression.opt_out(ORG, DANA, source="one_click")

    assert again is not None
    assert again.stopped_enrollments == 1
    assert world.enrollments(DANA) == [("stopped", "opted out")]
    assert len(world.stored.history) == 1


def test_a_contact_opted_out_by_an_import_keeps_that_date_and_gets_no_second_history_entry(
    world: World,
) -> None:
    imported = datetime(2026, 6, 12, tzinfo=UTC)
    world.stored.opted_out_at[DANA] = imported

    result = world.suppression.opt_out(ORG, DANA, source="one_click")

    assert result is not None
    assert result.already_opted_out is True
    assert world.stored.opted_out_at == {DANA: imported}
    assert world.stored.history == []


def test_an_unknown_contact_or_one_of_another_organization_opts_out_nothing(
    world: World,
) -> None:
    world.enroll(DANA, "active")

    assert world.suppression.opt_out(ORG, 999, source="one_click") is None
    assert world.suppression.opt_out(ORG + 1, DANA, source="one_click") is None

    assert world.stored.opted_out_at == {}
    assert world.enrollments(DANA) == [("active", None)]
    assert world.uow.commits == 0


def test_the_unsubscribe_page_sees_whether_the_contact_has_opted_out(world: World) -> None:
    before = world.suppression.contact(ORG, DANA)
    world.suppression.opt_out(ORG, DANA, source="unsubscribe_page")
    after = world.suppression.contact(ORG, DANA)

    assert before is not None
    assert after is not None
    assert (before.opted_out_at, after.opted_out_at) == (None, NOW)
    assert after.org_name == "Lone Star Appraisals"


def test_an_opt_out_is_scored_in_the_engagement_history_and_ends_the_score(world: World) -> None:
    record_engagement(
        FakeEngagement(world.stored),
        org_id=ORG,
        contact_id=DANA,
        event=EngagementEvent.POSITIVE_REPLY,
        occurred_at=NOW - timedelta(days=1),
        inbound_email_id=5,
    )

    world.suppression.opt_out(ORG, DANA, source="one_click")

    rows = world.stored.engagement.history(ORG, DANA)
    assert [(r.event, r.score_delta, r.score_after) for r in rows] == [
        ("positive_reply", 25.0, 25.0),
        ("opted_out", -100.0, 0.0),
    ]
    dana = world.stored.engagement.contacts[(ORG, DANA)]
    assert (dana.score, dana.trend) == (0.0, EngagementTrend.STEADY)
