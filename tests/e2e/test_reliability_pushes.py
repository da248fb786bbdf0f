"""Gmail pushes duplicated, reordered and interleaved with new mail and with the processor's
runs, in any order (hypothesis): every message is stored and fetched exactly once, every
Pub/Sub message is stored once, and the mailbox's history pointer never moves back.

Pub/Sub delivers at least once and in no particular order: a push can arrive twice (the
same Pub/Sub message id), and the push of an older mailbox state can arrive after a newer
one. The pushes go through the real endpoint (signed OIDC tokens checked against the Google
stand-in's certificates), the processor syncs through google-api-python-client against the
Gmail stand-in. Each example adds to the mailbox the earlier examples left, on the test's
rolled-back transaction, and checks only what it delivered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from handlers.gmail_push import PUSH_PATH
from storage import models as m
from tests.support.gmail_inbound import DANA, REP, Mailbox, connect_mailbox
from tests.support.google import GoogleServer, make_email


@pytest.fixture
def mailbox(google: GoogleServer, session_factory: Callable[[], Session]) -> Mailbox:
    """The rep's mailbox on the test's rolled-back transaction."""
    return connect_mailbox(google, session_factory)


@pytest.fixture
def client(mailbox: Mailbox) -> Iterator[TestClient]:
    with TestClient(mailbox.app()) as test_client:
        yield test_client


class PushStorm(RuleBasedStateMachine):
    """New mail, its pushes, their duplicates and late arrivals, and processing rounds."""

    mailbox: Mailbox
    client: TestClient
    examples = 0
    posted = 0

    def __init__(self) -> None:
        super().__init__()
        PushStorm.examples += 1
        self.tag = f"storm{PushStorm.examples}"
        self.delivered: list[str] = []  # Gmail ids of the messages this example delivered
        self.pushes: list[tuple[dict[str, str], dict[str, object]]] = []
        self.pointer = self.mailbox.account().history_id or 0

    def _post(self, push: tuple[dict[str, str], dict[str, object]]) -> None:
        headers, body = push
        PushStorm.posted += 1
        assert self.client.post(PUSH_PATH, json=body, headers=headers).status_code == 204

    @rule()
    def mail_arrives_and_gmail_pushes_it(self) -> None:
        n = len(self.delivered)
        self.delivered.append(
            self.mailbox.deliver(
                make_email(sender=DANA, to=REP, subject=f"Re: turn times ({self.tag}-{n})")
            )
        )
        push = self.mailbox.push_request(message_id=f"{self.tag}-push-{n}")
        self.pushes.append(push)

    @precondition(lambda self: bool(self.pushes))
    @rule(which=st.integers(min_value=0, max_value=1000), times=st.integers(1, 3))
    def a_push_is_delivered(self, which: int, times: int) -> None:
        """Deliver one of the pushes, any of them, once or again (late, or a duplicate)."""
        for _ in range(times):
            self._post(self.pushes[which % len(self.pushes)])

    @rule()
    def the_processor_runs(self) -> None:
        self.mailbox.processor.run_pending()

    @invariant()
    def the_pointer_never_moves_back(self) -> None:
        pointer = self.mailbox.account().history_id or 0
        assert pointer >= self.pointer
        self.pointer = pointer

    @invariant()
    def no_message_is_stored_twice(self) -> None:
        with self.mailbox.session_factory() as session:
            rows = session.execute(
                select(m.InboundEmail.gmail_message_id, func.count())
                .where(m.InboundEmail.gmail_message_id.in_(self.delivered or [""]))
                .group_by(m.InboundEmail.gmail_message_id)
            ).all()
            pushes = session.execute(
                select(m.GmailPushNotification.pubsub_message_id, func.count())
                .where(m.GmailPushNotification.pubsub_message_id.like(f"{self.tag}-push-%"))
                .group_by(m.GmailPushNotification.pubsub_message_id)
            ).all()
        assert all(count == 1 for _, count in rows), rows
        assert all(count == 1 for _, count in pushes), pushes

    def teardown(self) -> None:
        # Every push delivered at least once in the end, as Pub/Sub does, then processed:
        # every message is there, once, and the pointer is Gmail's.
        for push in self.pushes:
            self._post(push)
        self.mailbox.processor.run_pending()
        with self.mailbox.session_factory() as session:
            stored = session.scalars(
                select(m.InboundEmail.gmail_message_id).where(
                    m.InboundEmail.gmail_message_id.in_(self.delivered or [""])
                )
            ).all()
        assert sorted(stored) == sorted(self.delivered)
        assert self.mailbox.account().history_id == self.mailbox.google.gmail.history_id(REP)


@pytest.mark.parametrize("db_kind", ["sqlite", "postgresql"])
def test_duplicated_and_reordered_pushes_store_and_fetch_each_message_once(
    mailbox: Mailbox, client: TestClient
) -> None:
    PushStorm.mailbox, PushStorm.client = mailbox, client
    PushStorm.examples = PushStorm.posted = 0
    fetched_before = mailbox.gmail_calls("messages.get")
    run_state_machine_as_test(
        PushStorm,
        settings=settings(
            max_examples=20,
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    with mailbox.session_factory() as session:
        stored = session.scalar(
            select(func.count())
            .select_from(m.InboundEmail)
            .where(m.InboundEmail.subject.like("Re: turn times (storm%"))
        )
    with mailbox.session_factory() as session:
        notifications = session.scalar(
            select(func.count())
            .select_from(m.GmailPushNotification)
            .where(m.GmailPushNotification.pubsub_message_id.like("storm%"))
        )
    fetched = mailbox.gmail_calls("messages.get") - fetched_before
    print(
        f"\npush storm: {PushStorm.examples} orders, {stored} messages, {notifications} distinct"
        f" pushes stored, {PushStorm.posted} push deliveries; {fetched} fetches, 0 duplicates"
    )
    # Each message fetched once, whatever the number and the order of its pushes.
    assert fetched == stored
    assert stored
