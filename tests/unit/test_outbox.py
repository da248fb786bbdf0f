"""The outbox use case (domain/outbox.py) with a fake unit of work and a fake mailbox.

The fakes keep the rules the storage keeps (a card has one row, claims are compare-and-set,
a unit of work left without a commit changes nothing) and record what the use case did, so
the tests can say where its transactions were when the mailbox was called.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import pytest

from domain.clock import FixedClock
from domain.email_preferences import EmailType
from domain.errors import InvalidInput, NotFound
from domain.mail import OutgoingEmail, SendStatus
from domain.mailboxes import AccountTokens
from domain.outbox import Outbox
from domain.sending import (
    AccessTokenUpdate,
    FailureKind,
    MailboxError,
    MailboxSlot,
    MailMessage,
    MessageRef,
    OutboxEmail,
    OutboxStatus,
    SendLimits,
)
from tests.unit.fakes import EngagementStore, FakeEngagement

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
ORG, REP, ACCOUNT, DANA_ID = 1, 10, 100, 1000
REP_EMAIL = "maria@lonestar.example.com"
DANA = "dana@pinnacle.example.com"


@dataclass(frozen=True)
class Account:
    id: int
    org_id: int
    user_id: int | None
    email: str


@dataclass(frozen=True)
class Tokens:
    refresh_token: str
    access_token: str | None = None
    access_token_expires_at: datetime | None = None


@dataclass
class State:
    """What the database holds; a unit of work works on a copy kept only by its commit."""

    rows: dict[int, OutboxEmail] = field(default_factory=dict)
    slots: dict[int, MailboxSlot] = field(default_factory=dict)
    connected: dict[int, bool] = field(default_factory=dict)
    access_tokens: dict[int, str] = field(default_factory=dict)
    engagement: EngagementStore = field(default_factory=EngagementStore)

    def copy(self) -> State:
        return State(
            dict(self.rows),
            dict(self.slots),
            dict(self.connected),
            dict(self.access_tokens),
            copy.deepcopy(self.engagement),
        )


class FakeOutboxRepo:
    """The outbox rows and mailbox slots of one unit of work."""

    def __init__(self, state: State) -> None:
        self.s = state

    def _set(self, send_id: int, ok: bool, **values: Any) -> bool:
        if ok:
            self.s.rows[send_id] = replace(self.s.rows[send_id], **values)
        return ok

    def _held(self, send_id: int, worker: str | None) -> bool:
        row = self.s.rows[send_id]
        if worker is None:
            return row.status == OutboxStatus.QUEUED
        return row.status == OutboxStatus.SENDING and row.claimed_by == worker

    def add(
        self,
        org_id: int,
        *,
        card_id: int | None,
        message_id: str,
        not_before: datetime,
        **content: Any,
    ) -> OutboxEmail | None:
        if card_id is not None and self.by_card(card_id) is not None:
            return None
        send_id = len(self.s.rows) + 1
        values = {**content, "references": tuple(content["references"])}
        self.s.rows[send_id] = OutboxEmail(
            id=send_id,
            org_id=org_id,
            card_id=card_id,
            message_id=message_id,
            gmail_message_id=None,
            status=OutboxStatus.QUEUED,
            attempt_count=0,
            not_before=not_before,
            sent_at=None,
            error=None,
            claimed_by=None,
            claimed_until=None,
            **values,
        )
        return self.s.rows[send_id]

    def get(self, send_id: int) -> OutboxEmail:
        if send_id not in self.s.rows:
            raise NotFound(f"email send {send_id} not found")
        return self.s.rows[send_id]

    def by_card(self, card_id: int) -> OutboxEmail | None:
        return next((r for r in self.s.rows.values() if r.card_id == card_id), None)

    def rearm_failed(self, send_id: int, *, not_before: datetime, **content: Any) -> bool:
        ok = self.s.rows[send_id].status == OutboxStatus.FAILED
        content["references"] = tuple(content["references"])
        return self._set(
            send_id,
            ok,
            status=OutboxStatus.QUEUED,
            not_before=not_before,
            error=None,
            sent_at=None,
            claimed_by=None,
            claimed_until=None,
            **content,
        )

    def thread_message_ids(self, org_id: int, thread_id: str, *, limit: int = 20) -> list[str]:
        return []

    def last_sent_thread(self, enrollment_id: int) -> str | None:
        return None

    def recipient_block(
        self,
        org_id: int,
        to_email: str,
        *,
        card_id: int | None = None,
        email_type: EmailType | None = None,
        contact_required: bool = False,
    ) -> str | None:
        if contact_required and self.contact_id_for(org_id, to_email) is None:
            return f"{to_email} is no longer a contact; nothing was sent."
        return None

    def withdrawn_newsletter(self, send_id: int) -> str | None:
        return None

    def contact_id_for(self, org_id: int, to_email: str) -> int | None:
        return DANA_ID if to_email == DANA else None

    def sender_label(self, org_id: int, user_id: int | None) -> str:
        return "María López" if user_id == REP else "the sender"

    def lock_queued(self, send_id: int) -> OutboxEmail | None:
        row = self.s.rows.get(send_id)
        return row if row is not None and row.status == OutboxStatus.QUEUED else None

    def due_queued(self, *, now: datetime, limit: int) -> list[OutboxEmail]:
        due = [
            r
            for r in self.s.rows.values()
            if r.status == OutboxStatus.QUEUED and r.not_before is not None and r.not_before <= now
        ]
        return sorted(due, key=lambda r: (r.not_before, r.id))[:limit]

    def expired_leases(self, *, now: datetime, limit: int) -> list[OutboxEmail]:
        expired = [
            r
            for r in self.s.rows.values()
            if r.status == OutboxStatus.SENDING and r.claimed_until and r.claimed_until < now
        ]
        return expired[:limit]

    def lock_mailbox(self, account_id: int, *, wait: bool) -> MailboxSlot | None:
        slot = self.s.slots.get(account_id)
        return None if slot is None else replace(slot, connected=self.s.connected[account_id])

    def hold_mailbox(self, account_id: int, *, until: datetime) -> None:
        self.s.slots[account_id] = replace(self.s.slots[account_id], sending_until=until)

    def release_mailbox(self, account_id: int, *, held_until: datetime) -> bool:
        if self.s.slots[account_id].sending_until != held_until:
            return False
        self.s.slots[account_id] = replace(self.s.slots[account_id], sending_until=None)
        return True

    def push_next_send(self, account_id: int, at: datetime) -> None:
        slot = self.s.slots[account_id]
        if slot.next_send_at is None or slot.next_send_at < at:
            self.s.slots[account_id] = replace(slot, next_send_at=at)

    def _send_times(self, account_id: int, since: datetime) -> list[datetime]:
        return sorted(
            r.sent_at
            for r in self.s.rows.values()
            if r.gmail_account_id == account_id and r.sent_at is not None and r.sent_at > since
        )

    def sends_since(self, account_id: int, since: datetime) -> int:
        return len(self._send_times(account_id, since))

    def send_time_since(self, account_id: int, since: datetime, *, offset: int) -> datetime | None:
        times = self._send_times(account_id, since)
        return times[offset] if offset < len(times) else None

    def claim(
        self,
        send_id: int,
        *,
        worker: str,
        slot_at: datetime,
        lease_until: datetime,
        from_email: str,
    ) -> bool:
        row = self.s.rows[send_id]
        ok = row.status == OutboxStatus.QUEUED or self._held(send_id, worker)
        return self._set(
            send_id,
            ok,
            status=OutboxStatus.SENDING,
            claimed_by=worker,
            claimed_until=lease_until,
            sent_at=slot_at,
            from_email=from_email,
            attempt_count=row.attempt_count + 1,
        )

    def extend_lease(self, send_id: int, *, worker: str, until: datetime) -> bool:
        ok = self.s.rows[send_id].status == OutboxStatus.SENDING
        return self._set(send_id, ok, claimed_by=worker, claimed_until=until)

    def release_slot(self, send_id: int, *, worker: str) -> bool:
        return self._set(send_id, self._held(send_id, worker), sent_at=None)

    def forget_thread(self, send_id: int) -> None:
        self._set(send_id, True, gmail_thread_id=None)

    def mark_sent(
        self,
        send_id: int,
        *,
        worker: str,
        gmail_message_id: str,
        gmail_thread_id: str,
        at: datetime,
    ) -> bool:
        sent_at = self.s.rows[send_id].sent_at or at
        return self._set(
            send_id,
            self._held(send_id, worker),
            status=OutboxStatus.SENT,
            gmail_message_id=gmail_message_id,
            gmail_thread_id=gmail_thread_id,
            sent_at=sent_at,
            error=None,
            claimed_by=None,
            claimed_until=None,
            not_before=None,
        )

    def requeue(
        self,
        send_id: int,
        *,
        not_before: datetime,
        reason: str,
        worker: str | None = None,
        keep_slot: bool = False,
    ) -> bool:
        slot = {} if keep_slot else {"sent_at": None}
        return self._set(
            send_id,
            self._held(send_id, worker),
            status=OutboxStatus.QUEUED,
            not_before=not_before,
            error=reason,
            claimed_by=None,
            claimed_until=None,
            **slot,
        )

    def hold(self, send_id: int, *, worker: str, until: datetime, reason: str) -> bool:
        return self._set(send_id, self._held(send_id, worker), claimed_until=until, error=reason)

    def mark_failed(self, send_id: int, *, reason: str, worker: str | None = None) -> bool:
        return self._set(
            send_id,
            self._held(send_id, worker),
            status=OutboxStatus.FAILED,
            error=reason,
            sent_at=None,
            claimed_by=None,
            claimed_until=None,
            not_before=None,
        )

    def next_due_at(self) -> datetime | None:
        times = [r.not_before for r in self.s.rows.values() if r.status == OutboxStatus.QUEUED]
        times += [r.claimed_until for r in self.s.rows.values() if r.status == OutboxStatus.SENDING]
        known = [t for t in times if t is not None]
        return min(known) if known else None


class FakeMailboxRepo:
    """The rep's mailbox of one unit of work."""

    def __init__(self, state: State) -> None:
        self.s = state

    def for_user(
        self, org_id: int, user_id: int, *, connected_only: bool = False
    ) -> Account | None:
        if user_id != REP or (connected_only and not self.s.connected[ACCOUNT]):
            return None
        return self.get(ACCOUNT)

    def get(self, account_id: int) -> Account:
        return Account(id=account_id, org_id=ORG, user_id=REP, email=REP_EMAIL)

    def tokens(self, account_id: int) -> Tokens | None:
        if not self.s.connected[account_id]:
            return None
        return Tokens("refresh", self.s.access_tokens.get(account_id))

    def save_access_token(
        self, account_id: int, *, access_token: str, expires_at: datetime | None, now: datetime
    ) -> None:
        if self.s.connected[account_id]:
            self.s.access_tokens[account_id] = access_token

    def mark_disconnected(self, account_id: int, *, reason: str, now: datetime) -> bool:
        was = self.s.connected[account_id]
        self.s.connected[account_id] = False
        return was


