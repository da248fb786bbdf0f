"""Snoozed cards in the card repository, on SQLite and PostgreSQL: snoozing is a
compare-and-set on the card's state; a claim of due snoozed cards takes each once (two
sweeps at the same moment share them out, on PostgreSQL with real transactions) and
holds it under a lease; the App Home lists open reply cards first and snoozed ones last.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from domain.cards import OPEN_STATES, CardState
from domain.clock import FixedClock
from storage import models as m
from storage.db import make_session_factory
from storage.uow import UnitOfWork
from tests.support.builders import make_client, make_contact, make_org

LEASE = timedelta(minutes=5)


def _seed(session: Session, **card: Any) -> tuple[int, list[int]]:
    """An organization with a rep, their job and cards (one per `states` entry)."""
    org = make_org(session)
    rep = m.User(org_id=org.id, email=f"rep@{org.slug}.example", name="Rep", role="rep")
    session.add(rep)
    session.flush()
    lender = make_client(session, org)
    contact = make_contact(session, org, lender)
    job = m.Job(org_id=org.id, owner_id=rep.id, name="Win-back", status="running")
    session.add(job)
    session.flush()
    ids = []
    for state, snoozed_until, inbound in card["cards"]:
        row = m.Card(
            org_id=org.id,
            job_id=job.id,
            contact_id=contact.id,
            type="reply_to_email" if inbound else "send_email",
            state=state,
            title=f"card {len(ids)}",
            action_payload={},
            snoozed_until=snoozed_until,
            slack_channel_id="D0REP",
            slack_message_ts=f"{len(ids)}.000100",
        )
        session.add(row)
        session.flush()
        if inbound:
            email = m.InboundEmail(org_id=org.id, gmail_message_id=f"g{row.id}", status="processed")
            session.add(email)
            session.flush()
            row.inbound_email_id = email.id
        ids.append(row.id)
    session.commit()
    return org.id, ids


def test_a_card_is_snoozed_only_while_it_waits_for_someone(
    session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    now = clock.now()
    with session_factory() as session:
        org_id, (waiting, done) = _seed(
            session, cards=[("in_review", None, True), ("done", None, True)]
        )
    with UnitOfWork(session_factory) as uow:
        until = now + timedelta(hours=1)
        payload = {"snoozed_by": 3}
        assert uow.cards.snooze(
            org_id, waiting, until=until, expected=OPEN_STATES, now=now, action_payload=payload
        )
        assert not uow.cards.snooze(
            org_id, done, until=until, expected=OPEN_STATES, now=now, action_payload=payload
        )
        uow.commit()
        card = uow.cards.get(org_id, waiting)
        assert (card.snoozed_until, card.action_payload, card.is_snoozed) == (
            until,
            payload,
            True,
        )
        assert card.inbound_email_id is not None
        assert uow.cards.get(org_id, done).snoozed_until is None
        assert uow.cards.unsnooze(org_id, waiting, now=now)
        assert not uow.cards.unsnooze(org_id, waiting, now=now)


def test_due_snoozed_cards_are_claimed_once_under_a_lease(
    session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    now = clock.now()
    with session_factory() as session:
        org_id, (due, later, decided, awake) = _seed(
            session,
            cards=[
                ("in_review", now - timedelta(minutes=1), True),
                ("in_review", now + timedelta(hours=1), True),
                ("rejected", now - timedelta(hours=2), True),
                ("in_review", None, True),
            ],
        )
    with UnitOfWork(session_factory) as uow:
        claimed = uow.cards.claim_due_snoozed(now=now, lease_until=now + LEASE, limit=10)
        uow.commit()
    # Oldest snooze first; a decided card is claimed too (its snooze is only cleared).
    assert [(c.card_id, c.state, c.claimed_until) for c in claimed] == [
        (decided, CardState.REJECTED, now + LEASE),
        (due, CardState.IN_REVIEW, now + LEASE),
    ]
    assert (claimed[1].slack_channel_id, claimed[1].slack_message_ts) == ("D0REP", "0.000100")
    with UnitOfWork(session_factory) as uow:
        assert uow.cards.claim_due_snoozed(now=now, lease_until=now + LEASE, limit=10) == []
        # A sweep that died: its claims are taken again once the lease is over.
        again = uow.cards.claim_due_snoozed(now=now + LEASE, lease_until=now + 2 * LEASE, limit=10)
        assert [c.card_id for c in again] == [due, decided]  # same lease: by id
        assert not uow.cards.end_snooze(org_id, due, claimed_until=now + LEASE, now=now)
        assert uow.cards.end_snooze(org_id, due, claimed_until=now + 2 * LEASE, now=now)
        uow.commit()
        assert uow.cards.get(org_id, due).snoozed_until is None
        assert uow.cards.get(org_id, later).snoozed_until == now + timedelta(hours=1)
        assert uow.cards.get(org_id, awake).snoozed_until is None


def test_two_sweeps_at_once_share_the_due_cards_out(
    committed_engine: Engine, clock: FixedClock
) -> None:
    now = clock.now()
    sessions = make_session_factory(committed_engine)
    with sessions() as session:
        _, ids = _seed(
            session, cards=[("in_review", now - timedelta(seconds=n), True) for n in range(40)]
        )
    start = threading.Barrier(4)
    claims: list[list[int]] = []
    lock = threading.Lock()

    def sweep() -> None:
        start.wait()
        with UnitOfWork(sessions) as uow:
            taken = uow.cards.claim_due_snoozed(now=now, lease_until=now + LEASE, limit=40)
            uow.commit()
        with lock:
            claims.append([c.card_id for c in taken])

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    every = [card_id for claim in claims for card_id in claim]
    assert sorted(every) == sorted(ids)  # each card once, none left out
    with sessions() as session:
        leased = session.scalars(select(m.Card.snoozed_until).where(m.Card.id.in_(ids)))
        assert set(leased) == {now + LEASE}


def test_the_app_home_lists_reply_cards_first_and_snoozed_cards_last(
    session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    now = clock.now()
    with session_factory() as session:
        org_id, (outreach, snoozed, reply, blocked_reply, done) = _seed(
            session,
            cards=[
                ("in_review", None, False),
                ("in_review", now + timedelta(hours=1), True),
                ("in_review", None, True),
                ("blocked", None, True),
                ("done", None, True),
            ],
        )
        rep_id = session.scalar(select(m.User.id).where(m.User.org_id == org_id))
    with UnitOfWork(session_factory) as uow:
        listed = [c.id for c in uow.cards.list_open(org_id, owner_id=rep_id, limit=10)]
        assert listed == [reply, outreach, blocked_reply, snoozed]
        assert uow.cards.count_open(org_id, owner_id=rep_id) == 4
        assert [c.id for c in uow.cards.list_open(org_id, owner_id=None, limit=2)] == [
            reply,
            outreach,
        ]
        assert uow.cards.count_open(org_id, owner_id=rep_id + 1000) == 0
    assert done not in listed
