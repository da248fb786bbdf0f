"""Cancel sending a newsletter issue, on SQLite and PostgreSQL: the queued rows withdrawn in
one transaction, the sent and the claimed ones left alone, a planner stopped at its next
batch with no lease left behind, a second cancel changing nothing, and the outbox claiming a
row while the cancel runs (the row is sent or withdrawn, never both)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from domain.deps import Deps
from domain.errors import InvalidTransition, NotPermitted
from domain.newsletter_service import CANCEL_SETTLE, Newsletters
from domain.newsletters import AWAITING_FINAL, WITHDRAWN_REASON, IssueIn, NewsletterIn
from domain.outreach import Actor
from storage import models as m
from storage.db import make_session_factory
from storage.uow import UnitOfWork
from tests.support.accounts import ensure_user
from tests.support.builders import make_contact, make_org

NOW = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


def service(uow: Callable[[], UnitOfWork], clock: FixedClock, *, batch: int = 1000) -> Newsletters:
    counter = iter(range(1, 10**9))
    return Newsletters(
        Deps(uow=uow, clock=clock),
        new_message_id=lambda: f"<nl-{next(counter)}-{time.monotonic_ns()}@lonestar.example>",
        batch=batch,
    )


def setup(session: Session, *, contacts: int) -> tuple[int, int]:
    """An organization whose rep Maria has a connected mailbox, and `contacts` subscribers."""
    org = make_org(session)
    maria = ensure_user(session, org.id, email="maria@lonestar.example", name="Maria")
    session.add(
        m.GmailAccount(
            org_id=org.id,
            user_id=maria,
            email="maria@lonestar.example",
            status="connected",
            daily_send_cap=400,
            min_send_interval_seconds=5,
        )
    )
    for n in range(contacts):
        make_contact(session, org, email=f"lo{n}@pinnacle.example", first_name=f"Dana{n}")
    session.commit()
    return org.id, maria


def scheduled_issue(nl: Newsletters, org_id: int, maria: int) -> tuple[int, int]:
    """A newsletter and an issue of it, approved by Maria (its creator): (newsletter, issue)."""
    actor = Actor(org_id=org_id, user_id=maria, role="rep")
    newsletter = nl.create(
        actor,
        org_id,
        NewsletterIn(name="Lender Update", sender_user_ids=[maria], slack_channel_id="C0NEWS"),
    )
    issue = nl.create_issue(
        actor,
        org_id,
        newsletter.id,
        IssueIn(title="December", subject_template="News", text_template="Hi {{ first_name }}"),
    )
    submitted = nl.submit(actor, org_id, newsletter.id, issue.id)
    nl.approve(actor, issue.id, fingerprint=submitted.card_fingerprint)
    return newsletter.id, issue.id


def rows(session: Session, issue_id: int) -> list[m.EmailSend]:
    session.expire_all()
    return list(
        session.scalars(
            select(m.EmailSend)
            .where(m.EmailSend.newsletter_issue_id == issue_id)
            .order_by(m.EmailSend.id)
        )
    )


def issue_row(session: Session, issue_id: int) -> m.NewsletterIssue:
    session.expire_all()
    row = session.get(m.NewsletterIssue, issue_id)
    assert row is not None
    return row


def test_cancel_withdraws_the_queued_rows_and_leaves_the_sent_and_the_claimed_alone(
    session: Session, uow: UnitOfWork, clock: FixedClock
) -> None:
    org_id, maria = setup(session, contacts=5)
    nl = service(lambda: uow, clock)
    newsletter_id, issue_id = scheduled_issue(nl, org_id, maria)
    assert nl.plan_next() is True
    sent, claimed, *queued = rows(session, issue_id)
    sent.status, sent.sent_at, sent.not_before = "sent", NOW, None
    claimed.status, claimed.claimed_by = "sending", "worker-1"
    claimed.claimed_until = NOW + timedelta(minutes=10)
    session.commit()
    clock.advance(minutes=30)

    maria_actor = Actor(org_id=org_id, user_id=maria, role="rep", slack_user_id="U0MARIA")
    cancelled = nl.cancel(maria_actor, org_id, issue_id, newsletter_id=newsletter_id)

    assert cancelled.status == "cancelled"
    assert (cancelled.cancelled_by, cancelled.cancelled_at) == (maria, NOW + timedelta(minutes=30))
    assert (cancelled.sent_before_cancel, cancelled.withdrawn_count) == (1, 3)
    assert cancelled.plan_lease_until is None
    assert (cancelled.card or {})["note"] == (
        "🛑 Sending cancelled by <@U0MARIA> on Dec 7 14:30 UTC: 1 of 5 sent, 3 withdrawn,"
        " 1 already on their way (sent unless Gmail refuses)."
    )
    after = {r.id: r for r in rows(session, issue_id)}
    assert after[sent.id].status == "sent"
    assert (after[claimed.id].status, after[claimed.id].claimed_by) == ("sending", "worker-1")
    assert {(after[r.id].status, after[r.id].error, after[r.id].not_before) for r in queued} == {
        ("failed", WITHDRAWN_REASON, None)
    }
    _, metrics = nl.get_issue(org_id, newsletter_id, issue_id)
    assert (metrics.planned, metrics.queued, metrics.sent) == (5, 1, 1)
    assert (metrics.failed, metrics.withdrawn) == (0, 3)

    # A second click, a retry: nothing more changes.
    again = nl.cancel(maria_actor, org_id, issue_id)
    assert (again.cancelled_at, again.withdrawn_count, again.card) == (
        cancelled.cancelled_at,
        3,
        cancelled.card,
    )
    # The sweep does not take a cancelled issue up again.
    assert nl.plan_next() is False
    assert nl.follow_sends() == 0


def test_only_the_newsletter_creator_or_an_admin_cancels_and_a_draft_is_refused(
    session: Session, uow: UnitOfWork, clock: FixedClock
) -> None:
    org_id, maria = setup(session, contacts=2)
    jose = ensure_user(session, org_id, email="jose@lonestar.example", name="Jose")
    session.commit()
    nl = service(lambda: uow, clock)
    newsletter_id, issue_id = scheduled_issue(nl, org_id, maria)

    with pytest.raises(NotPermitted) as refused:
        nl.cancel(Actor(org_id=org_id, user_id=jose, role="rep"), org_id, issue_id)
    assert refused.value.message == (
        "Only an admin or the creator of 'Lender Update' (Maria) can cancel its issues."
    )
    assert issue_row(session, issue_id).status == "scheduled"

    draft = nl.create_issue(
        None, org_id, newsletter_id, IssueIn(title="Jan", subject_template="S", text_template="T")
    )
    with pytest.raises(InvalidTransition) as not_on_its_way:
        nl.cancel(None, org_id, draft.id)
    assert "it is a draft, nothing is being sent; delete it instead" in (
        not_on_its_way.value.message
    )

    admin = nl.cancel(Actor(org_id=org_id, user_id=jose, role="admin"), org_id, issue_id)
    assert (admin.status, admin.withdrawn_count, admin.cancelled_by) == ("cancelled", 0, jose)


def test_a_planner_stops_at_its_next_batch_and_leaves_no_lease_behind(
    session: Session, uow: UnitOfWork, clock: FixedClock
) -> None:
    org_id, maria = setup(session, contacts=5)
    canceller = service(lambda: uow, clock)
    _, issue_id = scheduled_issue(canceller, org_id, maria)
    opened = 0

    def cancel_before_the_second_batch() -> UnitOfWork:
        # The planner's units of work: the claim, the plan, batch 1, batch 2, …: cancel
        # before batch 2.
        nonlocal opened
        opened += 1
        if opened == 4:
            canceller.cancel(None, org_id, issue_id)
        return uow

    planner = service(cancel_before_the_second_batch, clock, batch=2)
    assert planner.plan_next() is True

    issue = issue_row(session, issue_id)
    assert (issue.status, issue.plan_lease_until, issue.planned_count) == ("cancelled", None, 2)
    assert (issue.withdrawn_count, issue.sent_before_cancel) == (2, 0)
    assert [(r.status, r.error) for r in rows(session, issue_id)] == [
        ("failed", WITHDRAWN_REASON)
    ] * 2
    assert planner.plan_next() is False


@pytest.mark.parametrize("first", ["outbox", "cancel"])
def test_a_row_the_outbox_claims_while_the_cancel_runs_is_sent_or_withdrawn_never_both(
    committed_engine: Engine, clock: FixedClock, first: str
) -> None:
    sessions = make_session_factory(committed_engine)
    with sessions() as session:
        org_id, maria = setup(session, contacts=3)
    nl = service(lambda: UnitOfWork(sessions), clock)
    _, issue_id = scheduled_issue(nl, org_id, maria)
    assert nl.plan_next() is True
    clock.advance(days=2)  # every row is due
    now = clock.now()
    claimed_row = threading.Event()
    result: dict[str, object] = {}

    def outbox_claims_one() -> None:
        # The outbox's own claim: lock due rows (SKIP LOCKED on PostgreSQL), claim the first
        # by compare-and-set on `queued`, commit; the email then leaves and is marked sent.
        with UnitOfWork(sessions) as uow:
            due = [r for r in uow.outbox.due_queued(now=now, limit=10) if r.org_id == org_id]
            row = due[0] if due else None
            won = row is not None and uow.outbox.claim(
                row.id,
                worker="w1",
                slot_at=now,
                lease_until=now + timedelta(minutes=10),
                from_email="maria@lonestar.example",
            )
            claimed_row.set()
            if first == "outbox":
                time.sleep(0.5)  # the cancel is waiting for this transaction meanwhile
            uow.commit()
        if won and row is not None:
            with UnitOfWork(sessions) as uow:
                result["sent"] = uow.outbox.mark_sent(
                    row.id, worker="w1", gmail_message_id="g1", gmail_thread_id="t1", at=now
                )
                uow.commit()
        result["row"] = row.id if won and row is not None else None

    if first == "outbox":
        worker = threading.Thread(target=outbox_claims_one)
        worker.start()
        assert claimed_row.wait(10)
        cancelled = nl.cancel(None, org_id, issue_id)
        worker.join(10)
    else:
        cancelled = nl.cancel(None, org_id, issue_id)
        outbox_claims_one()

    with sessions() as session:
        final = rows(session, issue_id)
    statuses = sorted(r.status for r in final)
    withdrawn = [r for r in final if r.error == WITHDRAWN_REASON]
    if first == "outbox":
        assert result["row"] is not None
        assert result["sent"] is True
        assert statuses == ["failed", "failed", "sent"]
        assert result["row"] not in {r.id for r in withdrawn}
        assert cancelled.withdrawn_count == 2
        # Claimed before the cancel: sent by then, or still on its way (which one depends
        # on whether the send's own transaction got in before the cancel's).
        note = str((cancelled.card or {})["note"])
        if cancelled.sent_before_cancel == 1:
            assert "1 of 3 sent, 2 withdrawn." in note
        else:
            assert cancelled.sent_before_cancel == 0
            assert "0 of 3 sent, 2 withdrawn, 1 already on their way" in note
    else:
        assert result["row"] is None
        assert statuses == ["failed", "failed", "failed"]
        assert (cancelled.withdrawn_count, cancelled.sent_before_cancel) == (3, 0)
    assert len(withdrawn) == cancelled.withdrawn_count


def test_a_row_put_back_in_the_queue_after_the_cancel_is_withdrawn_when_claimed_again(
    session: Session, uow: UnitOfWork, clock: FixedClock
) -> None:
    org_id, maria = setup(session, contacts=2)
    nl = service(lambda: uow, clock)
    _, issue_id = scheduled_issue(nl, org_id, maria)
    assert nl.plan_next() is True
    on_its_way, _ = rows(session, issue_id)
    on_its_way.status, on_its_way.claimed_by = "sending", "worker-1"
    session.commit()
    with uow:
        assert uow.outbox.withdrawn_newsletter(on_its_way.id) is None  # not cancelled yet

    nl.cancel(None, org_id, issue_id)
    # Gmail rate-limited the attempt: the outbox puts the row back in the queue.
    with uow:
        assert uow.outbox.requeue(
            on_its_way.id, not_before=clock.now(), reason="rate limited", worker="worker-1"
        )
        uow.commit()
    with uow:
        # What the outbox asks when it claims a newsletter row (domain/outbox.py: _reserve).
        assert uow.outbox.withdrawn_newsletter(on_its_way.id) == WITHDRAWN_REASON


def test_the_card_shows_the_final_figures_once_the_emails_on_their_way_have_all_ended(
    session: Session, uow: UnitOfWork, clock: FixedClock
) -> None:
    org_id, maria = setup(session, contacts=5)
    nl = service(lambda: uow, clock)
    newsletter_id, issue_id = scheduled_issue(nl, org_id, maria)
    assert nl.plan_next() is True
    sent, refused, requeued, *_ = rows(session, issue_id)
    with uow:
        for row in (sent, refused, requeued):  # the outbox's claim: three on their way
            assert uow.outbox.claim(
                row.id,
                worker="w1",
                slot_at=NOW,
                lease_until=NOW + timedelta(minutes=10),
                from_email="maria@lonestar.example",
            )
        uow.commit()
    maria_actor = Actor(org_id=org_id, user_id=maria, role="rep", slack_user_id="U0MARIA")
    nl.cancel(maria_actor, org_id, issue_id)
    assert AWAITING_FINAL in (issue_row(session, issue_id).card or {})
    assert nl.follow_cancelled() == 0  # all three still on their way

    # One goes out, Gmail refuses one, and Gmail rate-limits the third: back in the queue,
    # still on its way until the outbox claims it again and withdraws it.
    with uow:
        assert uow.outbox.mark_sent(
            sent.id, worker="w1", gmail_message_id="g1", gmail_thread_id="t1", at=NOW
        )
        assert uow.outbox.mark_failed(refused.id, reason="Gmail refused it.", worker="w1")
        assert uow.outbox.requeue(requeued.id, not_before=NOW, reason="limited", worker="w1")
        uow.commit()
    assert nl.follow_cancelled() == 0
    with uow:
        reason = uow.outbox.withdrawn_newsletter(requeued.id)
        assert reason == WITHDRAWN_REASON
        assert uow.outbox.mark_failed(requeued.id, reason=reason)
        uow.commit()

    # All ended, but within CANCEL_SETTLE of the cancel its own card update comes first.
    assert nl.follow_cancelled() == 0
    clock.advance(seconds=CANCEL_SETTLE.total_seconds() + 1)
    assert nl.follow_cancelled() == 1
    issue = issue_row(session, issue_id)
    assert (issue.card or {})["note"] == (
        "🛑 Sending cancelled by <@U0MARIA> on Dec 7 14:00 UTC: 1 of 5 sent (1 finished after"
        " the cancel), 3 withdrawn; 1 not sent (1 of them: Gmail refused it.)."
    )
    assert AWAITING_FINAL not in (issue.card or {})
    assert (issue.sent_before_cancel, issue.withdrawn_count) == (0, 2)  # at the cancel
    _, metrics = nl.get_issue(org_id, newsletter_id, issue_id)
    assert (metrics.planned, metrics.sent, metrics.withdrawn, metrics.failed) == (5, 1, 3, 1)
    assert metrics.queued == 0
    assert nl.follow_cancelled() == 0  # followed no more


def test_a_cancel_with_nothing_on_its_way_leaves_nothing_to_follow(
    session: Session, uow: UnitOfWork, clock: FixedClock
) -> None:
    org_id, maria = setup(session, contacts=2)
    nl = service(lambda: uow, clock)
    _, issue_id = scheduled_issue(nl, org_id, maria)
    assert nl.plan_next() is True
    cancelled = nl.cancel(None, org_id, issue_id)
    assert AWAITING_FINAL not in (cancelled.card or {})
    clock.advance(minutes=1)
    assert nl.follow_cancelled() == 0
    assert issue_row(session, issue_id).card == cancelled.card