class Database:
    """The committed state, the units of work opened on it and the commits made."""

    def __init__(self) -> None:
        self.state = State(
            slots={ACCOUNT: MailboxSlot(ACCOUNT, REP_EMAIL, True, 400, 0, None, None)},
            connected={ACCOUNT: True},
        )
        self.state.engagement.add_contact(ORG, DANA_ID)
        self.open = 0
        self.commits = 0

    def uow(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self)


class FakeUnitOfWork:
    """One transaction: works on a copy of the state, kept only by `commit()`."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._work = db.state.copy()
        self.outbox = FakeOutboxRepo(self._work)
        self.gmail_accounts = FakeMailboxRepo(self._work)
        self.engagement = FakeEngagement(self._work)

    def __enter__(self) -> FakeUnitOfWork:
        self._db.open += 1
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._db.open -= 1

    def commit(self) -> None:
        self._db.state = self._work.copy()
        self._db.commits += 1


@dataclass
class FakeMailbox:
    """A mailbox: fails the sends it is told to, keeps what it accepted."""

    db: Database
    failures: list[MailboxError | InvalidInput] = field(default_factory=list)
    lose_answers: int = 0
    # Searches that do not find a message the mailbox has (Gmail's index lags behind).
    unindexed_searches: int = 0
    sent: list[MailMessage] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    open_while_called: list[int] = field(default_factory=list)
    refreshed: str | None = None

    def send(self, message: MailMessage, *, thread_id: str | None) -> MessageRef:
        self.open_while_called.append(self.db.open)
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message)
        if self.lose_answers:
            self.lose_answers -= 1
            raise MailboxError("Gmail answered 500.", kind=FailureKind.UNCERTAIN, status=500)
        return MessageRef(id=f"m{len(self.sent)}", thread_id="t1")

    def find_by_message_id(self, message_id: str) -> MessageRef | None:
        self.open_while_called.append(self.db.open)
        self.searches.append(message_id)
        if self.unindexed_searches:
            self.unindexed_searches -= 1
            return None
        for n, message in enumerate(self.sent, start=1):
            if message.message_id == message_id:
                return MessageRef(id=f"m{n}", thread_id="t1")
        return None

    def token_update(self) -> AccessTokenUpdate | None:
        return None if self.refreshed is None else AccessTokenUpdate(self.refreshed, None)


@dataclass
class FakeSender:
    mailbox: FakeMailbox
    ids: int = 0

    def new_message_id(self) -> str:
        self.ids += 1
        return f"<{self.ids}.salesbot@testserver>"

    def check(self, message: MailMessage) -> None:
        if "\n" in message.subject:
            raise InvalidInput("The subject must be one line.", field="subject")

    def connect(self, tokens: AccountTokens) -> FakeMailbox:
        return self.mailbox


@dataclass
class World:
    db: Database
    mailbox: FakeMailbox
    clock: FixedClock
    outbox: Outbox
    pauses: list[float]


@pytest.fixture
def world() -> World:
    db = Database()
    mailbox = FakeMailbox(db)
    clock = FixedClock(NOW)
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        clock.advance(seconds=seconds)

    outbox = Outbox(
        uow=db.uow,
        sender=FakeSender(mailbox),
        clock=clock,
        unsubscribe_url=lambda org, contact, *_: f"https://salesbot.example/u/{org}/{contact}",
        limits=SendLimits(),
        sleep=sleep,
        rng=random.Random(7),
        name="replica-1",
    )
    return World(db, mailbox, clock, outbox, pauses)


def email(**overrides: Any) -> OutgoingEmail:
    values: dict[str, Any] = {
        "org_id": ORG,
        "to_email": DANA,
        "subject": "Turn times are down",
        "body_text": "Hi Dana",
        "sender_user_id": REP,
        "card_id": 7,
    }
    return OutgoingEmail(**{**values, **overrides})


def rows(world: World) -> list[tuple[OutboxStatus, int, str | None]]:
    return [(r.status, r.attempt_count, r.error) for r in world.db.state.rows.values()]


def test_a_card_asked_to_send_twice_is_sent_once_and_answers_the_first_outcome(
    world: World,
) -> None:
    first = world.outbox.send(email())
    second = world.outbox.send(email(subject="Edited meanwhile"))

    assert (first.status, second.status) == (SendStatus.SENT, SendStatus.SENT)
    assert (second.email_send_id, second.gmail_message_id) == (1, "m1")
    assert [m.subject for m in world.mailbox.sent] == ["Turn times are down"]


def test_the_mailbox_is_called_with_no_unit_of_work_open(world: World) -> None:
    world.mailbox.lose_answers = 1

    world.outbox.send(email())

    assert world.mailbox.open_while_called == [0, 0]


def test_the_row_is_committed_before_the_mailbox_is_called_and_the_result_after(
    world: World,
) -> None:
    world.outbox.send(email())

    # Stored, claimed with its send slot, recorded sent with the mailbox freed.
    assert world.db.commits == 3
    assert rows(world) == [(OutboxStatus.SENT, 1, None)]
    assert world.db.state.slots[ACCOUNT].sending_until is None


def test_an_accepted_send_is_in_the_contacts_engagement_history_once_in_its_transaction(
    world: World,
) -> None:
    first = world.outbox.send(email())
    world.outbox.send(email())  # the same card again: answered from the row

    history = world.db.state.engagement.history(ORG, DANA_ID)
    assert [(r.event, r.email_send_id, r.detail, r.occurred_at) for r in history] == [
        ("sent", first.email_send_id, {"card_id": 7}, NOW)
    ]
    # Stored, claimed, recorded sent with its history row: no transaction of its own.
    assert world.db.commits == 3


def test_a_send_to_an_address_that_is_no_contact_writes_no_engagement(world: World) -> None:
    world.outbox.send(email(to_email="someone@elsewhere.example.com", campaign_email=False))

    assert rows(world) == [(OutboxStatus.SENT, 1, None)]
    assert world.db.state.engagement.rows == []


def test_a_refused_send_writes_no_engagement(world: World) -> None:
    world.mailbox.failures = [
        MailboxError("Gmail refused the message.", kind=FailureKind.REFUSED, status=400)
    ]

    world.outbox.send(email())

    assert world.db.state.engagement.rows == []


def test_the_email_carries_the_reps_name_and_the_contacts_unsubscribe_link(world: World) -> None:
    world.outbox.send(email())

    (sent,) = world.mailbox.sent
    assert (sent.from_email, sent.from_name, sent.message_id) == (
        REP_EMAIL,
        "María López",
        "<1.salesbot@testserver>",
    )
    assert sent.unsubscribe_url == f"https://salesbot.example/u/{ORG}/{DANA_ID}"


def test_an_answer_lost_after_the_mailbox_accepted_is_found_by_message_id_not_sent_again(
    world: World,
) -> None:
    world.mailbox.lose_answers = 1

    outcome = world.outbox.send(email())

    assert (outcome.status, outcome.gmail_message_id) == (SendStatus.SENT, "m1")
    assert len(world.mailbox.sent) == 1
    assert world.mailbox.searches == ["<1.salesbot@testserver>"]


def test_a_send_the_mailbox_refused_fails_says_why_and_frees_the_mailbox(world: World) -> None:
    world.mailbox.failures = [
        MailboxError("Gmail refused: invalid To header.", kind=FailureKind.REFUSED, status=400)
    ]

    outcome = world.outbox.send(email())

    assert (outcome.status, outcome.detail) == (
        SendStatus.FAILED,
        "Gmail refused: invalid To header. Nothing was sent.",
    )
    assert rows(world) == [(OutboxStatus.FAILED, 1, outcome.detail)]
    assert world.db.state.slots[ACCOUNT].sending_until is None


def test_a_short_rate_limit_is_slept_here_and_the_send_made_in_a_new_slot(world: World) -> None:
    world.mailbox.failures = [
        MailboxError("Slow down.", kind=FailureKind.RATE_LIMITED, status=429, retry_after=3)
    ]

    outcome = world.outbox.send(email())

    assert outcome.status == SendStatus.SENT
    assert len(world.pauses) == 1
    assert 3.0 <= world.pauses[0] <= 3.75
    assert rows(world) == [(OutboxStatus.SENT, 2, None)]


def test_an_email_over_the_daily_cap_is_queued_with_when_and_why(world: World) -> None:
    world.db.state.slots[ACCOUNT] = replace(world.db.state.slots[ACCOUNT], daily_send_cap=1)
    world.outbox.send(email(card_id=1))
    world.clock.advance(hours=1)

    outcome = world.outbox.send(email(card_id=2))

    assert (outcome.status, outcome.retry_at) == (SendStatus.QUEUED, NOW + timedelta(hours=24))
    assert outcome.detail == (
        f"Gmail daily cap reached (1 emails in 24 h from {REP_EMAIL}), sending at Nov 26 15:00 UTC"
    )
    assert len(world.mailbox.sent) == 1


def test_a_send_gmail_did_not_confirm_is_found_by_the_drain_once_its_hold_is_over(
    world: World,
) -> None:
    world.mailbox.lose_answers = 1
    world.mailbox.unindexed_searches = 1
    queued = world.outbox.send(email())

    assert queued.status == SendStatus.QUEUED
    assert world.outbox.drain().handled == 0
    world.clock.advance(minutes=11)
    report = world.outbox.drain()

    assert report.handled == 1
    assert [(f.card_id, f.outcome.status) for f in report.finished] == [(7, SendStatus.SENT)]
    assert len(world.mailbox.sent) == 1
    assert rows(world) == [(OutboxStatus.SENT, 1, None)]


def test_a_subject_that_cannot_be_composed_is_refused_before_anything_is_stored(
    world: World,
) -> None:
    outcome = world.outbox.send(email(subject="Two\nlines"))

    assert (outcome.status, outcome.detail) == (
        SendStatus.FAILED,
        "This email cannot be sent: The subject must be one line.",
    )
    assert world.db.state.rows == {}
    assert world.db.commits == 0


def test_a_refreshed_access_token_is_kept_for_the_next_send(world: World) -> None:
    world.mailbox.refreshed = "fresh-token"

    world.outbox.send(email())

    assert world.db.state.access_tokens == {ACCOUNT: "fresh-token"}


def test_a_revoked_grant_disconnects_the_mailbox_and_tells_the_rep(world: World) -> None:
    told: list[tuple[int, int | None, str, str]] = []
    world.outbox.on_disconnected = lambda *args: told.append(args)
    world.mailbox.failures = [
        MailboxError("Access revoked.", kind=FailureKind.REVOKED, reason="invalid_grant")
    ]

    outcome = world.outbox.send(email())

    assert outcome.status == SendStatus.FAILED
    assert world.db.state.connected == {ACCOUNT: False}
    assert told == [(ORG, REP, REP_EMAIL, "Google access was revoked")]
